"""The demo job behind ``geo-minzheng demo``: load, validate, build the network, map, summarise.

The job is a list of steps (:data:`DEMO_STEPS`) run in order over one :class:`DemoState`; each
step reads what earlier steps left in the state and adds its own results and a section of the
summary. An analysis (coverage, shelters, relief, boundaries) joins the demo as one more
``DemoStep`` that calls its workflow (:mod:`geo_minzheng.workflows`). The map steps live in
``maps.demo_steps``: the core never imports ``maps``, the CLI inserts them (:func:`with_steps`).
The job needs no network access: the data ship with the package and the maps inline their
JavaScript and CSS.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from geo_minzheng import params, resources, scenario, workflows
from geo_minzheng._errors import LayerValidationError, Problem
from geo_minzheng.kinds import (
    DEMO_SCENARIO_LABEL,
    ELDERCARE_CATEGORIES,
    MARKER_STATUS,
    RELIEF_ITEMS,
    SHELTER_CLASSES,
    get_kind,
)

if TYPE_CHECKING:
    import geopandas as gpd
    import networkx as nx

    from geo_minzheng.catalog import Catalog
    from geo_minzheng.coverage import CoverageResult

#: The demo scenario's coverage: the community-level centres of the 15-minute home-eldercare
#: circle (居家养老服务圈) as coverage kinds; every other parameter is the workflow's default.
DEMO_COVERAGE = workflows.CoverageParams(categories=params.LIFE_CIRCLE_CATEGORIES)


def default_catalog() -> Path:
    """The settings' catalog (``GEO_MINZHENG_CATALOG``), else the demo catalog shipped with
    the package.

    The shipped catalog is the repository's ``layers/catalog.yml``, found through
    importlib.resources (:func:`geo_minzheng.resources.demo_catalog_path`).
    """
    from geo_minzheng.settings import Settings

    configured = Settings().catalog
    return configured if configured is not None else resources.demo_catalog_path()


@dataclass
class DemoState:
    """Everything the steps share: inputs, layers, network, outputs, summary and timings."""

    out_dir: Path
    lang: str = "zh"
    catalog_path: Path = field(default_factory=default_catalog)
    catalog: Catalog | None = None
    layers: dict[str, gpd.GeoDataFrame] = field(default_factory=dict)
    problems: dict[str, list[Problem]] = field(default_factory=dict)
    G: nx.MultiDiGraph | None = None
    outputs: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    generated: list[Path] = field(default_factory=list)
    #: how the street network is built (profile, walking speed)
    network: workflows.NetworkParams = field(default_factory=workflows.NetworkParams)
    #: parameters of the coverage step (the demo scenario's: see :data:`DEMO_COVERAGE`)
    coverage: workflows.CoverageParams = field(default_factory=lambda: DEMO_COVERAGE)
    #: parameters of the shelter step
    shelters: workflows.ShelterParams = field(default_factory=workflows.ShelterParams)
    #: hazard polygons and closed roads of the shelter step (None: the demo flood, when
    #: ``demo_flood``; else no hazard)
    hazards: gpd.GeoDataFrame | None = None
    closed_roads: gpd.GeoDataFrame | None = None
    demo_flood: bool = True
    #: analysis results by step name (e.g. "coverage": workflows.CoverageRun)
    results: dict[str, Any] = field(default_factory=dict)

    def t(self, zh: str, en: str) -> str:
        """``zh`` or ``en`` by the state's language."""
        return zh if self.lang == "zh" else en

    def layer_of_kind(self, kind: str) -> tuple[str, gpd.GeoDataFrame] | None:
        """The first layer of ``kind`` (id, frame), or None when the catalog has none."""
        for layer_id, gdf in self.layers.items():
            if gdf.attrs.get("kind") == kind:
                return layer_id, gdf
        return None


@dataclass(frozen=True)
class DemoStep:
    """One step of the demo: a name, zh/en labels for progress messages, and its function."""

    name: str
    label_zh: str
    label_en: str
    run: Callable[[DemoState], None]

    def label(self, lang: str) -> str:
        """The step's label in ``lang``."""
        return self.label_zh if lang == "zh" else self.label_en


# --------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------


def _step_layers(state: DemoState) -> None:
    """Load the catalog and read every layer; generate the demo GeoPackage if it is missing."""
    from geo_minzheng.catalog import load_catalog

    preliminary = load_catalog(state.catalog_path, check_sources=False)
    for entry in preliminary.entries.values():
        source = Path(entry.source)
        missing = not source.exists() and source not in state.generated
        if missing and source.name == scenario.DEMO_GPKG_NAME:
            scenario.write_demo_gpkg(source)
            state.generated.append(source)
    state.catalog = load_catalog(state.catalog_path)
    state.layers = state.catalog.read_all(validate=False)


def _step_validate(state: DemoState) -> None:
    """Validate every layer; stop the demo with every problem listed if any layer has one."""
    from geo_minzheng import validation

    for layer_id, gdf in state.layers.items():
        state.problems[layer_id] = validation.validate(gdf, gdf.attrs["kind"], layer=layer_id)
    bad = [p for problems in state.problems.values() for p in problems]
    if bad:
        where = "demo"
        raise LayerValidationError(where, bad)


