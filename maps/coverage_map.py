"""The 15-minute service-circle map: isochrones per break, demand by time, gaps, sites, table."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import folium
import geopandas as gpd
import numpy as np
import pandas as pd

from geo_minzheng.coverage import CoverageResult
from geo_minzheng.kinds import ELDERCARE_CATEGORIES
from maps import render

#: Isochrone bands, nearest first (ColorBrewer YlGn, dark = close).
_BAND_COLOURS = ("#238443", "#78c679", "#c2e699", "#ffffcc")
#: Demand shaded by time to the nearest facility: within each break, then beyond the last one.
_TIME_COLOURS = ("#1a9850", "#91cf60", "#fee08b", "#d73027")
_GAP_STYLE = {"color": "#54278f", "fillColor": "#9e9ac8", "fillOpacity": 0.3, "weight": 1.5}
_SITE_STYLE = {"color": "#000000", "fillColor": "#ffd92f", "radius": 9, "weight": 2}

_TEXT = {
    "title": ("15分钟养老服务圈覆盖分析", "15-minute eldercare service circle coverage"),
    "band": ("{b}分钟步行服务圈", "{b}-minute walk service area"),
    "demand_in": ("人口点：{lo}–{hi}分钟可达", "Demand: {lo}–{hi} min"),
    "demand_out": ("人口点：超过{b}分钟", "Demand: beyond {b} min"),
    "gaps": ("服务空白区（{b}分钟外）", "Gap areas (beyond {b} min)"),
    "sites": ("建议新增选址", "Proposed sites"),
    "facilities": ("现有设施：{k}", "Existing facilities: {k}"),
    "table": ("各行政区覆盖情况：{k}", "Coverage by admin unit: {k}"),
    "unit": ("行政区", "Admin unit"),
    "population": ("常住人口", "Population"),
    "aged": ("60岁及以上人口", "Aged 60+"),
    "share": ("{b}分钟老年人覆盖率", "Aged 60+ within {b} min"),
    "rank": ("排名", "Rank"),
    "n_points": ("人口点数", "Demand points"),
    "area": ("面积（公顷）", "Area (ha)"),
    "time": ("到最近设施步行时间（分钟）", "Walk to nearest (min)"),
    "nearest": ("最近设施", "Nearest facility"),
    "new_aged": ("新增覆盖老年人", "Newly covered aged 60+"),
    "name": ("名称", "Name"),
    "total": ("合计", "Total"),
    "speed": ("老年人步行速度 {v} 米/秒", "elderly walking speed {v} m/s"),
}


def _t(key: str, lang: str, **kw: Any) -> str:
    zh, en = _TEXT[key]
    return (zh if lang == "zh" else en).format(**kw)


def kind_label(kind: str, lang: str = "zh") -> str:
    """User-facing label of a coverage kind (eldercare category or layer kind)."""
    if kind in ELDERCARE_CATEGORIES:
        zh, en = ELDERCARE_CATEGORIES[kind]
        return zh if lang == "zh" else en
    if kind == "community_service_room":
        return "社区综合服务设施" if lang == "zh" else "Community service room"
    return kind


def _layer_kind(gdf: gpd.GeoDataFrame) -> str | None:
    if gdf.attrs.get("kind"):
        return str(gdf.attrs["kind"])
    return "eldercare_center" if "category" in gdf.columns else None


def _fmt_share(v: float) -> str:
    return "—" if not np.isfinite(v) else f"{100 * v:.1f}%"


def unit_table_html(result: CoverageResult, kind: str, *, lang: str = "zh") -> str:
    """The per-unit coverage table of one kind as an HTML table (total first)."""
    t = result.table[result.table["kind"] == kind]
    breaks = sorted(t["break_min"].unique())
    head = [_t("unit", lang), _t("population", lang), _t("aged", lang)]
    head += [_t("share", lang, b=f"{b:g}") for b in breaks]
    rows = []
    notes = result.unit_notes(lang=lang)
    for unit, part in t.groupby("unit", sort=False):
        part = part.set_index("break_min")
        first = part.iloc[0]
        name = _t("total", lang) if unit == "total" else str(first["unit_name"])
        cells = [name, f"{int(first['population']):,}", f"{int(first['aged_60_plus']):,}"]
        cells += [_fmt_share(float(part.loc[b, "share_aged_60_plus"])) for b in breaks]
        note = notes.get(str(unit))  # almost no road data: say so instead of the shares
        shown = cells[:3] if note else cells
        rows.append(
            f'<tr data-unit="{html.escape(str(unit))}">'
            + "".join(f"<td>{html.escape(c)}</td>" for c in shown)
            + (f'<td class="gm-unit-note" colspan="{len(breaks)}">{html.escape(note)}</td>'
               if note else "")
            + "</tr>"
        )  # fmt: skip
    caption = html.escape(_t("table", lang, k=kind_label(kind, lang)))
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return (
        f'<table class="gm-coverage-table"><caption>{caption}</caption>'
        f"<thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _panel(m: folium.Map, table_html: str, note: str) -> None:
    panel = f"""
