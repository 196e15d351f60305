"""The demo's map steps: the coverage map and the map of every layer (inserted by the CLI).

They draw what the core steps left in the :class:`geo_minzheng.demo.DemoState`; they run no
analysis (the coverage step's :class:`geo_minzheng.workflows.CoverageRun` gives the service
areas).
"""

from __future__ import annotations

import numpy as np

from geo_minzheng.demo import DemoState, DemoStep
from maps import boundaries_map, coverage_map, relief_map, render, shelters_map

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


def step_relief_map(state: DemoState) -> None:
    """The relief map: depots, shelters by need, flows, tours per vehicle, the demo flood."""
    run = state.results.get("relief")
    if run is None:
        return
    m = relief_map.relief_map(run, lang=state.lang)
    state.outputs["relief_map"] = render.save_html(
        m, state.out_dir / "relief_map.html", offline=True
    )


def boundaries_map_step(*, pdf: bool = True, paper: str = "A4") -> DemoStep:
    """The boundary outputs: the staff's map, and the 两图 (the route line's management diagram,
    or the longest line's, and the network diagram) as HTML, SVG and, with ``pdf`` and a
    Chromium to print with, PDF on ``paper`` (A4 or A3)."""

    def run(state: DemoState) -> None:
        step_boundaries_map(state, pdf=pdf, paper=paper)

    return DemoStep("boundaries_map", "绘制行政区域界线图（两图）", "Render the boundary maps", run)


def step_boundaries_map(state: DemoState, *, pdf: bool = True, paper: str = "A4") -> None:
    """Write boundaries_map.html, the management and network diagrams (HTML, SVG, PDF)."""
    run = state.results.get("boundaries")
    if run is None:
        return
    out = state.out_dir
    lines = run.result.lines
    if not len(lines):
        return
    line_id = (
        run.route.line_id
        if run.route is not None
        else str(lines.sort_values("length_m", ascending=False)["line_id"].iloc[0])
    )
    diagram = out / f"boundaries_diagram_{line_id}.html"
    diagram.write_text(
        boundaries_map.management_diagram_html(run, line_id, lang=state.lang, paper=paper),
        encoding="utf-8",
    )
    state.outputs["boundaries_diagram"] = diagram
    network = out / "boundaries_network.html"
    network.write_text(
        boundaries_map.network_diagram_html(run, lang=state.lang, paper=paper), encoding="utf-8"
    )
    (out / "boundaries_network.svg").write_text(
        boundaries_map.network_diagram_svg(run, lang=state.lang), encoding="utf-8"
    )
    state.outputs["boundaries_network"] = network
    state.outputs["boundaries_network_svg"] = out / "boundaries_network.svg"
    if pdf and boundaries_map.find_chromium() is not None:
        for key, page in (("boundaries_diagram_pdf", diagram), ("boundaries_network_pdf", network)):
            try:
                state.outputs[key] = boundaries_map.print_pdf(page, page.with_suffix(".pdf"))
            except (RuntimeError, OSError) as exc:  # printing is a convenience, not the result
                state.summary.setdefault("warnings", []).append(f"{page.name}: {exc}")
    links = {
        state.t("界线管理责任表（XLSX）", "Responsibility table (XLSX)"): "boundaries.xlsx",
        state.t("责任表（CSV）", "Responsibility table (CSV)"): "boundaries_responsibility.csv",
        state.t("界线管理示意图", "Management diagram"): diagram.name,
        state.t("界线管理网络图", "Network diagram"): network.name,
    }
    m = boundaries_map.boundaries_map(run, lang=state.lang, links=links)
    state.outputs["boundaries_map"] = render.save_html(m, out / "boundaries_map.html", offline=True)


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
    DemoStep("relief_map", "绘制救灾物资调运地图", "Render the relief map", step_relief_map),
    boundaries_map_step(),
    DemoStep("map", "绘制网页地图", "Render the web map", step_map),
]
