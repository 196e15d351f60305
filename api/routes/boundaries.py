"""Boundary management over the API: the analysis job, inspection records, 两图一责 downloads.

* ``POST /analysis/boundaries``: the boundary workflow as a job (lines, outer boundaries,
  topology findings, markers, due lines, an inspection route).
* ``POST /boundaries/inspections`` (editor key): append one inspection (date, team, kind, and
  for each marker its state, distance moved, note, photo); every problem is a 422 naming the
  item and field, and nothing is stored then. ``GET /boundaries/inspections``: the history,
  newest first, of the store, one marker or one line; ``GET .../{seq}/photo`` a stored photo.
  Records are never changed or deleted (the store refuses it).
* ``GET /boundaries/responsibility.xlsx|.csv`` (界线管理责任表), ``GET /boundaries/lines/{id}/
  diagram`` (界线管理示意图, printable A4/A3) and ``GET /boundaries/network`` (界线管理网络图).
* :func:`boundaries_map`: the staff's web map for ``/maps/boundaries`` (registered in
  :mod:`api.routes.pages`), with the inspection form in every marker popup.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import io
import math
from typing import Annotated, Any, Literal

import geopandas as gpd
import pandas as pd
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import ANONYMOUS, Editor, Viewer
from api.errors import ApiProblem
from api.jobs import Progress
from api.models import PROBLEM_RESPONSES, WRITE_RESPONSES, JobStatus, ProblemDetail
from api.responses import geojson, jsonable, records, submit
from api.routes.analysis import GeoJSONFeatureCollection, NetworkOptions
from api.state import AppState, State
from geo_minzheng import boundaries, params, workflows
from geo_minzheng.kinds import ADMIN_LEVELS, MARKER_STATUS
from geo_minzheng.store.base import InspectionRecord

router = APIRouter(tags=["行政区域界线 / boundaries"])

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: A photo in a JSON body: base64 of at most params.MAX_PHOTO_BYTES bytes.
_PHOTO_B64_CHARS = 4 * math.ceil(params.MAX_PHOTO_BYTES / 3) + 4
_CODE_PATTERN = r"^[0-9]{6,12}-[0-9]{6,12}$"


# ------------------------------------------------------------------------------------------------
# Request models (defaults and rules from geo_minzheng.params)
# ------------------------------------------------------------------------------------------------


class BoundaryRequest(NetworkOptions):
    """The boundary workflow's parameters (workflows.BoundaryParams)."""

    model_config = ConfigDict(extra="forbid")

    level: Literal[tuple(ADMIN_LEVELS)] | None = Field(  # type: ignore[valid-type]
        default=None, description="只检查该层级 / only this admin level (default: every level)"
    )
    sliver_width_m: float = Field(
        default=params.DEFAULT_SLIVER_WIDTH_M,
        gt=0,
        le=params.MAX_SLIVER_WIDTH_M,
        description=params.SLIVER_DESCRIPTION,
    )
    marker_tolerance_m: float = Field(
        default=params.DEFAULT_MARKER_TOLERANCE_M,
        gt=0,
        le=params.MAX_MARKER_TOLERANCE_M,
        description=params.MARKER_TOLERANCE_DESCRIPTION,
    )
    cycle_years: int = Field(
        default=params.DEFAULT_INSPECTION_CYCLE_YEARS,
        ge=1,
        le=params.MAX_INSPECTION_CYCLE_YEARS,
        description=params.CYCLE_DESCRIPTION,
    )
    as_of: dt.date | None = Field(
        default=None, description="以该日期判断是否到期（默认今天）/ day lines are due against"
    )
    route_line: str | None = Field(
        default=None,
        max_length=32,
        pattern=r"^(auto|[0-9]{6,12}-[0-9]{6,12})$",
        description="巡查路线的界线编号，或 auto（界桩最多的界线）/ line to plan a route over",
    )
    route_start: tuple[float, float] | None = Field(
        default=None, description="巡查起点 [经度, 纬度] / route start [lon, lat] (WGS84)"
    )
    return_to_start: bool = Field(default=False, description="返回起点 / close the route")
    units_layer: str | None = Field(default=None, max_length=64)
    markers_layer: str | None = Field(default=None, max_length=64)
    markers: GeoJSONFeatureCollection | None = Field(
        default=None,
        description="界桩登记（替代界桩图层，偏离界线者报错）/ a marker register replacing the "
        "layer; markers off every line are refused",
    )

    def boundary_params(self) -> workflows.BoundaryParams:
        return workflows.BoundaryParams(
            level=self.level,
            sliver_width_m=self.sliver_width_m,
            marker_tolerance_m=self.marker_tolerance_m,
            cycle_years=self.cycle_years,
            as_of=self.as_of,
            route_line=self.route_line,
            route_start=self.route_start,
            return_to_start=self.return_to_start,
            units_layer=self.units_layer,
            markers_layer=self.markers_layer,
        )


