"""Analysis workflows: the one place that turns layers and typed parameters into an analysis run.

A workflow picks the layers an analysis needs by kind (or takes the IDs it is given), applies the
one "open facility" rule (:func:`geo_minzheng.kinds.in_service`), fills every default from
:mod:`geo_minzheng.params` and returns the analysis's result object. The CLI, the demo, the API
jobs and the map pages all call these functions; none of them picks layers or defaults itself.

Layers come from a :class:`LayerSource`: :class:`FrameLayers` over frames already read (a
catalog's ``read_all``) or :class:`StoreLayers` over a store (the API). How to add an analysis:
docs/workflows.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import geopandas as gpd
import pandas as pd

from geo_minzheng import params
from geo_minzheng._errors import NetworkError, UnknownIdError
from geo_minzheng.kinds import ELDERCARE_CATEGORIES, in_service

if TYPE_CHECKING:
    import networkx as nx

    from geo_minzheng import shelters
    from geo_minzheng.coverage import CoverageResult
    from geo_minzheng.engine import Engine
    from geo_minzheng.siting import SitingResult
    from geo_minzheng.store import Store

#: Called with the fraction done (0-1) and a zh/en message; API jobs report it as progress.
Progress = Callable[[float, str], None]


def _no_progress(fraction: float, message: str) -> None:
    """Progress sink for runs nobody watches."""


# --------------------------------------------------------------------------------------------
# Where layers come from
# --------------------------------------------------------------------------------------------


class LayerSource(Protocol):
    """Layers by ID and kind: a catalog's frames or a store."""

    def ids_of_kind(self, kind: str) -> list[str]:
        """IDs of the layers of ``kind``, in catalog/store order."""
        ...

    def kind_of(self, layer_id: str) -> str:
        """The kind of ``layer_id``; UnknownIdError when there is no such layer."""
        ...

    def read(self, layer_id: str) -> gpd.GeoDataFrame:
        """The layer's records (attrs carry ``kind`` and ``layer``)."""
        ...


@dataclass(frozen=True)
class FrameLayers:
    """Layers already read into frames, keyed by layer ID (each frame's attrs name its kind)."""

    frames: Mapping[str, gpd.GeoDataFrame]

    def ids_of_kind(self, kind: str) -> list[str]:
        return [lid for lid, gdf in self.frames.items() if gdf.attrs.get("kind") == kind]

    def kind_of(self, layer_id: str) -> str:
        return str(self.read(layer_id).attrs.get("kind"))

    def read(self, layer_id: str) -> gpd.GeoDataFrame:
        if layer_id not in self.frames:
            msg = f"unknown layer '{layer_id}'; known: {', '.join(self.frames) or 'none'}"
            raise UnknownIdError(msg)
        return self.frames[layer_id]


@dataclass(frozen=True)
class StoreLayers:
    """Layers of a store; ``scenario`` tells which layers are demo scenario data (for maps)."""

    store: Store
    scenario: Callable[[str], bool] = field(default=lambda layer_id: False)

    def ids_of_kind(self, kind: str) -> list[str]:
        return [info.id for info in self.store.list_layers() if info.kind == kind]

    def kind_of(self, layer_id: str) -> str:
        return self.store.layer(layer_id).kind

    def read(self, layer_id: str) -> gpd.GeoDataFrame:
        gdf = self.store.read_layer(layer_id)
        gdf.attrs["scenario"] = bool(self.scenario(layer_id))
        return gdf


def first_of_kind(layers: LayerSource, kind: str) -> str | None:
    """The first layer of ``kind``, or None."""
    ids = layers.ids_of_kind(kind)
    return ids[0] if ids else None


def _layer_of(layers: LayerSource, layer_id: str, kinds: Sequence[str]) -> gpd.GeoDataFrame:
    """Read ``layer_id``, checking that it is of one of ``kinds``."""
    kind = layers.kind_of(layer_id)
    if kind not in kinds:
        msg = f"layer '{layer_id}' is of kind '{kind}'; expected {' or '.join(kinds)}"
        raise ValueError(msg)
    return layers.read(layer_id)


def _required(layers: LayerSource, layer_id: str | None, kind: str, what: str) -> str:
    """``layer_id``, else the first layer of ``kind``; ValueError when there is none."""
    chosen = layer_id or first_of_kind(layers, kind)
    if chosen is None:
        msg = f"no {what} layer given and there is no layer of kind '{kind}'"
        raise ValueError(msg)
    return chosen


#: Layer kinds whose records are facilities (coverage, siting candidates and existing sites).
FACILITY_KINDS = ("eldercare_center", "community_service_room", "shelter", "supply_depot")


def check_layer(layers: LayerSource, layer_id: str, kinds: Sequence[str], *, what: str) -> str:
    """``layer_id`` if it exists and is of one of ``kinds``; ValueError naming ``what`` if not."""
    try:
        kind = layers.kind_of(layer_id)
    except UnknownIdError as exc:
        msg = f"{what}: {exc}"
        raise ValueError(msg) from None
    if kind not in kinds:
        msg = f"{what}: layer '{layer_id}' is of kind '{kind}'; expected {' or '.join(kinds)}"
        raise ValueError(msg)
    return layer_id