<div id="gm-coverage-panel" style="position:absolute;left:10px;bottom:30px;z-index:1000;
 background:rgba(255,255,255,0.95);padding:6px 8px;border-radius:4px;max-height:45%;
 overflow:auto;font:12px/1.4 sans-serif;box-shadow:0 1px 5px rgba(0,0,0,0.4);">
<style>#gm-coverage-panel td,#gm-coverage-panel th{{padding:1px 6px;border-bottom:1px solid #ddd;
 text-align:right}}#gm-coverage-panel td:first-child{{text-align:left}}
 #gm-coverage-panel caption{{font-weight:bold;text-align:left}}</style>
{table_html}<div class="gm-coverage-note" style="color:#555">{html.escape(note)}</div></div>"""
    render.add_html(m, panel)


def coverage_map(
    result: CoverageResult,
    facilities: Mapping[str, gpd.GeoDataFrame],
    areas: gpd.GeoDataFrame,
    *,
    kind: str | None = None,
    gdf_units: gpd.GeoDataFrame | None = None,
    sites: gpd.GeoDataFrame | None = None,
    lang: str = "zh",
    basemap: str | Sequence[str] = "osm",
    title: str | None = None,
) -> folium.Map:
    """A folium map of one kind's coverage: service areas per break, demand, gaps, sites, table.

    Parameters
    ----------
    result
        From :func:`geo_minzheng.coverage.analyze`.
    facilities
        The same facility layers by kind as given to ``analyze``.
    areas
        The kind's service bands, one per break (``break_min``, WGS84), from
        :func:`geo_minzheng.workflows.service_areas` or ``CoverageRun.service_areas``.
    kind
        Which kind to draw; default the first one of the result.
    gdf_units
        Admin unit polygons to outline (optional).
    sites
        Proposed sites, e.g. ``siting.maximal_covering(...).sites``.
    lang
        'zh' (default) or 'en'.
    """
    kind = kind or result.kinds[0]
    if kind not in facilities:
        msg = f"kind '{kind}' not in facilities; have: {list(facilities)}"
        raise ValueError(msg)
    breaks = [float(b) for b in result.provenance["breaks_min"]]
    m = render.new_map(
        lang=lang, basemap=basemap, title=title or _t("title", lang) + f"：{kind_label(kind, lang)}"
    )
    legend: list[render.LegendItem] = []
    if gdf_units is not None:
        render.add_layer(
            m,
            gdf_units,
            kind="admin_unit",
            title=gdf_units.attrs.get("title", "行政区划") if lang == "zh" else "Admin units",
            lang=lang,
        )
    fac = facilities[kind]
    for j in range(len(areas) - 1, -1, -1):  # outer bands first so inner ones sit on top
        band = areas.iloc[[j]][["break_min", "geometry"]]
        name = _t("band", lang, b=f"{float(band['break_min'].iloc[0]):g}")
        colour = _BAND_COLOURS[min(j, len(_BAND_COLOURS) - 1)]
        render.add_layer(
            m,
            band,
            kind=None,
            title=name,
            lang=lang,
            legend=False,
            style={"color": colour, "fillColor": colour, "fillOpacity": 0.35, "weight": 0.5},
        )
        legend.append(render.LegendItem(name, colour, "polygon", colour, 0.5))
    gaps = result.gaps[result.gaps["kind"] == kind]
    if len(gaps):
        shown = gpd.GeoDataFrame(
            {
                _t("rank", lang): gaps["rank"].to_numpy(),
                _t("population", lang): gaps["population"].to_numpy(),
                _t("aged", lang): gaps["aged_60_plus"].to_numpy(),
                _t("n_points", lang): gaps["n_points"].to_numpy(),
                _t("area", lang): (gaps["area_m2"].to_numpy() / 1e4).round(1),
            },
            geometry=gaps.geometry.to_numpy(),
            crs=gaps.crs,
        )
        name = _t("gaps", lang, b=f"{gaps['break_min'].iloc[0]:g}")
        render.add_layer(m, shown, kind=None, title=name, lang=lang, style=_GAP_STYLE)
    _demand_layers(m, result, kind, breaks, lang, legend)
    if len(fac):
        render.add_layer(
            m,
            fac,
            kind=_layer_kind(fac),
            title=_t("facilities", lang, k=kind_label(kind, lang)),
            lang=lang,
        )
    if sites is not None and len(sites):
        shown = sites[["id", "geometry"]].copy()
        if "name" in sites.columns:
            shown[_t("name", lang)] = sites["name"].to_numpy()
        if "new_aged_60_plus" in sites.columns:
            shown[_t("new_aged", lang)] = sites["new_aged_60_plus"].to_numpy()
        render.add_layer(m, shown, kind=None, title=_t("sites", lang), lang=lang, style=_SITE_STYLE)
        if _scenario(sites):
            render.mark_scenario(m)
    render.add_legend(m, legend, lang=lang)
    speed = result.provenance.get("walk_speed_mps")
    note = _t("speed", lang, v=speed) if speed else ""
    _panel(m, unit_table_html(result, kind, lang=lang), note)
    if _scenario(result.demand) or any(_scenario(g) for g in facilities.values()):
        render.mark_scenario(m)
    bounds = result.demand.total_bounds
    m.fit_bounds([[bounds[1], bounds[0]], [bounds[3], bounds[2]]])
    return m


def _scenario(gdf: gpd.GeoDataFrame) -> bool:
    from geo_minzheng.kinds import DEMO_SCENARIO_LABEL

    return "source" in gdf.columns and bool((gdf["source"] == DEMO_SCENARIO_LABEL).any())


def _demand_layers(
    m: folium.Map,
    result: CoverageResult,
    kind: str,
    breaks: list[float],
    lang: str,
    legend: list[render.LegendItem],
) -> None:
    """Demand points in one layer per time class, coloured by time to the nearest facility."""
    demand = result.demand
    t = demand[f"time_min_{kind}"].to_numpy(dtype=float)
    edges = [0.0, *breaks]
    cls = np.searchsorted(np.asarray(breaks), t, side="left")  # t <= b -> class of b
    shown = gpd.GeoDataFrame(
        {
            "id": demand["id"].to_numpy(),
            _t("population", lang): demand["population"].to_numpy(),
            _t("aged", lang): demand["aged_60_plus"].to_numpy(),
            _t("time", lang): np.where(np.isfinite(t), np.round(t, 1), np.nan),
            _t("nearest", lang): demand[f"nearest_{kind}"].to_numpy(),
        },
        geometry=demand.geometry.to_numpy(),
        crs=demand.crs,
    )
    for c in range(len(breaks) + 1):
        part = shown[cls == c]
        if c < len(breaks):
            name = _t("demand_in", lang, lo=f"{edges[c]:g}", hi=f"{edges[c + 1]:g}")
        else:
            name = _t("demand_out", lang, b=f"{breaks[-1]:g}")
        colour = (
            _TIME_COLOURS[min(c, len(_TIME_COLOURS) - 2)]
            if c < len(breaks)
            else (_TIME_COLOURS[-1])
        )
        legend.append(render.LegendItem(name, colour, "circle", colour))
        if len(part):
            render.add_layer(
                m,
                part,
                kind=None,
                title=name,
                lang=lang,
                legend=False,
                style={
                    "color": colour,
                    "fillColor": colour,
                    "radius": 4,
                    "fillOpacity": 0.85,
                    "weight": 0.5,
                },
            )


def demand_time_classes(result: CoverageResult, kind: str) -> pd.Series:
    """Time class of each demand point (0 = within the first break, len(breaks) = beyond)."""
    breaks = np.asarray(result.provenance["breaks_min"], dtype=float)
    t = result.demand[f"time_min_{kind}"].to_numpy(dtype=float)
    return pd.Series(np.searchsorted(breaks, t, side="left"), index=result.demand["id"])
