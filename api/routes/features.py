"""OGC API – Features over the store's layers, plus create/update/delete on editable layers."""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Any
from urllib.parse import quote

import shapely.geometry
from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from shapely.geometry import mapping

from api.auth import Editor, KeyedViewer, Principal, Viewer
from api.errors import ApiProblem
from api.models import (
    PROBLEM_RESPONSES,
    WRITE_RESPONSES,
    Collection,
    Collections,
    Conformance,
    Extent,
    Feature,
    FeatureCollection,
    FeatureIn,
    LandingPage,
    Link,
    SpatialExtent,
)
from api.state import AppState, State
from geo_minzheng._errors import LayerValidationError
from geo_minzheng.store import MAX_FEATURE_ID_LENGTH, AuditEntry, LayerInfo, Record

router = APIRouter()

GEOJSON = "application/geo+json"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/create-replace-delete",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/update",
]
#: Query parameters of /items that are not property filters.
_ITEM_PARAMS = {"bbox", "limit", "offset", "f", "lang"}

CollectionId = Annotated[
    str,
    Path(description="图层编号 / layer ID", pattern=r"^[A-Za-z0-9_\-]{1,64}$", max_length=64),
]
FeatureId = Annotated[
    str, Path(description="要素编号 / feature ID", max_length=MAX_FEATURE_ID_LENGTH)
]


class GeoJSONResponse(JSONResponse):
    """JSON with the GeoJSON media type."""

    media_type = GEOJSON


def _url(request: Request, name: str, **params: str) -> str:
    return str(request.url_for(name, **params))


def _item_url(request: Request, layer_id: str, fid: str) -> str:
    """The item URL of a record, its ID percent-encoded (url_for does not encode: an ID with
    '#' would lose its tail, one with Chinese characters could not go in a Location header)."""
    return f"{_url(request, 'items', collection_id=layer_id)}/{quote(fid, safe='')}"


# ------------------------------------------------------------------------------------------------
# Landing page, conformance, collections
# ------------------------------------------------------------------------------------------------


@router.get(
    "/api",
    response_model=LandingPage,
    response_model_exclude_none=True,
    summary="API 入口 / landing page",
    description="OGC API landing page: links to the OpenAPI document, conformance and layers.",
    tags=["OGC API – Features"],
)
def landing(request: Request, state: State) -> LandingPage:
    title = "geo-minzheng 民政空间数据服务"
    if state.catalog is not None and getattr(state.catalog, "title_zh", None):
        title = f"{title} – {state.catalog.title_zh}"
    return LandingPage(
        title=title,
        description="OGC API – Features, analyses and web maps for civil-affairs layers",
        links=[
            Link(href=_url(request, "landing"), rel="self", type="application/json"),
            Link(
                href=str(request.url_for("openapi")),
                rel="service-desc",
                type="application/vnd.oai.openapi+json;version=3.0",
            ),  # fmt: skip
            Link(href=str(request.base_url) + "docs", rel="service-doc", type="text/html"),
            Link(href=_url(request, "conformance"), rel="conformance", type="application/json"),
            Link(href=_url(request, "collections"), rel="data", type="application/json"),
            Link(
                href=_url(request, "home"), rel="alternate", type="text/html", title="地图 / maps"
            ),
        ],
    )


@router.get(
    "/conformance",
    response_model=Conformance,
    response_model_exclude_none=True,
    summary="符合性声明 / conformance classes",
    description="The OGC API – Features conformance classes this server implements.",
    tags=["OGC API – Features"],
)
def conformance() -> Conformance:
    return Conformance(conformsTo=CONFORMANCE)


def _collection(request: Request, state: AppState, info: LayerInfo) -> Collection:
    layer_id = info.id
    meta = state.meta(layer_id)
    kind = state.store.kind_of(layer_id)
    items = _url(request, "items", collection_id=layer_id)
    return Collection(
        id=layer_id,
        title=meta.title_zh,
        description=f"{meta.title_en} ({kind.label_zh} / {kind.label_en})",
        links=[
            Link(
                href=_url(request, "collection", collection_id=layer_id),
                rel="self",
                type="application/json",
            ),  # fmt: skip
            Link(href=items, rel="items", type=GEOJSON, title=meta.title_zh),
        ],
        extent=Extent(spatial=SpatialExtent(bbox=[list(info.bbox)]) if info.bbox else None),
        kind=info.kind,
        numberOfFeatures=info.count,
        editable=info.editable,
        editableFields=list(info.editable_fields),
        geometryEditable=info.editable and meta.geometry_editable,
        allowCreate=info.editable and meta.allow_create,
        allowDelete=info.editable and meta.allow_delete,
        scenario=meta.scenario,
        queryables=[f.name for f in kind.fields],
    )


