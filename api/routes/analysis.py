"""Analysis endpoints: an isochrone for a clicked point (immediate), coverage and siting (jobs).

Each analysis takes layer IDs from the store and/or inline GeoJSON (bounded in size), runs the
core library on the walk network built once at start, and returns GeoJSON in WGS84. New
analyses (shelters, relief, boundaries) slot in as one request model, one ``_run_*`` function
and one route each.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import geopandas as gpd
import numpy as np
import pandas as pd
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.auth import Viewer
from api.errors import ApiProblem
from api.jobs import Progress
from api.models import PROBLEM_RESPONSES, JobStatus, Link, ProblemDetail
from api.state import AppState, State
from geo_minzheng._errors import UnreachableError
from geo_minzheng.store import VERSION_COLUMN

router = APIRouter(tags=["分析 / analysis"])

GEOJSON = "application/geo+json"
_BREAKS_FIELD = Field(
    default=[5.0, 10.0, 15.0],
    min_length=1,
    max_length=6,
    description="步行时间分段（分钟）/ walking-time breaks in minutes, 0 < b <= 60",
)


def _check_breaks(value: list[float]) -> list[float]:
    if any(not math.isfinite(b) or b <= 0 or b > 60 for b in value):
        msg = f"breaks must be minutes in (0, 60], got {value}"
        raise ValueError(msg)
    return sorted(set(value))


class GeoJSONFeatureCollection(BaseModel):
    """Inline GeoJSON (WGS84); at most ``max_analysis_features`` features."""

    model_config = ConfigDict(extra="allow")

    type: Literal["FeatureCollection"]
    features: list[dict[str, Any]] = Field(max_length=100_000)


class IsochroneRequest(BaseModel):
    """A clicked point and the walking-time breaks."""

    model_config = ConfigDict(extra="forbid")

    lon: float = Field(ge=-180, le=180, description="经度 / longitude (WGS84)")
    lat: float = Field(ge=-90, le=90, description="纬度 / latitude (WGS84)")
    breaks_min: list[float] = _BREAKS_FIELD
    max_snap_m: float = Field(default=300.0, gt=0, le=2000)

    _breaks = field_validator("breaks_min")(_check_breaks)


class CoverageRequest(BaseModel):
    """Coverage of demand by facility layers within walking-time breaks."""

    model_config = ConfigDict(extra="forbid")

    demand_layer: str | None = Field(default=None, max_length=64)
    demand: GeoJSONFeatureCollection | None = None
    facility_layers: list[str] | None = Field(default=None, max_length=10)
    facilities: GeoJSONFeatureCollection | None = None
    units_layer: str | None = Field(default=None, max_length=64)
    breaks_min: list[float] = _BREAKS_FIELD

    _breaks = field_validator("breaks_min")(_check_breaks)


class SitingRequest(BaseModel):
    """Where to add facilities: maximal covering (k sites) or minimal cover (all demand)."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["maximal_covering", "minimal_cover"] = "maximal_covering"
    k: int = Field(default=3, ge=1, le=50, description="sites to add (maximal_covering)")
    break_min: float = Field(default=15.0, gt=0, le=60)
    demand_layer: str | None = Field(default=None, max_length=64)
    demand: GeoJSONFeatureCollection | None = None
    existing_layers: list[str] | None = Field(default=None, max_length=10)
    candidates_layer: str | None = Field(default=None, max_length=64)
    candidates: GeoJSONFeatureCollection | None = None


# ------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------


def _frame_geojson(gdf: gpd.GeoDataFrame) -> dict[str, Any]:
    """A GeoDataFrame as a WGS84 GeoJSON FeatureCollection with JSON-safe values."""
    data = gdf.to_crs(4326) if gdf.crs is not None and gdf.crs.to_epsg() != 4326 else gdf
    data = data.drop(columns=[c for c in data.columns if c == VERSION_COLUMN])
    for column in data.columns:
        if column == data.geometry.name:
            continue
        values = data[column]
        if pd.api.types.is_float_dtype(values):
            data = data.assign(**{column: values.where(np.isfinite(values), None).astype(object)})
    return data.__geo_interface__ | {"type": "FeatureCollection"}