def check_inputs(layers: LayerSource, p: CoverageParams | SitingParams | ShelterParams) -> None:
    """Check, without reading any layer, that a run with ``p`` names inputs that exist.

    Every layer ``p`` names must exist and be of a kind the workflow reads; the coverage
    ``kind`` must be one the run can produce; the shelter ``region`` must be in the shelter
    provision standard. A service calls this before queueing a run, so that a wrong layer or
    parameter is refused at once with this message instead of failing minutes later.

    Raises
    ------
    ValueError
        Naming the parameter, what it named and what was expected.
    """
    named: list[tuple[str, str | None, Sequence[str]]] = [
        ("demand_layer", p.demand_layer, ("demand",))
    ]
    if isinstance(p, CoverageParams):
        named += [("units_layer", p.units_layer, ("admin_unit",))]
        named += [("candidates_layer", p.candidates_layer, FACILITY_KINDS)]
        named += [("facility_layers", lid, FACILITY_KINDS) for lid in p.facility_layers or ()]
        kinds = (*ELDERCARE_CATEGORIES, "community_service_room", "facilities")
        if p.kind not in (*kinds, *(p.facility_layers or ())):
            msg = (
                f"kind: unknown facility kind {p.kind!r}; expected one of: "
                f"{', '.join((*kinds, *(p.facility_layers or ())))}"
            )
            raise ValueError(msg)
    elif isinstance(p, SitingParams):
        named += [("candidates_layer", p.candidates_layer, FACILITY_KINDS)]
        named += [("existing_layers", lid, FACILITY_KINDS) for lid in p.existing_layers or ()]
    else:
        named += [("shelter_layer", p.shelter_layer, ("shelter",))]
        named += [("units_layer", p.units_layer, ("admin_unit",))]
        from geo_minzheng import standards

        regions = list(standards.load("shelter_provision").section("fixed_share"))
        if p.region not in regions:
            msg = f"region: unknown region {p.region!r}; expected one of: {', '.join(regions)}"
            raise ValueError(msg)
    for what, layer_id, kinds_ in named:
        if layer_id is not None:
            check_layer(layers, layer_id, kinds_, what=what)


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkParams:
    """How the street network is built: profile and walking speed (checked by params)."""

    profile: params.Profile = params.DEFAULT_PROFILE
    walk_speed_mps: float = params.ELDERLY_WALK_SPEED_MPS

    def __post_init__(self) -> None:
        params.check_profile(self.profile)
        object.__setattr__(self, "walk_speed_mps", params.check_walk_speed_mps(self.walk_speed_mps))


def road_network(layers: LayerSource, net: NetworkParams | None = None) -> nx.MultiDiGraph:
    """The network of the first road layer; NetworkError when there is none."""
    from geo_minzheng import network

    net = net or NetworkParams()
    road_id = first_of_kind(layers, "road")
    if road_id is None:
        msg = "no road layer, so no street network: add a layer of kind 'road'"
        raise NetworkError(msg)
    G = network.from_road_layer(
        layers.read(road_id), profile=net.profile, walk_speed_mps=net.walk_speed_mps
    )
    G.graph["road_layer"] = road_id
    return G


def engine_for(G: nx.MultiDiGraph) -> Engine:
    """The shortest-path engine over ``G`` with costs in seconds (every analysis's unit)."""
    from geo_minzheng.engine import Engine

    return Engine.from_graph(G, weight="time_s")


# --------------------------------------------------------------------------------------------
# Coverage (with compliance and siting)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CoverageParams:
    """Parameters of the coverage workflow; every default comes from :mod:`params`.

    ``categories``: eldercare categories that each become a coverage kind (None: every category
    present in the layer). ``kind``: the kind that new sites are proposed for and that maps show
    first. ``new_sites``: k sites to propose among the candidate layer's records (0: none);
    siting runs for eldercare categories, the candidates being community service rooms. Layer
    IDs left None are the first layer of their kind.
    """

    breaks_min: tuple[float, ...] = params.DEFAULT_BREAKS_MIN
    categories: tuple[str, ...] | None = params.DEFAULT_COVERAGE_CATEGORIES
    kind: str = params.DEFAULT_COVERAGE_KIND
    new_sites: int = params.DEFAULT_NEW_SITES
    province: str = params.DEFAULT_PROVINCE
    compliance: bool = True
    max_snap_m: float = params.DEFAULT_MAX_SNAP_M
    demand_layer: str | None = None
    facility_layers: tuple[str, ...] | None = None
    units_layer: str | None = None
    candidates_layer: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "breaks_min", params.check_breaks_min(self.breaks_min))
        params.check_new_sites(self.new_sites)
        if self.categories is not None:
            unknown = [c for c in self.categories if c not in ELDERCARE_CATEGORIES]
            if unknown:
                msg = (
                    f"categories: unknown eldercare categories {unknown}; expected some of "
                    f"{', '.join(ELDERCARE_CATEGORIES)}"
                )
                raise ValueError(msg)


