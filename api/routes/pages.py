"""Web maps served by the API: a home page linking one map per workflow, zh-CN or English.

Maps are built with :mod:`maps.render` (and :mod:`maps.coverage_map` for coverage) and load
Leaflet from ``/static/vendor`` (vendored), so they work on an intranet with no internet. The base
map comes from settings (OSM, 天地图 with a token, an intranet tile URL, or none); the others that
are configured can be switched on in the layer control. New workflows (shelters, relief,
boundaries) add one entry to ``WORKFLOWS`` and one builder function.
"""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.auth import Viewer
from api.state import AppState, State
from geo_minzheng import workflows

router = APIRouter(tags=["地图 / maps"])

Lang = Annotated[Literal["zh", "en"] | None, Query(description="界面语言 / language: zh or en")]
Basemap = Annotated[
    Literal["osm", "tianditu", "intranet", "none"] | None,
    Query(description="底图 / base map (must be configured)"),
]

_TEXT = {
    "home_title": ("民政空间数据服务", "Civil-affairs map service"),
    "home_intro": (
        "选择一个业务地图。图层数据可通过 OGC API – Features 接口访问。",
        "Choose a map. The layers are also available through OGC API – Features.",
    ),
    "api_docs": ("接口文档", "API documentation"),
    "collections": ("图层接口", "Layers (OGC API)"),
    "switch": ("English", "中文"),
    "home": ("首页", "Home"),
    "iso_button": ("等时圈", "Isochrone"),
    "iso_hint": (
        "点击地图任意位置，计算步行5/10/15分钟可达范围",
        "Click the map to draw the 5/10/15-minute walk areas",
    ),
    "iso_busy": ("正在计算……", "Computing…"),
    "iso_fail": ("无法计算等时圈：", "Isochrone failed: "),
    "iso_layer": ("{b}分钟步行范围", "{b}-minute walk"),
    "coverage_kind": ("设施类别：", "Facility kind: "),
    "flood_on": ("显示演示洪水情景", "Show the demo flood"),
    "flood_off": ("取消洪水情景", "Without the flood"),
}


def _t(key: str, lang: str) -> str:
    zh, en = _TEXT[key]
    return zh if lang == "zh" else en


@dataclass(frozen=True)
class Workflow:
    """One map on the home page."""

    id: str
    title_zh: str
    title_en: str
    text_zh: str
    text_en: str

    def title(self, lang: str) -> str:
        return self.title_zh if lang == "zh" else self.title_en

    def text(self, lang: str) -> str:
        return self.text_zh if lang == "zh" else self.text_en


WORKFLOWS = (
    Workflow(
        "layers",
        "全部图层",
        "All layers",
        "行政区划、道路、人口与各类民政设施；点击要素查看属性，可计算任意点的步行等时圈。",
        "Boundaries, roads, population and facilities; click a feature for its fields, or "
        "draw the walking isochrone of any point.",
    ),
    Workflow(
        "coverage",
        "养老服务圈覆盖",
        "Eldercare coverage",
        "5/10/15分钟步行养老服务圈、覆盖率与服务空白区（老年人步行速度）。",
        "5/10/15-minute eldercare walking circles, coverage shares and gaps (elderly speed).",
    ),
    Workflow(
        "shelters",
        "应急避难场所责任区",
        "Shelter catchments",
        "居民按避难场所容量与服务半径就近安置：责任区、负荷、无处安置者；可选演示洪水情景。",
        "Residents assigned to shelters within capacity and service radius: responsibility "
        "areas, loads, residents without a place; optionally under the demo flood.",
    ),
    Workflow(
        "relief",
        "救灾物资调运",
        "Relief-material dispatch",
        "各储备库向避难场所调运帐篷、棉被、饮用水、食品：分配、车辆路线与调度单；可选演示洪水情景。",
        "Which depot sends tents, quilts, water and food to which shelter, on which vehicle by "
        "which open road, with dispatch sheets; optionally under the demo flood.",
    ),
    Workflow(
        "province",
        "全省养老服务圈覆盖",
        "Province eldercare coverage",
        "全省各市、各区县的15分钟养老服务圈覆盖率（按区县分区在 Dask 上计算），可逐区县查看地图。",
        "The 15-minute eldercare coverage of every county of every city (partitioned by county "
        "on Dask), with each county's own map.",
    ),
    Workflow(
        "boundaries",
        "行政区域界线管理",
        "Administrative boundaries",
        "界线与界桩、到期联合检查的界线、拓扑检查问题；在界桩弹窗中记录检查；两图一责下载。",
        "Boundary lines and markers, lines due for joint inspection, topology findings; record "
        "an inspection in a marker's popup; the two diagrams and the responsibility table.",
    ),
)