class InspectionItem(BaseModel):
    """One marker's state as the team found it."""

    model_config = ConfigDict(extra="forbid")

    marker_id: str = Field(min_length=1, max_length=200, description="界桩编号 / marker code")
    status: str = Field(
        max_length=16,
        description="完好/损坏/丢失/移位 or " + ", ".join(MARKER_STATUS),
    )
    moved_m: float | None = Field(
        default=None, description="移位距离（米，移位时必填）/ metres moved (required if moved)"
    )
    note: str | None = Field(default=None, max_length=500, description="备注 / note")
    photo_base64: str | None = Field(
        default=None,
        max_length=_PHOTO_B64_CHARS,
        description=f"照片（JPEG/PNG/WebP，base64，至多 {params.MAX_PHOTO_BYTES:,} 字节）/ photo",
    )


class InspectionRequest(BaseModel):
    """One inspection: when, who, which kind, and what was found at each marker."""

    model_config = ConfigDict(extra="forbid")

    inspected_on: str = Field(max_length=32, description="检查日期 / date, YYYY-MM-DD")
    team: str = Field(max_length=100, description="检查组 / inspecting team")
    kind: str = Field(
        default="joint", max_length=16, description="joint（联合检查）or routine（日常巡查）"
    )
    line_id: str | None = Field(default=None, max_length=32, pattern=_CODE_PATTERN)
    items: list[InspectionItem] = Field(min_length=1, max_length=500)


class InspectionOut(BaseModel):
    """One stored inspection row (never changed)."""

    seq: int
    inspection_id: str
    marker_id: str
    line_id: str
    inspected_on: str
    team: str
    kind: str
    status: str
    moved_m: float | None
    note: str | None
    has_photo: bool
    photo: str | None = None
    recorded_at: str
    actor: str | None = None


class InspectionList(BaseModel):
    """Inspection records, newest first."""

    records: list[InspectionOut]
    count: int


# ------------------------------------------------------------------------------------------------
# The analysis job
# ------------------------------------------------------------------------------------------------


def _inline_markers(body: BoundaryRequest) -> gpd.GeoDataFrame | None:
    if body.markers is None:
        return None
    from geo_minzheng import validation

    try:
        gdf = gpd.GeoDataFrame.from_features(body.markers.model_dump()["features"], crs=4326)
    except Exception:
        msg = "'markers' is not a valid GeoJSON FeatureCollection of WGS84 points"
        raise ApiProblem(422, msg) from None
    gdf.attrs = {"layer": "markers", "kind": "boundary_marker"}
    validation.check(gdf, "boundary_marker", layer="markers")
    return gdf


def _check_layers(state: AppState, body: BoundaryRequest) -> None:
    for name, kind in (("units_layer", "admin_unit"), ("markers_layer", "boundary_marker")):
        layer_id = getattr(body, name)
        if layer_id is None:
            continue
        found = state.store.layer(layer_id).kind
        if found != kind:
            msg = f"{name}: layer '{layer_id}' is of kind '{found}'; expected {kind}"
            raise ApiProblem(422, msg)


def _run(state: AppState, body: BoundaryRequest, progress: Progress) -> dict[str, Any]:
    p = body.boundary_params()
    engine = None
    if p.route_line is not None:
        progress(0.02, "准备路网 / preparing the network")
        engine = state.network.get(body.network_params(state))
    run = workflows.run_boundaries(
        state.workflow_layers(), engine, p, gdf_markers=_inline_markers(body), progress=progress
    )
    return run_json(run)


