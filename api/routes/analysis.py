"""Analysis endpoints: an isochrone for a clicked point (immediate), coverage and siting (jobs).

Each analysis takes layer IDs from the store and/or inline GeoJSON (bounded in size), runs its
workflow (:mod:`geo_minzheng.workflows`, which picks layers and defaults) on the network the
service holds, and returns GeoJSON in WGS84. New analyses (shelters, relief, boundaries) slot in
as one request model that builds the workflow's parameters, one ``_run_*`` function and one
route each (docs/workflows.md).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, overload

import geopandas as gpd
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.auth import Viewer
from api.errors import ApiProblem
from api.jobs import Progress
from api.models import PROBLEM_RESPONSES, JobStatus, ProblemDetail
from api.responses import GEOJSON, geojson, job_status, jsonable, records, submit
from api.state import AppState, State
from geo_minzheng import params, workflows
from geo_minzheng._errors import UnreachableError
from geo_minzheng.kinds import ELDERCARE_CATEGORIES

router = APIRouter(tags=["分析 / analysis"])

#: Every parameter's default, rule and unit come from geo_minzheng.params (one definition).
_BREAKS_FIELD = Field(
    default=list(params.DEFAULT_BREAKS_MIN),
    min_length=1,
    max_length=params.MAX_BREAKS,
    description=params.BREAKS_DESCRIPTION,
)
_BREAK_FIELD = Field(
    default=params.DEFAULT_SITING_BREAK_MIN,
    gt=0,
    le=params.MAX_BREAK_MIN,
    description="时间阈值（分钟）/ time break in minutes",
)
_SNAP_FIELD = Field(
    default=params.DEFAULT_MAX_SNAP_M,
    gt=0,
    le=2000,
    description="离道路的最大吸附距离（米）/ farthest a point may lie from a road, metres",
)


def _check_breaks(value: list[float]) -> list[float]:
    return list(params.check_breaks_min(value))


class NetworkOptions(BaseModel):
    """The street network an analysis runs on; defaults from the service settings."""

    profile: Literal["walk", "drive"] | None = Field(
        default=None, description=params.PROFILE_DESCRIPTION + "（默认：服务设置 / settings）"
    )
    walk_speed_mps: float | None = Field(
        default=None,
        ge=params.MIN_WALK_SPEED_MPS,
        le=params.MAX_WALK_SPEED_MPS,
        description=params.WALK_SPEED_DESCRIPTION + "（默认：服务设置 / settings）",
    )

    def network_params(self, state: AppState) -> workflows.NetworkParams:
        """These options over the settings' defaults."""
        settings = state.settings
        return workflows.NetworkParams(
            profile=self.profile or settings.network_profile,
            walk_speed_mps=self.walk_speed_mps or settings.walk_speed_mps,
        )


class GeoJSONFeatureCollection(BaseModel):
    """Inline GeoJSON (WGS84); at most ``max_analysis_features`` features."""

    model_config = ConfigDict(extra="allow")

    type: Literal["FeatureCollection"]
    features: list[dict[str, Any]] = Field(max_length=100_000)


class IsochroneRequest(NetworkOptions):
    """A clicked point and the walking-time breaks."""

    model_config = ConfigDict(extra="forbid")

    lon: float = Field(ge=-180, le=180, description="经度 / longitude (WGS84)")
    lat: float = Field(ge=-90, le=90, description="纬度 / latitude (WGS84)")
    breaks_min: list[float] = _BREAKS_FIELD
    max_snap_m: float = _SNAP_FIELD

    _breaks = field_validator("breaks_min")(_check_breaks)