def _lang(state: AppState, lang: str | None) -> str:
    return lang or state.settings.lang


def _basemaps(state: AppState, chosen: str | None) -> list[str]:
    """The configured base maps, the chosen (or configured default) one first."""
    settings = state.settings
    available = ["osm"]
    if settings.resolved_tianditu_token():
        available.append("tianditu")
    if settings.intranet_tile_url:
        available.append("intranet")
    available.append("none")
    first = chosen if chosen in available else settings.basemap
    if first not in available:  # e.g. 天地图 configured without a token: fall back to none
        first = "none"
    return [first, *[b for b in available if b != first]]


def _resolved(state: AppState, names: list[str]) -> list:
    """Base-map objects (token and intranet URL from settings) for maps.render."""
    from maps import basemaps

    settings = state.settings
    chosen = basemaps.resolve(
        names,
        tianditu_token=settings.resolved_tianditu_token(),
        tile_url=settings.intranet_tile_url,
    )
    if settings.intranet_tile_url and "intranet" in names:
        index = names.index("intranet")
        chosen[index] = basemaps.intranet(
            settings.intranet_tile_url, attribution=settings.intranet_tile_attribution
        )
    return chosen


def _page_shell(title: str, body: str, lang: str) -> str:
    html_lang = "zh-CN" if lang == "zh" else "en"
    return f"""<!DOCTYPE html>
<html lang="{html_lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
body {{ font: 15px/1.6 "Microsoft YaHei","PingFang SC","Noto Sans CJK SC",sans-serif;
  margin: 0; background: #f5f5f2; color: #222; }}
header {{ background: #8b1a1a; color: #fff; padding: 14px 24px; display: flex;
  justify-content: space-between; align-items: center; }}
header a {{ color: #fff; }}
main {{ max-width: 880px; margin: 24px auto; padding: 0 16px; }}
.card {{ background: #fff; border-radius: 6px; box-shadow: 0 1px 4px rgba(0,0,0,.2);
  padding: 16px 20px; margin: 14px 0; }}
.card h2 {{ margin: 0 0 6px; font-size: 18px; }}
footer {{ color: #666; font-size: 13px; text-align: center; margin: 30px 0; }}
</style></head><body>{body}</body></html>"""


@router.get(
    "/",
    response_class=HTMLResponse,
    summary="首页 / home page",
    description="Home page linking a web map per workflow; `?lang=en` for English.",
)
def home(request: Request, state: State, _: Viewer, lang: Lang = None) -> HTMLResponse:
    return HTMLResponse(_home_page(_lang(state, lang)))


def _home_page(lang: str) -> str:
    other = "en" if lang == "zh" else "zh"
    cards = "".join(
        f'<div class="card"><h2><a id="map-{w.id}" href="/maps/{w.id}?lang={lang}">'
        f"{html.escape(w.title(lang))}</a></h2><p>{html.escape(w.text(lang))}</p></div>"
        for w in WORKFLOWS
    )
    title = _t("home_title", lang)
    body = (
        f"<header><strong>{html.escape(title)}</strong>"
        f'<a id="lang-switch" href="/?lang={other}">{_t("switch", lang)}</a></header>'
        f"<main><p>{html.escape(_t('home_intro', lang))}</p>{cards}"
        f'<p><a href="/docs">{_t("api_docs", lang)}</a> · '
        f'<a href="/collections">{_t("collections", lang)}</a> · '
        f'<a href="/api">OGC API</a></p></main>'
        "<footer>© OpenStreetMap contributors (ODbL) · geo-minzheng</footer>"
    )
    return _page_shell(title, body, lang)


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> Response:
    """No icon (an empty answer keeps browsers from logging a 404 on every page)."""
    return Response(status_code=204)


