"""The FastAPI application: ``create_app(settings)`` and ``serve(host, port)``.

The lifespan loads the layer catalog, opens the store (importing catalog layers the store does
not hold yet) and starts building the walk network once, in the background.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

import geo_minzheng
from api import errors
from api.auth import KeyRing
from api.jobs import JobManager
from api.state import AppState, LayerMeta, NetworkHolder
from geo_minzheng import resources, workflows
from geo_minzheng._errors import CatalogError
from geo_minzheng.settings import Settings
from geo_minzheng.store import Store, open_store

log = logging.getLogger("geo_minzheng.api")

API_VERSION = geo_minzheng.__version__
DESCRIPTION = """geo-minzheng 民政空间数据服务 / civil-affairs map API.

* OGC API – Features for every layer (`/collections`), with create/update/delete on editable
  layers for keys with the editor role (header `X-API-Key`).
* Analyses (`/analysis/...`): isochrones for a clicked point, 5/10/15-minute coverage and
  facility siting; long analyses return a job to poll (`/jobs/{id}`).
* Web maps (`/`, `/maps/...`), zh-CN by default, `?lang=en` for English.
"""


class BodySizeLimit:
    """Refuse request bodies larger than ``max_bytes`` with 413, before the app reads them.

    A declared Content-Length over the limit is refused at once; a chunked body is buffered up
    to the limit and refused as soon as it passes it.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                too_big = True
            if too_big:
                await self._refuse(scope, receive, send)
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: dict, receive: Any, send: Any) -> None:
        detail = f"request body is larger than the limit of {self.max_bytes} bytes"
        response = errors.problem_response(413, detail)
        await response(scope, receive, send)


def _load_catalog(settings: Settings) -> Any:
    """The catalog named in settings, else the demo catalog shipped with the package if usable."""
    from geo_minzheng import catalog as gm_catalog

    if settings.catalog is not None:
        return gm_catalog.load_catalog(settings.catalog)
    try:  # the demo catalog shipped with the package (importlib.resources)
        return gm_catalog.load_catalog(resources.demo_catalog_path())
    except CatalogError as exc:
        log.warning("demo catalog not usable (%s); serving the store's layers only", exc)
        return None


def _import_missing(store: Store, catalog: Any) -> None:
    """Import every catalog layer the store does not hold yet (the first start fills it)."""
    for layer_id, entry in catalog.entries.items():
        if store.has_layer(layer_id):
            continue
        gdf = entry.read()
        store.import_layer(
            layer_id,
            gdf,
            kind=entry.kind,
            actor="catalog",
            title=entry.title_zh,
            editable=entry.editable,
            editable_fields=entry.editable_fields,
        )
        log.info("imported layer %s (%d features) into the store", layer_id, len(gdf))


def _layer_meta(store: Store, catalog: Any) -> dict[str, LayerMeta]:
    from geo_minzheng.kinds import get_kind

    out = {}
    for info in store.list_layers():
        entry = catalog.entries.get(info.id) if catalog is not None else None
        kind = get_kind(info.kind)
        style = entry.style.model_dump(exclude_none=True) if entry is not None else {}
        out[info.id] = LayerMeta(
            info.id,
            info.kind,
            entry.title_zh if entry is not None else info.title,
            entry.title_en if entry is not None else kind.label_en,
            style=style,
            scenario=bool(entry.scenario) if entry is not None else False,
            editable=info.editable,
            editable_fields=info.editable_fields,
        )
    return out


def build_state(settings: Settings) -> AppState:
    """Load the catalog, open and fill the store, prepare the network (not yet built)."""
    catalog = _load_catalog(settings)
    store = open_store(settings.store_url)
    try:
        if catalog is not None:
            _import_missing(store, catalog)
        road_layer = next((i.id for i in store.list_layers() if i.kind == "road"), None)
        state = AppState(
            settings=settings,
            store=store,
            network=NetworkHolder(
                store,
                road_layer,
                workflows.NetworkParams(settings.network_profile, settings.walk_speed_mps),
            ),
            jobs=JobManager(workers=settings.job_workers),
            keyring=KeyRing(settings.api_keys),
            catalog=catalog,
            layers=_layer_meta(store, catalog),
        )
    except BaseException:
        store.close()
        raise
    return state


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API application for ``settings`` (read from the environment when omitted)."""
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = build_state(settings)
        app.state.gm = state
        if settings.build_network_on_start:
            state.network.start()
        try:
            yield
        finally:
            state.jobs.shutdown()
            state.store.close()

    app = FastAPI(
        title="geo-minzheng 民政空间数据服务 API",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    errors.install(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["X-API-Key", "Content-Type", "If-Match"],
            expose_headers=["ETag", "Location"],
        )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)

    from api.routes import analysis, features, pages
    from maps.assets import STATIC_DIR

    app.include_router(features.router)
    app.include_router(analysis.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def serve(host: str = "127.0.0.1", port: int = 8000, settings: Settings | None = None) -> None:
    """Run the API with uvicorn (``geo-minzheng serve``); blocks until interrupted."""
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
