"""What the service loads once at start: settings, catalog, store, walk network, jobs, keys."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from api.auth import KeyRing
from api.jobs import JobManager
from geo_minzheng._errors import NetworkError
from geo_minzheng.kinds import get_kind
from geo_minzheng.settings import Settings
from geo_minzheng.store import Store

log = logging.getLogger("geo_minzheng.api")


class NetworkHolder:
    """The walk network engine, built once from the store's road layer (in the background).

    Analyses call :meth:`get`, which waits for a build in progress or starts one.
    """

    def __init__(self, store: Store, road_layer: str | None) -> None:
        self._store = store
        self.road_layer = road_layer
        self._engine: Any = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._started = False

    @property
    def status(self) -> str:
        """'absent' (no road layer), 'idle', 'building', 'ready' or 'failed'."""
        if self.road_layer is None:
            return "absent"
        if self._engine is not None:
            return "ready"
        if self._error is not None:
            return "failed"
        return "building" if self._started else "idle"

    def start(self) -> None:
        """Build in a background thread (returns at once)."""
        with self._lock:
            if self._started or self.road_layer is None:
                return
            self._started = True
        threading.Thread(target=self._build, name="gm-network", daemon=True).start()

    def _build(self) -> None:
        try:
            from geo_minzheng import network
            from geo_minzheng.engine import Engine

            roads = self._store.read_layer(self.road_layer)  # type: ignore[arg-type]
            G = network.from_road_layer(roads, profile="walk")
            self._engine = Engine.from_graph(G, weight="time_s")
            log.info("walk network ready: %d nodes", self._engine.n_nodes)
        except Exception as exc:  # reported to every analysis that asks
            log.exception("building the walk network failed")
            self._error = exc
        finally:
            self._done.set()

    def get(self, *, timeout_s: float = 300.0) -> Any:
        """The engine; raises NetworkError when there is no road layer or the build failed."""
        if self.road_layer is None:
            msg = "no road layer in the store, so no walk network: import a layer of kind 'road'"
            raise NetworkError(msg)
        self.start()
        if not self._done.wait(timeout_s):
            msg = f"the walk network is still being built after {timeout_s:.0f} s; try again"
            raise NetworkError(msg)
        if self._engine is None:
            msg = f"the walk network could not be built: {self._error}"
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

    def layer_of_kind(self, kind: str) -> str | None:
        """The first layer of ``kind`` in the store, or None."""
        return next((info.id for info in self.store.list_layers() if info.kind == kind), None)


def get_state(request: Request) -> AppState:
    """The application's state (a FastAPI dependency)."""
    return request.app.state.gm


State = Annotated[AppState, Depends(get_state)]