def _step_network(state: DemoState) -> None:
    """Build the street network (elderly walking by default) from the road layer, if any."""
    if state.layer_of_kind("road") is None:
        return
    G = workflows.road_network(workflows.FrameLayers(state.layers), state.network)
    state.G = G
    length_m = sum(
        float(d["length_m"]) for u, v, d in G.edges(data=True) if u <= v
    )  # walk edges come in both directions: count each street once
    state.summary["network"] = {
        "layer": G.graph["road_layer"],
        "profile": G.graph["profile"],
        "walk_speed_mps": float(G.graph["walk_speed_mps"]),
        "crs": G.graph["crs"].to_string()
        if hasattr(G.graph["crs"], "to_string")
        else str(G.graph["crs"]),
        "nodes": G.number_of_nodes(),
        "edges": G.number_of_edges(),
        "length_km": round(length_m / 1000.0, 3),
    }


def _step_coverage(state: DemoState) -> None:
    """15-minute service circles: coverage, gaps, compliance and new sites (workflows).

    Writes coverage_table.csv, coverage_compliance.csv, coverage_sites.csv and coverage.gpkg, and
    adds the numbers to the summary. Needs the network step and eldercare + demand layers.
    """
    from geo_minzheng import io

    layers = workflows.FrameLayers(state.layers)
    if state.G is None or not (
        workflows.first_of_kind(layers, "demand")
        and workflows.first_of_kind(layers, "eldercare_center")
    ):
        return
    run = workflows.run_coverage(layers, workflows.engine_for(state.G), state.coverage)
    state.results["coverage"] = run
    result, out = run.result, state.out_dir
    result.table.to_csv(out / "coverage_table.csv", index=False, encoding="utf-8-sig")
    state.outputs["coverage_table"] = out / "coverage_table.csv"
    summary: dict[str, Any] = {
        "breaks_min": list(run.params.breaks_min),
        "walk_speed_mps": float(state.G.graph["walk_speed_mps"]),
        "totals": _coverage_totals(result),
        "gaps": int(len(result.gaps)),
        "not_snapped": int(len(result.not_snapped)),
    }
    layers_out = {"demand_times": result.demand, "gaps": result.gaps}
    if run.compliance is not None:
        table = run.compliance
        table.to_csv(out / "coverage_compliance.csv", index=False, encoding="utf-8-sig")
        state.outputs["coverage_compliance"] = out / "coverage_compliance.csv"
        summary["compliance_rows"] = int(len(table))
        summary["compliance_met"] = int(table["met"].astype(bool).sum()) if "met" in table else None
    if run.sites is not None:
        sited = run.sites
        sited.sites.drop(columns="geometry").to_csv(
            out / "coverage_sites.csv", index=False, encoding="utf-8-sig"
        )
        state.outputs["coverage_sites"] = out / "coverage_sites.csv"
        layers_out["proposed_sites"] = sited.sites
        summary["siting"] = {
            "kind": run.params.kind,
            "candidates": run.candidates_layer or "",
            "k": run.params.new_sites,
            "chosen": [str(i) for i in sited.sites["id"]],
            "newly_covered_aged_60_plus": float(sited.objective),
            "before_after": sited.summary.to_dict(orient="records"),
        }
    state.outputs["coverage_gpkg"] = io.write_gpkg(
        {name: gdf for name, gdf in layers_out.items() if len(gdf)}, out / "coverage.gpkg"
    )
    summary["provenance"] = {k: str(v) for k, v in result.provenance.items()}
    state.summary["coverage"] = summary


def _step_shelters(state: DemoState) -> None:
    """Shelter catchments with capacity, under the demo flood (workflows.run_shelters).

    Writes shelters_table.csv (per shelter), shelters_assignment.csv, shelters_checks.csv,
    shelters_changes.csv, shelters.xlsx (every table, one sheet each) and shelters.gpkg.
    """
    from geo_minzheng import io

    layers = workflows.FrameLayers(state.layers)
    road_id = workflows.first_of_kind(layers, "road")
    if state.G is None or road_id is None or not workflows.first_of_kind(layers, "shelter"):
        return
    hazards, closed = state.hazards, state.closed_roads
    if hazards is None and closed is None and state.demo_flood:
        hazards, closed = scenario.demo_flood(layers.read(road_id))
    run = workflows.run_shelters(
        layers,
        workflows.engine_for(state.G),
        state.shelters,
        gdf_hazards=hazards,
        gdf_closed_roads=closed,
    )
    state.results["shelters"] = run
    tables = shelter_tables(run)
    out = state.out_dir
    for name, table in tables.items():
        path = out / f"shelters_{name}.csv"
        table.to_csv(path, index=False, encoding="utf-8-sig")
        state.outputs[f"shelters_{name}"] = path
    state.outputs["shelters_xlsx"] = _write_xlsx(tables, out / "shelters.xlsx")
    result = run.result
    frames = {
        "responsibility_areas": run.areas,
        "shelters": result.shelters.reset_index(),
        "unsheltered": result.unsheltered,
        "hazards": hazards if hazards is not None else run.areas.iloc[0:0],
        "closed_roads": closed if closed is not None else run.areas.iloc[0:0],
    }
    state.outputs["shelters_gpkg"] = io.write_gpkg(
        {name: gdf for name, gdf in frames.items() if len(gdf)}, out / "shelters.gpkg"
    )
    summary: dict[str, Any] = {"after_flood": result.summary}
    if run.baseline is not None:
        summary["before_flood"] = run.baseline.summary
    if run.comparison is not None:
        summary["flood_changes"] = dict(run.comparison.summary)
    summary["fixed_share"] = _fixed_share(run)
    summary["provenance"] = {k: str(v) for k, v in result.provenance.items()}
    state.summary["shelters"] = summary