def _inline(state: AppState, fc: GeoJSONFeatureCollection, *, name: str, kind: str | None):
    limit = state.settings.max_analysis_features
    if len(fc.features) > limit:
        msg = f"'{name}' has {len(fc.features)} features; the limit is {limit}"
        raise ApiProblem(413, msg)
    try:
        gdf = gpd.GeoDataFrame.from_features(fc.model_dump()["features"], crs="EPSG:4326")
    except Exception:
        msg = f"'{name}' is not a valid GeoJSON FeatureCollection of WGS84 features"
        raise ApiProblem(422, msg) from None
    if "id" in gdf.columns:
        gdf["id"] = gdf["id"].astype(str)
    gdf.attrs = {"layer": name, **({"kind": kind} if kind else {})}
    if kind is not None:
        from geo_minzheng import validation

        validation.check(gdf, kind, layer=name)
    elif "id" not in gdf.columns or gdf["id"].duplicated().any():
        msg = f"'{name}' features need a unique 'id' property"
        raise ApiProblem(422, msg)
    return gdf


def _layer(state: AppState, layer_id: str, *, kind: str | tuple[str, ...] | None = None):
    store = state.store
    info = store.layer(layer_id)
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds is not None and info.kind not in kinds:
        msg = f"layer '{layer_id}' is of kind '{info.kind}'; expected {' or '.join(kinds)}"
        raise ApiProblem(422, msg)
    return store.read_layer(layer_id)


def _default_layer(state: AppState, kind: str, what: str) -> str:
    layer = state.layer_of_kind(kind)
    if layer is None:
        msg = f"no {what} given and the store has no layer of kind '{kind}'"
        raise ApiProblem(422, msg)
    return layer


def _demand(state: AppState, layer: str | None, inline: GeoJSONFeatureCollection | None):
    if inline is not None:
        return _inline(state, inline, name="demand", kind="demand")
    return _layer(state, layer or _default_layer(state, "demand", "demand"), kind="demand")


def _facility_sets(state: AppState, layers: list[str]) -> dict[str, gpd.GeoDataFrame]:
    """Facility layers split into coverage kinds (eldercare by category; rooms as one)."""
    from geo_minzheng import coverage

    out: dict[str, gpd.GeoDataFrame] = {}
    for layer_id in layers:
        gdf = _layer(state, layer_id)
        kind = state.store.layer(layer_id).kind
        if kind == "eldercare_center":
            out |= coverage.facility_kinds(gdf_eldercare=gdf, categories=None)
        elif kind == "community_service_room":
            out |= coverage.facility_kinds(gdf_service_rooms=gdf)
        else:
            open_ = gdf[~gdf.get("status", pd.Series(index=gdf.index)).isin(["closed", "planned"])]
            out[layer_id] = open_.copy()
    return out


# ------------------------------------------------------------------------------------------------
# Isochrone (immediate)
# ------------------------------------------------------------------------------------------------


@router.post(
    "/analysis/isochrone",
    responses={**PROBLEM_RESPONSES, 422: {"model": ProblemDetail}},
    summary="等时圈 / walking isochrone of a point",
    description=(
        "Areas reachable on foot (elderly walking speed) from a point within each break, as "
        "GeoJSON polygons in WGS84 (largest first). 422 when the point is too far from a road."
    ),
)
def isochrone(body: IsochroneRequest, state: State, _: Viewer) -> JSONResponse:
    from geo_minzheng import isochrones

    engine = state.network.get(timeout_s=120)
    snapped = engine.snap_xy([body.lon], [body.lat], crs="EPSG:4326", max_snap_m=body.max_snap_m)
    if len(snapped.ids) == 0:
        far = snapped.too_far["distance_m"].iloc[0] if len(snapped.too_far) else float("nan")
        msg = (
            f"point ({body.lon:.6f}, {body.lat:.6f}) is {far:.0f} m from the nearest road of the "
            f"walk network; the limit is {body.max_snap_m:.0f} m"
        )
        raise UnreachableError(msg)
    areas = isochrones.service_areas(
        engine, snapped, breaks=[b * 60.0 for b in body.breaks_min], rings=False
    )
    areas = areas.to_crs(4326)
    areas = areas.assign(break_min=areas["break"] / 60.0).drop(columns=["break", "facility_id"])
    areas = areas.sort_values("break_min", ascending=False).reset_index(drop=True)
    body_out = _frame_geojson(areas)
    body_out["properties"] = {
        "lon": body.lon,
        "lat": body.lat,
        "walk_speed_mps": getattr(engine, "walk_speed_mps", None),
    }
    return JSONResponse(body_out, media_type=GEOJSON)