@router.get(
    "/collections",
    response_model=Collections,
    response_model_exclude_none=True,
    summary="图层列表 / all layers",
    description="Every layer in the store as an OGC API – Features collection.",
    tags=["OGC API – Features"],
)
def collections(request: Request, state: State, _: Viewer) -> Collections:
    return Collections(
        links=[Link(href=_url(request, "collections"), rel="self", type="application/json")],
        collections=[_collection(request, state, info) for info in state.store.list_layers()],
    )


@router.get(
    "/collections/{collection_id}",
    response_model=Collection,
    response_model_exclude_none=True,
    responses=PROBLEM_RESPONSES,
    summary="图层信息 / one layer",
    description="One layer: title, kind, extent, feature count, editable fields, queryables.",
    tags=["OGC API – Features"],
)
def collection(
    collection_id: CollectionId, request: Request, state: State, _: Viewer
) -> Collection:
    return _collection(request, state, state.store.layer(collection_id))


# ------------------------------------------------------------------------------------------------
# Items
# ------------------------------------------------------------------------------------------------


def _parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        msg = f"bbox must be four numbers 'minLon,minLat,maxLon,maxLat', got {text!r}"
        raise ApiProblem(400, msg) from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        msg = f"bbox must be four finite numbers 'minLon,minLat,maxLon,maxLat', got {text!r}"
        raise ApiProblem(400, msg)
    minx, miny, maxx, maxy = values
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        msg = (
            f"bbox must be WGS84 lon/lat with min <= max (lon -180..180, lat -90..90), got {text!r}"
        )
        raise ApiProblem(400, msg)
    return minx, miny, maxx, maxy


def _feature(record: Record, id_field: str, request: Request, layer_id: str) -> Feature:
    data = record.to_geojson(id_field=id_field)
    return Feature(
        id=record.fid,
        geometry=data["geometry"],
        properties=data["properties"],
        version=record.version,
        links=[
            Link(
                href=_item_url(request, layer_id, record.fid),
                rel="self",
                type=GEOJSON,
            ),  # fmt: skip
            Link(
                href=_url(request, "collection", collection_id=layer_id),
                rel="collection",
                type="application/json",
            ),  # fmt: skip
        ],
    )


def _feature_dict(record: Record, id_field: str, request: Request, layer_id: str) -> dict:
    """A GeoJSON feature as a plain dict (items pages skip model validation: they are large)."""
    base = str(request.base_url).rstrip("/")
    return {
        "type": "Feature",
        "id": record.fid,
        "geometry": None if record.geometry is None else mapping(record.geometry),
        "properties": {id_field: record.fid, **record.properties},
        "version": record.version,
        "links": [
            {
                "href": f"{base}/collections/{layer_id}/items/{quote(record.fid, safe='')}",
                "rel": "self",
                "type": GEOJSON,
            },  # fmt: skip
        ],
    }


def _page_link(request: Request, rel: str, offset: int, limit: int) -> Link:
    url = request.url.include_query_params(offset=offset, limit=limit)
    return Link(href=str(url), rel=rel, type=GEOJSON)