def shelter_tables(run: workflows.ShelterRun) -> dict[str, pd.DataFrame]:
    """The tables a shelter run files: per shelter, assignment, checks per unit, changes."""
    result = run.result
    tables = {
        "table": pd.DataFrame(result.shelters.drop(columns="geometry")).reset_index(),
        "assignment": result.assignment,
        "checks": run.checks.units,
        "overloaded": run.checks.overloaded,
    }
    if run.comparison is not None:
        tables["changes"] = run.comparison.shelters.reset_index()
        tables["moved"] = run.comparison.moved
    return tables


def _write_xlsx(tables: Mapping[str, pd.DataFrame], path: Path) -> Path:
    """Every table as one sheet of an XLSX workbook (openpyxl)."""
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name, table in tables.items():
            table.to_excel(writer, sheet_name=name[:31], index=False)
    return path


def _fixed_share(run: workflows.ShelterRun) -> dict[str, Any]:
    """The whole area's fixed-shelter share against the standard's minimum."""
    units = run.checks.units
    total = units[units["unit"] == "total"] if "unit" in units else units.iloc[:1]
    row = total.iloc[0] if len(total) else None
    if row is None:
        return {}
    return {
        "fixed_share": float(row["fixed_share"]),
        "target_share": float(row["target_share"]),
        "met": bool(row["fixed_share_met"]),
    }


def _coverage_totals(result: CoverageResult) -> list[dict[str, Any]]:
    """Whole-area covered shares per kind and break, for the summary."""
    total = result.table[result.table["unit"] == "total"]
    return [
        {
            "kind": str(row.kind),
            "break_min": float(row.break_min),
            "population": int(row.population),
            "aged_60_plus": int(row.aged_60_plus),
            "covered_population": int(row.covered_population),
            "covered_aged_60_plus": int(row.covered_aged_60_plus),
            "share_population": round(float(row.share_population), 4),
            "share_aged_60_plus": round(float(row.share_aged_60_plus), 4),
        }
        for row in total.itertuples()
    ]


def _step_summary(state: DemoState) -> None:
    """Write summary.json and summary.md (the numbers of every earlier step)."""
    state.summary.update(_layer_summary(state))
    state.outputs["summary_json"] = state.out_dir / "summary.json"
    state.outputs["summary_md"] = state.out_dir / "summary.md"
    state.summary["outputs"] = {k: str(v) for k, v in state.outputs.items()}


def relief_step(p: workflows.ReliefParams | None = None) -> DemoStep:
    """The relief step with parameters ``p`` (default: the workflow's): needs, allocation and
    vehicle tours on the drive network, under the shelter step's hazards and closed roads."""

    def run(state: DemoState) -> None:
        _step_relief(state, p or workflows.ReliefParams())

    return DemoStep(
        "relief",
        "救灾物资调运（车行路网，演示洪水情景）",
        "Relief-material dispatch (drive network, demo flood)",
        run,
    )


def _step_relief(state: DemoState, p: workflows.ReliefParams) -> None:
    """Relief dispatch (workflows.run_relief) on the drive network, from the shelter step's
    sheltered persons and under its hazards and closed roads.

    Writes relief_needs.csv, relief_allocation.csv, relief_tours.csv, relief_stops.csv,
    relief_changes.csv, relief.xlsx (every table), relief_routes.geojson and one dispatch sheet
    per vehicle (relief_dispatch/dispatch.xlsx and a CSV each).
    """
    from geo_minzheng import relief

    layers = workflows.FrameLayers(state.layers)
    shelter_run = state.results.get("shelters")
    if state.G is None or not (
        workflows.first_of_kind(layers, "supply_depot")
        and workflows.first_of_kind(layers, "shelter")
        and workflows.first_of_kind(layers, "road")
    ):
        return
    if shelter_run is None and not p.occupancy_field:
        return
    drive = workflows.road_network(
        layers,
        workflows.NetworkParams(profile="drive", walk_speed_mps=state.network.walk_speed_mps),
    )
    hazards = shelter_run.gdf_hazards if shelter_run is not None else state.hazards
    closed = shelter_run.gdf_closed_roads if shelter_run is not None else state.closed_roads
    run = workflows.run_relief(
        layers,
        workflows.engine_for(drive),
        p,
        shelter_run=shelter_run,
        gdf_hazards=hazards,
        gdf_closed_roads=closed,
    )
    state.results["relief"] = run
    out = state.out_dir
    tables = relief_tables(run)
    for name, table in tables.items():
        path = out / f"relief_{name}.csv"
        table.to_csv(path, index=False, encoding="utf-8-sig")
        state.outputs[f"relief_{name}"] = path
    state.outputs["relief_xlsx"] = _write_xlsx(tables, out / "relief.xlsx")
    routes = run.plan.tours[run.plan.tours.geometry.notna()]
    path = out / "relief_routes.geojson"
    path.write_text(routes.to_json(drop_id=True, ensure_ascii=False), encoding="utf-8")
    state.outputs["relief_routes"] = path
    sheets = relief.write_dispatch_sheets(run.plan, out / "relief_dispatch", lang=state.lang)
    state.outputs["relief_dispatch_xlsx"] = sheets["dispatch_xlsx"]
    summary: dict[str, Any] = {"plan": run.plan.summary, "days": run.params.days}
    if run.baseline is not None:
        summary["before_barriers"] = run.baseline.summary
    if run.changes is not None:
        summary["changes"] = dict(run.changes.summary)
    summary["vehicles"] = len(sheets) - 1
    summary["provenance"] = {k: str(v) for k, v in run.plan.provenance.items()}
    state.summary["relief"] = summary


