"""The demo's map steps: the coverage map and the map of every layer (inserted by the CLI).

They draw what the core steps left in the :class:`geo_minzheng.demo.DemoState`; they run no
analysis (the coverage step's :class:`geo_minzheng.workflows.CoverageRun` gives the service
areas).
"""

from __future__ import annotations

import numpy as np

from geo_minzheng.demo import DemoState, DemoStep
from maps import coverage_map, render, shelters_map

#: Layers the demo map opens on: the streets and what stands along them.
_FOCUS_KINDS = ("road", "demand", "eldercare_center", "community_service_room", "shelter")


def step_coverage_map(state: DemoState) -> None:
    """The coverage map: service areas per break, demand by time, gaps, new sites, unit table."""
    run = state.results.get("coverage")
    if run is None:
        return
    kind = run.shown_kind()
    m = coverage_map.coverage_map(
        run.result,
        run.facilities,
        run.service_areas(kind),
        kind=kind,
        gdf_units=run.gdf_units,
        sites=run.sites.sites if run.sites is not None else None,
        lang=state.lang,
    )
    state.outputs["coverage_map"] = render.save_html(
        m, state.out_dir / "coverage_map.html", offline=True
    )


def step_shelters_map(state: DemoState) -> None:
    """The shelter map: responsibility areas, shelters by load, the demo flood's effects."""
    run = state.results.get("shelters")
    if run is None:
        return
    m = shelters_map.shelters_map(run, lang=state.lang)
    state.outputs["shelters_map"] = render.save_html(
        m, state.out_dir / "shelters_map.html", offline=True
    )


def step_map(state: DemoState) -> None:
    """Draw every layer on one offline HTML map (zh-CN labels by default)."""
    styles = {}
    if state.catalog is not None:
        styles = {lid: e.style for lid, e in state.catalog.entries.items() if lid in state.layers}
    title = state.t("长春市民政服务设施（演示）", "Changchun civil-affairs facilities (demo)")
    m = render.layers_map(state.layers, styles=styles, lang=state.lang, title=title)
    # open on the streets, not on the whole districts (which reach far into the countryside)
    focus = [g for g in state.layers.values() if g.attrs.get("kind") in _FOCUS_KINDS and len(g)]
    if focus:
        bounds = np.array([g.to_crs("EPSG:4326").total_bounds for g in focus])
        minx, miny = bounds[:, 0].min(), bounds[:, 1].min()
        maxx, maxy = bounds[:, 2].max(), bounds[:, 3].max()
        m.fit_bounds([[float(miny), float(minx)], [float(maxy), float(maxx)]])
    state.outputs["map"] = render.save_html(m, state.out_dir / "map.html", offline=True)


#: Map steps in the order the CLI runs them (after the analyses, before the summary).
MAP_STEPS: list[DemoStep] = [
    DemoStep("coverage_map", "绘制覆盖分析地图", "Render the coverage map", step_coverage_map),
    DemoStep("shelters_map", "绘制避难场所地图", "Render the shelter map", step_shelters_map),
    DemoStep("map", "绘制网页地图", "Render the web map", step_map),
]
