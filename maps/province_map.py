"""Province coverage maps: every county coloured by its coverage share, and a county's map.

The province map draws each county (the partition units of a province run) in the class of its
aged-60+ share within one break of one facility kind, with a popup and a table row linking to
the county's own map; the county map draws the county's demand points by walking time to the
nearest facility, the facilities of that kind and the county's boundary. Both only draw what a
run computed (:class:`geo_minzheng.province.ProvinceRun`, or its saved GeoPackage).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

import folium
import geopandas as gpd
import numpy as np
import pandas as pd

from maps import render
from maps.coverage_map import kind_label

#: Share classes (upper bounds) and their colours, low coverage red to high green (RdYlGn).
SHARE_BOUNDS = (0.2, 0.4, 0.6, 0.8)
SHARE_COLOURS = ("#d73027", "#fc8d59", "#fee08b", "#91cf60", "#1a9850")
NO_DATA_COLOUR = "#bdbdbd"
#: Demand by walking time: within each break, then beyond the last (as the coverage map's).
TIME_COLOURS = ("#1a9850", "#91cf60", "#fee08b", "#d73027")

_TEXT = {
    "title": (
        "全省15分钟养老服务圈覆盖：{k}（{b}分钟）",
        "Province eldercare coverage: {k} ({b} min)",
    ),
    "county_title": ("{n} 养老服务圈覆盖：{k}", "{n} eldercare coverage: {k}"),
    "class": ("60岁及以上人口覆盖率 {lo}–{hi}", "Aged 60+ covered {lo}–{hi}"),
    "no_data": ("无数据 / 路网数据不足", "No data / too few roads"),
    "counties": ("区县覆盖率", "Coverage per county"),
    "city": ("城市", "City"),
    "county": ("区县", "County"),
    "population": ("常住人口", "Population"),
    "aged": ("60岁及以上人口", "Aged 60+"),
    "share": ("{b}分钟老年人覆盖率", "Aged 60+ within {b} min"),
    "share_pop": ("{b}分钟人口覆盖率", "Population within {b} min"),
    "open": ("打开本区县地图", "Open the county's map"),
    "table": (
        "各区县覆盖率（由低到高）：{k}，{b}分钟",
        "Coverage per county (lowest first): {k}, {b} min",
    ),
    "demand_in": ("人口点：{lo}–{hi}分钟可达", "Demand: {lo}–{hi} min"),
    "demand_out": ("人口点：超过{b}分钟", "Demand: beyond {b} min"),
    "time": ("到最近设施步行时间（分钟）", "Walk to nearest (min)"),
    "nearest": ("最近设施", "Nearest facility"),
    "facilities": ("设施：{k}", "Facilities: {k}"),
    "boundary": ("区县边界", "County boundary"),
    "note": (
        "分区计算（Dask），结果与单机逐市计算完全一致；运行编号 {r}",
        "Partitioned on Dask; equal to the single-process city runs; run {r}",
    ),
}


def _t(key: str, lang: str, **kw: Any) -> str:
    zh, en = _TEXT[key]
    return (zh if lang == "zh" else en).format(**kw)


def share_class(share: float) -> int:
    """The class of a share (0 = lowest), -1 for no value."""
    if share is None or not np.isfinite(share):
        return -1
    return int(np.searchsorted(np.asarray(SHARE_BOUNDS), float(share), side="right"))


def _pct(value: float) -> str:
    return "—" if value is None or not np.isfinite(value) else f"{value * 100:.1f}%"


def _class_label(c: int, lang: str) -> str:
    edges = (0.0, *SHARE_BOUNDS, 1.0)
    return _t("class", lang, lo=f"{edges[c] * 100:.0f}%", hi=f"{edges[c + 1] * 100:.0f}%")


def units_table_html(
    gdf_units: pd.DataFrame,
    *,
    kind: str,
    break_min: float,
    lang: str = "zh",
    drill: Callable[[str, str], str] | None = None,
) -> str:
    """Per-county rows (lowest share first) with a link to each county's map."""
    rows = []
    order = gdf_units.sort_values(["share_aged_60_plus", "city", "adcode"], na_position="first")
    for r in order.itertuples():
        name = html.escape(str(r.name))
        if drill is not None:
            href = html.escape(drill(str(r.city), str(r.adcode)))
            name = f'<a class="gm-drill" href="{href}">{name}</a>'
        rows.append(
            f'<tr data-unit="{html.escape(str(r.adcode))}"><td>{html.escape(str(r.city_name))}</td>'
            f"<td>{name}</td><td>{int(r.population):,}</td><td>{int(r.aged_60_plus):,}</td>"
            f"<td>{_pct(r.share_aged_60_plus)}</td></tr>"
        )
    head = [_t("city", lang), _t("county", lang), _t("population", lang), _t("aged", lang)]
    head.append(_t("share", lang, b=f"{break_min:g}"))
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    caption = html.escape(_t("table", lang, k=kind_label(kind, lang), b=f"{break_min:g}"))
    return (
        f'<table class="gm-province-table"><caption>{caption}</caption>'
        f"<thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _panel(m: folium.Map, table_html: str, note: str, links: str) -> None:
    panel = f"""
<div id="gm-province-panel" style="position:absolute;left:10px;bottom:30px;z-index:1000;
 background:rgba(255,255,255,0.95);padding:6px 8px;border-radius:4px;max-height:45%;
 overflow:auto;font:12px/1.4 sans-serif;box-shadow:0 1px 5px rgba(0,0,0,0.4);">
<style>#gm-province-panel td,#gm-province-panel th{{padding:1px 6px;border-bottom:1px solid #ddd;
 text-align:right}}#gm-province-panel td:nth-child(-n+2){{text-align:left}}
 #gm-province-panel caption{{font-weight:bold;text-align:left}}</style>
{table_html}<div class="gm-province-note" style="color:#555">{html.escape(note)}</div>
<div class="gm-downloads">{links}</div></div>"""
    render.add_html(m, panel)


def province_map(
    gdf_units: gpd.GeoDataFrame,
    *,
    kind: str,
    break_min: float,
    lang: str = "zh",
    basemap: str | Sequence[Any] = "osm",
    title: str | None = None,
    drill: Callable[[str, str], str] | None = None,
    note: str = "",
    downloads: str = "",
    scenario: bool = True,
) -> folium.Map:
    """Every county in the class of its aged-60+ share within ``break_min`` of ``kind``.

    Parameters
    ----------
    gdf_units
        County polygons (WGS84) with city, city_name, adcode, name, population, aged_60_plus,
        share_aged_60_plus and share_population for the kind and break shown.
    drill
        ``drill(city, adcode)`` gives the link of a county's own map (popup and table).
    note, downloads
        A line under the table (how it was computed) and download links (HTML).
    scenario
        Mark the map as demo scenario data (演示情景).
    """
    m = render.new_map(
        lang=lang,
        basemap=basemap,
        title=title or _t("title", lang, k=kind_label(kind, lang), b=f"{break_min:g}"),
    )
    data = gdf_units.to_crs(4326) if gdf_units.crs is not None else gdf_units
    classes = np.array([share_class(v) for v in data["share_aged_60_plus"]], dtype=int)
    share_label = _t("share", lang, b=f"{break_min:g}")
    features = []
    for r, c, geom in zip(data.itertuples(), classes, data.geometry.to_numpy(), strict=True):
        link = ""
        if drill is not None:
            href = html.escape(drill(str(r.city), str(r.adcode)))
            link = f'<a class="gm-drill" href="{href}">{html.escape(_t("open", lang))}</a>'
        features.append(
            {
                "type": "Feature",
                "geometry": geom.__geo_interface__,
                "properties": {
                    "colour": SHARE_COLOURS[c] if c >= 0 else NO_DATA_COLOUR,
                    "unit": str(r.adcode),
                    "name": html.escape(f"{r.city_name} {r.name}"),
                    "population": f"{int(r.population):,}",
                    "aged": f"{int(r.aged_60_plus):,}",
                    "share": _pct(r.share_aged_60_plus),
                    "share_pop": _pct(r.share_population),
                    "link": link,
                },
            }
        )
    fields = ["name", "population", "aged", "share", "share_pop", "link"]
    aliases = [
        _t("county", lang),
        _t("population", lang),
        _t("aged", lang),
        share_label,
        _t("share_pop", lang, b=f"{break_min:g}"),
        "",
    ]
    folium.GeoJson(
        {"type": "FeatureCollection", "features": features},
        name=_t("counties", lang),
        style_function=lambda f: {
            "color": "#444444",
            "weight": 1,
            "fillColor": f["properties"]["colour"],
            "fillOpacity": 0.7,
        },
        highlight_function=lambda f: {"weight": 3},
        tooltip=folium.GeoJsonTooltip(fields=["name", "share"], aliases=["", share_label]),
        popup=folium.GeoJsonPopup(fields=fields, aliases=aliases),
    ).add_to(m)
    legend = [
        render.LegendItem(_class_label(c, lang), SHARE_COLOURS[c], "polygon", SHARE_COLOURS[c], 0.7)
        for c in range(len(SHARE_COLOURS) - 1, -1, -1)
    ]
    legend.append(
        render.LegendItem(_t("no_data", lang), NO_DATA_COLOUR, "polygon", NO_DATA_COLOUR, 0.7)
    )
    render.add_legend(m, legend, lang=lang)
    table = units_table_html(data, kind=kind, break_min=break_min, lang=lang, drill=drill)
    _panel(m, table, note, downloads)
    if scenario:
        render.mark_scenario(m)
    if len(data):
        b = data.total_bounds
        m.fit_bounds([[b[1], b[0]], [b[3], b[2]]])
    return m


def county_map(
    points: gpd.GeoDataFrame,
    gdf_unit: gpd.GeoDataFrame,
    facilities: gpd.GeoDataFrame,
    *,
    kind: str,
    breaks_min: Sequence[float],
    lang: str = "zh",
    basemap: str | Sequence[Any] = "osm",
    title: str | None = None,
    scenario: bool = True,
) -> folium.Map:
    """One county: its demand points by walking time to the nearest ``kind`` facility, the
    facilities of that kind in reach, and the county's boundary.

    ``points`` (WGS84) carry id, population, aged_60_plus, ``time_min_<kind>`` and
    ``nearest_<kind>``; ``gdf_unit`` holds the county's polygon with its name.
    """
    name = str(gdf_unit["name"].iloc[0]) if len(gdf_unit) else ""
    m = render.new_map(
        lang=lang,
        basemap=basemap,
        title=title or _t("county_title", lang, n=name, k=kind_label(kind, lang)),
    )
    render.add_layer(
        m,
        gdf_unit[["adcode", "name", "geometry"]],
        kind="admin_unit",
        title=_t("boundary", lang),
        lang=lang,
        style={"fillOpacity": 0.05},
    )
    breaks = [float(b) for b in breaks_min]
    t = points[f"time_min_{kind}"].to_numpy(dtype=float)
    cls = np.searchsorted(np.asarray(breaks), t, side="left")
    shown = gpd.GeoDataFrame(
        {
            "id": points["id"].to_numpy(),
            _t("population", lang): points["population"].to_numpy(),
            _t("aged", lang): points["aged_60_plus"].to_numpy(),
            _t("time", lang): np.where(np.isfinite(t), np.round(t, 1), np.nan),
            _t("nearest", lang): points[f"nearest_{kind}"].to_numpy(),
        },
        geometry=points.geometry.to_numpy(),
        crs=points.crs,
    )
    edges = [0.0, *breaks]
    legend: list[render.LegendItem] = []
    for c in range(len(breaks) + 1):
        part = shown[cls == c]
        if c < len(breaks):
            label = _t("demand_in", lang, lo=f"{edges[c]:g}", hi=f"{edges[c + 1]:g}")
        else:
            label = _t("demand_out", lang, b=f"{breaks[-1]:g}")
        colour = TIME_COLOURS[min(c, len(TIME_COLOURS) - 1)] if c < len(breaks) else "#d73027"
        legend.append(render.LegendItem(label, colour, "circle", colour, 0.9))
        if len(part):
            render.add_layer(
                m,
                part,
                kind=None,
                title=label,
                lang=lang,
                legend=False,
                style={"color": colour, "fillColor": colour, "radius": 3, "weight": 0.5},
            )
    if len(facilities):
        render.add_layer(
            m,
            facilities,
            kind=facilities.attrs.get("kind"),
            title=_t("facilities", lang, k=kind_label(kind, lang)),
            lang=lang,
        )
    render.add_legend(m, legend, lang=lang)
    if scenario:
        render.mark_scenario(m)
    bounds = gdf_unit.to_crs(4326).total_bounds if len(gdf_unit) else points.total_bounds
    m.fit_bounds([[bounds[1], bounds[0]], [bounds[3], bounds[2]]])
    return m


def drill_link(base: str) -> Callable[[str, str], str]:
    """``drill(city, unit)`` for pages: ``base`` with ``{city}`` and ``{unit}`` filled in."""

    def drill(city: str, unit: str) -> str:
        return base.format(city=city, unit=unit)

    return drill


def note_text(run_id: str, lang: str = "zh") -> str:
    """The line under the county table: how the run was computed."""
    return _t("note", lang, r=run_id)