def relief_tables(run: workflows.ReliefRun) -> dict[str, pd.DataFrame]:
    """The tables a relief run files: needs, stock, allocation, tours, stops, undelivered,
    unreachable shelters and, under barriers, what changed."""
    plan = run.plan
    tables = {
        "needs": plan.needs,
        "stock": plan.stock,
        "allocation": plan.allocation,
        "tours": pd.DataFrame(plan.tours.drop(columns="geometry")),
        "stops": plan.stops,
        "undelivered": plan.undelivered,
        "unreachable": plan.unreachable,
    }
    if run.changes is not None:
        tables["changes"] = run.changes.shelters
        tables["changed_tours"] = run.changes.tours
    return tables


def boundaries_step(
    p: workflows.BoundaryParams | None = None, *, gdf_markers: gpd.GeoDataFrame | None = None
) -> DemoStep:
    """The boundary step with parameters ``p`` (default: the workflow's, with an inspection
    route over the line with the most markers when there is a road network); ``gdf_markers``
    replaces the marker layer with a register that must hold no marker far from its line."""

    def run(state: DemoState) -> None:
        _step_boundaries(state, p or workflows.BoundaryParams(route_line="auto"), gdf_markers)

    return DemoStep(
        "boundaries",
        "行政区域界线管理（界线、拓扑检查、界桩、巡查路线）",
        "Administrative boundaries (lines, topology checks, markers, inspection route)",
        run,
    )


def _step_boundaries(
    state: DemoState, p: workflows.BoundaryParams, gdf_markers: gpd.GeoDataFrame | None
) -> None:
    """Boundary lines, topology findings, markers, due lines and a route (workflows).

    Writes boundaries_responsibility.csv/.xlsx (界线管理责任表: the responsibility table, zh
    headers), boundaries_lines.csv, boundaries_faults.csv, boundaries_markers.csv,
    boundaries_route.csv (when a route was planned), boundaries.xlsx (every table) and
    boundaries.gpkg (lines, outer boundary, findings, markers, route).
    """
    import dataclasses

    from geo_minzheng import io

    layers = workflows.FrameLayers(state.layers)
    if workflows.first_of_kind(layers, "admin_unit") is None:
        return
    engine = workflows.engine_for(state.G) if state.G is not None else None
    if engine is None and p.route_line is not None:
        p = dataclasses.replace(p, route_line=None)
    run = workflows.run_boundaries(layers, engine, p, gdf_markers=gdf_markers)
    state.results["boundaries"] = run
    result, out = run.result, state.out_dir
    tables = boundary_tables(run, lang=state.lang)
    for name, table in tables.items():
        path = out / f"boundaries_{name}.csv"
        table.to_csv(path, index=False, encoding="utf-8-sig")
        state.outputs[f"boundaries_{name}"] = path
    state.outputs["boundaries_xlsx"] = _write_xlsx(tables, out / "boundaries.xlsx")
    frames = {
        "lines": result.lines,
        "outer": result.outer,
        "faults": result.faults[result.faults.geometry.notna()],
        "markers": result.markers,
    }
    if run.route is not None:
        frames["route"] = run.route.legs
    state.outputs["boundaries_gpkg"] = io.write_gpkg(
        {name: gdf for name, gdf in frames.items() if len(gdf)}, out / "boundaries.gpkg"
    )
    summary: dict[str, Any] = result.summary()
    summary["scenario"] = run.scenario
    if run.route is not None:
        route = run.route
        summary["route"] = {
            "line_id": route.line_id,
            "stops": int(len(route.stops)),
            "distance_km": round(route.distance_m / 1000.0, 3),
            "time_min": round(params.s_to_minutes(route.time_s or 0.0), 1),
            "solver": route.solver,
        }
    summary["provenance"] = {k: str(v) for k, v in result.provenance.items()}
    state.summary["boundaries"] = summary


def boundary_tables(run: workflows.BoundaryRun, *, lang: str = "zh") -> dict[str, pd.DataFrame]:
    """The tables a boundary run files: the responsibility table (界线管理责任表), lines,
    findings, markers and, when planned, the route's stops."""
    from geo_minzheng import boundaries

    result = run.result
    tables = {
        "responsibility": boundaries.responsibility_table(result, lang=lang),
        "lines": pd.DataFrame(result.lines.drop(columns="geometry")),
        "faults": pd.DataFrame(result.faults.drop(columns="geometry")),
        "markers": pd.DataFrame(result.markers.drop(columns="geometry")),
    }
    if run.route is not None:
        tables["route"] = pd.DataFrame(run.route.stops.drop(columns="geometry"))
    return tables


#: The core steps; the CLI inserts the map steps (maps.demo_steps) before "summary".
DEMO_STEPS: list[DemoStep] = [
    DemoStep("layers", "读取图层目录与图层", "Read the catalog and layers", _step_layers),
    DemoStep("validate", "校验全部图层", "Validate every layer", _step_validate),
    DemoStep("network", "构建老年人步行路网", "Build the elderly walking network", _step_network),
    DemoStep("coverage", "养老服务圈覆盖分析", "Eldercare coverage analysis", _step_coverage),
    DemoStep(
        "shelters",
        "应急避难场所责任区分析（演示洪水情景）",
        "Shelter catchments (demo flood scenario)",
        _step_shelters,
    ),
    relief_step(),
    boundaries_step(),
    DemoStep("summary", "汇总结果", "Summarise", _step_summary),
]


