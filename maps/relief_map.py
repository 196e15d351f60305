"""The relief map: depots, shelters sized by need, flows, vehicle tours in distinct colours,
barriers and shelters that cannot be reached.

It draws a :class:`geo_minzheng.workflows.ReliefRun`; it runs no analysis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from geo_minzheng.kinds import DEPOT_LEVELS
from geo_minzheng.relief import REASONS
from geo_minzheng.workflows import ReliefRun
from maps import render

_TEXT = {
    "title": ("救灾物资调运", "Relief-material dispatch"),
    "depots": ("救灾物资储备库", "Relief depots"),
    "depots_out": ("储备库：无法发货（{reason}）", "Depots that cannot send ({reason})"),
    "shelters": ("避难场所（按需求量大小）", "Shelters (sized by need)"),
    "short": ("避难场所：物资不足", "Shelters: not enough supplies"),
    "unreachable": ("避难场所：无法送达（{reason}）", "Shelters that cannot be reached ({reason})"),
    "flows": ("调运关系（储备库→避难场所）", "Flows (depot → shelter)"),
    "tours": ("车辆路线：{vehicle}", "Tours: {vehicle}"),
    "tours_legend": ("车辆路线（每辆车一种颜色）", "Vehicle tours (one colour per vehicle)"),
    "hazards": ("灾害影响区（演示情景）", "Hazard areas (demo scenario)"),
    "closed_roads": ("封闭道路", "Closed roads"),
    "name": ("名称", "Name"),
    "level": ("级别", "Level"),
    "vehicles": ("车辆数", "Vehicles"),
    "sent_t": ("发出（吨）", "Sent (t)"),
    "persons": ("安置人数", "Sheltered persons"),
    "aged": ("其中60岁及以上", "Of them aged 60+"),
    "need_t": ("需求（吨）", "Need (t)"),
    "got_t": ("分配（吨）", "Allocated (t)"),
    "short_t": ("缺口（吨）", "Short (t)"),
    "first": ("首车到达（分钟）", "First arrival (min)"),
    "reason": ("原因", "Reason"),
    "vehicle": ("车辆", "Vehicle"),
    "trip": ("趟次", "Trip"),
    "stops": ("途经避难场所", "Stops"),
    "load_t": ("装载（吨）", "Load (t)"),
    "km": ("里程（公里）", "Distance (km)"),
    "minutes": ("用时（分钟）", "Time (min)"),
    "depot": ("储备库", "Depot"),
    "weight_t": ("重量（吨）", "Weight (t)"),
    "panel": (
        "需求 {need:,.1f} 吨，分配 {got:,.1f} 吨，装运 {carried:,.1f} 吨；"
        "{vehicles} 辆车 {trips} 趟，共 {km:,.1f} 公里；{unreachable} 处避难场所无法送达。"
        "缺口按规则分担：先老年人，再其他居民，各场所同比例分步分配。",
        "Need {need:,.1f} t, allocated {got:,.1f} t, carried {carried:,.1f} t; {vehicles} "
        "vehicles, {trips} trips, {km:,.1f} km; {unreachable} shelters cannot be reached. "
        "Shortages are shared: aged 60+ first, then the others, equal shares step by step.",
    ),
    "changed": (
        "封路后：新增 {lost} 处无法送达，{later} 处推迟（最多 {delay:.0f} 分钟），"
        "{changed} 辆车改线。",
        "After the closures: {lost} more shelters cut off, {later} reached later (up to "
        "{delay:.0f} min), {changed} vehicles re-routed.",
    ),
}
#: Distinct colours for the vehicles' tours (ColorBrewer Set1 + Dark2), cycled.
_TOUR_COLOURS = (
    "#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#a65628", "#f781bf", "#1b9e77",
    "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#666666",
)  # fmt: skip
_SHELTER_COLOUR = "#1a9641"
_SHORT_COLOUR = "#fdae61"
_UNREACHABLE_COLOUR = "#d7191c"
_DEPOT_COLOUR = "#8c510a"


def _t(key: str, lang: str, **values: Any) -> str:
    zh, en = _TEXT[key]
    return (zh if lang == "zh" else en).format(**values)


def _reason(code: Any, lang: str) -> str:
    if code in REASONS:
        return REASONS[code][0 if lang == "zh" else 1]
    return "" if code is None or (isinstance(code, float) and np.isnan(code)) else str(code)


def _radius_px(need_t: np.ndarray) -> np.ndarray:
    """Marker radius growing with the square root of the need (area ~ tonnes), 4-20 px."""
    need = np.nan_to_num(np.asarray(need_t, dtype=float), nan=0.0)
    return np.clip(4.0 + 2.2 * np.sqrt(need), 4.0, 20.0)


def relief_map(
    run: ReliefRun,
    *,
    lang: str = "zh",
    basemap: str | Sequence[str] | Any = "osm",
    title: str | None = None,
) -> Any:
    """A folium map of a relief run.

    Parameters
    ----------
    run
        From :func:`geo_minzheng.workflows.run_relief`.
    lang
        'zh' (default) or 'en'.
    basemap
        Base map name(s) or objects, as :func:`maps.render.new_map` takes them.
    """
    plan = run.plan
    m = render.new_map(lang=lang, basemap=basemap, title=title or _t("title", lang))
    legend: list[render.LegendItem] = []
    if run.gdf_hazards is not None and len(run.gdf_hazards):
        style = {"color": "#08519c", "fillColor": "#6baed6", "fillOpacity": 0.45, "weight": 1}
        render.add_layer(
            m, run.gdf_hazards[["geometry"]], kind=None, title=_t("hazards", lang), lang=lang,
            style=style,
        )  # fmt: skip
    if run.gdf_closed_roads is not None and len(run.gdf_closed_roads):
        style = {"color": "#000000", "weight": 6, "fillOpacity": 0, "dashArray": "6 4"}
        render.add_layer(
            m, run.gdf_closed_roads[["geometry"]], kind=None, title=_t("closed_roads", lang),
            lang=lang, style=style,
        )  # fmt: skip
    _flows(m, plan.flows, lang, legend)
    _tours(m, plan.tours, lang, legend)
    _shelters(m, plan.shelters, lang, legend)
    _depots(m, plan.depots, lang, legend)
    render.add_legend(m, legend, lang=lang)
    render.add_html(m, _panel(run, lang))
    if run.scenario:
        render.mark_scenario(m)
    pts = pd.concat([plan.shelters.geometry, plan.depots.geometry])
    bounds = gpd.GeoSeries(pts, crs=4326).total_bounds
    if np.isfinite(bounds).all():
        m.fit_bounds([[bounds[1], bounds[0]], [bounds[3], bounds[2]]])
    return m


def _flows(m: Any, flows: gpd.GeoDataFrame, lang: str, legend: list[render.LegendItem]) -> None:
    if not len(flows):
        return
    shown = gpd.GeoDataFrame(
        {
            _t("depot", lang): flows["depot_id"].to_numpy(),
            "id": flows["shelter_id"].to_numpy(),
            _t("weight_t", lang): np.round(flows["weight_kg"].to_numpy(float) / 1000.0, 2),
        },
        geometry=flows.geometry.to_numpy(),
        crs=flows.crs,
    )
    style = {"color": "#756bb1", "weight": 1.5, "fillOpacity": 0, "dashArray": "4 4"}
    name = _t("flows", lang)
    render.add_layer(m, shown, kind=None, title=name, lang=lang, style=style, legend=False,
                     show=False, simplify_m=None)  # fmt: skip
    legend.append(render.LegendItem(name, "#756bb1", "line"))


def _tours(m: Any, tours: gpd.GeoDataFrame, lang: str, legend: list[render.LegendItem]) -> None:
    drawn = tours[tours.geometry.notna()]
    if not len(drawn):
        return
    for k, (vehicle, part) in enumerate(drawn.groupby("vehicle_id", sort=True)):
        colour = _TOUR_COLOURS[k % len(_TOUR_COLOURS)]
        shown = gpd.GeoDataFrame(
            {
                _t("vehicle", lang): part["vehicle_id"].to_numpy(),
                _t("trip", lang): part["trip"].to_numpy(),
                _t("stops", lang): part["stops"].to_numpy(),
                _t("load_t", lang): np.round(part["load_kg"].to_numpy(float) / 1000.0, 2),
                _t("km", lang): np.round(part["distance_km"].to_numpy(float), 1),
                _t("minutes", lang): np.round(part["duration_min"].to_numpy(float), 0),
            },
            geometry=part.geometry.to_numpy(),
            crs=part.crs,
        )
        style = {"color": colour, "weight": 4, "opacity": 0.85, "fillOpacity": 0}
        render.add_layer(
            m, shown, kind=None, title=_t("tours", lang, vehicle=vehicle), lang=lang,
            style=style, legend=False, simplify_m=None,
        )  # fmt: skip
    legend.append(render.LegendItem(_t("tours_legend", lang), _TOUR_COLOURS[0], "line"))


def _shelters(
    m: Any, shelters: gpd.GeoDataFrame, lang: str, legend: list[render.LegendItem]
) -> None:
    gdf = shelters.reset_index()
    need_t = gdf["need_weight_kg"].to_numpy(float) / 1000.0
    shown = gpd.GeoDataFrame(
        {
            "id": gdf["id"].to_numpy(),
            _t("name", lang): gdf["name"].to_numpy(),
            _t("persons", lang): gdf["persons"].to_numpy(),
            _t("aged", lang): gdf["aged_60_plus"].to_numpy(),
            _t("need_t", lang): np.round(need_t, 1),
            _t("got_t", lang): np.round(gdf["delivered_weight_kg"].to_numpy(float) / 1000.0, 1),
            _t("short_t", lang): np.round(gdf["unmet_weight_kg"].to_numpy(float) / 1000.0, 1),
            _t("first", lang): np.round(gdf["first_arrival_min"].to_numpy(float), 0),
            _t("reason", lang): [_reason(r, lang) for r in gdf["reason"]],
        },
        geometry=gdf.geometry.to_numpy(),
        crs=gdf.crs,
    )
    radius = np.round(_radius_px(need_t))
    reason = gdf["reason"].to_numpy(dtype=object)
    has_need = need_t > 0
    out = pd.notna(reason) & has_need
    short = ~out & has_need & (gdf["unmet_weight_kg"].to_numpy(float) > 0.5)
    fine = ~out & ~short & has_need
    groups = [
        (fine, _SHELTER_COLOUR, _t("shelters", lang)),
        (short, _SHORT_COLOUR, _t("short", lang)),
    ]
    for code in sorted(set(reason[out])):
        pick = out & (reason == code)
        groups.append(
            (pick, _UNREACHABLE_COLOUR, _t("unreachable", lang, reason=_reason(code, lang)))
        )
    for pick, colour, name in groups:
        if not pick.any():
            continue
        legend.append(render.LegendItem(name, "#333333", "circle", colour, 0.85))
        for size in np.unique(radius[pick]):
            part = shown[pick & (radius == size)]
            style = {"color": "#333333", "fillColor": colour, "radius": float(size),
                     "fillOpacity": 0.85, "weight": 1.2}  # fmt: skip
            render.add_layer(m, part, kind=None, title=name, lang=lang, style=style, legend=False)


def _depots(m: Any, depots: gpd.GeoDataFrame, lang: str, legend: list[render.LegendItem]) -> None:
    gdf = depots.reset_index()
    levels = [DEPOT_LEVELS.get(v, (v, v))[0 if lang == "zh" else 1] for v in gdf["level"]]
    shown = gpd.GeoDataFrame(
        {
            "id": gdf["id"].to_numpy(),
            _t("name", lang): gdf["name"].to_numpy(),
            _t("level", lang): levels,
            _t("vehicles", lang): gdf["vehicles"].to_numpy(),
            _t("sent_t", lang): np.round(gdf["sent_weight_kg"].to_numpy(float) / 1000.0, 1),
            _t("reason", lang): [_reason(r, lang) for r in gdf["excluded_reason"]],
        },
        geometry=gdf.geometry.to_numpy(),
        crs=gdf.crs,
    )
    reason = gdf["excluded_reason"].to_numpy(dtype=object)
    ok = pd.isna(reason)
    groups = [(ok, _DEPOT_COLOUR, _t("depots", lang))]
    for code in sorted(set(reason[~ok])):
        name = _t("depots_out", lang, reason=_reason(code, lang))
        groups.append((reason == code, "#969696", name))
    for pick, colour, name in groups:
        if not pick.any():
            continue
        style = {"color": "#000000", "fillColor": colour, "radius": 11.0, "fillOpacity": 0.95,
                 "weight": 2.5}  # fmt: skip
        render.add_layer(m, shown[pick], kind=None, title=name, lang=lang, style=style,
                         legend=False)  # fmt: skip
        legend.append(render.LegendItem(name, "#000000", "circle", colour, 0.95))


def _panel(run: ReliefRun, lang: str) -> str:
    s = run.plan.summary
    text = _t(
        "panel",
        lang,
        need=s["need_t"],
        got=s["allocated_t"],
        carried=s["carried_t"],
        vehicles=s["vehicles_used"],
        trips=s["trips"],
        km=s["distance_km"],
        unreachable=s["shelters_unreachable"],
    )
    if run.changes is not None:
        c = run.changes.summary
        text += " " + _t(
            "changed",
            lang,
            lost=c["shelters_newly_unreachable"],
            later=c["shelters_later"],
            delay=c["max_delay_min"],
            changed=c["vehicles_changed"],
        )
    return render.text_panel("gm-relief-panel", text, max_width_px=460)