def run_json(run: workflows.BoundaryRun) -> dict[str, Any]:
    """A boundary run as JSON: the lines as the GeoJSON body, with the rest alongside."""
    result = run.result
    out = geojson(result.lines)
    out["outer"] = geojson(result.outer)
    out["faults"] = geojson(result.faults)
    out["markers"] = geojson(result.markers)
    out["responsibility"] = records(boundaries.responsibility_table(result))
    out["summary"] = jsonable(result.summary())
    if run.route is not None:
        out["route"] = {
            "line_id": run.route.line_id,
            "distance_m": round(run.route.distance_m, 1),
            "time_s": None if run.route.time_s is None else round(run.route.time_s, 1),
            "solver": run.route.solver,
            "stops": geojson(run.route.stops),
            "legs": geojson(run.route.legs),
            "not_reached": records(run.route.not_reached),
        }
    out["provenance"] = jsonable(result.provenance)
    return out


@router.post(
    "/analysis/boundaries",
    status_code=202,
    response_model=JobStatus,
    responses={**PROBLEM_RESPONSES, 413: {"model": ProblemDetail}, 422: {"model": ProblemDetail}},
    summary="行政区域界线管理 / boundary lines, topology checks, markers, due lines (job)",
    description=(
        "The shared line of every pair of adjacent admin units (names, codes, length in metres "
        "on the working projection), each parent's outer boundary, topology findings (gaps, "
        "overlaps, slivers under `sliver_width_m`, invalid rings, units outside their parent, "
        "parent area no unit covers, units without a polygon) with area and location, markers "
        "with their line and distance (off their line beyond `marker_tolerance_m`: flagged), "
        "the lines due for joint inspection, and with `route_line` an inspection route on the "
        "road network (OR-Tools). Returns 202 and a job; the result is the lines as GeoJSON "
        "with `outer`, `faults`, `markers`, `responsibility`, `summary`, `route`."
    ),
)
def boundaries_job(
    body: BoundaryRequest, request: Request, state: State, _: Viewer
) -> JSONResponse:
    try:
        p = body.boundary_params()
        body.network_params(state)
    except ValueError as exc:
        raise ApiProblem(422, str(exc)) from None
    _check_layers(state, body)
    markers = _inline_markers(body)
    if markers is not None:  # a register with markers off every line is refused at once
        layers = state.workflow_layers()
        workflows.run_boundaries(layers, None, _without_route(p), gdf_markers=markers)
    return submit(request, state, "boundaries", lambda progress: _run(state, body, progress))


def _without_route(p: workflows.BoundaryParams) -> workflows.BoundaryParams:
    import dataclasses

    return dataclasses.replace(p, route_line=None)


# ------------------------------------------------------------------------------------------------
# Inspections: append and history
# ------------------------------------------------------------------------------------------------


def _markers_layer(state: AppState, layer_id: str | None) -> gpd.GeoDataFrame:
    chosen = layer_id or workflows.first_of_kind(state.workflow_layers(), "boundary_marker")
    if chosen is None:
        raise ApiProblem(404, "the store has no boundary_marker layer to inspect")
    if state.store.layer(chosen).kind != "boundary_marker":
        msg = f"markers_layer: layer '{chosen}' is not a boundary_marker layer"
        raise ApiProblem(422, msg)
    return state.store.read_layer(chosen)


def _photo(item: InspectionItem, n: int) -> bytes | None:
    if not item.photo_base64:
        return None
    try:
        return base64.b64decode(item.photo_base64, validate=True)
    except (binascii.Error, ValueError):
        msg = f"inspection item {n} (marker '{item.marker_id}'): photo_base64 must be base64 text"
        raise ApiProblem(422, msg) from None