def with_steps(extra: Sequence[DemoStep], steps: Sequence[DemoStep] = DEMO_STEPS) -> list[DemoStep]:
    """``steps`` with ``extra`` inserted before the summary step (which must stay last)."""
    out = [step for step in steps if step.name != "summary"]
    return [*out, *extra, *(step for step in steps if step.name == "summary")]


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


def _int(value: Any) -> int:
    return int(np.nansum(np.asarray(value, dtype=float)))


def _counts(values: Any, codes: Any) -> dict[str, int]:
    series = list(values)
    return {code: series.count(code) for code in codes if series.count(code)}


def _layer_summary(state: DemoState) -> dict[str, Any]:
    entries = state.catalog.entries if state.catalog is not None else {}
    layers = []
    for layer_id, gdf in state.layers.items():
        entry = entries.get(layer_id)
        sources = sorted({str(s) for s in gdf["source"].dropna()}) if "source" in gdf else []
        layers.append(
            {
                "id": layer_id,
                "kind": gdf.attrs["kind"],
                "title": (entry.title_zh if state.lang == "zh" else entry.title_en)
                if entry
                else get_kind(gdf.attrs["kind"]).label(state.lang),
                "count": len(gdf),
                "scenario": bool(gdf.attrs.get("scenario", False)),
                "sources": sources,
                "problems": len(state.problems.get(layer_id, [])),
            }
        )
    out: dict[str, Any] = {"layers": layers}
    out["population"] = _population(state)
    out["facilities"] = _facilities(state)
    out["provenance"] = _provenance(state, layers)
    return out


def _population(state: DemoState) -> dict[str, Any] | None:
    found = state.layer_of_kind("demand")
    if found is None:
        return None
    gdf = found[1]
    total, aged = _int(gdf["population"]), _int(gdf["aged_60_plus"])
    names = {}
    units = state.layer_of_kind("admin_unit")
    if units is not None:
        names = dict(zip(units[1]["adcode"], units[1]["name"], strict=True))
    by_unit = []
    if "admin_code" in gdf:
        for code, group in gdf.groupby("admin_code", sort=True):
            by_unit.append(
                {
                    "adcode": str(code),
                    "name": names.get(code, str(code)),
                    "demand_points": len(group),
                    "population": _int(group["population"]),
                    "aged_60_plus": _int(group["aged_60_plus"]),
                }
            )
    return {
        "layer": found[0],
        "demand_points": len(gdf),
        "population": total,
        "aged_60_plus": aged,
        "aged_share": round(aged / total, 4) if total else None,
        "households": _int(gdf["households"]) if "households" in gdf else None,
        "by_admin_unit": by_unit,
    }


def _facilities(state: DemoState) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if (found := state.layer_of_kind("eldercare_center")) is not None:
        gdf = found[1]
        out["eldercare"] = {
            "count": len(gdf),
            "beds": _int(gdf["beds"]) if "beds" in gdf else None,
            "by_category": _counts(gdf["category"], ELDERCARE_CATEGORIES),
        }
    if (found := state.layer_of_kind("community_service_room")) is not None:
        gdf = found[1]
        out["service_rooms"] = {
            "count": len(gdf),
            "floor_area_m2": round(float(np.nansum(gdf["floor_area_m2"].astype(float))), 1),
        }
    if (found := state.layer_of_kind("shelter")) is not None:
        gdf = found[1]
        out["shelters"] = {
            "count": len(gdf),
            "areas": int(gdf.geom_type.isin(["Polygon", "MultiPolygon"]).sum()),
            "effective_area_m2": round(float(np.nansum(gdf["effective_area_m2"].astype(float))), 1),
            "capacity_persons": _int(gdf["capacity_persons"])
            if "capacity_persons" in gdf
            else None,
            "by_class": _counts(gdf["shelter_class"], SHELTER_CLASSES),
        }
    if (found := state.layer_of_kind("supply_depot")) is not None:
        gdf = found[1]
        out["depots"] = {
            "count": len(gdf),
            "stock": {
                item: _int(gdf[f"stock_{item}"]) for item in RELIEF_ITEMS if f"stock_{item}" in gdf
            },
        }
    if (found := state.layer_of_kind("boundary_marker")) is not None:
        gdf = found[1]
        out["markers"] = {"count": len(gdf), "by_status": _counts(gdf["status"], MARKER_STATUS)}
    return out


def _provenance(state: DemoState, layers: list[dict[str, Any]]) -> list[str]:
    lines = []
    if any(DEMO_SCENARIO_LABEL in layer["sources"] for layer in layers):
        lines.append(
            state.t(
                f"演示情景：设施、人口、界桩为按固定种子（{scenario.DEFAULT_SEED}）生成的示例数据，"
                "并非官方登记数据（docs/scenario.md）",
                f"Demo scenario: facilities, population and markers are generated from a fixed "
                f"seed ({scenario.DEFAULT_SEED}), not official records (docs/scenario.md)",
            )
        )
    real = sorted({s for layer in layers for s in layer["sources"] if s != DEMO_SCENARIO_LABEL})
    lines += real
    if state.generated:
        lines.append(
            state.t(
                f"本次运行生成了演示数据：{', '.join(str(p) for p in state.generated)}",
                f"Demo data generated in this run: {', '.join(str(p) for p in state.generated)}",
            )
        )
    return lines


def _labelled_counts(
    choices: Mapping[str, tuple[str, ...]], counts: Mapping[str, int], lang: str
) -> str:
    """``"养老机构 12, 助餐点 40"``: counts by code, labelled in ``lang`` from a kinds.py table."""
    return ", ".join(f"{choices[c][0 if lang == 'zh' else 1]} {n}" for c, n in counts.items())