class CoverageRequest(NetworkOptions):
    """Coverage of demand by facility layers within walking-time breaks (coverage workflow)."""

    model_config = ConfigDict(extra="forbid")

    demand_layer: str | None = Field(default=None, max_length=64)
    demand: GeoJSONFeatureCollection | None = None
    facility_layers: list[str] | None = Field(default=None, max_length=10)
    facilities: GeoJSONFeatureCollection | None = None
    units_layer: str | None = Field(default=None, max_length=64)
    breaks_min: list[float] = _BREAKS_FIELD
    categories: list[Literal[tuple(ELDERCARE_CATEGORIES)]] | None = Field(  # type: ignore[valid-type]
        default=None,
        description="养老设施类别，各为一个覆盖类型（默认：全部）/ eldercare categories to cover "
        "(default: every category in the layer)",
    )
    kind: str = Field(
        default=params.DEFAULT_COVERAGE_KIND,
        max_length=64,
        description="新增选址的设施类型 / facility kind new sites are proposed for",
    )
    new_sites: int = Field(
        default=params.DEFAULT_NEW_SITES,
        ge=0,
        le=params.MAX_NEW_SITES,
        description="建议新增选址数（0：不选址）/ new sites to propose (0: none)",
    )
    max_snap_m: float = _SNAP_FIELD

    _breaks = field_validator("breaks_min")(_check_breaks)

    def coverage_params(self) -> workflows.CoverageParams:
        return workflows.CoverageParams(
            breaks_min=tuple(self.breaks_min),
            categories=tuple(self.categories) if self.categories is not None else None,
            kind=self.kind,
            new_sites=self.new_sites,
            max_snap_m=self.max_snap_m,
            demand_layer=self.demand_layer,
            facility_layers=tuple(self.facility_layers) if self.facility_layers else None,
            units_layer=self.units_layer,
        )


