"""The FastAPI application: ``create_app(settings)`` and ``serve(host, port, workers=...)``.

The lifespan loads the layer catalog, opens the store (importing catalog layers the store does
not hold yet) and starts building the walk network once, in the background.

``serve`` runs several uvicorn worker processes (one per CPU by default). Each builds its own
app with :func:`create_app` from the environment (``GEO_MINZHENG_*``, see
:func:`settings_environ`); they share the store, where analysis jobs also live
(:mod:`api.jobs`), so any process answers for any job. Every response carries security headers
(:func:`security_headers`); ``/docs`` and ``/redoc`` load their scripts from ``/static/vendor``
like the maps, so they work on an intranet with no internet; uvicorn sends no ``server`` banner.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

import geo_minzheng
from api import errors
from api.auth import KeyRing
from api.jobs import JobManager
from api.state import AppState, LayerMeta, NetworkHolder
from geo_minzheng import resources, workflows
from geo_minzheng._errors import CatalogError, ConflictError, GeoMinzhengError
from geo_minzheng.settings import Settings
from geo_minzheng.store import Store, open_store

log = logging.getLogger("geo_minzheng.api")

API_VERSION = geo_minzheng.__version__
#: What uvicorn imports in each worker process (an app factory: settings from the environment).
APP_FACTORY = "api.app:create_app"
#: Where /docs and /redoc load Swagger UI and ReDoc from (maps/static/vendor, see its README).
DOCS_VENDOR = "/static/vendor"
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
    """Import every catalog layer the store does not hold yet (the first start fills it).

    Worker processes starting together on an empty store race here; the store imports each
    layer once (in one transaction) and the others get ConflictError, which is fine.
    """
    for layer_id, entry in catalog.entries.items():
        if store.has_layer(layer_id):
            continue
        gdf = entry.read()
        try:
            store.import_layer(
                layer_id,
                gdf,
                kind=entry.kind,
                actor="catalog",
                title=entry.title_zh,
                editable=entry.editable,
                editable_fields=entry.editable_fields,
            )
        except ConflictError:
            log.info("layer %s was imported by another worker process", layer_id)
            continue
        log.info("imported layer %s (%d features) into the store", layer_id, len(gdf))


def prepare_store(settings: Settings) -> None:
    """Open the store of ``settings`` and import the catalog's missing layers, then close it.

    ``serve`` calls it once before starting the worker processes, so that a wrong store URL, a
    database without PostGIS or a broken catalog is one clear error (StoreError, CatalogError)
    at start-up, and the workers find the store filled.
    """
    catalog = _load_catalog(settings)
    with open_store(settings.store_url) as store:
        if catalog is not None:
            _import_missing(store, catalog)


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
            geometry_editable=bool(entry.geometry_editable) if entry is not None else False,
            allow_create=bool(entry.allow_create) if entry is not None else False,
            allow_delete=bool(entry.allow_delete) if entry is not None else False,
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
            jobs=JobManager(
                store, workers=settings.job_workers, max_active=settings.job_queue_limit
            ),
            keyring=KeyRing.from_settings(settings),
            catalog=catalog,
            layers=_layer_meta(store, catalog),
        )
    except BaseException:
        store.close()
        raise
    return state


def _tile_origin(template: str) -> str | None:
    """The CSP source of a tile URL template: ``https://*.tianditu.gov.cn`` for ``t{s}.``."""
    parts = urlsplit(template)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    labels = parts.netloc.split(".")
    if "{" in labels[0]:  # a subdomain placeholder such as t{s}: any subdomain of the rest
        labels[0] = "*"
    if any("{" in label for label in labels):
        return f"{parts.scheme}:"
    return f"{parts.scheme}://{'.'.join(labels)}"


def content_security_policy(settings: Settings) -> str:
    """The Content-Security-Policy of every response.

    The map pages are folium output with inline scripts and styles (and Leaflet inlined for
    offline use), so scripts and styles may be inline but come from nowhere but this server.
    Images may also come from the configured tile servers (OSM, 天地图, the intranet one);
    data: and blob: serve Leaflet's and Swagger UI's icons and ReDoc's search worker. Pages may
    be framed only by this server's own pages (``frame-ancestors``: no clickjacking).
    """
    from maps import basemaps

    templates = [basemaps.OSM_TILES]
    if settings.resolved_tianditu_token():
        templates.append(basemaps.TIANDITU_TILES)
    if settings.intranet_tile_url:
        templates.append(settings.intranet_tile_url)
    tiles = sorted({o for o in map(_tile_origin, templates) if o is not None})
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'", "'unsafe-inline'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:", *tiles],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "worker-src": ["'self'", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'self'"],
    }
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