def summary_markdown(summary: dict[str, Any], *, lang: str = "zh") -> str:
    """The summary as a Markdown report in ``lang`` ('zh' or 'en')."""

    def t(zh: str, en: str) -> str:
        return zh if lang == "zh" else en

    lines = [
        f"# {summary['title']}",
        "",
        f"{t('生成时间', 'Generated')}: {summary['generated_at']}",
        "",
    ]
    lines += [f"## {t('图层', 'Layers')}", ""]
    lines += [
        f"| {t('图层', 'Layer')} | {t('类型', 'Kind')} | {t('记录数', 'Records')} | "
        f"{t('问题数', 'Problems')} | {t('演示情景', 'Demo scenario')} |",
        "|---|---|---:|---:|---|",
    ]
    for layer in summary["layers"]:
        scen = t("是", "yes") if layer["scenario"] else t("否", "no")
        lines.append(
            f"| {layer['title']} (`{layer['id']}`) | {get_kind(layer['kind']).label(lang)} | "
            f"{layer['count']:,} | {layer['problems']} | {scen} |"
        )
    pop = summary.get("population")
    if pop:
        lines += ["", f"## {t('人口', 'Population')}", ""]
        lines.append(
            t(
                f"常住人口 {pop['population']:,} 人，其中 60 岁及以上 {pop['aged_60_plus']:,} 人"
                f"（{pop['aged_share']:.2%}），{pop['households']:,} 户，{pop['demand_points']:,} "
                "个需求点。",
                f"{pop['population']:,} residents, {pop['aged_60_plus']:,} aged 60+ "
                f"({pop['aged_share']:.2%}), {pop['households']:,} households, "
                f"{pop['demand_points']:,} demand points.",
            )
        )
        lines += [
            "",
            f"| {t('区划', 'Unit')} | {t('需求点', 'Points')} | {t('常住人口', 'Population')} | "
            f"{t('60岁及以上', 'Aged 60+')} |",
            "|---|---:|---:|---:|",
        ]
        for row in pop["by_admin_unit"]:
            lines.append(
                f"| {row['name']} ({row['adcode']}) | {row['demand_points']:,} | "
                f"{row['population']:,} | {row['aged_60_plus']:,} |"
            )
    fac = summary.get("facilities") or {}
    if fac:
        lines += ["", f"## {t('设施', 'Facilities')}", ""]
        if "eldercare" in fac:
            e = fac["eldercare"]
            cats = _labelled_counts(ELDERCARE_CATEGORIES, e["by_category"], lang)
            lines.append(
                f"- {t('养老服务设施', 'Eldercare facilities')}: {e['count']} ({cats}); "
                f"{t('床位', 'beds')} {e['beds']:,}"
            )
        if "service_rooms" in fac:
            s = fac["service_rooms"]
            lines.append(
                f"- {t('社区综合服务设施', 'Community service rooms')}: {s['count']}; "
                f"{t('建筑面积', 'floor area')} {s['floor_area_m2']:,.0f} m²"
            )
        if "shelters" in fac:
            s = fac["shelters"]
            classes = _labelled_counts(SHELTER_CLASSES, s["by_class"], lang)
            lines.append(
                f"- {t('应急避难场所', 'Emergency shelters')}: {s['count']} ({classes}); "
                f"{t('有效避难面积', 'effective area')} {s['effective_area_m2']:,.0f} m², "
                f"{t('可容纳', 'capacity')} {s['capacity_persons']:,} {t('人', 'persons')}"
            )
        if "depots" in fac:
            d = fac["depots"]
            stock = ", ".join(
                f"{RELIEF_ITEMS[i][0 if lang == 'zh' else 1]} {n:,} {RELIEF_ITEMS[i][2]}"
                for i, n in d["stock"].items()
            )
            lines.append(f"- {t('救灾物资储备库', 'Relief depots')}: {d['count']} ({stock})")
        if "markers" in fac:
            mk = fac["markers"]
            status = _labelled_counts(MARKER_STATUS, mk["by_status"], lang)
            lines.append(f"- {t('界桩', 'Boundary markers')}: {mk['count']} ({status})")
    net = summary.get("network")
    if net:
        lines += ["", f"## {t('路网', 'Street network')}", ""]
        lines.append(
            t(
                f"步行路网（步速 {net['walk_speed_mps']} m/s）：{net['nodes']:,} 个节点，"
                f"{net['edges']:,} 条有向边，道路总长 {net['length_km']:,.1f} km，"
                f"坐标系 {net['crs']}。",
                f"Walking network ({net['walk_speed_mps']} m/s): {net['nodes']:,} nodes, "
                f"{net['edges']:,} directed edges, {net['length_km']:,.1f} km of streets, "
                f"CRS {net['crs']}.",
            )
        )
    lines += _coverage_markdown(summary.get("coverage"), lang)
    lines += _shelters_markdown(summary.get("shelters"), lang)
    lines += _relief_markdown(summary.get("relief"), lang)
    lines += _boundaries_markdown(summary.get("boundaries"), lang)
    lines += ["", f"## {t('耗时', 'Timing')}", ""]
    step_labels = summary.get("step_labels", {})
    for name, seconds in summary["timing_s"].items():
        lines.append(f"- {step_labels.get(name, name)}: {seconds:.2f} s")
    lines += ["", f"## {t('数据来源', 'Data provenance')}", ""]
    lines += [f"- {line}" for line in summary["provenance"]]
    lines += ["", f"## {t('输出文件', 'Outputs')}", ""]
    lines += [f"- {k}: `{v}`" for k, v in summary["outputs"].items()]
    return "\n".join(lines) + "\n"