class SitingRequest(NetworkOptions):
    """Where to add facilities: maximal covering (k sites) or minimal cover (all demand)."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["maximal_covering", "minimal_cover"] = "maximal_covering"
    k: int = Field(
        default=params.DEFAULT_NEW_SITES,
        ge=1,
        le=params.MAX_NEW_SITES,
        description="sites to add (maximal_covering)",
    )
    break_min: float = _BREAK_FIELD
    max_snap_m: float = _SNAP_FIELD
    demand_layer: str | None = Field(default=None, max_length=64)
    demand: GeoJSONFeatureCollection | None = None
    existing_layers: list[str] | None = Field(default=None, max_length=10)
    candidates_layer: str | None = Field(default=None, max_length=64)
    candidates: GeoJSONFeatureCollection | None = None

    def siting_params(self) -> workflows.SitingParams:
        return workflows.SitingParams(
            method=self.method,
            k=self.k,
            break_min=self.break_min,
            max_snap_m=self.max_snap_m,
            demand_layer=self.demand_layer,
            candidates_layer=self.candidates_layer,
            existing_layers=tuple(self.existing_layers)
            if self.existing_layers is not None
            else None,
        )


class ShelterRequest(NetworkOptions):
    """Shelter catchments within capacity and service radius (shelter workflow)."""

    model_config = ConfigDict(extra="forbid")

    demand_layer: str | None = Field(default=None, max_length=64)
    shelter_layer: str | None = Field(default=None, max_length=64)
    units_layer: str | None = Field(default=None, max_length=64)
    hazards: GeoJSONFeatureCollection | None = Field(
        default=None, description="灾害影响区（面，WGS84）/ hazard polygons such as a flooded area"
    )
    closed_roads: GeoJSONFeatureCollection | None = Field(
        default=None, description="封闭道路（点或线，WGS84）/ closed roads: points or lines"
    )
    adult_walk_speed_mps: float = Field(
        default=params.ADULT_WALK_SPEED_MPS,
        ge=params.MIN_WALK_SPEED_MPS,
        le=params.MAX_WALK_SPEED_MPS,
        description="60岁以下步行速度 / walking speed under 60, m/s "
        f"({params.ADULT_WALK_SPEED_SOURCE})",
    )
    elderly_walk_speed_mps: float = Field(
        default=params.ELDERLY_WALK_SPEED_MPS,
        ge=params.MIN_WALK_SPEED_MPS,
        le=params.MAX_WALK_SPEED_MPS,
        description="60岁及以上步行速度 / walking speed aged 60+, m/s "
        f"({params.ELDERLY_WALK_SPEED_SOURCE})",
    )
    include_planned: bool = Field(default=False, description="规划中的避难场所也参与安置")
    region: str = Field(default=params.DEFAULT_SHELTER_REGION, max_length=32)

    def shelter_params(self) -> workflows.ShelterParams:
        return workflows.ShelterParams(
            adult_walk_speed_mps=self.adult_walk_speed_mps,
            elderly_walk_speed_mps=self.elderly_walk_speed_mps,
            include_planned=self.include_planned,
            region=self.region,
            demand_layer=self.demand_layer,
            shelter_layer=self.shelter_layer,
            units_layer=self.units_layer,
        )


# ------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------


@overload
def inline_frame(
    state: AppState, fc: GeoJSONFeatureCollection, *, name: str, kind: str | None, ids: bool = True
) -> gpd.GeoDataFrame: ...


@overload
def inline_frame(
    state: AppState, fc: None, *, name: str, kind: str | None, ids: bool = True
) -> None: ...


def inline_frame(
    state: AppState,
    fc: GeoJSONFeatureCollection | None,
    *,
    name: str,
    kind: str | None,
    ids: bool = True,
) -> gpd.GeoDataFrame | None:
    """Inline GeoJSON as a WGS84 frame, checked as ``kind``; ``ids``: features need unique IDs."""
    if fc is None:
        return None
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
    elif ids and ("id" not in gdf.columns or gdf["id"].duplicated().any()):
        msg = f"'{name}' features need a unique 'id' property"
        raise ApiProblem(422, msg)
    return gdf


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

    engine = state.network.get(body.network_params(state), timeout_s=120)
    snapped = engine.snap_xy([body.lon], [body.lat], crs="EPSG:4326", max_snap_m=body.max_snap_m)
    if len(snapped.ids) == 0:
        far = snapped.too_far["distance_m"].iloc[0] if len(snapped.too_far) else float("nan")
        msg = (
            f"point ({body.lon:.6f}, {body.lat:.6f}) is {far:.0f} m from the nearest road of the "
            f"walk network; the limit is {body.max_snap_m:.0f} m"
        )
        raise UnreachableError(msg)
    areas = isochrones.service_areas(
        engine, snapped, breaks=params.breaks_to_s(body.breaks_min), rings=False
    )
    areas = areas.to_crs(4326)
    areas = areas.assign(break_min=[params.s_to_minutes(b) for b in areas["break"]])
    areas = areas.drop(columns=["break", "facility_id"])
    areas = areas.sort_values("break_min", ascending=False).reset_index(drop=True)
    body_out = geojson(areas)
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
    demand = inline_frame(state, body.demand, name="demand", kind="demand")
    facilities = (
        inline_frame(state, body.facilities, name="facilities", kind=None)
        if body.facilities
        else None
    )
    progress(0.02, "准备路网 / preparing the network")
    engine = state.network.get(body.network_params(state))
    run = workflows.run_coverage(
        state.workflow_layers(),
        engine,
        body.coverage_params(),
        gdf_demand=demand,
        gdf_facilities=facilities,
        progress=progress,
    )
    result = run.result
    out = geojson(result.demand)
    out["summary"] = records(result.table)
    out["gaps"] = geojson(result.gaps)
    out["not_snapped"] = records(result.not_snapped)
    if run.compliance is not None:
        out["compliance"] = records(run.compliance)
    if run.sites is not None:
        out["sites"] = geojson(run.sites.sites)
    out["provenance"] = jsonable(result.provenance)
    return out


def _run_siting(state: AppState, body: SitingRequest, progress: Progress) -> dict[str, Any]:
    demand = inline_frame(state, body.demand, name="demand", kind="demand")
    candidates = (
        inline_frame(state, body.candidates, name="candidates", kind=None)
        if body.candidates
        else None
    )
    progress(0.02, "准备路网 / preparing the network")
    engine = state.network.get(body.network_params(state))
    result = workflows.run_siting(
        state.workflow_layers(),
        engine,
        body.siting_params(),
        gdf_demand=demand,
        gdf_candidates=candidates,
        progress=progress,
    )
    progress(0.9, "整理结果 / writing the result")
    out = geojson(result.sites)
    out["summary"] = records(result.summary)
    out["objective"] = float(result.objective)
    out["provenance"] = jsonable(result.provenance)
    return out


def _run_shelters(state: AppState, body: ShelterRequest, progress: Progress) -> dict[str, Any]:
    hazards = inline_frame(state, body.hazards, name="hazards", kind=None, ids=False)
    closed = inline_frame(state, body.closed_roads, name="closed_roads", kind=None, ids=False)
    progress(0.02, "准备路网 / preparing the network")
    engine = state.network.get(body.network_params(state))
    run = workflows.run_shelters(
        state.workflow_layers(),
        engine,
        body.shelter_params(),
        gdf_hazards=hazards,
        gdf_closed_roads=closed,
        progress=progress,
    )
    result = run.result
    out = geojson(result.shelters.reset_index())
    out["summary"] = jsonable(result.summary)
    out["demand"] = geojson(result.demand)
    out["responsibility_areas"] = geojson(run.areas)
    out["unsheltered"] = geojson(result.unsheltered)
    out["checks"] = records(run.checks.units)
    out["overloaded"] = records(run.checks.overloaded)
    if run.comparison is not None:
        out["changes"] = jsonable(dict(run.comparison.summary))
        out["moved"] = records(run.comparison.moved)
        out["shelters_changed"] = records(run.comparison.shelters.reset_index())
    out["provenance"] = jsonable(result.provenance)
    return out


def _prevalidate(state: AppState, body: CoverageRequest | SitingRequest | ShelterRequest) -> None:
    """Fail fast (before queueing) with 422 on bad parameters, unknown layers or layers of the
    wrong kind (workflows.check_inputs) and invalid inline GeoJSON."""
    try:
        run_params: workflows.CoverageParams | workflows.SitingParams | workflows.ShelterParams
        if isinstance(body, CoverageRequest):
            run_params = body.coverage_params()
        elif isinstance(body, ShelterRequest):
            run_params = body.shelter_params()
        else:
            run_params = body.siting_params()
        body.network_params(state)
        workflows.check_inputs(state.workflow_layers(), run_params)
    except ValueError as exc:
        raise ApiProblem(422, str(exc)) from None
    demand = getattr(body, "demand", None)
    if demand is not None:
        inline_frame(state, demand, name="demand", kind="demand")
    for name in ("hazards", "closed_roads"):
        inline_frame(state, getattr(body, name, None), name=name, kind=None, ids=False)
    for name in ("facilities", "candidates"):
        fc = getattr(body, name, None)
        if fc is not None:
            inline_frame(state, fc, name=name, kind=None)


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
    return submit(request, state, "coverage", lambda p: _run_coverage(state, body, p))


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
    return submit(request, state, "siting", lambda p: _run_siting(state, body, p))


@router.post(
    "/analysis/shelters",
    status_code=202,
    response_model=JobStatus,
    responses={**PROBLEM_RESPONSES, 413: {"model": ProblemDetail}, 422: {"model": ProblemDetail}},
    summary="应急避难场所责任区 / shelter catchments with capacity (job)",
    description=(
        "Assigns residents to open emergency shelters within each shelter's capacity (GB 51143 "
        "class area per person, or the registry's capacity) and its class's service radius, "
        "least person-weighted walking time (exact min-cost flow; aged 60+ at the elderly "
        "speed). With `hazards` (polygons: they close their streets and disable the shelters "
        "inside) or `closed_roads`, the result also says who changes shelter, who loses one "
        "and which shelters overflow. Shelters set closed or full through the API take nobody. "
        "Returns 202 and a job; the result is the shelters as GeoJSON with `summary`, "
        "`demand`, `responsibility_areas`, `unsheltered`, `checks`, `overloaded` and, under a "
        "hazard, `changes`."
    ),
)
def shelters_job(body: ShelterRequest, request: Request, state: State, _: Viewer) -> JSONResponse:
    _prevalidate(state, body)
    return submit(request, state, "shelters", lambda p: _run_shelters(state, body, p))


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
    return job_status(request, state.jobs.get(job_id))


@router.get(
    "/jobs/{job_id}/result",
    responses={**PROBLEM_RESPONSES, 409: {"model": ProblemDetail}},
    summary="任务结果 / job result",
    description="The GeoJSON result of a finished job; 409 while it runs, the job's error if it "
    "failed.",
)
def job_result(job_id: JobId, state: State, _: Viewer) -> Response:
    job = state.jobs.get(job_id)
    if job.status == "failed" and job.error is not None:
        return JSONResponse(
            job.error, status_code=int(job.error["status"]), media_type="application/problem+json"
        )
    # the store keeps the result as JSON text (any worker process may answer): sent as is
    text = state.jobs.result_json(job_id) if job.status == "succeeded" else None
    if text is None:
        msg = f"job '{job_id}' is {job.status} ({job.progress:.0%}); poll /jobs/{job_id}"
        raise ApiProblem(409, msg)
    return Response(text, media_type=GEOJSON)