@dataclass
class CoverageRun:
    """A coverage run: the result, the inputs it used, compliance and proposed sites."""

    params: CoverageParams
    result: CoverageResult
    engine: Engine
    gdf_demand: gpd.GeoDataFrame
    facilities: dict[str, gpd.GeoDataFrame]
    gdf_units: gpd.GeoDataFrame | None = None
    gdf_eldercare: gpd.GeoDataFrame | None = None
    compliance: pd.DataFrame | None = None
    sites: SitingResult | None = None
    candidates_layer: str | None = None
    _areas: dict[str, gpd.GeoDataFrame] = field(default_factory=dict, repr=False)

    def shown_kind(self, kind: str | None = None) -> str:
        """``kind`` if given, else the parameters' kind when it was covered, else the first kind."""
        chosen = kind or (self.params.kind if self.params.kind in self.facilities else None)
        chosen = chosen or self.result.kinds[0]
        if chosen not in self.facilities:
            msg = f"unknown facility kind '{chosen}'; expected one of: {', '.join(self.facilities)}"
            raise UnknownIdError(msg)
        return chosen

    def service_areas(self, kind: str | None = None) -> gpd.GeoDataFrame:
        """Dissolved walking bands of one kind's facilities per break (WGS84), for maps."""
        kind = self.shown_kind(kind)
        if kind not in self._areas:
            self._areas[kind] = service_areas(
                self.engine,
                self.facilities[kind],
                breaks_min=self.params.breaks_min,
                max_snap_m=self.params.max_snap_m,
            )
        return self._areas[kind]


def service_areas(
    engine: Engine,
    gdf_facilities: gpd.GeoDataFrame,
    *,
    breaks_min: Sequence[float] = params.DEFAULT_BREAKS_MIN,
    max_snap_m: float = params.DEFAULT_MAX_SNAP_M,
) -> gpd.GeoDataFrame:
    """One dissolved band per break around ``gdf_facilities`` (WGS84, ``break_min`` column).

    Bands are disjoint rings, nearest first; an empty layer gives an empty frame.
    """
    from geo_minzheng import isochrones

    breaks = params.check_breaks_min(breaks_min)
    if not len(gdf_facilities):
        return gpd.GeoDataFrame({"break_min": []}, geometry=[], crs=4326)
    snapped = engine.snap(gdf_facilities, id_field="id", max_snap_m=max_snap_m)
    areas = isochrones.service_areas(
        engine, snapped, breaks=params.breaks_to_s(breaks), rings=True, dissolve=True
    ).to_crs(4326)
    areas["break_min"] = [params.s_to_minutes(b) for b in areas["break"]]
    return areas


def facility_sets(
    layers: LayerSource,
    layer_ids: Sequence[str],
    *,
    categories: Sequence[str] | None = params.DEFAULT_COVERAGE_CATEGORIES,
) -> dict[str, gpd.GeoDataFrame]:
    """Facility layers split into coverage kinds, facilities out of service left out.

    An eldercare layer gives one kind per category (``categories``, or every category present);
    a community service room layer is one kind; any other facility layer is one kind named by
    its layer ID.
    """
    from geo_minzheng import coverage

    out: dict[str, gpd.GeoDataFrame] = {}
    for layer_id in layer_ids:
        kind = layers.kind_of(layer_id)
        gdf = in_service(layers.read(layer_id))
        if kind == "eldercare_center":
            out |= coverage.facility_kinds(gdf_eldercare=gdf, categories=categories)
        elif kind == "community_service_room":
            out |= coverage.facility_kinds(gdf_service_rooms=gdf)
        else:
            out[layer_id] = gdf.copy()
    return out


def default_facility_layers(layers: LayerSource) -> tuple[str, ...]:
    """The first eldercare layer and the first community service room layer."""
    found = (first_of_kind(layers, k) for k in ("eldercare_center", "community_service_room"))
    return tuple(lid for lid in found if lid is not None)


def demand_layer(layers: LayerSource, layer_id: str | None = None) -> gpd.GeoDataFrame:
    """The demand layer ``layer_id`` (default: the first of kind demand)."""
    return _layer_of(layers, _required(layers, layer_id, "demand", "demand"), ("demand",))


def units_layer(layers: LayerSource, layer_id: str | None = None) -> gpd.GeoDataFrame | None:
    """Admin units ``layer_id`` (default: the first admin_unit layer), None when there is none."""
    chosen = layer_id or first_of_kind(layers, "admin_unit")
    return _layer_of(layers, chosen, ("admin_unit",)) if chosen else None