def _coverage_markdown(cov: dict[str, Any] | None, lang: str) -> list[str]:
    """The coverage section of the summary report (empty when coverage did not run)."""
    if not cov:
        return []
    from geo_minzheng.kinds import ELDERCARE_CATEGORIES, KINDS

    def t(zh: str, en: str) -> str:
        return zh if lang == "zh" else en

    def kind_label(kind: str) -> str:
        if kind in ELDERCARE_CATEGORIES:
            return ELDERCARE_CATEGORIES[kind][0 if lang == "zh" else 1]
        return KINDS[kind].label(lang) if kind in KINDS else kind

    lines = ["", f"## {t('养老服务圈覆盖（步行）', 'Eldercare service circles (walking)')}", ""]
    lines.append(
        t(
            f"步速 {cov['walk_speed_mps']} m/s，时间阈值 "
            f"{'/'.join(f'{b:g}' for b in cov['breaks_min'])} 分钟；缺口区域 {cov['gaps']} 处。",
            f"Walking speed {cov['walk_speed_mps']} m/s, breaks "
            f"{'/'.join(f'{b:g}' for b in cov['breaks_min'])} min; {cov['gaps']} gap areas.",
        )
    )
    lines += [
        "",
        f"| {t('设施类型', 'Facility kind')} | {t('分钟', 'Minutes')} | "
        f"{t('覆盖人口占比', 'Population covered')} | {t('覆盖老年人占比', 'Aged 60+ covered')} |",
        "|---|---:|---:|---:|",
    ]
    for row in cov["totals"]:
        lines.append(
            f"| {kind_label(row['kind'])} | {row['break_min']:g} | "
            f"{row['share_population']:.1%} | {row['share_aged_60_plus']:.1%} |"
        )
    siting = cov.get("siting")
    if siting:
        lines += [
            "",
            t(
                f"新增 {siting['k']} 处{kind_label(siting['kind'])}（候选：社区综合服务设施）"
                f"可新覆盖 60 岁及以上 {siting['newly_covered_aged_60_plus']:,.0f} 人："
                f"{', '.join(siting['chosen'])}。",
                f"{siting['k']} new {kind_label(siting['kind'])} sites (candidates: community "
                f"service rooms) newly cover {siting['newly_covered_aged_60_plus']:,.0f} "
                f"aged 60+: {', '.join(siting['chosen'])}.",
            ),
        ]
    return lines


def _relief_markdown(rf: dict[str, Any] | None, lang: str) -> list[str]:
    """The relief section of the summary report (empty when the relief step did not run)."""
    if not rf:
        return []

    def t(zh: str, en: str) -> str:
        return zh if lang == "zh" else en

    p = rf["plan"]
    lines = ["", f"## {t('救灾物资调运', 'Relief-material dispatch')}", ""]
    lines.append(
        t(
            f"{rf['days']:g} 天需求 {p['need_t']:,.1f} 吨，可调用库存分配 "
            f"{p['allocated_t']:,.1f} 吨，车辆装运 {p['carried_t']:,.1f} 吨；"
            f"{p['vehicles_used']} 辆车共 {p['trips']} 趟、{p['distance_km']:,.1f} 公里；"
            f"{p['shelters_unreachable']} 处有人员的避难场所无法送达。",
            f"Needs for {rf['days']:g} days: {p['need_t']:,.1f} t; {p['allocated_t']:,.1f} t "
            f"allocated from stock, {p['carried_t']:,.1f} t carried; {p['vehicles_used']} "
            f"vehicles, {p['trips']} trips, {p['distance_km']:,.1f} km; "
            f"{p['shelters_unreachable']} occupied shelters cannot be reached.",
        )
    )
    change = rf.get("changes")
    if change:
        lines += [
            "",
            t(
                f"封路与淹没区（演示情景）：新增 {change['shelters_newly_unreachable']} 处避难场所"
                f"无法送达，{change['shelters_later']} 处送达推迟（最多 "
                f"{change['max_delay_min']:.0f} 分钟），"
                f"{change['vehicles_changed']} 辆车路线改变。",
                f"Closed roads and flooded area (demo scenario): "
                f"{change['shelters_newly_unreachable']} more shelters cannot be reached, "
                f"{change['shelters_later']} are reached later (up to "
                f"{change['max_delay_min']:.0f} min), {change['vehicles_changed']} vehicles "
                "change route.",
            ),
        ]
    return lines


