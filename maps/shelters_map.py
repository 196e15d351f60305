"""The shelter map: responsibility areas, shelters by load, unsheltered residents, hazards.

It draws a :class:`geo_minzheng.workflows.ShelterRun`; it runs no analysis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import geopandas as gpd
import numpy as np

from geo_minzheng.kinds import DEMO_SCENARIO_LABEL, SHELTER_CLASSES
from geo_minzheng.workflows import ShelterRun
from maps import render

_TEXT = {
    "title": ("应急避难场所责任区", "Emergency shelter catchments"),
    "areas": ("避难场所责任区", "Responsibility areas"),
    "load": ("避难场所：负荷 {label}", "Shelters: load {label}"),
    "unused": ("避难场所：未启用（{reason}）", "Shelters: not in use ({reason})"),
    "unsheltered": ("无处安置的居民", "Residents without a place"),
    "hazards": ("灾害影响区（演示情景）", "Hazard areas (demo scenario)"),
    "closed_roads": ("封闭道路", "Closed roads"),
    "lost": ("因灾失去安置的居民", "Residents who lose their place"),
    "shelter": ("避难场所", "Shelter"),
    "name": ("名称", "Name"),
    "class": ("类别", "Class"),
    "capacity": ("容纳人数", "Capacity (persons)"),
    "capacity_source": ("容量来源", "Capacity from"),
    "assigned": ("安置人数", "Assigned persons"),
    "aged": ("其中60岁及以上", "Of them aged 60+"),
    "load_factor": ("负荷率", "Load factor"),
    "max_time": ("最远步行（分钟）", "Farthest walk (min)"),
    "mean_time": ("平均步行（分钟）", "Mean walk (min)"),
    "persons": ("人数", "Persons"),
    "reason": ("原因", "Reason"),
    "area": ("面积（公顷）", "Area (ha)"),
    "panel": (
        "常住人口 {population:,} 人，已安置 {sheltered:,} 人，无处安置 {unsheltered:,} 人"
        "（其中60岁及以上 {unsheltered_aged:,} 人）；启用避难场所 {in_use} 处，超负荷 {over} 处。",
        "{population:,} residents, {sheltered:,} sheltered, {unsheltered:,} without a place "
        "({unsheltered_aged:,} aged 60+); {in_use} shelters in use, {over} overloaded.",
    ),
    "changed": (
        "灾害情景：{moved:,} 人改去其他避难场所，{lost:,} 人失去安置，{disabled} 处避难场所停用。",
        "Hazard scenario: {moved:,} residents change shelter, {lost:,} lose their place, "
        "{disabled} shelters disabled.",
    ),
}
#: Load classes (upper bounds of the load factor) and their colours, light to dark.
_LOAD_CLASSES = (
    (0.5, "#1a9850", ("≤ 50%", "≤ 50%")),
    (0.9, "#fee08b", ("50–90%", "50–90%")),
    (1.0, "#fc8d59", ("90–100%", "90–100%")),
)
_UNUSED_COLOUR = "#969696"
_REASONS = {
    "closed": ("关闭", "closed"),
    "full": ("已满", "full"),
    "planned": ("规划中", "planned"),
    "hazard": ("位于灾害区", "in a hazard area"),
    "not_snapped": ("远离道路", "far from roads"),
    "capacity": ("容量不足", "not enough places"),
    "beyond_radius": ("超出服务半径", "beyond every service radius"),
    "in_hazard": ("困于灾害区", "cut off in a hazard area"),
}


def _t(key: str, lang: str, **values: Any) -> str:
    zh, en = _TEXT[key]
    return (zh if lang == "zh" else en).format(**values)


def _label(table: dict[str, tuple[str, str]], code: Any, lang: str) -> str:
    if code in table:
        return table[code][0 if lang == "zh" else 1]
    return "" if code is None else str(code)


def _radius_px(capacity: np.ndarray) -> np.ndarray:
    """Marker radius growing with the square root of the capacity (area ~ persons), 5-18 px."""
    cap = np.nan_to_num(np.asarray(capacity, dtype=float), nan=0.0)
    return np.clip(5.0 + np.sqrt(cap) / 12.0, 5.0, 18.0)


def shelters_map(
    run: ShelterRun,
    *,
    lang: str = "zh",
    basemap: str | Sequence[str] | Any = "osm",
    title: str | None = None,
) -> Any:
    """A folium map of a shelter run: areas, shelters sized by capacity and coloured by load.

    Parameters
    ----------
    run
        From :func:`geo_minzheng.workflows.run_shelters`.
    lang
        'zh' (default) or 'en'.
    basemap
        Base map name(s) or objects, as :func:`maps.render.new_map` takes them.
    """
    result = run.result
    m = render.new_map(lang=lang, basemap=basemap, title=title or _t("title", lang))
    legend: list[render.LegendItem] = []
    if run.gdf_units is not None:
        render.add_layer(
            m, run.gdf_units, kind="admin_unit", title=_title_units(lang), lang=lang, show=True
        )
    if run.gdf_hazards is not None and len(run.gdf_hazards):
        style = {"color": "#08519c", "fillColor": "#6baed6", "fillOpacity": 0.45, "weight": 1}
        render.add_layer(
            m, run.gdf_hazards[["geometry"]], kind=None, title=_t("hazards", lang), lang=lang,
            style=style,
        )  # fmt: skip
    if run.gdf_closed_roads is not None and len(run.gdf_closed_roads):
        style = {"color": "#e31a1c", "weight": 5, "fillOpacity": 0}
        render.add_layer(
            m, run.gdf_closed_roads[["geometry"]], kind=None, title=_t("closed_roads", lang),
            lang=lang, style=style,
        )  # fmt: skip
    _areas(m, run.areas, lang)
    _shelters(m, result.shelters, lang, legend)
    _unsheltered(m, result.unsheltered, lang, legend)
    render.add_legend(m, legend, lang=lang)
    render.add_html(m, _panel(run, lang))
    if _scenario(result.demand) or _scenario(result.shelters) or run.gdf_hazards is not None:
        render.mark_scenario(m)
    bounds = result.demand.total_bounds
    m.fit_bounds([[bounds[1], bounds[0]], [bounds[3], bounds[2]]])
    return m


def _title_units(lang: str) -> str:
    return "行政区划" if lang == "zh" else "Admin units"


def _scenario(gdf: gpd.GeoDataFrame) -> bool:
    return "source" in gdf.columns and bool((gdf["source"] == DEMO_SCENARIO_LABEL).any())


def _areas(m: Any, areas: gpd.GeoDataFrame, lang: str) -> None:
    """Responsibility areas, one colour per shelter from a qualitative palette."""
    if not len(areas):
        return
    shown = gpd.GeoDataFrame(
        {
            _t("shelter", lang): areas["shelter_id"].to_numpy(),
            _t("assigned", lang): areas["assigned_persons"].to_numpy(),
            _t("area", lang): (areas["area_m2"].to_numpy() / 1e4).round(1),
        },
        geometry=areas.geometry.to_numpy(),
        crs=areas.crs,
    )
    style = {"color": "#54278f", "fillColor": "#9e9ac8", "fillOpacity": 0.35, "weight": 2}
    render.add_layer(m, shown, kind=None, title=_t("areas", lang), lang=lang, style=style)


def _shelters(
    m: Any, shelters: gpd.GeoDataFrame, lang: str, legend: list[render.LegendItem]
) -> None:
    """Shelters in use by load class (radius by capacity), and those not in use."""
    gdf = shelters.reset_index()
    gdf = gdf.set_geometry(gdf.geometry.representative_point())
    load = gdf["load_factor"].to_numpy(dtype=float)
    in_use = gdf["in_use"].to_numpy(dtype=bool)
    shown = gpd.GeoDataFrame(
        {
            "id": gdf["id"].to_numpy(),
            _t("name", lang): gdf["name"].to_numpy() if "name" in gdf else gdf["id"].to_numpy(),
            _t("class", lang): [_label(SHELTER_CLASSES, c, lang) for c in gdf["shelter_class"]],
            _t("capacity", lang): gdf["capacity_persons"].to_numpy(),
            _t("capacity_source", lang): gdf["capacity_source"].to_numpy(),
            _t("assigned", lang): gdf["assigned_persons"].to_numpy(),
            _t("aged", lang): gdf["assigned_aged_60_plus"].to_numpy(),
            _t("load_factor", lang): [f"{v:.0%}" if np.isfinite(v) else "—" for v in load],
            _t("max_time", lang): np.round(gdf["max_time_min"].to_numpy(dtype=float), 1),
            _t("mean_time", lang): np.round(gdf["mean_time_min"].to_numpy(dtype=float), 1),
        },
        geometry=gdf.geometry.to_numpy(),
        crs=gdf.crs,
    )
    radius = _radius_px(gdf["capacity_persons"].to_numpy())
    lower = 0.0
    for upper, colour, labels in _LOAD_CLASSES:
        label = labels[0 if lang == "zh" else 1]
        pick = in_use & (load > lower) & (load <= upper) if lower else in_use & (load <= upper)
        _shelter_layer(m, shown, pick, radius, colour, _t("load", lang, label=label), lang, legend)
        lower = upper
    for reason in sorted(set(gdf["excluded_reason"].dropna())):
        pick = ~in_use & (gdf["excluded_reason"] == reason).to_numpy()
        name = _t("unused", lang, reason=_label(_REASONS, reason, lang))
        _shelter_layer(m, shown, pick, radius, _UNUSED_COLOUR, name, lang, legend)


def _shelter_layer(
    m: Any,
    shown: gpd.GeoDataFrame,
    pick: np.ndarray,
    radius: np.ndarray,
    colour: str,
    name: str,
    lang: str,
    legend: list[render.LegendItem],
) -> None:
    """One legend row per class; one map layer per marker size within it (sized by capacity)."""
    if not pick.any():
        return
    legend.append(render.LegendItem(name, "#333333", "circle", colour, 0.9))
    sizes = np.round(radius[pick])
    part = shown[pick]
    for size in np.unique(sizes):
        style = {"color": "#333333", "fillColor": colour, "radius": float(size),
                 "fillOpacity": 0.9, "weight": 1.5}  # fmt: skip
        render.add_layer(
            m, part[sizes == size], kind=None, title=name, lang=lang, legend=False, style=style
        )


def _unsheltered(
    m: Any, unsheltered: gpd.GeoDataFrame, lang: str, legend: list[render.LegendItem]
) -> None:
    if not len(unsheltered):
        return
    shown = gpd.GeoDataFrame(
        {
            "id": unsheltered["id"].to_numpy(),
            _t("persons", lang): unsheltered["unsheltered_persons"].to_numpy(),
            _t("aged", lang): unsheltered["unsheltered_aged_60_plus"].to_numpy(),
            _t("reason", lang): [_label(_REASONS, r, lang) for r in unsheltered["reason"]],
        },
        geometry=unsheltered.geometry.representative_point().to_numpy(),
        crs=unsheltered.crs,
    )
    colour = "#d7301f"
    # small and light: thousands of points must not hide the shelters and areas under them
    style = {"color": colour, "fillColor": colour, "radius": 2.5, "fillOpacity": 0.55, "weight": 0}
    name = _t("unsheltered", lang)
    render.add_layer(m, shown, kind=None, title=name, lang=lang, style=style, legend=False)
    legend.append(render.LegendItem(name, colour, "circle", colour, 0.9))


def _panel(run: ShelterRun, lang: str) -> str:
    s = run.result.summary
    text = _t(
        "panel",
        lang,
        population=s["population"],
        sheltered=s["sheltered_persons"],
        unsheltered=s["unsheltered_persons"],
        unsheltered_aged=s["unsheltered_aged_60_plus"],
        in_use=s["shelters_in_use"],
        over=s["shelters_overloaded"],
    )
    if run.comparison is not None:
        c = run.comparison.summary
        text += " " + _t(
            "changed",
            lang,
            moved=c["moved_persons"],
            lost=c["lost_persons"],
            disabled=c["shelters_disabled"],
        )
    return render.text_panel("gm-shelter-panel", text, max_width_px=420)