def run_coverage(
    layers: LayerSource,
    engine: Engine,
    p: CoverageParams | None = None,
    *,
    gdf_demand: gpd.GeoDataFrame | None = None,
    gdf_facilities: gpd.GeoDataFrame | None = None,
    progress: Progress = _no_progress,
) -> CoverageRun:
    """Coverage of demand by facility kinds, with standards compliance and new sites.

    ``gdf_demand`` and ``gdf_facilities`` replace the layers when given (inline data of an API
    request; the facilities then form one kind, 'facilities').
    """
    from geo_minzheng import coverage

    p = p or CoverageParams()
    progress(0.05, "读取图层 / reading layers")
    demand = gdf_demand if gdf_demand is not None else demand_layer(layers, p.demand_layer)
    if gdf_facilities is not None:
        facilities = {"facilities": in_service(gdf_facilities).copy()}
    else:
        facility_ids = p.facility_layers or default_facility_layers(layers)
        if not facility_ids:
            msg = "no facility layers given and there is no eldercare or service-room layer"
            raise ValueError(msg)
        facilities = facility_sets(layers, facility_ids, categories=p.categories)
    units = units_layer(layers, p.units_layer)
    progress(0.4, "计算覆盖 / computing coverage")
    result = coverage.analyze(
        demand,
        facilities,
        engine,
        breaks_min=p.breaks_min,
        gdf_units=units,
        max_snap_m=p.max_snap_m,
    )
    run = CoverageRun(p, result, engine, demand, facilities, gdf_units=units)
    eldercare_id = first_of_kind(layers, "eldercare_center")
    if eldercare_id is not None and gdf_facilities is None:
        run.gdf_eldercare = in_service(layers.read(eldercare_id))
    if p.compliance and units is not None and run.gdf_eldercare is not None:
        progress(0.6, "达标评估 / checking the standards")
        run.compliance = _compliance(run)
    if p.new_sites > 0 and p.kind in ELDERCARE_CATEGORIES and p.kind in facilities:
        progress(0.7, "新增选址 / siting new facilities")
        _site(layers, run)
    progress(0.9, "整理结果 / writing the result")
    return run


def _compliance(run: CoverageRun) -> pd.DataFrame:
    from geo_minzheng import compliance

    assert run.gdf_units is not None and run.gdf_eldercare is not None  # checked by the caller
    return compliance.compliance(
        run.result, run.gdf_units, run.gdf_eldercare, province=run.params.province
    )


def _site(layers: LayerSource, run: CoverageRun) -> None:
    """Propose ``new_sites`` sites for ``kind`` among the candidate layer's records."""
    p = run.params
    candidates_id = p.candidates_layer or first_of_kind(layers, "community_service_room")
    if candidates_id is None:
        return
    # candidates are places, not services: a closed or planned room can still host a new centre
    candidates = layers.read(candidates_id)
    if not len(candidates):
        return
    run.candidates_layer = candidates_id
    run.sites = run_siting(
        layers,
        engine=run.engine,
        p=SitingParams(k=p.new_sites, break_min=max(p.breaks_min), max_snap_m=p.max_snap_m),
        gdf_demand=run.gdf_demand,
        gdf_candidates=candidates,
        gdf_existing=run.facilities[p.kind],
    )


# --------------------------------------------------------------------------------------------
# Siting
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SitingParams:
    """Parameters of the siting workflow (maximal covering of k sites, or the minimal cover)."""

    method: str = "maximal_covering"
    k: int = params.DEFAULT_NEW_SITES
    break_min: float = params.DEFAULT_SITING_BREAK_MIN
    max_snap_m: float = params.DEFAULT_MAX_SNAP_M
    demand_layer: str | None = None
    candidates_layer: str | None = None
    #: Layers whose facilities in service already cover demand (None: the first eldercare layer).
    existing_layers: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.method not in ("maximal_covering", "minimal_cover"):
            msg = f"method must be 'maximal_covering' or 'minimal_cover', got {self.method!r}"
            raise ValueError(msg)
        object.__setattr__(self, "break_min", params.check_break_min(self.break_min))
        params.check_new_sites(self.k, name="k")


def run_siting(
    layers: LayerSource,
    engine: Engine,
    p: SitingParams | None = None,
    *,
    gdf_demand: gpd.GeoDataFrame | None = None,
    gdf_candidates: gpd.GeoDataFrame | None = None,
    gdf_existing: gpd.GeoDataFrame | None = None,
    progress: Progress = _no_progress,
) -> SitingResult:
    """Choose candidate sites: ``k`` that newly cover the most aged 60+, or the fewest for all.

    Existing coverage comes from ``gdf_existing``, else from the facilities in service of
    ``existing_layers`` (default: the first eldercare layer).
    """
    from geo_minzheng import siting

    p = p or SitingParams()
    progress(0.05, "读取图层 / reading layers")
    demand = gdf_demand if gdf_demand is not None else demand_layer(layers, p.demand_layer)
    if gdf_candidates is None:
        if p.candidates_layer is None:
            msg = "give candidate sites: 'candidates' (GeoDataFrame/GeoJSON) or 'candidates_layer'"
            raise ValueError(msg)
        gdf_candidates = layers.read(p.candidates_layer)
    if gdf_existing is None:
        gdf_existing = _existing(layers, p.existing_layers)
    progress(0.4, "求解选址 / solving")
    if p.method == "maximal_covering":
        return siting.maximal_covering(
            demand,
            gdf_candidates,
            engine,
            k=p.k,
            gdf_existing=gdf_existing,
            break_min=p.break_min,
            max_snap_m=p.max_snap_m,
        )
    return siting.minimal_cover(
        demand,
        gdf_candidates,
        engine,
        gdf_existing=gdf_existing,
        break_min=p.break_min,
        max_snap_m=p.max_snap_m,
    )


def _existing(layers: LayerSource, layer_ids: Sequence[str] | None) -> gpd.GeoDataFrame | None:
    """Facilities in service of ``layer_ids`` as one point set (IDs renumbered: they may clash)."""
    if layer_ids is None:
        layer_ids = [lid for lid in (first_of_kind(layers, "eldercare_center"),) if lid]
    frames = [in_service(layers.read(lid)) for lid in layer_ids]
    if not frames:
        return None
    existing = gpd.GeoDataFrame(
        pd.concat([f[["id", "geometry"]].to_crs(4326) for f in frames], ignore_index=True),
        geometry="geometry",
        crs=4326,
    )
    existing["id"] = [f"{i}" for i in range(len(existing))]
    return existing