def _shelters_markdown(sh: dict[str, Any] | None, lang: str) -> list[str]:
    """The shelter section of the summary report (empty when the shelter step did not run)."""
    if not sh:
        return []

    def t(zh: str, en: str) -> str:
        return zh if lang == "zh" else en

    lines = ["", f"## {t('应急避难场所责任区', 'Shelter catchments')}", ""]
    rows = [
        ("before_flood", t("洪水前", "Before the flood")),
        ("after_flood", t("洪水后", "After")),
    ]
    rows = [(key, label) for key, label in rows if key in sh]
    if len(rows) == 1:
        rows = [(rows[0][0], t("当前", "Now"))]
    lines += [
        f"| {t('情景', 'Scenario')} | {t('常住人口', 'Residents')} | {t('已安置', 'Sheltered')} | "
        f"{t('无处安置', 'Without a place')} | {t('超出服务半径', 'Beyond every radius')} | "
        f"{t('启用避难场所', 'Shelters in use')} |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, label in rows:
        r = sh[key]
        lines.append(
            f"| {label} | {r['population']:,} | {r['sheltered_persons']:,} | "
            f"{r['unsheltered_persons']:,} | {r['beyond_radius_persons']:,} | "
            f"{r['shelters_in_use']} |"
        )
    change = sh.get("flood_changes")
    if change:
        lines += [
            "",
            t(
                f"演示洪水情景（伊通河沿岸，演示情景）：{change['moved_persons']:,} 人"
                f"改去其他避难场所，{change['lost_persons']:,} 人失去安置（其中60岁及以上 "
                f"{change['lost_aged_60_plus']:,} 人），"
                f"{change['shelters_disabled']} 处避难场所停用。",
                f"Demo flood (Yitong river banks, demo scenario): {change['moved_persons']:,} "
                f"residents change shelter, {change['lost_persons']:,} lose their place "
                f"({change['lost_aged_60_plus']:,} aged 60+), {change['shelters_disabled']} "
                "shelters disabled.",
            ),
        ]
    share = sh.get("fixed_share")
    if share:
        met = t("达标", "met") if share["met"] else t("未达标", "not met")
        lines += [
            "",
            t(
                f"固定避难场所可容纳全区常住人口的 {share['fixed_share']:.1%}"
                f"（标准不低于 {share['target_share']:.0%}，{met}）。",
                f"Fixed shelters hold {share['fixed_share']:.1%} of the residents (standard: at "
                f"least {share['target_share']:.0%}, {met}).",
            ),
        ]
    return lines


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def run_demo(
    out_dir: str | Path = "out",
    *,
    lang: str = "zh",
    catalog_path: str | Path | None = None,
    steps: list[DemoStep] | None = None,
    progress: Callable[[str], None] | None = None,
    network: workflows.NetworkParams | None = None,
    coverage: workflows.CoverageParams | None = None,
    shelters: workflows.ShelterParams | None = None,
    hazards: gpd.GeoDataFrame | None = None,
    closed_roads: gpd.GeoDataFrame | None = None,
    demo_flood: bool = True,
) -> DemoState:
    """Run the demo steps and write map.html, summary.json and summary.md into ``out_dir``.

    Parameters
    ----------
    out_dir
        Output folder (created).
    lang
        'zh' (default) or 'en': language of the map, the summary and progress messages.
    catalog_path
        The layer catalog; default ``$GEO_MINZHENG_CATALOG`` or the repository's demo catalog.
    steps
        The steps to run; default :data:`DEMO_STEPS`.
    progress
        Called with one line per finished step (the CLI prints them).
    network
        How the street network is built; default elderly walking (params).
    coverage
        Parameters of the coverage step; default :data:`DEMO_COVERAGE`.
    shelters, hazards, closed_roads, demo_flood
        Parameters of the shelter step, its hazard polygons and closed roads; without either,
        ``demo_flood`` runs it under the demo scenario's flood (``scenario.demo_flood``).

    Returns
    -------
    DemoState
        With layers, network, outputs, summary and per-step timings.
    """
    if lang not in ("zh", "en"):
        msg = f"lang must be 'zh' or 'en', got {lang!r}"
        raise ValueError(msg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = DemoState(
        out_dir=out,
        lang=lang,
        catalog_path=Path(catalog_path) if catalog_path is not None else default_catalog(),
        network=network or workflows.NetworkParams(),
        coverage=coverage or DEMO_COVERAGE,
        shelters=shelters or workflows.ShelterParams(),
        hazards=hazards,
        closed_roads=closed_roads,
        demo_flood=demo_flood,
    )
    state.summary.update(
        {
            "title": state.t("长春市民政空间数据演示", "Changchun civil-affairs demo"),
            "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "lang": lang,
            "catalog": str(state.catalog_path),
            "scenario_seed": scenario.DEFAULT_SEED,
        }
    )
    start = time.perf_counter()
    labels = {"total": state.t("合计", "Total")}
    for step in steps if steps is not None else DEMO_STEPS:
        labels[step.name] = step.label(lang)
        t0 = time.perf_counter()
        step.run(state)
        state.timings_s[step.name] = round(time.perf_counter() - t0, 3)
        if progress is not None:
            progress(f"[{state.timings_s[step.name]:6.2f} s] {step.label(lang)}")
    state.timings_s["total"] = round(time.perf_counter() - start, 3)
    state.summary["timing_s"] = dict(state.timings_s)
    state.summary["step_labels"] = labels
    _write_summary(state)
    return state


def _write_summary(state: DemoState) -> None:
    state.summary.setdefault("outputs", {k: str(v) for k, v in state.outputs.items()})
    json_path = state.outputs.get("summary_json", state.out_dir / "summary.json")
    md_path = state.outputs.get("summary_md", state.out_dir / "summary.md")
    state.summary.setdefault("layers", [])
    state.summary.setdefault("provenance", [])
    json_path.write_text(
        json.dumps(state.summary, ensure_ascii=False, indent=2, default=str), encoding="utf-8"
    )
    md_path.write_text(summary_markdown(state.summary, lang=state.lang), encoding="utf-8")


def _boundaries_markdown(bd: dict[str, Any] | None, lang: str) -> list[str]:
    """The boundary section of the summary report (empty when the boundary step did not run)."""
    from geo_minzheng import boundaries

    return boundaries.summary_markdown(bd, lang=lang)