# ------------------------------------------------------------------------------------------------
# Coverage and siting (jobs)
# ------------------------------------------------------------------------------------------------


def _run_coverage(state: AppState, body: CoverageRequest, progress: Progress) -> dict[str, Any]:
    from geo_minzheng import coverage

    progress(0.05, "读取图层 / reading layers")
    demand = _demand(state, body.demand_layer, body.demand)
    if body.facilities is not None:
        facilities = {"facilities": _inline(state, body.facilities, name="facilities", kind=None)}
    else:
        layers = body.facility_layers or [
            lid
            for lid in (
                state.layer_of_kind("eldercare_center"),
                state.layer_of_kind("community_service_room"),
            )
            if lid
        ]
        if not layers:
            msg = "no facility layers given and the store has no eldercare or service-room layer"
            raise ApiProblem(422, msg)
        facilities = _facility_sets(state, layers)
    units_id = body.units_layer or state.layer_of_kind("admin_unit")
    units = _layer(state, units_id, kind="admin_unit") if units_id else None
    progress(0.2, "准备路网 / preparing the walk network")
    engine = state.network.get()
    progress(0.4, "计算覆盖 / computing coverage")
    result = coverage.analyze(
        demand, facilities, engine, breaks_min=body.breaks_min, gdf_units=units
    )
    progress(0.9, "整理结果 / writing the result")
    out = _frame_geojson(result.demand)
    out["summary"] = _records(result.table)
    out["gaps"] = _frame_geojson(result.gaps)
    out["not_snapped"] = _records(result.not_snapped)
    out["provenance"] = _jsonable(result.provenance)
    return out


def _run_siting(state: AppState, body: SitingRequest, progress: Progress) -> dict[str, Any]:
    from geo_minzheng import siting

    progress(0.05, "读取图层 / reading layers")
    demand = _demand(state, body.demand_layer, body.demand)
    if body.candidates is not None:
        candidates = _inline(state, body.candidates, name="candidates", kind=None)
    elif body.candidates_layer is not None:
        candidates = _layer(state, body.candidates_layer)
    else:
        raise ApiProblem(422, "give candidate sites: 'candidates' (GeoJSON) or 'candidates_layer'")
    existing_ids = body.existing_layers
    if existing_ids is None:
        existing_ids = [lid for lid in (state.layer_of_kind("eldercare_center"),) if lid]
    frames = [_layer(state, lid) for lid in existing_ids]
    existing = None
    if frames:
        existing = gpd.GeoDataFrame(
            pd.concat([f[["id", "geometry"]] for f in frames], ignore_index=True), crs=4326
        )
        existing["id"] = [f"{i}" for i in range(len(existing))]
    progress(0.2, "准备路网 / preparing the walk network")
    engine = state.network.get()
    progress(0.4, "求解选址 / solving")
    if body.method == "maximal_covering":
        result = siting.maximal_covering(
            demand, candidates, engine, k=body.k, gdf_existing=existing, break_min=body.break_min
        )
    else:
        result = siting.minimal_cover(
            demand, candidates, engine, gdf_existing=existing, break_min=body.break_min
        )
    progress(0.9, "整理结果 / writing the result")
    out = _frame_geojson(result.sites)
    out["summary"] = _records(result.summary)
    out["objective"] = float(result.objective)
    out["provenance"] = _jsonable(result.provenance)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [_jsonable(r) for r in frame.to_dict(orient="records")]


def _job_status(request: Request, job: Any) -> JobStatus:
    """The job's status; links without titles."""
    links = [Link(href=str(request.url_for("job", job_id=job.id)), rel="self",
                  type="application/json")]  # fmt: skip
    if job.status == "succeeded":
        links.append(
            Link(href=str(request.url_for("job_result", job_id=job.id)), rel="result", type=GEOJSON)
        )
    return JobStatus(
        id=job.id,
        kind=job.kind,
        status=job.status,
        progress=round(job.progress, 3),
        message=job.message,
        created=job.created,
        finished=job.finished,
        error=job.error,
        links=links,
    )