def security_headers(settings: Settings) -> list[tuple[str, str]]:
    """Headers every response carries (pages, JSON, static files and errors alike).

    ``Referrer-Policy: strict-origin-when-cross-origin`` sends other sites only this server's
    origin, never a page URL with its query; tile servers such as OSM's ask for a referrer.
    """
    return [
        ("Content-Security-Policy", content_security_policy(settings)),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "strict-origin-when-cross-origin"),
        ("X-Frame-Options", "SAMEORIGIN"),  # frame-ancestors for browsers without CSP 2
    ]


class SecurityHeaders:
    """Add :func:`security_headers` to every HTTP response (replacing any of the same name)."""

    def __init__(self, app: Any, headers: list[tuple[str, str]]) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers]
        self.names = {k for k, _ in self.headers}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                kept = [(k, v) for k, v in headers if k.lower() not in self.names]
                message = {**message, "headers": [*kept, *self.headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class StartupErrors:
    """Report a start-up failure of the store or catalog as its one-line message.

    uvicorn logs the text of a failed lifespan start-up; Starlette fills it with the whole
    traceback. A domain error at start-up (an unreachable database, no PostGIS, a broken
    catalog) is the operator's to fix, so it is reported as one sentence instead.
    """

    def __init__(self, app: Any, failures: list[str]) -> None:
        self.app = app
        self.failures = failures

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_one_line(message: dict) -> None:
            if message["type"] == "lifespan.startup.failed" and self.failures:
                message = {**message, "message": self.failures[-1]}
            await send(message)

        await self.app(scope, receive, send_one_line)


def _add_offline_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc (ReDoc) with their assets served from this server."""
    from fastapi.openapi.docs import (
        get_redoc_html,
        get_swagger_ui_html,
        get_swagger_ui_oauth2_redirect_html,
    )

    title = app.title

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        vendor = f"{root}{DOCS_VENDOR}/swagger-ui"
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{title} – 接口文档 / Swagger UI",
            swagger_js_url=f"{vendor}/swagger-ui-bundle.js",
            swagger_css_url=f"{vendor}/swagger-ui.css",
            swagger_favicon_url=f"{vendor}/favicon-32x32.png",
            oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
            # no badge from the public validator.swagger.io: nothing leaves the intranet
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{title} – ReDoc",
            redoc_js_url=f"{root}{DOCS_VENDOR}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_VENDOR}/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API application for ``settings`` (read from the environment when omitted)."""
    settings = settings or Settings()
    startup_failures: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            state = build_state(settings)
        except GeoMinzhengError as exc:
            startup_failures.append(f"geo-minzheng cannot start: {exc}")
            raise
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
        docs_url=None,  # served by _add_offline_docs, from vendored assets
        redoc_url=None,
    )
    errors.install(app)
    _add_offline_docs(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["X-API-Key", "Content-Type", "If-Match"],
            expose_headers=["ETag", "Location"],
        )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(SecurityHeaders, headers=security_headers(settings))
    app.add_middleware(StartupErrors, failures=startup_failures)

    from api.routes import analysis, boundaries, features, pages, province, relief
    from maps.assets import STATIC_DIR

    app.include_router(features.router)
    app.include_router(analysis.router)
    app.include_router(relief.router)
    app.include_router(boundaries.router)
    app.include_router(province.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def default_workers() -> int:
    """Worker processes ``serve`` runs by default: one per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity (Windows, macOS)
        return max(1, os.cpu_count() or 1)


def settings_environ(settings: Settings) -> dict[str, str]:
    """``settings`` as ``GEO_MINZHENG_*`` environment variables (what each worker reads).

    uvicorn's worker processes build their app with :func:`create_app` from the environment,
    so options given on the command line reach them this way.
    """
    out = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        if isinstance(value, (list, dict)):
            text = json.dumps(value, ensure_ascii=False)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        out[f"GEO_MINZHENG_{name.upper()}"] = text
    return out


def uvicorn_options(*, host: str, port: int, workers: int) -> dict[str, Any]:
    """Keyword arguments of ``uvicorn.run`` for :data:`APP_FACTORY` (no server banner)."""
    return {
        "host": host,
        "port": port,
        "workers": workers,
        "factory": True,
        "server_header": False,
        "log_level": "info",
    }


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: Settings | None = None,
    *,
    workers: int | None = None,
    prepare: bool = True,
) -> None:
    """Run the API with uvicorn (``geo-minzheng serve``); blocks until interrupted.

    Parameters
    ----------
    host, port
        Where to listen.
    settings
        The service's settings (default: from the environment); passed to the worker
        processes through the environment.
    workers
        Worker processes (default: one per CPU, :func:`default_workers`).
    prepare
        Fill the store first (:func:`prepare_store`); False when the caller has just done so.
    """
    import uvicorn

    settings = settings or Settings()
    if prepare:
        prepare_store(settings)  # one clear error now rather than one traceback per worker
    os.environ.update(settings_environ(settings))
    count = default_workers() if workers is None else workers
    uvicorn.run(APP_FACTORY, **uvicorn_options(host=host, port=port, workers=count))