# ------------------------------------------------------------------------------------------------
# Map pages
# ------------------------------------------------------------------------------------------------


class _PageCache:
    """Rendered map pages, reused until the store changes (keyed by the store's revision)."""

    def __init__(self) -> None:
        self._pages: dict[tuple, str] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple, build: Callable[[], str]) -> str:
        with self._lock:
            page = self._pages.get(key)
        if page is None:
            page = build()
            with self._lock:
                if len(self._pages) > 32:
                    self._pages.clear()
                self._pages[key] = page
        return page


def _cache(state: AppState) -> _PageCache:
    cache = getattr(state, "_page_cache", None)
    if cache is None:
        cache = _PageCache()
        state._page_cache = cache  # type: ignore[attr-defined]
    return cache


def _store_layers(state: AppState, lang: str) -> dict:
    out = {}
    for info in state.store.list_layers():
        gdf = state.store.read_layer(info.id)
        meta = state.meta(info.id)
        gdf.attrs.update(
            {"title_zh": meta.title_zh, "title_en": meta.title_en, "scenario": meta.scenario}
        )
        out[info.id] = gdf
    return out


#: Style of the page's own panels (navigation, tools); they are docked as Leaflet controls and
#: hidden until then: in the page flow they would add a scroll bar while Leaflet measures the map.
_PANEL_STYLE = (
    "display:none;background:rgba(255,255,255,.95);padding:6px 10px;border-radius:4px;"
    "box-shadow:0 1px 5px rgba(0,0,0,.4);font:13px/1.6 sans-serif"
)
#: Moves every ``.gm-panel`` into the map's top-left control corner, above the zoom buttons,
#: so that Leaflet stacks them and nothing hides another control or the map's edge.
_DOCK = """<script>
document.addEventListener("DOMContentLoaded", function() {
  var corner = document.querySelector(".leaflet-top.leaflet-left");
  if (!corner) return;
  var panels = document.querySelectorAll(".gm-panel");
  for (var i = panels.length - 1; i >= 0; i--) {
    panels[i].classList.add("leaflet-control");
    corner.insertBefore(panels[i], corner.firstChild);
    panels[i].style.display = "block";
    L.DomEvent.disableClickPropagation(panels[i]);
    L.DomEvent.disableScrollPropagation(panels[i]);
  }
});
</script>"""


def _nav(workflow: str, lang: str, extra: str = "") -> str:
    other = "en" if lang == "zh" else "zh"
    return (
        f'<div id="gm-nav" class="gm-panel" style="{_PANEL_STYLE}">'
        f'<a id="gm-home" href="/?lang={lang}">{_t("home", lang)}</a> · '
        f'<a id="lang-switch" href="/maps/{workflow}?lang={other}">{_t("switch", lang)}</a>'
        f"{extra}</div>{_DOCK}"
    )


