"""What the service loads once at start: settings, catalog, store, walk network, jobs, keys."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from api.auth import KeyRing
from api.jobs import JobManager
from geo_minzheng import workflows
from geo_minzheng._errors import NetworkError
from geo_minzheng.engine import Engine
from geo_minzheng.kinds import get_kind
from geo_minzheng.settings import Settings
from geo_minzheng.store import Store

log = logging.getLogger("geo_minzheng.api")


class NetworkHolder:
    """Street-network engines built from the store's road layer, one per network setting.

    The settings' network (profile, walking speed) is built once, in the background, at start;
    a request for another profile or speed builds that network on first use and keeps the
    last few. Analyses call :meth:`get`, which waits for a build in progress or starts one.
    """

    #: Engines kept besides the default one (each is a few MB for a city).
    KEEP = 4

    def __init__(
        self,
        store: Store,
        road_layer: str | None,
        default: workflows.NetworkParams | None = None,
    ) -> None:
        self._store = store
        self.road_layer = road_layer
        self.default = default or workflows.NetworkParams()
        self._builds: dict[workflows.NetworkParams, _Build] = {}
        self._lock = threading.Lock()

    @property
    def status(self) -> str:
        """'absent' (no road layer), 'idle', 'building', 'ready' or 'failed' (default network)."""
        if self.road_layer is None:
            return "absent"
        build = self._builds.get(self.default)
        return build.status if build is not None else "idle"

    def start(self, net: workflows.NetworkParams | None = None) -> None:
        """Build ``net`` (default: the settings' network) in a background thread."""
        self._build_of(net or self.default)

    def _build_of(self, net: workflows.NetworkParams) -> _Build:
        with self._lock:
            build = self._builds.get(net)
            if build is None:
                others = [k for k in self._builds if k != self.default]
                for old in others[: max(0, len(others) - self.KEEP + 1)]:
                    del self._builds[old]
                build = self._builds[net] = _Build(self._store, net)
                build.start()
            return build

    def get(
        self, net: workflows.NetworkParams | None = None, *, timeout_s: float = 300.0
    ) -> Engine:
        """The engine of ``net``; NetworkError when there is no road layer or the build failed."""
        if self.road_layer is None:
            msg = "no road layer in the store, so no street network: import a layer of kind 'road'"
            raise NetworkError(msg)
        return self._build_of(net or self.default).wait(timeout_s)


class _Build:
    """One network built in a background thread; :meth:`wait` gives its engine or its error."""

    def __init__(self, store: Store, net: workflows.NetworkParams) -> None:
        self._store, self.net = store, net
        self._engine: Engine | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()

    @property
    def status(self) -> str:
        if self._engine is not None:
            return "ready"
        return "failed" if self._error is not None else "building"

    def start(self) -> None:
        threading.Thread(target=self._run, name="gm-network", daemon=True).start()

    def _run(self) -> None:
        try:
            G = workflows.road_network(workflows.StoreLayers(self._store), self.net)
            self._engine = workflows.engine_for(G)
            log.info("%s network ready: %d nodes", self.net.profile, self._engine.n_nodes)
        except Exception as exc:  # reported to every analysis that asks
            log.exception("building the %s network failed", self.net.profile)
            self._error = exc
        finally:
            self._done.set()

    def wait(self, timeout_s: float) -> Engine:
        if not self._done.wait(timeout_s):
            msg = f"the street network is still being built after {timeout_s:.0f} s; try again"
            raise NetworkError(msg)
        if self._engine is None:
            msg = f"the street network could not be built: {self._error}"
            raise NetworkError(msg)
        return self._engine


@dataclass
class LayerMeta:
    """Display metadata of a layer: titles and style from the catalog, else from the kind."""

    id: str
    kind: str
    title_zh: str
    title_en: str
    style: dict[str, Any] = field(default_factory=dict)
    scenario: bool = False
    editable: bool = False
    editable_fields: tuple[str, ...] = ()
    #: What an editor may do besides changing editable_fields (catalog flags; admins may always).
    geometry_editable: bool = False
    allow_create: bool = False
    allow_delete: bool = False

    def title(self, lang: str) -> str:
        """The title in ``lang``."""
        return self.title_en if lang == "en" else self.title_zh


@dataclass
class AppState:
    """Everything the routes need, built by the app's lifespan."""

    settings: Settings
    store: Store
    network: NetworkHolder
    jobs: JobManager
    keyring: KeyRing
    catalog: Any = None
    layers: dict[str, LayerMeta] = field(default_factory=dict)

    def meta(self, layer_id: str) -> LayerMeta:
        """Display metadata of ``layer_id`` (the store raises UnknownIdError if it is unknown)."""
        if layer_id not in self.layers:
            info = self.store.layer(layer_id)
            kind = get_kind(info.kind)
            self.layers[layer_id] = LayerMeta(
                layer_id,
                info.kind,
                info.title,
                kind.label_en,
                editable=info.editable,
                editable_fields=info.editable_fields,
            )
        return self.layers[layer_id]

    def workflow_layers(self) -> workflows.StoreLayers:
        """The store's layers as the workflows take them (scenario flags from the catalog)."""
        return workflows.StoreLayers(self.store, scenario=lambda lid: self.meta(lid).scenario)


def get_state(request: Request) -> AppState:
    """The application's state (a FastAPI dependency)."""
    return request.app.state.gm


State = Annotated[AppState, Depends(get_state)]