# --------------------------------------------------------------------------------------------
# Shelter catchments
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShelterParams:
    """Parameters of the shelter workflow; every default comes from :mod:`params`.

    ``region``: whose minimum share of residents fixed shelters must hold (shelter provision
    standard). ``include_planned``: let planned shelters take evacuees (to test a plan).
    Layer IDs left None are the first layer of their kind.
    """

    adult_walk_speed_mps: float = params.ADULT_WALK_SPEED_MPS
    elderly_walk_speed_mps: float = params.ELDERLY_WALK_SPEED_MPS
    include_planned: bool = False
    use_registry_capacity: bool = True
    region: str = params.DEFAULT_SHELTER_REGION
    max_snap_m: float = params.DEFAULT_MAX_SNAP_M
    demand_layer: str | None = None
    shelter_layer: str | None = None
    units_layer: str | None = None

    def __post_init__(self) -> None:
        for name in ("adult_walk_speed_mps", "elderly_walk_speed_mps"):
            object.__setattr__(
                self, name, params.check_walk_speed_mps(getattr(self, name), name=name)
            )


@dataclass
class ShelterRun:
    """A shelter run: catchments, checks, responsibility areas, and what a hazard changed.

    With hazards or closed roads, ``result`` is the run under them and ``baseline`` the run
    without them; ``comparison`` says who changes shelter, who loses one, which overflow.
    """

    params: ShelterParams
    result: shelters.CatchmentResult
    checks: shelters.ShelterChecks
    areas: gpd.GeoDataFrame
    gdf_units: gpd.GeoDataFrame | None = None
    gdf_hazards: gpd.GeoDataFrame | None = None
    gdf_closed_roads: gpd.GeoDataFrame | None = None
    baseline: shelters.CatchmentResult | None = None
    comparison: shelters.Comparison | None = None


def run_shelters(
    layers: LayerSource,
    engine: Engine,
    p: ShelterParams | None = None,
    *,
    gdf_hazards: gpd.GeoDataFrame | None = None,
    gdf_closed_roads: gpd.GeoDataFrame | None = None,
    progress: Progress = _no_progress,
) -> ShelterRun:
    """Who goes to which shelter within its capacity and radius, and who has no place.

    Shelters whose status is closed, full or planned take nobody (``include_planned`` lets
    planned ones in); hazard polygons close the streets they touch and disable the shelters
    inside them; closed roads (points or lines) close the streets they touch.
    """
    from geo_minzheng import shelters
    from geo_minzheng.engine import Barriers

    p = p or ShelterParams()
    progress(0.05, "读取图层 / reading layers")
    demand = demand_layer(layers, p.demand_layer)
    shelter_id = _required(layers, p.shelter_layer, "shelter", "shelter")
    gdf_shelters = _layer_of(layers, shelter_id, ("shelter",))
    units = units_layer(layers, p.units_layer)

    def catchments(
        barriers: Barriers | None = None, hazards: gpd.GeoDataFrame | None = None
    ) -> shelters.CatchmentResult:
        return shelters.catchments(
            demand,
            gdf_shelters,
            engine,
            adult_walk_speed_mps=p.adult_walk_speed_mps,
            elderly_walk_speed_mps=p.elderly_walk_speed_mps,
            use_registry_capacity=p.use_registry_capacity,
            include_planned=p.include_planned,
            max_snap_m=p.max_snap_m,
            barriers=barriers,
            hazards=hazards,
        )

    progress(0.15, "计算避难场所责任区 / assigning residents to shelters")
    baseline = catchments()
    run_result, comparison = baseline, None
    scenario = gdf_hazards is not None or gdf_closed_roads is not None
    if scenario:
        progress(0.45, "灾害情景重新计算 / re-running under the hazard")
        barriers = (
            Barriers.from_geodataframe(gdf_closed_roads, tolerance_m=5.0)
            if gdf_closed_roads is not None and len(gdf_closed_roads)
            else None
        )
        run_result = catchments(barriers, gdf_hazards)
        comparison = shelters.compare(baseline, run_result)
    progress(0.7, "达标检查 / checking the standards")
    checked = shelters.checks(run_result, units, region=p.region)
    progress(0.8, "绘制责任区 / drawing responsibility areas")
    areas = shelters.responsibility_areas(run_result)
    progress(0.95, "整理结果 / writing the result")
    return ShelterRun(
        p,
        run_result,
        checked,
        areas,
        gdf_units=units,
        gdf_hazards=gdf_hazards,
        gdf_closed_roads=gdf_closed_roads,
        baseline=baseline if scenario else None,
        comparison=comparison,
    )


# --------------------------------------------------------------------------------------------
# Administrative boundaries
# --------------------------------------------------------------------------------------------

if TYPE_CHECKING:
    import datetime as dt

    from geo_minzheng import boundaries