def _isochrone_tool(map_name: str, lang: str) -> str:
    """A button that turns map clicks into walking isochrones (POST /analysis/isochrone).

    While the tool is on, a click on the map draws an isochrone and nothing else: the click is
    taken before Leaflet sees it, so no district or facility popup opens over the result.
    """
    text = {k: _t(k, lang) for k in ("iso_button", "iso_hint", "iso_busy", "iso_fail", "iso_layer")}
    colours = json.dumps(["#fee08b", "#91cf60", "#1a9850", "#006837", "#00441b", "#002a10"])
    return f"""
<div id="gm-iso-box" class="gm-panel" style="{_PANEL_STYLE};padding:4px 6px">
<button id="gm-iso" type="button" title="{html.escape(text["iso_hint"])}"
 style="font:13px sans-serif;padding:4px 10px">{html.escape(text["iso_button"])}</button>
<span id="gm-iso-status" style="font:12px sans-serif;padding:2px 6px"></span>
</div>
<script>
// folium defines the map in a script after </body>: wait until the whole page is parsed
document.addEventListener("DOMContentLoaded", function() {{
  var map = {map_name}, active = false, layer = null, T = {json.dumps(text)};
  var colours = {colours};
  var button = document.getElementById("gm-iso"), status = document.getElementById("gm-iso-status");
  button.addEventListener("click", function() {{
    active = !active; button.style.fontWeight = active ? "bold" : "normal";
    status.textContent = active ? T.iso_hint : "";
    map.getContainer().style.cursor = active ? "crosshair" : "";
    if (active) map.closePopup();
  }});
  // listen on the container (capture phase): feature layers stop clicks from reaching the map
  map.getContainer().addEventListener("click", function(ev) {{
    if (!active || ev.target.closest(".leaflet-control, .gm-titlebox, .leaflet-popup")) return;
    // the click is the tool's: Leaflet must not open the popup of what lies under it
    ev.stopPropagation();
    map.closePopup();
    var latlng = map.mouseEventToLatLng(ev);
    status.textContent = T.iso_busy;
    fetch("/analysis/isochrone", {{method: "POST", headers: {{"Content-Type": "application/json"}},
      body: JSON.stringify({{lon: latlng.lng, lat: latlng.lat}})}})
    .then(function(r) {{ return r.json().then(function(b) {{ return [r.ok, b]; }}); }})
    .then(function(res) {{
      if (!res[0]) {{ status.textContent = T.iso_fail + (res[1].detail || ""); return; }}
      if (layer) map.removeLayer(layer);
      var n = res[1].features.length;
      layer = L.geoJSON(res[1], {{style: function(f) {{
        var i = res[1].features.indexOf(f);
        return {{color: colours[Math.min(i, 5)], weight: 1, fillOpacity: 0.35}}; }},
        onEachFeature: function(f, l) {{
          l.bindTooltip(T.iso_layer.replace("{{b}}", f.properties.break_min)); }}
      }}).addTo(map);
      status.textContent = n + " × " + T.iso_button;
      document.body.setAttribute("data-isochrones", String(n));
    }}).catch(function(err) {{ status.textContent = T.iso_fail + err; }});
  }}, true);
}});
</script>"""


def _finish(m: object, nav: str, tools: str = "") -> str:
    from maps import assets

    assets.use_served_assets(m, base_url="/static/vendor")
    page = assets.map_figure(m).render()
    return page.replace("</body>", nav + tools + "</body>", 1)


def _layers_page(state: AppState, lang: str, basemap: list[str]) -> str:
    from maps import render

    layers = _store_layers(state, lang)
    styles = {lid: state.meta(lid).style for lid in layers}
    title = None
    if state.catalog is not None:
        title = getattr(state.catalog, f"title_{lang}", None)
    m = render.layers_map(
        layers, styles=styles, lang=lang, basemap=_resolved(state, basemap), title=title
    )
    tools = _isochrone_tool(m.get_name(), lang) if state.network.road_layer else ""
    return _finish(m, _nav("layers", lang), tools)