@router.get(
    "/collections/{collection_id}/items",
    response_model=FeatureCollection,
    response_class=GeoJSONResponse,
    responses=PROBLEM_RESPONSES,
    summary="要素查询 / features of a layer",
    description=(
        "GeoJSON features of a layer, in pages (`limit`, `offset`, with `next`/`prev` links). "
        "`bbox=minLon,minLat,maxLon,maxLat` (WGS84) keeps features intersecting the box; any "
        "other parameter named after a field of the layer's kind filters on equality (e.g. "
        "`status=open`; for list fields, membership)."
    ),
    tags=["OGC API – Features"],
)
def items(
    collection_id: CollectionId,
    request: Request,
    state: State,
    _: Viewer,
    bbox: Annotated[str | None, Query(description="minLon,minLat,maxLon,maxLat (WGS84)")] = None,
    limit: Annotated[int, Query(ge=1, le=100_000, description="page size")] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="first feature")] = 0,
) -> GeoJSONResponse:
    store = state.store
    kind = store.kind_of(collection_id)
    box = _parse_bbox(bbox)
    limit = min(limit, state.settings.max_items_limit)  # OGC: clamp, do not fail
    raw = {k: v for k, v in request.query_params.items() if k not in _ITEM_PARAMS}
    known = {f.name for f in kind.fields}
    unknown = sorted(k for k in raw if k not in known)
    if unknown:
        msg = (
            f"unknown query parameter(s) {', '.join(map(repr, unknown))} for layer "
            f"'{collection_id}'; filterable fields: {', '.join(sorted(known))}"
        )
        raise ApiProblem(400, msg)
    try:
        filters = store.coerce_filters(collection_id, raw)
    except LayerValidationError as exc:
        raise ApiProblem(400, str(exc)) from None
    records, total = store.records(
        collection_id, bbox=box, filters=filters, limit=limit, offset=offset
    )
    features = [_feature_dict(r, kind.id_field, request, collection_id) for r in records]
    links = [
        Link(href=str(request.url), rel="self", type=GEOJSON),
        Link(
            href=_url(request, "collection", collection_id=collection_id),
            rel="collection",
            type="application/json",
        ),  # fmt: skip
    ]
    if offset + len(features) < total:
        links.append(_page_link(request, "next", offset + limit, limit))
    if offset > 0:
        links.append(_page_link(request, "prev", max(0, offset - limit), limit))
    body = {
        "type": "FeatureCollection",
        "features": features,
        "numberMatched": total,
        "numberReturned": len(features),
        "timeStamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "links": [link.model_dump(exclude_none=True) for link in links],
    }
    return GeoJSONResponse(body)


def _etag(version: int) -> str:
    return f'"{version}"'


@router.get(
    "/collections/{collection_id}/items/{feature_id}",
    response_model=Feature,
    response_class=GeoJSONResponse,
    responses=PROBLEM_RESPONSES,
    summary="单个要素 / one feature",
    description="One feature as GeoJSON; the ETag header carries its version for If-Match.",
    tags=["OGC API – Features"],
)
def item(
    collection_id: CollectionId,
    feature_id: FeatureId,
    request: Request,
    state: State,
    _: Viewer,
) -> GeoJSONResponse:
    kind = state.store.kind_of(collection_id)
    record = state.store.get(collection_id, feature_id)
    feature = _feature(record, kind.id_field, request, collection_id)
    return GeoJSONResponse(
        feature.model_dump(exclude_none=True), headers={"ETag": _etag(record.version)}
    )


# ------------------------------------------------------------------------------------------------
# Writes
# ------------------------------------------------------------------------------------------------


def _check_writable(state: AppState, layer_id: str, principal: Principal) -> None:
    info = state.store.layer(layer_id)
    if info.editable or principal.has("admin"):
        return
    editable = [i.id for i in state.store.list_layers() if i.editable]
    msg = (
        f"layer '{layer_id}' is read-only for role '{principal.role}'; editable layers: "
        f"{', '.join(editable) or 'none'}"
    )
    raise ApiProblem(403, msg)


def _check_fields(state: AppState, layer_id: str, principal: Principal, changed: set[str]) -> None:
    """Refuse a non-admin change of fields outside ``editable_fields`` or of the geometry."""
    if principal.has("admin"):
        return
    if "geometry" in changed and not state.meta(layer_id).geometry_editable:
        msg = (
            f"role '{principal.role}' may not move or reshape records of layer '{layer_id}' "
            "(the catalog does not set geometry_editable for it); send the geometry unchanged "
            "or leave it out"
        )
        raise ApiProblem(403, msg)
    allowed = set(state.store.layer(layer_id).editable_fields)
    refused = sorted(changed - allowed - {"geometry"})
    if refused:
        msg = (
            f"role '{principal.role}' may change only {', '.join(sorted(allowed)) or 'nothing'} "
            f"in layer '{layer_id}', not {', '.join(refused)}"
        )
        raise ApiProblem(403, msg)