@dataclass(frozen=True)
class BoundaryParams:
    """Parameters of the boundary workflow; every default comes from :mod:`params`.

    ``level``: only this admin level's lines and checks (None: every level of the layer).
    ``as_of``: the day lines are due against (None: today). ``route_line``: plan an inspection
    route over this line's markers ('auto': the line with the most markers), from
    ``route_start`` (lon, lat WGS84; None: its first marker). ``codes_dir``: folder or file of
    official division codes (None: the codes shipped with the demo data). Layer IDs left None
    are the first layer of their kind.
    """

    level: str | None = None
    sliver_width_m: float = params.DEFAULT_SLIVER_WIDTH_M
    marker_tolerance_m: float = params.DEFAULT_MARKER_TOLERANCE_M
    cycle_years: int = params.DEFAULT_INSPECTION_CYCLE_YEARS
    as_of: dt.date | None = None
    route_line: str | None = None
    route_start: tuple[float, float] | None = None
    return_to_start: bool = False
    max_snap_m: float = params.DEFAULT_MAX_SNAP_M
    codes_dir: str | None = None
    units_layer: str | None = None
    markers_layer: str | None = None

    def __post_init__(self) -> None:
        import datetime as dt

        from geo_minzheng.kinds import ADMIN_LEVELS

        if self.level is not None and self.level not in ADMIN_LEVELS:
            msg = f"level must be one of {', '.join(ADMIN_LEVELS)}, got {self.level!r}"
            raise ValueError(msg)
        object.__setattr__(self, "sliver_width_m", params.check_sliver_width_m(self.sliver_width_m))
        object.__setattr__(
            self, "marker_tolerance_m", params.check_marker_tolerance_m(self.marker_tolerance_m)
        )
        params.check_cycle_years(self.cycle_years)
        if isinstance(self.as_of, str):
            try:
                object.__setattr__(self, "as_of", dt.date.fromisoformat(self.as_of))
            except ValueError:
                msg = f"as_of must be a date such as 2026-06-30, got {self.as_of!r}"
                raise ValueError(msg) from None
        if self.route_start is not None:
            lon, lat = (float(v) for v in self.route_start)
            if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                msg = f"route_start must be (lon, lat) in WGS84 degrees, got {self.route_start!r}"
                raise ValueError(msg)
            object.__setattr__(self, "route_start", (lon, lat))


@dataclass
class BoundaryRun:
    """A boundary run: lines, findings, markers and due lines, and the inspection route."""

    params: BoundaryParams
    result: boundaries.BoundaryResult
    gdf_units: gpd.GeoDataFrame
    gdf_markers: gpd.GeoDataFrame | None = None
    route: boundaries.InspectionRoute | None = None
    scenario: bool = False


def run_boundaries(
    layers: LayerSource,
    engine: Engine | None = None,
    p: BoundaryParams | None = None,
    *,
    inspections: pd.DataFrame | Sequence[object] | None = None,
    gdf_markers: gpd.GeoDataFrame | None = None,
    progress: Progress = _no_progress,
) -> BoundaryRun:
    """Boundary lines of adjacent units, topology checks, markers, due lines, inspection route.

    Inspections default to the store's (for :class:`StoreLayers`); ``gdf_markers`` replaces the
    marker layer with a register given inline, which must hold only markers within
    ``marker_tolerance_m`` of a line (LayerValidationError listing every other one). The route
    needs ``engine`` (the road network).
    """
    from geo_minzheng import boundaries, resources
    from geo_minzheng._errors import LayerValidationError
    from geo_minzheng.kinds import DEMO_SCENARIO_LABEL

    p = p or BoundaryParams()
    progress(0.05, "读取图层 / reading layers")
    units_id = _required(layers, p.units_layer, "admin_unit", "admin unit")
    gdf_units = _layer_of(layers, units_id, ("admin_unit",))
    markers = gdf_markers
    if markers is None:
        markers_id = p.markers_layer or first_of_kind(layers, "boundary_marker")
        if markers_id is not None:
            markers = _layer_of(layers, markers_id, ("boundary_marker",))
    if p.codes_dir is not None:
        codes = boundaries.division_codes(p.codes_dir)
    else:
        shipped = resources.demo_data_dir() / "admin_codes"
        codes = boundaries.division_codes(shipped) if shipped.is_dir() else None
    if inspections is None and isinstance(layers, StoreLayers):
        inspections = layers.store.inspections()
    progress(0.2, "界线与拓扑检查 / boundary lines and topology checks")
    result = boundaries.analyze(
        gdf_units,
        codes=codes,
        gdf_markers=markers,
        inspections=inspections,
        level=p.level,
        sliver_width_m=p.sliver_width_m,
        marker_tolerance_m=p.marker_tolerance_m,
        cycle_years=p.cycle_years,
        as_of=p.as_of,
    )
    if gdf_markers is not None:
        problems = boundaries.check_marker_positions(
            gdf_markers, result, tolerance_m=p.marker_tolerance_m
        )
        if problems:
            raise LayerValidationError(str(gdf_markers.attrs.get("layer", "markers")), problems)
    route = None
    route_line = p.route_line
    if route_line == "auto":  # the line with the most markers: the longest walk to plan
        with_markers = result.lines[result.lines["markers"] > 0]
        ranked = with_markers.sort_values(["markers", "line_id"], ascending=[False, True])
        route_line = str(ranked["line_id"].iloc[0]) if len(ranked) else None
    if route_line is not None:
        if engine is None:
            msg = "an inspection route needs the road network: add a layer of kind 'road'"
            raise ValueError(msg)
        progress(0.7, "规划巡查路线 / planning the inspection route")
        route = boundaries.inspection_route(
            engine,
            result,
            route_line,
            start_lonlat=p.route_start,
            return_to_start=p.return_to_start,
            max_snap_m=p.max_snap_m,
        )
    progress(0.95, "整理结果 / writing the result")
    scenario = markers is not None and (
        bool(markers.attrs.get("scenario"))
        or ("source" in markers.columns and bool((markers["source"] == DEMO_SCENARIO_LABEL).any()))
    )
    return BoundaryRun(p, result, gdf_units, markers, route, scenario)