def _coverage_page(state: AppState, lang: str, basemap: list[str], kind: str | None) -> str:
    from api.errors import ApiProblem
    from maps import coverage_map

    layers = state.workflow_layers()
    if workflows.first_of_kind(layers, "demand") is None or not (
        workflows.default_facility_layers(layers)
    ):
        msg = "the coverage map needs a demand layer and an eldercare or service-room layer"
        raise ApiProblem(404, msg)
    p = workflows.CoverageParams(kind=kind) if kind else workflows.CoverageParams()
    run = workflows.run_coverage(layers, state.network.get(), p)
    facilities = {k: v for k, v in run.facilities.items() if len(v)}
    if kind is not None and kind not in facilities:
        msg = f"unknown facility kind '{kind}'; expected one of: {', '.join(facilities)}"
        raise ApiProblem(404, msg)
    current = run.shown_kind(kind)
    m = coverage_map.coverage_map(
        run.result, facilities, run.service_areas(current), kind=current, gdf_units=run.gdf_units,
        sites=run.sites.sites if run.sites is not None else None, lang=lang,
        basemap=_resolved(state, basemap),
    )  # fmt: skip
    links = " · ".join(
        f'<a class="gm-kind" href="/maps/coverage?lang={lang}&kind={k}"'
        f"{' style=font-weight:bold' if k == current else ''}>"
        f"{html.escape(coverage_map.kind_label(k, lang))}</a>"
        for k in facilities
    )
    extra = f"<br>{_t('coverage_kind', lang)}{links}"
    tools = _isochrone_tool(m.get_name(), lang)
    return _finish(m, _nav("coverage", lang, extra), tools)


def _shelters_page(state: AppState, lang: str, basemap: list[str], flood: bool) -> str:
    from api.errors import ApiProblem
    from geo_minzheng import scenario
    from maps import shelters_map

    layers = state.workflow_layers()
    road_id = workflows.first_of_kind(layers, "road")
    if workflows.first_of_kind(layers, "shelter") is None or road_id is None:
        raise ApiProblem(404, "the shelter map needs a shelter layer and a road layer")
    hazards = closed = None
    if flood:
        hazards, closed = scenario.demo_flood(layers.read(road_id))
    run = workflows.run_shelters(
        layers, state.network.get(), gdf_hazards=hazards, gdf_closed_roads=closed
    )
    m = shelters_map.shelters_map(run, lang=lang, basemap=_resolved(state, basemap))
    other = "0" if flood else "1"
    label = _t("flood_off" if flood else "flood_on", lang)
    extra = f'<br><a id="gm-flood" href="/maps/shelters?lang={lang}&flood={other}">{label}</a>'
    return _finish(m, _nav("shelters", lang, extra))


def _relief_page(state: AppState, lang: str, basemap: list[str], flood: bool) -> str:
    from api.errors import ApiProblem
    from geo_minzheng import scenario
    from maps import relief_map

    layers = state.workflow_layers()
    road_id = workflows.first_of_kind(layers, "road")
    needed = ("shelter", "supply_depot")
    if road_id is None or any(workflows.first_of_kind(layers, k) is None for k in needed):
        raise ApiProblem(404, "the relief map needs shelter, depot and road layers")
    hazards = closed = None
    if flood:
        hazards, closed = scenario.demo_flood(layers.read(road_id))
    speed = state.network.default.walk_speed_mps
    run = workflows.run_relief(
        layers,
        state.network.get(workflows.NetworkParams(profile="drive", walk_speed_mps=speed)),
        walk_engine=state.network.get(workflows.NetworkParams(walk_speed_mps=speed)),
        gdf_hazards=hazards,
        gdf_closed_roads=closed,
    )
    m = relief_map.relief_map(run, lang=lang, basemap=_resolved(state, basemap))
    other = "0" if flood else "1"
    label = _t("flood_off" if flood else "flood_on", lang)
    extra = f'<br><a id="gm-flood" href="/maps/relief?lang={lang}&flood={other}">{label}</a>'
    return _finish(m, _nav("relief", lang, extra))


def _revision(state: AppState) -> int:
    return state.store.revision()


def _cached_page(
    state: AppState,
    name: str,
    lang: str | None,
    basemap: str | None,
    build: Callable[[AppState, str, list[str], Any], str],
    option: Any,
) -> HTMLResponse:
    """The page ``build`` makes for (lang, base maps, option), reused until the store changes."""
    lang_ = _lang(state, lang)
    chosen = _basemaps(state, basemap)
    key = (name, lang_, tuple(chosen), option, _revision(state))
    return HTMLResponse(_cache(state).get(key, lambda: build(state, lang_, chosen, option)))


