"""The relief job: ``POST /analysis/relief`` (救灾物资调运), a job with progress.

It runs :func:`geo_minzheng.workflows.run_relief` on the service's drive network (the shelter
catchments that give the sheltered persons on its walk network) and returns the vehicle tours as
GeoJSON, with needs, allocation, stops, one dispatch sheet per vehicle, what could not be done
and, under closed roads or hazards, what they changed. Defaults and rules come from
:mod:`geo_minzheng.params`; results are polled at ``/jobs/{id}`` like every analysis job.
"""

from __future__ import annotations

from typing import Any, Literal

import geopandas as gpd
import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Viewer
from api.errors import ApiProblem
from api.jobs import Progress
from api.models import PROBLEM_RESPONSES, JobStatus, ProblemDetail
from api.responses import geojson, jsonable, records, submit
from api.routes.analysis import GeoJSONFeatureCollection, inline_frame
from api.state import AppState, State
from geo_minzheng import params, workflows
from geo_minzheng._errors import UnknownIdError
from geo_minzheng.kinds import RELIEF_ITEMS

router = APIRouter(tags=["分析 / analysis"])


class ReliefRequest(BaseModel):
    """Relief-material allocation and vehicle tours (relief workflow)."""

    model_config = ConfigDict(extra="forbid")

    days: float = Field(
        default=params.DEFAULT_RELIEF_DAYS, gt=0, le=params.MAX_RELIEF_DAYS,
        description=params.RELIEF_DAYS_DESCRIPTION,
    )  # fmt: skip
    items: list[Literal[tuple(RELIEF_ITEMS)]] | None = Field(  # type: ignore[valid-type]
        default=None,
        description="物资（默认：有定额的全部物资）/ items (default: every item with a norm)",
    )
    reserve_share: float = Field(
        default=params.DEFAULT_RESERVE_SHARE, ge=0, lt=1, description=params.RESERVE_DESCRIPTION
    )
    vehicles_per_depot: int = Field(
        default=params.DEFAULT_VEHICLES_PER_DEPOT, ge=0, le=params.MAX_VEHICLES_PER_DEPOT,
        description="每个储备库的车辆数 / vehicles per depot",
    )  # fmt: skip
    vehicle_capacity_t: float = Field(
        default=params.DEFAULT_VEHICLE_CAPACITY_T, gt=0, le=100,
        description="每车载重（吨）/ load per vehicle, tonnes",
    )  # fmt: skip
    vehicle_capacity_m3: float = Field(
        default=params.DEFAULT_VEHICLE_CAPACITY_M3, gt=0, le=200,
        description="每车容积（立方米）/ load space per vehicle, m³",
    )  # fmt: skip
    shift_h: float = Field(
        default=params.DEFAULT_SHIFT_H, gt=0, le=params.MAX_SHIFT_H,
        description="最长班次（小时）/ longest shift, hours",
    )  # fmt: skip
    speed_kmh: float = Field(
        default=params.DEFAULT_FLEET_SPEED_KMH, gt=0, le=params.MAX_FLEET_SPEED_KMH,
        description="车辆最高车速（公里/小时，限制路网车速）/ vehicles' top speed, km/h",
    )  # fmt: skip
    unload_min_per_t: float = Field(
        default=params.DEFAULT_UNLOAD_MIN_PER_T, ge=0, le=params.MAX_UNLOAD_MIN_PER_T,
        description="每吨卸货时间（分钟）/ unloading minutes per tonne",
    )  # fmt: skip
    share_steps: int = Field(
        default=params.DEFAULT_SHARE_STEPS, ge=1, le=params.MAX_SHARE_STEPS,
        description="缺口分担步数 / steps in which a shortage is shared",
    )  # fmt: skip
    occupancy_field: str | None = Field(
        default=None, max_length=64,
        description="用避难场所登记的在住人数字段代替责任区计算 / the registry's occupancy column",
    )  # fmt: skip
    depart_at: str | None = Field(
        default=None, max_length=32, description="发车时间 HH:MM 或 ISO 时间 / departure time"
    )
    shelter_layer: str | None = Field(default=None, max_length=64)
    depot_layer: str | None = Field(default=None, max_length=64)
    demo_flood: bool = Field(
        default=False, description="使用演示洪水情景（伊通河沿岸）/ the demo flood (demo scenario)"
    )
    hazards: GeoJSONFeatureCollection | None = Field(
        default=None, description="灾害影响区（面，WGS84）/ hazard polygons such as a flooded area"
    )
    closed_roads: GeoJSONFeatureCollection | None = Field(
        default=None, description="封闭道路（点或线，WGS84）/ closed roads or bridges"
    )

    def relief_params(self) -> workflows.ReliefParams:
        return workflows.ReliefParams(
            days=self.days,
            items=tuple(self.items) if self.items else None,
            reserve_share=self.reserve_share,
            vehicles_per_depot=self.vehicles_per_depot,
            vehicle_capacity_t=self.vehicle_capacity_t,
            vehicle_capacity_m3=self.vehicle_capacity_m3,
            shift_h=self.shift_h,
            speed_kmh=self.speed_kmh,
            unload_min_per_t=self.unload_min_per_t,
            share_steps=self.share_steps,
            occupancy_field=self.occupancy_field,
            depart_at=self.depart_at,
            shelter_layer=self.shelter_layer,
            depot_layer=self.depot_layer,
        )