# --------------------------------------------------------------------------------------------
# Relief-material allocation and vehicle routing (救灾物资调运)
# --------------------------------------------------------------------------------------------

if TYPE_CHECKING:
    from geo_minzheng import relief


@dataclass(frozen=True)
class ReliefParams:
    """Parameters of the relief workflow; every default and check comes from :mod:`params`.

    ``occupancy_field``: take sheltered persons from the shelter registry's own column (and
    ``<field>`` aged 60+ from ``occupancy_aged_field``) instead of the shelter catchments.
    The fleet applies to every depot unless the depot layer gives its own ``vehicles``,
    ``vehicle_capacity_t``, ``vehicle_capacity_m3``, ``shift_h`` or ``speed_kmh`` (the
    vehicles' top speed, capping the network's car speeds). ``depart_at``: ``HH:MM``
    or an ISO date-time (dispatch sheets then give clock times). Layer IDs left None are the
    first layer of their kind.
    """

    days: float = params.DEFAULT_RELIEF_DAYS
    items: tuple[str, ...] | None = None
    reserve_share: float = params.DEFAULT_RESERVE_SHARE
    vehicles_per_depot: int = params.DEFAULT_VEHICLES_PER_DEPOT
    vehicle_capacity_t: float = params.DEFAULT_VEHICLE_CAPACITY_T
    vehicle_capacity_m3: float = params.DEFAULT_VEHICLE_CAPACITY_M3
    shift_h: float = params.DEFAULT_SHIFT_H
    speed_kmh: float = params.DEFAULT_FLEET_SPEED_KMH
    unload_min_per_t: float = params.DEFAULT_UNLOAD_MIN_PER_T
    share_steps: int = params.DEFAULT_SHARE_STEPS
    occupancy_field: str | None = None
    occupancy_aged_field: str | None = params.DEFAULT_OCCUPANCY_AGED_FIELD
    depart_at: str | None = None
    vrp_iterations: int = params.DEFAULT_VRP_ITERATIONS
    vrp_max_runtime_s: float | None = params.DEFAULT_VRP_MAX_RUNTIME_S
    seed: int = 1
    max_snap_m: float = params.DEFAULT_MAX_SNAP_M
    shelter_layer: str | None = None
    depot_layer: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "days", params.check_relief_days(self.days))
        object.__setattr__(self, "reserve_share", params.check_reserve_share(self.reserve_share))
        params.check_vehicles(self.vehicles_per_depot)
        for name, check in (
            ("vehicle_capacity_t", params.check_capacity_t),
            ("vehicle_capacity_m3", params.check_capacity_m3),
            ("shift_h", params.check_shift_h),
            ("speed_kmh", params.check_fleet_speed_kmh),
            ("unload_min_per_t", params.check_unload_min_per_t),
        ):
            object.__setattr__(self, name, check(getattr(self, name), name=name))
        params.check_share_steps(self.share_steps)
        params.parse_depart_at(self.depart_at)
        if self.items is not None:
            from geo_minzheng import relief

            object.__setattr__(self, "items", relief.check_items(self.items, relief.item_norms()))
        if isinstance(self.vrp_iterations, bool) or not 1 <= int(self.vrp_iterations) <= 100_000:
            got = self.vrp_iterations
            msg = f"vrp_iterations must be a whole number in [1, 100000], got {got!r}"
            raise ValueError(msg)


@dataclass
class ReliefRun:
    """A relief run: the plan, and with closed roads or hazards the plan without them and
    what they changed (``baseline``, ``changes``)."""

    params: ReliefParams
    plan: relief.ReliefPlan
    baseline: relief.ReliefPlan | None = None
    changes: relief.ReliefChanges | None = None
    gdf_hazards: gpd.GeoDataFrame | None = None
    gdf_closed_roads: gpd.GeoDataFrame | None = None
    shelter_run: ShelterRun | None = None
    scenario: bool = False