def _check_action(state: AppState, layer_id: str, principal: Principal, action: str) -> None:
    """Refuse a non-admin create or delete unless the catalog allows it for the layer."""
    if principal.has("admin"):
        return
    meta = state.meta(layer_id)
    allowed = meta.allow_create if action == "create" else meta.allow_delete
    if not allowed:
        verb = "add records to" if action == "create" else "delete records of"
        msg = (
            f"role '{principal.role}' may not {verb} layer '{layer_id}' (the catalog does not "
            f"set allow_{action} for it); an admin may"
        )
        raise ApiProblem(403, msg)


def _geometry(body: FeatureIn, *, required: bool) -> Any:
    if body.geometry is None:
        if required:
            raise ApiProblem(422, "a new feature needs a GeoJSON geometry (WGS84 lon/lat)")
        return None
    try:
        geom = shapely.geometry.shape(body.geometry)
    except Exception:  # shapely raises many types for malformed GeoJSON
        msg = f"geometry is not valid GeoJSON: {str(body.geometry)[:200]}"
        raise ApiProblem(422, msg) from None
    if geom.is_empty:
        raise ApiProblem(422, "geometry is empty")
    return geom


def _if_match(if_match: str | None, body: FeatureIn | None) -> list[int] | None:
    """The versions a write may apply to: If-Match's ETags, else the body's ``version``.

    None stands for ``If-Match: *`` (RFC 9110 §13.1.1: any current version); 428 when neither
    is given, 400 when If-Match is not ``*`` or a list of this API's ETags.
    """
    if if_match and if_match.strip():
        if if_match.strip() == "*":
            return None
        versions = []
        for part in if_match.split(","):
            tag = part.strip().removeprefix("W/").strip('"')
            try:
                versions.append(int(tag))
            except ValueError:
                msg = (
                    'If-Match must be the feature\'s ETag (its version, e.g. "3"), a list of them '
                    f"or *, got {if_match!r}"
                )
                raise ApiProblem(400, msg) from None
        return versions
    if body is not None and body.version is not None:
        return [body.version]
    msg = (
        "send the version you edited, as If-Match (the ETag from GET, or * for any) or as "
        "'version' in the body, so that concurrent edits are not lost"
    )
    raise ApiProblem(428, msg)


def _expected_version(versions: list[int] | None, current: Record) -> int:
    """The version the store must find: the current one if it is among ``versions`` (or *)."""
    if versions is None or current.version in versions:
        return current.version
    return versions[0]  # the store refuses it with 409, naming both versions


def _write_response(
    record: Record, state: AppState, request: Request, layer_id: str, status: int
) -> GeoJSONResponse:
    kind = state.store.kind_of(layer_id)
    feature = _feature(record, kind.id_field, request, layer_id)
    headers = {"ETag": _etag(record.version)}
    if status == 201:
        headers["Location"] = _item_url(request, layer_id, record.fid)
    return GeoJSONResponse(feature.model_dump(exclude_none=True), status_code=status,
                           headers=headers)  # fmt: skip


@router.post(
    "/collections/{collection_id}/items",
    status_code=201,
    response_model=Feature,
    response_class=GeoJSONResponse,
    responses=WRITE_RESPONSES,
    summary="新增要素 / create a feature",
    description="Add a record to an editable layer (editor role). The ID comes from the "
    "properties (the kind's ID field) or the feature's `id`.",
    tags=["编辑 / editing"],
)
def create_item(
    collection_id: CollectionId,
    body: FeatureIn,
    request: Request,
    state: State,
    principal: Editor,
) -> GeoJSONResponse:
    kind = state.store.kind_of(collection_id)
    _check_writable(state, collection_id, principal)
    _check_action(state, collection_id, principal, "create")
    props = dict(body.properties)
    if kind.id_field not in props and body.id is not None:
        props[kind.id_field] = body.id
    record = state.store.create(
        collection_id, props, _geometry(body, required=True), actor=principal.name
    )
    return _write_response(record, state, request, collection_id, 201)


def _changes(current: dict[str, Any], given: dict[str, Any], *, replace: bool) -> dict[str, Any]:
    keys = set(given) | (set(current) if replace else set())
    return {k: given.get(k) for k in keys if current.get(k) != given.get(k)}