@router.get(
    "/maps/layers",
    response_class=HTMLResponse,
    summary="全部图层地图 / map of all layers",
    description="Every layer of the store on one web map, with layer control, legend and popups.",
)
def layers_map_page(
    state: State, _: Viewer, lang: Lang = None, basemap: Basemap = None
) -> HTMLResponse:
    lang_ = _lang(state, lang)
    chosen = _basemaps(state, basemap)
    key = ("layers", lang_, tuple(chosen), _revision(state))
    return HTMLResponse(_cache(state).get(key, lambda: _layers_page(state, lang_, chosen)))


@router.get(
    "/maps/coverage",
    response_class=HTMLResponse,
    responses={404: {"description": "no demand or facility layer, or unknown kind"}},
    summary="养老服务圈覆盖地图 / eldercare coverage map",
    description="5/10/15-minute walking service areas, demand by walking time, gaps and the "
    "coverage table per admin unit, for one facility kind (`kind`).",
)
def coverage_map_page(
    state: State,
    _: Viewer,
    lang: Lang = None,
    basemap: Basemap = None,
    kind: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_]+$")] = None,
) -> HTMLResponse:
    return _cached_page(state, "coverage", lang, basemap, _coverage_page, kind)


@router.get(
    "/maps/shelters",
    response_class=HTMLResponse,
    responses={404: {"description": "no shelter or road layer"}},
    summary="应急避难场所责任区地图 / shelter catchment map",
    description="Responsibility areas, shelters sized by capacity and coloured by load, "
    "residents without a place; `flood=1` re-plans under the demo flood (演示情景) and shows "
    "the flooded area and the closed bridge.",
)
def shelters_map_page(
    state: State,
    _: Viewer,
    lang: Lang = None,
    basemap: Basemap = None,
    flood: Annotated[bool, Query(description="演示洪水情景 / demo flood")] = False,
) -> HTMLResponse:
    return _cached_page(state, "shelters", lang, basemap, _shelters_page, flood)


@router.get(
    "/maps/relief",
    response_class=HTMLResponse,
    responses={404: {"description": "no shelter, depot or road layer"}},
    summary="救灾物资调运地图 / relief-material dispatch map",
    description="Depots, shelters sized by need, allocation flows, each vehicle's tours in its "
    "own colour on the drive network, shelters that cannot be reached; `flood=1` re-plans under "
    "the demo flood (演示情景) and shows the flooded area and the closed bridge.",
)
def relief_map_page(
    state: State,
    _: Viewer,
    lang: Lang = None,
    basemap: Basemap = None,
    flood: Annotated[bool, Query(description="演示洪水情景 / demo flood")] = False,
) -> HTMLResponse:
    return _cached_page(state, "relief", lang, basemap, _relief_page, flood)


@router.get(
    "/maps/boundaries",
    response_class=HTMLResponse,
    responses={404: {"description": "no admin_unit layer"}},
    summary="行政区域界线管理地图 / boundary management map",
    description="Boundary lines (due ones highlighted), markers coloured by their latest state "
    "with a form in each popup that records an inspection (editor API key), topology findings "
    "and the inspection route over the line with the most markers.",
)
def boundaries_map_page(
    state: State, _: Viewer, lang: Lang = None, basemap: Basemap = None
) -> HTMLResponse:
    from api.routes import boundaries as boundary_routes

    lang_ = _lang(state, lang)
    chosen = _basemaps(state, basemap)
    # an inspection appended changes the map too: the inspections' own revision is in the key
    key = ("boundaries", lang_, tuple(chosen), _revision(state), state.store.inspection_revision(),
           state.network.status == "ready")  # fmt: skip
    page = _cache(state).get(
        key,
        lambda: _finish(
            boundary_routes.boundaries_map(state, lang_, _resolved(state, chosen)),
            _nav("boundaries", lang_),
        ),
    )
    return HTMLResponse(page)