def _submit(request: Request, state: AppState, kind: str, task: Any) -> JSONResponse:
    job = state.jobs.submit(kind, task)
    status = _job_status(request, job)
    return JSONResponse(
        status.model_dump(exclude_none=True),
        status_code=202,
        headers={"Location": str(request.url_for("job", job_id=job.id))},
    )


def _prevalidate(state: AppState, body: CoverageRequest | SitingRequest) -> None:
    """Fail fast (before queueing) on unknown layers and invalid inline GeoJSON."""
    for name in ("demand_layer", "units_layer", "candidates_layer"):
        layer_id = getattr(body, name, None)
        if layer_id is not None:
            state.store.layer(layer_id)
    for layer_id in getattr(body, "facility_layers", None) or []:
        state.store.layer(layer_id)
    for layer_id in getattr(body, "existing_layers", None) or []:
        state.store.layer(layer_id)
    if body.demand is not None:
        _inline(state, body.demand, name="demand", kind="demand")
    for name in ("facilities", "candidates"):
        fc = getattr(body, name, None)
        if fc is not None:
            _inline(state, fc, name=name, kind=None)


@router.post(
    "/analysis/coverage",
    status_code=202,
    response_model=JobStatus,
    responses={**PROBLEM_RESPONSES, 413: {"model": ProblemDetail}, 422: {"model": ProblemDetail}},
    summary="服务圈覆盖分析 / 5-10-15 minute coverage (job)",
    description=(
        "Share of population and aged 60+ within each walking-time break of the nearest "
        "facility, per admin unit, with gap areas. Returns 202 and a job to poll at "
        "`/jobs/{id}`; the result is the demand layer as GeoJSON with `time_min_<kind>` and "
        "`nearest_<kind>`, plus `summary`, `gaps`, `not_snapped` and `provenance`."
    ),
)
def coverage_job(body: CoverageRequest, request: Request, state: State, _: Viewer) -> JSONResponse:
    _prevalidate(state, body)
    return _submit(request, state, "coverage", lambda p: _run_coverage(state, body, p))


@router.post(
    "/analysis/siting",
    status_code=202,
    response_model=JobStatus,
    responses={**PROBLEM_RESPONSES, 413: {"model": ProblemDetail}, 422: {"model": ProblemDetail}},
    summary="设施选址 / facility siting (job)",
    description=(
        "Choose candidate sites: `maximal_covering` picks `k` sites that newly cover the most "
        "aged 60+ within `break_min`; `minimal_cover` the fewest that cover everyone reachable. "
        "Returns 202 and a job; the result is the chosen sites as GeoJSON with `summary`."
    ),
)
def siting_job(body: SitingRequest, request: Request, state: State, _: Viewer) -> JSONResponse:
    _prevalidate(state, body)
    if body.candidates is None and body.candidates_layer is None:
        raise ApiProblem(422, "give candidate sites: 'candidates' (GeoJSON) or 'candidates_layer'")
    return _submit(request, state, "siting", lambda p: _run_siting(state, body, p))


JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="任务编号 / job ID")]


@router.get(
    "/jobs/{job_id}",
    response_model=JobStatus,
    response_model_exclude_none=True,
    responses=PROBLEM_RESPONSES,
    summary="任务进度 / job status",
    description="Status and progress (0–1) of an analysis job; a `result` link once it succeeded.",
)
def job(job_id: JobId, request: Request, state: State, _: Viewer) -> JobStatus:
    return _job_status(request, state.jobs.get(job_id))


@router.get(
    "/jobs/{job_id}/result",
    responses={**PROBLEM_RESPONSES, 409: {"model": ProblemDetail}},
    summary="任务结果 / job result",
    description="The GeoJSON result of a finished job; 409 while it runs, the job's error if it "
    "failed.",
)
def job_result(job_id: JobId, state: State, _: Viewer) -> JSONResponse:
    job = state.jobs.get(job_id)
    if job.status == "failed" and job.error is not None:
        return JSONResponse(
            job.error, status_code=int(job.error["status"]), media_type="application/problem+json"
        )
    if job.status != "succeeded" or job.result is None:
        msg = f"job '{job_id}' is {job.status} ({job.progress:.0%}); poll /jobs/{job_id}"
        raise ApiProblem(409, msg)
    return JSONResponse(job.result, media_type=GEOJSON)