def relief_fleets(gdf_depots: gpd.GeoDataFrame, p: ReliefParams) -> dict[str, relief.Fleet]:
    """One fleet per depot: the parameters', or the depot layer's own ``vehicles``,
    ``vehicle_capacity_t``, ``vehicle_capacity_m3``, ``shift_h``, ``speed_kmh`` where a record
    gives them."""
    from geo_minzheng import relief
    from geo_minzheng.engine import id_strings

    ids = id_strings(gdf_depots["id"])
    out = {}
    for pos, depot in enumerate(ids):

        def own(column: str, default: float, pos: int = pos) -> float:
            if column in gdf_depots.columns and pd.notna(gdf_depots[column].iat[pos]):
                return float(gdf_depots[column].iat[pos])
            return float(default)

        where = f"depot '{depot}'"
        out[str(depot)] = relief.Fleet(
            count=params.check_vehicles(
                int(own("vehicles", p.vehicles_per_depot)), name=f"{where}: vehicles"
            ),
            capacity_kg=1000.0
            * params.check_capacity_t(
                own("vehicle_capacity_t", p.vehicle_capacity_t), name=f"{where}: vehicle_capacity_t"
            ),
            capacity_m3=params.check_capacity_m3(
                own("vehicle_capacity_m3", p.vehicle_capacity_m3),
                name=f"{where}: vehicle_capacity_m3",
            ),
            shift_min=params.MINUTES_PER_HOUR
            * params.check_shift_h(own("shift_h", p.shift_h), name=f"{where}: shift_h"),
            speed_kmh=params.check_fleet_speed_kmh(
                own("speed_kmh", p.speed_kmh), name=f"{where}: speed_kmh"
            ),
        )
    return out


def run_relief(
    layers: LayerSource,
    engine: Engine,
    p: ReliefParams | None = None,
    *,
    shelter_run: ShelterRun | None = None,
    walk_engine: Engine | None = None,
    gdf_hazards: gpd.GeoDataFrame | None = None,
    gdf_closed_roads: gpd.GeoDataFrame | None = None,
    progress: Progress = _no_progress,
) -> ReliefRun:
    """Relief needs per shelter, exact allocation from the depots and vehicle tours on open
    roads; with hazards or closed roads, the plan before and after and what changed.

    Sheltered persons come from the registry's ``occupancy_field`` when set, else from
    ``shelter_run``, else from a shelter run made here on ``walk_engine`` (under the same hazards
    and closed roads). ``engine`` is the drive network.
    """
    from geo_minzheng import relief
    from geo_minzheng.kinds import DEMO_SCENARIO_LABEL

    p = p or ReliefParams()
    progress(0.05, "读取图层 / reading layers")
    shelter_id = _required(layers, p.shelter_layer, "shelter", "shelter")
    gdf_shelters = _layer_of(layers, shelter_id, ("shelter",))
    depot_id = _required(layers, p.depot_layer, "supply_depot", "relief depot")
    gdf_depots = _layer_of(layers, depot_id, ("supply_depot",))
    if p.occupancy_field:
        sheltered = relief.sheltered_from_registry(
            gdf_shelters, persons_field=p.occupancy_field, aged_field=p.occupancy_aged_field
        )
    else:
        if shelter_run is None:
            if walk_engine is None:
                msg = (
                    "relief needs sheltered persons: give a shelter run, a walk network to make "
                    "one, or the registry's occupancy_field"
                )
                raise ValueError(msg)
            progress(0.1, "计算避难场所安置人数 / sheltering residents")
            shelter_run = run_shelters(
                layers,
                walk_engine,
                ShelterParams(shelter_layer=shelter_id, max_snap_m=p.max_snap_m),
                gdf_hazards=gdf_hazards,
                gdf_closed_roads=gdf_closed_roads,
            )
        sheltered = relief.sheltered_from_catchments(shelter_run.result.shelters)
    fleets = relief_fleets(gdf_depots, p)
    depart = params.parse_depart_at(p.depart_at)
    scenario = gdf_hazards is not None or gdf_closed_roads is not None

    def make(
        hazards: gpd.GeoDataFrame | None, closed: gpd.GeoDataFrame | None
    ) -> relief.ReliefPlan:
        return relief.plan(
            sheltered,
            gdf_shelters,
            gdf_depots,
            engine,
            days=p.days,
            items=p.items,
            reserve_share=p.reserve_share,
            fleets=fleets,
            unload_min_per_t=p.unload_min_per_t,
            share_steps=p.share_steps,
            closed_roads=closed,
            hazards=hazards,
            max_snap_m=p.max_snap_m,
            depart_at=depart,
            vrp_iterations=p.vrp_iterations,
            vrp_max_runtime_s=p.vrp_max_runtime_s,
            seed=p.seed,
        )

    baseline = changes = None
    if scenario:
        progress(0.3, "无封路时的调运方案 / plan on every road")
        baseline = make(None, None)
        progress(0.6, "封路与淹没区下重新规划 / re-planning on open roads")
    else:
        progress(0.4, "物资分配与车辆路径 / allocation and tours")
    result = make(gdf_hazards, gdf_closed_roads)
    if baseline is not None:
        changes = relief.compare(baseline, result)
    progress(0.95, "整理结果 / writing the result")
    is_demo = any(
        bool(g.attrs.get("scenario"))
        or ("source" in g.columns and bool((g["source"] == DEMO_SCENARIO_LABEL).any()))
        for g in (gdf_shelters, gdf_depots)
    )
    return ReliefRun(
        p,
        result,
        baseline=baseline,
        changes=changes,
        gdf_hazards=gdf_hazards,
        gdf_closed_roads=gdf_closed_roads,
        shelter_run=shelter_run,
        scenario=is_demo or scenario,
    )