def _out(record: InspectionRecord, request: Request, *, keyed: bool) -> InspectionOut:
    photo = None
    if record.has_photo:
        photo = str(request.url_for("inspection_photo", seq=record.seq))
    return InspectionOut(
        seq=record.seq,
        inspection_id=record.inspection_id,
        marker_id=record.marker_id,
        line_id=record.line_id,
        inspected_on=record.inspected_on,
        team=record.team,
        kind=record.kind,
        status=record.status,
        moved_m=record.moved_m,
        note=record.note,
        has_photo=record.has_photo,
        photo=photo,
        recorded_at=record.recorded_at,
        actor=record.actor if keyed else None,
    )


@router.post(
    "/boundaries/inspections",
    status_code=201,
    response_model=InspectionList,
    responses={**WRITE_RESPONSES, 422: {"model": ProblemDetail}},
    summary="记录界桩检查 / record an inspection (editor key)",
    description=(
        "Appends one inspection: `inspected_on` (not in the future), `team`, `kind` (joint: "
        "restarts the line's cycle; routine) and for each marker its `status` (intact / "
        "damaged / missing / moved), `moved_m` (required when moved), `note` and an optional "
        f"photo (JPEG, PNG or WebP, base64, at most {params.MAX_PHOTO_BYTES:,} bytes). Every "
        "problem (unknown marker, future date, moved without distance, a photo too large or not "
        "an image) is a 422 naming the item and field; nothing is stored then. Records are "
        "kept forever: there is no update or delete."
    ),
)
def record_inspection(
    body: InspectionRequest,
    request: Request,
    state: State,
    principal: Editor,
    markers_layer: Annotated[str | None, Query(max_length=64)] = None,
) -> JSONResponse:
    markers = _markers_layer(state, markers_layer)
    payload = {
        "inspected_on": body.inspected_on,
        "team": body.team,
        "kind": body.kind,
        "line_id": body.line_id,
        "items": [
            {
                "marker_id": item.marker_id,
                "status": item.status,
                "moved_m": item.moved_m,
                "note": item.note,
                "photo": _photo(item, n),
            }
            for n, item in enumerate(body.items, start=1)
        ],
    }
    rows = boundaries.check_inspection(payload, markers, today=dt.date.today())
    stored = state.store.append_inspections(rows, actor=principal.name)
    out = InspectionList(records=[_out(r, request, keyed=True) for r in stored], count=len(stored))
    location = str(request.url_for("inspections")) + f"?marker_id={stored[0].marker_id}"
    return JSONResponse(out.model_dump(), status_code=201, headers={"Location": location})