def _update(
    collection_id: str,
    feature_id: str,
    body: FeatureIn,
    if_match: str | None,
    request: Request,
    state: AppState,
    principal: Principal,
    *,
    replace: bool,
) -> GeoJSONResponse:
    kind = state.store.kind_of(collection_id)
    _check_writable(state, collection_id, principal)
    versions = _if_match(if_match, body)
    current = state.store.get(collection_id, feature_id)
    expected = _expected_version(versions, current)
    given = {k: v for k, v in body.properties.items() if k != kind.id_field}
    if kind.id_field in body.properties and str(body.properties[kind.id_field]) != feature_id:
        msg = f"the ID field '{kind.id_field}' cannot be changed (feature '{feature_id}')"
        raise ApiProblem(422, msg)
    changes = _changes(current.properties, given, replace=replace)
    geometry = _geometry(body, required=replace)
    touched = set(changes) | (
        {"geometry"} if geometry is not None and geometry != current.geometry else set()
    )
    _check_fields(state, collection_id, principal, touched)
    record = state.store.update(
        collection_id,
        feature_id,
        properties=changes,
        geometry=geometry,
        expected_version=expected,
        actor=principal.name,
    )
    return _write_response(record, state, request, collection_id, 200)


IfMatch = Annotated[
    str | None,
    Header(
        description='ETag (version) of the feature you edited, e.g. "3"; * for any version',
        max_length=200,
    ),
]


@router.patch(
    "/collections/{collection_id}/items/{feature_id}",
    response_model=Feature,
    response_class=GeoJSONResponse,
    responses=WRITE_RESPONSES,
    summary="修改要素 / update some fields",
    description="Change the fields given (editor: only the layer's editable fields), keeping the "
    "others. Needs the version read (If-Match or `version`); a stale version gives 409.",
    tags=["编辑 / editing"],
)
def patch_item(
    collection_id: CollectionId,
    feature_id: FeatureId,
    body: FeatureIn,
    request: Request,
    state: State,
    principal: Editor,
    if_match: IfMatch = None,
) -> GeoJSONResponse:
    return _update(collection_id, feature_id, body, if_match, request, state, principal,
                   replace=False)  # fmt: skip


@router.put(
    "/collections/{collection_id}/items/{feature_id}",
    response_model=Feature,
    response_class=GeoJSONResponse,
    responses=WRITE_RESPONSES,
    summary="替换要素 / replace a feature",
    description="Replace all fields and the geometry; fields left out are cleared. Needs the "
    "version read (If-Match or `version`); a stale version gives 409.",
    tags=["编辑 / editing"],
)
def put_item(
    collection_id: CollectionId,
    feature_id: FeatureId,
    body: FeatureIn,
    request: Request,
    state: State,
    principal: Editor,
    if_match: IfMatch = None,
) -> GeoJSONResponse:
    return _update(collection_id, feature_id, body, if_match, request, state, principal,
                   replace=True)  # fmt: skip


@router.delete(
    "/collections/{collection_id}/items/{feature_id}",
    status_code=204,
    responses=WRITE_RESPONSES,
    summary="删除要素 / delete a feature",
    description="Remove a record of an editable layer; needs the version read (If-Match).",
    tags=["编辑 / editing"],
)
def delete_item(
    collection_id: CollectionId,
    feature_id: FeatureId,
    state: State,
    principal: Editor,
    if_match: IfMatch = None,
) -> Response:
    state.store.kind_of(collection_id)
    _check_writable(state, collection_id, principal)
    _check_action(state, collection_id, principal, "delete")
    versions = _if_match(if_match, None)
    expected = _expected_version(versions, state.store.get(collection_id, feature_id))
    state.store.delete(collection_id, feature_id, expected_version=expected, actor=principal.name)
    return Response(status_code=204)


@router.get(
    "/collections/{collection_id}/items/{feature_id}/history",
    response_model=list[AuditEntry],
    responses=WRITE_RESPONSES,
    summary="修改历史 / audit history of a feature",
    description="Every write to the feature: who, when, version and values before and after. "
    "Needs an API key (any role).",
    tags=["编辑 / editing"],
)
def item_history(
    collection_id: CollectionId,
    feature_id: FeatureId,
    state: State,
    _: KeyedViewer,
) -> list[AuditEntry]:
    entries = state.store.history(collection_id, feature_id)
    if not entries:
        state.store.get(collection_id, feature_id)  # 404 for a feature that never existed
    return entries