def _barriers(
    state: AppState, body: ReliefRequest
) -> tuple[gpd.GeoDataFrame | None, gpd.GeoDataFrame | None]:
    hazards = inline_frame(state, body.hazards, name="hazards", kind=None, ids=False)
    closed = inline_frame(state, body.closed_roads, name="closed_roads", kind=None, ids=False)
    if hazards is not None and not hazards.geom_type.isin(["Polygon", "MultiPolygon"]).all():
        raise ApiProblem(422, "'hazards' must hold Polygon or MultiPolygon features only")
    if body.demo_flood:
        from geo_minzheng import scenario

        layers = state.workflow_layers()
        road = workflows.first_of_kind(layers, "road")
        if road is None:
            raise ApiProblem(422, "demo_flood needs a road layer")
        flood, bridge = scenario.demo_flood(layers.read(road))
        hazards = flood if hazards is None else pd.concat([hazards, flood], ignore_index=True)
        closed = bridge if closed is None else pd.concat([closed, bridge], ignore_index=True)
    return hazards, closed


def _prevalidate(state: AppState, body: ReliefRequest) -> None:
    """Fail fast (before queueing) with 422 on bad parameters, layers and inline GeoJSON."""
    try:
        body.relief_params()
    except ValueError as exc:
        raise ApiProblem(422, str(exc)) from None
    layers = state.workflow_layers()
    for name, kind in (("shelter_layer", "shelter"), ("depot_layer", "supply_depot")):
        layer_id = getattr(body, name)
        if layer_id is None:
            if workflows.first_of_kind(layers, kind) is None:
                raise ApiProblem(422, f"there is no layer of kind '{kind}'")
            continue
        try:
            found = layers.kind_of(layer_id)
        except UnknownIdError:
            raise ApiProblem(422, f"{name}: unknown layer '{layer_id}'") from None
        if found != kind:
            msg = f"{name}: layer '{layer_id}' is of kind '{found}'; expected '{kind}'"
            raise ApiProblem(422, msg)
    inline_frame(state, body.hazards, name="hazards", kind=None, ids=False)
    inline_frame(state, body.closed_roads, name="closed_roads", kind=None, ids=False)


def _run_relief(state: AppState, body: ReliefRequest, progress: Progress) -> dict[str, Any]:
    from geo_minzheng import relief

    hazards, closed = _barriers(state, body)
    progress(0.02, "准备车行路网 / preparing the drive network")
    default = state.network.default
    drive = state.network.get(
        workflows.NetworkParams(profile="drive", walk_speed_mps=default.walk_speed_mps)
    )
    walk = None
    if not body.occupancy_field:
        walk = state.network.get(
            workflows.NetworkParams(profile="walk", walk_speed_mps=default.walk_speed_mps)
        )
    run = workflows.run_relief(
        state.workflow_layers(),
        drive,
        body.relief_params(),
        walk_engine=walk,
        gdf_hazards=hazards,
        gdf_closed_roads=closed,
        progress=progress,
    )
    plan = run.plan
    out = geojson(plan.tours)
    out["summary"] = jsonable(plan.summary)
    out["shelters"] = geojson(plan.shelters.reset_index())
    out["depots"] = geojson(plan.depots.reset_index())
    out["flows"] = geojson(plan.flows)
    out["needs"] = records(plan.needs)
    out["stock"] = records(plan.stock)
    out["allocation"] = records(plan.allocation)
    out["stops"] = records(plan.stops)
    out["undelivered"] = records(plan.undelivered)
    out["unreachable"] = records(plan.unreachable)
    out["dispatch"] = {
        vehicle: records(sheet) for vehicle, sheet in relief.dispatch_sheets(plan).items()
    }
    if run.changes is not None:
        out["changes"] = jsonable(dict(run.changes.summary))
        out["shelters_changed"] = records(run.changes.shelters)
        out["newly_unreachable"] = records(run.changes.newly_unreachable)
        out["tours_changed"] = records(run.changes.tours)
    out["priority_rule"] = {"zh": relief.PRIORITY_RULE_ZH, "en": relief.PRIORITY_RULE}
    out["provenance"] = jsonable(plan.provenance)
    out["scenario"] = bool(run.scenario)
    return out


@router.post(
    "/analysis/relief",
    status_code=202,
    response_model=JobStatus,
    responses={**PROBLEM_RESPONSES, 413: {"model": ProblemDetail}, 422: {"model": ProblemDetail}},
    summary="救灾物资调运 / relief-material allocation and vehicle tours (job)",
    description=(
        "Needs per shelter and item (sheltered persons x the relief norms x `days`), an exact "
        "allocation from each depot's stock above its reserve (least tonne-minutes on the drive "
        "network; shortages shared aged 60+ first, then equal shares step by step), and vehicle "
        "tours from each depot with its fleet (PyVRP: capacities in tonnes and m³, shift length, "
        "several stops and trips, split deliveries), every road closed by `closed_roads`, "
        "`hazards` or `demo_flood` avoided. Returns 202 and a job; the result is the tours as "
        "GeoJSON with `summary`, `shelters`, `depots`, `flows`, `needs`, `allocation`, `stops`, "
        "`dispatch` (one zh-CN sheet per vehicle), `undelivered`, `unreachable` and, under "
        "barriers, `changes`."
    ),
)
def relief_job(body: ReliefRequest, request: Request, state: State, _: Viewer) -> JSONResponse:
    _prevalidate(state, body)
    return submit(request, state, "relief", lambda p: _run_relief(state, body, p))