@router.get(
    "/boundaries/inspections",
    name="inspections",
    response_model=InspectionList,
    responses=PROBLEM_RESPONSES,
    summary="界桩检查记录 / inspection history, newest first",
    description="Every inspection record of the store, one marker (`marker_id`) or one line "
    "(`line_id`), newest first (by inspection date, then by when it was stored). Who stored a "
    "record (`actor`) is shown to callers with a key.",
)
def list_inspections(
    request: Request,
    state: State,
    principal: Viewer,
    marker_id: Annotated[str | None, Query(max_length=200)] = None,
    line_id: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> InspectionList:
    records = state.store.inspections(marker_id=marker_id, line_id=line_id, limit=limit)
    keyed = principal != ANONYMOUS
    return InspectionList(
        records=[_out(r, request, keyed=keyed) for r in records], count=len(records)
    )


@router.get(
    "/boundaries/inspections/{seq}/photo",
    name="inspection_photo",
    responses={**PROBLEM_RESPONSES, 200: {"content": {"image/jpeg": {}, "image/png": {}}}},
    summary="检查照片 / an inspection's photo",
)
def inspection_photo(
    seq: Annotated[int, Path(ge=1, le=2**62)], state: State, _: Viewer
) -> Response:
    data, mime = state.store.inspection_photo(seq)
    return Response(data, media_type=mime)


# ------------------------------------------------------------------------------------------------
# 两图一责 downloads and the staff's map
# ------------------------------------------------------------------------------------------------


def _run_now(state: AppState, *, route: bool = False) -> workflows.BoundaryRun:
    """The boundary run on the store's layers (route over the busiest line when the network
    is ready: a page never waits for a network still being built)."""
    layers = state.workflow_layers()
    if workflows.first_of_kind(layers, "admin_unit") is None:
        raise ApiProblem(404, "the boundary map needs an admin_unit layer")
    engine = None
    if route and state.network.status == "ready":
        engine = state.network.get()
    p = workflows.BoundaryParams(route_line="auto" if engine is not None else None)
    return workflows.run_boundaries(layers, engine, p)


@router.get(
    "/boundaries/responsibility.{fmt}",
    responses={200: {"content": {XLSX: {}, "text/csv": {}}}},
    summary="界线管理责任表 / responsibility table (XLSX or CSV)",
    description="Each line: the two units, length, markers and their states, last joint "
    "inspection, next due date and the bureaus responsible; zh headers (`lang=en` English).",
)
def responsibility(
    fmt: Literal["xlsx", "csv"],
    state: State,
    _: Viewer,
    lang: Annotated[Literal["zh", "en"] | None, Query()] = None,
) -> Response:
    chosen = lang or state.settings.lang
    table = boundaries.responsibility_table(_run_now(state).result, lang=chosen)
    name = "boundaries_responsibility"
    if fmt == "csv":
        body = table.to_csv(index=False).encode("utf-8-sig")
        headers = {"Content-Disposition": f'attachment; filename="{name}.csv"'}
        return Response(body, media_type="text/csv; charset=utf-8", headers=headers)
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        table.to_excel(writer, sheet_name="responsibility", index=False)
    headers = {"Content-Disposition": f'attachment; filename="{name}.xlsx"'}
    return Response(buffer.getvalue(), media_type=XLSX, headers=headers)


@router.get(
    "/boundaries/lines/{line_id}/diagram",
    response_class=HTMLResponse,
    responses=PROBLEM_RESPONSES,
    summary="界线管理示意图 / a line's management diagram (printable)",
    description="The line with its markers coloured by latest state, scale bar, north arrow, "
    "legend and title block, on one A4 or A3 landscape page (print it from the browser).",
)
def line_diagram(
    line_id: Annotated[str, Path(max_length=32, pattern=_CODE_PATTERN)],
    state: State,
    _: Viewer,
    paper: Annotated[Literal["A4", "A3"], Query()] = "A4",
    lang: Annotated[Literal["zh", "en"] | None, Query()] = None,
) -> HTMLResponse:
    from maps import boundaries_map as drawing

    run = _run_now(state)
    run.result.line(line_id)  # 404 for an unknown line
    page = drawing.management_diagram_html(
        run, line_id, lang=lang or state.settings.lang, paper=paper
    )
    return HTMLResponse(page)


@router.get(
    "/boundaries/network",
    response_class=HTMLResponse,
    summary="界线管理网络图 / network diagram (printable)",
    description="Units as nodes, shared lines as edges labelled with their lengths; due lines "
    "in red.",
)
def network_diagram(
    state: State,
    _: Viewer,
    lang: Annotated[Literal["zh", "en"] | None, Query()] = None,
) -> HTMLResponse:
    from maps import boundaries_map as drawing

    run = _run_now(state)
    return HTMLResponse(drawing.network_diagram_html(run, lang=lang or state.settings.lang))


def boundaries_map(state: AppState, lang: str, basemap: list[Any]) -> Any:
    """The staff's web map (``/maps/boundaries``): lines, due ones highlighted, markers by state
    with the inspection form in their popups, findings, and the route over the busiest line."""
    from maps import boundaries_map as drawing

    run = _run_now(state, route=True)
    lines = run.result.lines
    zh = lang == "zh"
    links = {
        "责任表 XLSX" if zh else "Table XLSX": f"/boundaries/responsibility.xlsx?lang={lang}",
        "责任表 CSV" if zh else "Table CSV": f"/boundaries/responsibility.csv?lang={lang}",
        "网络图" if zh else "Network diagram": f"/boundaries/network?lang={lang}",
    }
    if len(lines):
        line_id = run.route.line_id if run.route is not None else str(lines["line_id"].iloc[0])
        label = "界线管理示意图" if lang == "zh" else "Management diagram"
        links[label] = f"/boundaries/lines/{line_id}/diagram?lang={lang}"
    return drawing.boundaries_map(run, lang=lang, basemap=basemap, api=True, links=links)
