"""folium web maps of geo-minzheng layers: styles per kind, zh/en popups, legend, badges, assets.

Every map built here has a title box, a metric scale bar, a legend, a layer control, the
"© OpenStreetMap contributors (ODbL)" attribution (the roads layer is OSM data even when the base
map is 天地图 or none) and, whenever any layer holds demo-scenario records, a visible
"演示情景 / demo scenario" badge so generated data is never mistaken for official records.

Vector data is embedded in the page. To keep pages light (the Changchun demo, ~1,250 roads and six
districts, stays well under 2 MB offline), geometries are simplified for display with a tolerance
of ``simplify_m`` metres (default 2 m, invisible at street zoom) and coordinates are rounded to
1e-6 degrees (~0.1 m). The user's frames are never modified.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from branca.element import MacroElement
from jinja2 import Template

from geo_minzheng._errors import CRSError, LayerValidationError, Problem
from geo_minzheng.kinds import DEMO_SCENARIO_LABEL, FieldSpec, LayerKind, get_kind
from maps import assets, basemaps

LANGS = ("zh", "en")
#: Degrees per metre along a meridian; the display simplification tolerance is small enough
#: (metres) that the latitude dependence of a degree of longitude does not matter.
_DEG_PER_M = 1.0 / 111_320.0
_NO_VALUE = "—"

#: Default Leaflet path styles per layer kind (stroke ``color``, ``fillColor``, ...).
KIND_STYLES: dict[str, dict[str, Any]] = {
    "eldercare_center": {"color": "#a63603", "fillColor": "#f16913", "radius": 7},
    "community_service_room": {"color": "#08519c", "fillColor": "#4292c6", "radius": 6},
    "shelter": {"color": "#006d2c", "fillColor": "#41ab5d", "radius": 7, "fillOpacity": 0.45},
    "supply_depot": {"color": "#54278f", "fillColor": "#807dba", "radius": 8},
    "boundary_marker": {"color": "#252525", "fillColor": "#fec44f", "radius": 5},
    "demand": {"color": "#99000d", "fillColor": "#ef3b2c", "radius": 6, "fillOpacity": 0.45},
    "admin_unit": {
        "color": "#3f5fbf",
        "fillColor": "#3f5fbf",
        "weight": 2,
        "fillOpacity": 0.04,
        "dashArray": "6 4",
    },
    "road": {"color": "#7a7a7a", "weight": 1.5, "opacity": 0.9},
}
_GENERIC_STYLE: dict[str, Any] = {"color": "#3388ff", "fillColor": "#3388ff", "radius": 6}
_POINT_DEFAULTS = {"weight": 1.5, "opacity": 1.0, "fillOpacity": 0.85, "fill": True}
_AREA_DEFAULTS = {"weight": 1.5, "opacity": 1.0, "fillOpacity": 0.35, "fill": True}
_LINE_DEFAULTS = {"weight": 2.0, "opacity": 0.9}
#: Road classes drawn thicker (OSM highway values, Geofabrik ``fclass``).
_MAJOR_ROADS = {"motorway", "trunk", "primary", "secondary"}
_MAJOR_ROAD_COLOR = "#c26f2d"
#: Sequential 5-class ramp (ColorBrewer YlOrRd) for demand polygons shaded by population.
_DEMAND_RAMP = ("#ffffb2", "#fecc5c", "#fd8d3c", "#f03b20", "#bd0026")
#: Largest demand-circle radius in px; radius ∝ √population, so area ∝ population.
_DEMAND_MAX_RADIUS_PX = 14.0
_DEMAND_MIN_RADIUS_PX = 2.5
#: Catalog style keys (layers/catalog.yml) → Leaflet path options.
_STYLE_KEYS = {
    "color": "color",
    "fill_color": "fillColor",
    "fillColor": "fillColor",
    "weight": "weight",
    "opacity": "opacity",
    "fill_opacity": "fillOpacity",
    "fillOpacity": "fillOpacity",
    "radius": "radius",
    "dash_array": "dashArray",
    "dashArray": "dashArray",
}
#: Leaflet panes keeping points above lines above areas, whatever order layers are toggled in
#: (Leaflet's overlayPane is 400, its markerPane 600).
PANES = {"gmAreas": 410, "gmLines": 420, "gmPoints": 430}
#: Fields holding an admin division code (行政区划代码): popups add the unit's name when the
#: map has the admin-unit layer (a boundary marker's two sides are read by name, not by code).
ADMIN_CODE_FIELDS = frozenset({"unit_a", "unit_b", "admin_code", "parent_adcode"})
#: Drawing order of kinds in layers_map: areas below lines below points.
_DRAW_ORDER = ("admin_unit", "demand", "road", "shelter")

_TEXT = {
    "legend": ("图例", "Legend"),
    "layer": ("图层", "Layer"),
    "yes": ("是", "Yes"),
    "no": ("否", "No"),
    "badge_hint": (
        "本图含演示情景数据：设施、人口等为按固定种子生成的示例数据，并非官方登记数据。",
        "This map shows demo-scenario data: facilities and population are generated "
        "examples, not official records.",
    ),
    "demand_size": ("圆面积与常住人口成正比", "circle area proportional to population"),
    "people": ("人", "persons"),
    "default_title": ("民政服务设施图层", "Civil-affairs layers"),
}


def _t(key: str, lang: str) -> str:
    zh, en = _TEXT[key]
    return zh if lang == "zh" else en


def _check_lang(lang: str) -> str:
    if lang not in LANGS:
        msg = f"lang must be one of {LANGS}, got {lang!r}"
        raise ValueError(msg)
    return lang


@dataclass(frozen=True)
class LegendItem:
    """One legend row: a swatch (``shape`` 'circle', 'line' or 'polygon') and its label."""

    label: str
    color: str
    shape: str = "polygon"
    fill_color: str | None = None
    fill_opacity: float = 0.6

    def swatch_html(self) -> str:
        """The swatch as an inline-styled span."""
        color = html.escape(self.color)
        fill = html.escape(self.fill_color or self.color)
        if self.shape == "line":
            return (
                '<span class="gm-sw" style="height:0;border-top:3px solid '
                f'{color};margin-top:7px"></span>'
            )
        radius = "50%" if self.shape == "circle" else "2px"
        return (
            f'<span class="gm-sw" style="background:{fill};opacity:{self.fill_opacity:.2f};'
            f'border:2px solid {color};border-radius:{radius}"></span>'
        )


@dataclass
class _MapState:
    """What the map chrome (title, badge, legend) shows; read when the page is rendered."""

    lang: str
    title: str | None
    legend: list[LegendItem] = field(default_factory=list)
    scenario: bool = False
    bounds: list[tuple[float, float, float, float]] = field(default_factory=list)


class _Chrome(MacroElement):
    """Title box, demo-scenario badge, legend, metric scale bar and OSM attribution."""

    _template = Template(
        """
        {% macro header(this, kwargs) %}
        <style>
        .leaflet-container { background: #f2efe9; }
        .gm-titlebox { position: absolute; top: 10px; left: 50%; transform: translateX(-50%);
            z-index: 1000; text-align: center; pointer-events: none; max-width: 34%; }
        /* the title keeps the middle third; the corners' controls keep the outer thirds */
        .leaflet-top .leaflet-control { max-width: 30vw; }
        .gm-title { display: inline-block; background: rgba(255,255,255,.92); padding: 6px 14px;
            border-radius: 4px; box-shadow: 0 1px 5px rgba(0,0,0,.4); font: bold 16px/1.4
            "Microsoft YaHei","PingFang SC","Noto Sans CJK SC",sans-serif; pointer-events: auto; }
        .gm-badge { display: block; width: max-content; margin: 6px auto 0; background: #b10026;
            color: #fff; padding: 3px 10px; border-radius: 3px; font: bold 13px/1.4 sans-serif;
            box-shadow: 0 1px 4px rgba(0,0,0,.4); pointer-events: auto; }
        .gm-legend { background: rgba(255,255,255,.92); padding: 6px 10px; border-radius: 4px;
            box-shadow: 0 1px 5px rgba(0,0,0,.4); font: 12px/1.5 sans-serif; max-width: 260px; }
        .gm-legend h4 { margin: 0 0 4px; font-size: 13px; }
        .gm-legend div { display: flex; align-items: flex-start; gap: 6px; }
        .gm-sw { display: inline-block; flex: 0 0 14px; width: 14px; height: 14px;
            box-sizing: border-box; margin-top: 2px; }
        </style>
        {% endmacro %}
        {% macro script(this, kwargs) %}
        (function(map) {
            if (!map.attributionControl) { L.control.attribution().addTo(map); }
            map.attributionControl.addAttribution({{ this.attribution|tojson }});
            L.control.scale({metric: true, imperial: false, position: "bottomleft"}).addTo(map);
            {%- for name, z in this.panes %}
            if (!map.getPane({{ name|tojson }})) {
                map.createPane({{ name|tojson }}).style.zIndex = {{ z }};
            }
            {%- endfor %}
            {%- if this.title_html %}
            var box = L.DomUtil.create("div", "gm-titlebox", map.getContainer());
            box.innerHTML = {{ this.title_html|tojson }};
            L.DomEvent.disableClickPropagation(box);
            L.DomEvent.disableScrollPropagation(box);
            // popups open below the title and the demo badge, never under them: Leaflet's
            // auto-pan keeps a popup this far from the map's top (read when a popup opens)
            if (!Object.getOwnPropertyDescriptor(L.Popup.prototype.options, "gmClear")) {
                Object.defineProperty(L.Popup.prototype.options, "gmClear", {value: true});
                Object.defineProperty(L.Popup.prototype.options, "autoPanPaddingTopLeft", {
                    configurable: true,
                    get: function() {
                        var top = 5;
                        document.querySelectorAll(".gm-titlebox > *").forEach(function(el) {
                            var frame = el.closest(".leaflet-container").getBoundingClientRect();
                            top = Math.max(top, el.getBoundingClientRect().bottom - frame.top + 8);
                        });
                        return L.point(5, top);
                    }
                });
            }
            {%- endif %}
            {%- if this.legend_html %}
            var legend = L.control({position: "bottomright"});
            legend.onAdd = function() {
                var div = L.DomUtil.create("div", "gm-legend");
                div.innerHTML = {{ this.legend_html|tojson }};
                L.DomEvent.disableClickPropagation(div);
                L.DomEvent.disableScrollPropagation(div);
                return div;
            };
            legend.addTo(map);
            {%- endif %}
        })({{ this._parent.get_name() }});
        {% endmacro %}
        """
    )

    def __init__(self, state: _MapState) -> None:
        super().__init__()
        self._name = "GmChrome"
        self.state = state
        self.attribution = basemaps.OSM_ATTRIBUTION
        self.panes = tuple(PANES.items())

    @property
    def title_html(self) -> str:
        state = self.state
        parts = []
        if state.title:
            parts.append(f'<div class="gm-title">{html.escape(state.title)}</div>')
        if state.scenario:
            hint = html.escape(_t("badge_hint", state.lang))
            parts.append(
                f'<div class="gm-badge" title="{hint}">{html.escape(DEMO_SCENARIO_LABEL)}</div>'
            )
        return "".join(parts)

    @property
    def legend_html(self) -> str:
        items = list(dict.fromkeys(self.state.legend))  # keep order, drop repeats
        if not items:
            return ""
        rows = "".join(
            f"<div>{item.swatch_html()}<span>{html.escape(item.label)}</span></div>"
            for item in items
        )
        return f"<h4>{_t('legend', self.state.lang)}</h4>{rows}"


def _state(m: folium.Map, *, lang: str = "zh") -> _MapState:
    """The map's chrome state, attaching the chrome to a map not made by :func:`new_map`."""
    state = getattr(m, "_gm_state", None)
    if state is None:
        state = _MapState(lang=lang, title=None)
        m._gm_state = state  # type: ignore[attr-defined]
        _Chrome(state).add_to(m)
        assets.map_figure(m)
    return state


def prepare_for_render(element: object) -> None:
    """Give a map its layer control, placed last so that it sees every layer.

    Called by :class:`maps.assets.MapFigure` just before rendering: folium's LayerControl
    references layer variables, so its script must come after all of them.
    """
    if not isinstance(element, folium.Map) or getattr(element, "_gm_state", None) is None:
        return
    controls = [k for k, c in element._children.items() if isinstance(c, folium.LayerControl)]
    if not controls:
        control = folium.LayerControl(collapsed=False, position="topright")
        element.add_child(control)
        controls = [control.get_name()]
    for key in controls:
        element._children.move_to_end(key)


def new_map(
    *,
    lang: str = "zh",
    basemap: str | basemaps.BaseMap | Sequence[str | basemaps.BaseMap] = "osm",
    bounds: Sequence[float] | None = None,
    title: str | None = None,
    tianditu_token: str | None = None,
    tile_url: str | None = None,
) -> folium.Map:
    """An empty map with base map(s), title box, scale bar, legend and OSM attribution.

    Parameters
    ----------
    lang
        'zh' (default) or 'en': language of every label the map shows.
    basemap
        'osm', 'tianditu', 'intranet', 'none', a :class:`maps.basemaps.BaseMap`, or a sequence
        of them; with several, the first is shown and the layer control switches between them.
    bounds
        (min_lon, min_lat, max_lon, max_lat) in WGS84, as ``gdf.total_bounds``; the map opens
        fitted to them.
    title
        Text of the title box (none when None).
    tianditu_token
        天地图 key, needed for 'tianditu'.
    tile_url
        XYZ tile URL template of the intranet tile server, needed for 'intranet'.
    """
    _check_lang(lang)
    chosen = basemaps.resolve(basemap, tianditu_token=tianditu_token, tile_url=tile_url)
    m = folium.Map(location=(35.0, 105.0), zoom_start=4, tiles=None, control_scale=False)
    figure = assets.map_figure(m)
    figure.title = title
    for i, base in enumerate(chosen):
        base.add_to(m, lang=lang, show=i == 0, control=len(chosen) > 1)
    state = _state(m, lang=lang)
    state.lang = lang
    state.title = title
    if bounds is not None:
        minx, miny, maxx, maxy = (float(b) for b in bounds)
        _fit(m, [(minx, miny, maxx, maxy)])
    return m


def _fit(m: folium.Map, boxes: Sequence[tuple[float, float, float, float]]) -> None:
    finite = [b for b in boxes if len(b) == 4 and all(math.isfinite(v) for v in b)]
    if not finite:
        return
    arr = np.asarray(finite, dtype=float)
    minx, miny = arr[:, 0].min(), arr[:, 1].min()
    maxx, maxy = arr[:, 2].max(), arr[:, 3].max()
    m.fit_bounds([[miny, minx], [maxy, maxx]])


def add_legend(
    m: folium.Map,
    items: Iterable[LegendItem | Mapping[str, Any] | tuple[str, str]],
    *,
    lang: str = "zh",
) -> None:
    """Append rows to the map's single legend.

    Parameters
    ----------
    items
        :class:`LegendItem` objects, mappings with the same keys (``label``, ``color``,
        ``shape``, ``fill_color``, ``fill_opacity``), or ``(label, color)`` pairs.
    lang
        Language of the legend heading.
    """
    _check_lang(lang)
    state = _state(m, lang=lang)
    for item in items:
        if isinstance(item, LegendItem):
            state.legend.append(item)
        elif isinstance(item, Mapping):
            state.legend.append(LegendItem(**item))
        else:
            label, color = item
            state.legend.append(LegendItem(str(label), str(color)))


def add_html(m: folium.Map, markup: str) -> None:
    """Add ``markup`` (a panel, a table) to the page body of map ``m``."""
    assets.map_figure(m).html.add_child(folium.Element(markup))


def text_panel(element_id: str, text: str, *, max_width_px: int = 440) -> str:
    """A panel of ``text`` (escaped) in the map's lower left corner, for a run's headline."""
    return (
        f'<div id="{html.escape(element_id)}" style="position:absolute;left:10px;bottom:30px;'
        "z-index:1000;background:rgba(255,255,255,0.95);padding:6px 8px;border-radius:4px;"
        f"max-width:{max_width_px}px;font:12px/1.5 sans-serif;"
        'box-shadow:0 1px 5px rgba(0,0,0,0.4)">'
        f"{html.escape(text)}</div>"
    )


def mark_scenario(m: folium.Map) -> None:
    """Show the 演示情景 / demo scenario badge (for layers drawn without :func:`add_layer`)."""
    _state(m).scenario = True


def _resolve_kind(kind: str | LayerKind | None) -> LayerKind | None:
    if kind is None or isinstance(kind, LayerKind):
        return kind
    return get_kind(kind)


def _user_style(style: Mapping[str, Any] | Any | None, *, layer: str) -> dict[str, Any]:
    """Catalog or Leaflet style keys → Leaflet options; None values are ignored."""
    if style is None:
        return {}
    if hasattr(style, "model_dump"):
        style = style.model_dump()
    elif not isinstance(style, Mapping):
        style = vars(style)
    unknown = sorted(k for k in style if k not in _STYLE_KEYS and k != "icon")
    if unknown:
        msg = (
            f"layer '{layer}': unknown style key(s) {unknown}; "
            f"expected some of {sorted(set(_STYLE_KEYS))}"
        )
        raise ValueError(msg)
    out = {_STYLE_KEYS[k]: v for k, v in style.items() if k in _STYLE_KEYS and v is not None}
    if "color" in out and "fillColor" not in out:
        out["fillColor"] = out["color"]
    return out


def _to_wgs84(gdf: gpd.GeoDataFrame, *, layer: str) -> gpd.GeoDataFrame:
    if not isinstance(gdf, gpd.GeoDataFrame):
        msg = f"layer '{layer}': expected a GeoDataFrame, got {type(gdf).__name__}"
        raise TypeError(msg)
    if gdf.crs is None:
        msg = (
            f"layer '{layer}': CRS is missing; set it (gdf.set_crs('EPSG:4326')) or convert "
            "GCJ-02/BD-09 data with geo_minzheng.crs.to_wgs84 first"
        )
        raise CRSError(msg)
    if gdf.crs.to_epsg() != 4326:
        return gdf.to_crs(4326)
    return gdf


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, list | tuple | np.ndarray | dict):
        return len(value) == 0
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple | np.ndarray):
        return list(value)
    text = str(value).strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, list):
            return parsed
    for sep in (";", ",", "、", "|"):
        if sep in text:
            return [p.strip() for p in text.split(sep) if p.strip()]
    return [text]


def _number(value: Any) -> str | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    if number.is_integer():
        return f"{number:,.0f}"
    return f"{number:,.2f}".rstrip("0").rstrip(".")


def format_value(
    value: Any,
    spec: FieldSpec | None,
    lang: str = "zh",
    *,
    unit_names: Mapping[str, str] | None = None,
) -> str:
    """A field value as shown to users: enum labels translated, units appended, years without
    digit grouping, admin codes with their unit's name (from ``unit_names``: code -> name),
    HTML-escaped."""
    if _is_missing(value):
        return _NO_VALUE
    if spec is None:
        return html.escape(str(value))
    if unit_names and spec.name in ADMIN_CODE_FIELDS:
        code = str(value).strip()
        if code in unit_names:
            name = unit_names[code]
            return html.escape(f"{name}（{code}）" if lang == "zh" else f"{name} ({code})")
    if spec.type == "int" and _is_year(spec) and _number(value) is not None:
        return html.escape(str(int(float(value))))
    if spec.type == "list":
        choices = spec.choices or {}
        labels = [
            choices[str(v)][0 if lang == "zh" else 1] if str(v) in choices else str(v)
            for v in _as_list(value)
        ]
        return html.escape(("、" if lang == "zh" else ", ").join(labels))
    if spec.choices and str(value) in spec.choices:
        zh, en = spec.choices[str(value)]
        return html.escape(zh if lang == "zh" else en)
    if spec.type == "bool":
        text = str(value).strip().lower()
        if text in {"true", "t", "1", "yes", "y"}:
            return _t("yes", lang)
        if text in {"false", "f", "0", "no", "n"}:
            return _t("no", lang)
    if spec.type in ("int", "float"):
        number = _number(value)
        if number is not None:
            return html.escape(f"{number} {spec.unit}" if spec.unit else number)
    if spec.type == "date":
        return html.escape(str(value)[:10])
    return html.escape(str(value))


def _is_year(spec: FieldSpec) -> bool:
    """A calendar year (``installed_year``): written 2014, never 2,014."""
    return spec.name == "year" or spec.name.endswith("_year")


def _popup_fields(
    gdf: gpd.GeoDataFrame, spec: LayerKind | None, popup_fields: Sequence[str] | None, layer: str
) -> list[str]:
    columns = [c for c in gdf.columns if c != gdf.geometry.name]
    if popup_fields is not None:
        missing = [f for f in popup_fields if f not in columns]
        if missing:
            msg = f"layer '{layer}': popup_fields {missing} are not columns; columns are {columns}"
            raise ValueError(msg)
        return list(popup_fields)
    if spec is None:
        return columns
    return [f.name for f in spec.fields if f.name in columns]


def _field_spec(spec: LayerKind | None, name: str) -> FieldSpec | None:
    if spec is None:
        return None
    return next((f for f in spec.fields if f.name == name), None)


def _formatted(
    data: pd.DataFrame,
    column: str,
    spec: FieldSpec | None,
    lang: str,
    unit_names: Mapping[str, str] | None = None,
) -> list[str]:
    return [format_value(v, spec, lang, unit_names=unit_names) for v in data[column].tolist()]


def _tooltips(data: pd.DataFrame, spec: LayerKind | None, title: str, lang: str) -> list[str]:
    """Each record's name, else its id, else the kind label (unnamed roads)."""
    fallback = html.escape(spec.label(lang) if spec else title)
    tips = [fallback] * len(data)
    for column in (spec.id_field if spec else "id", spec.name_field if spec else "name"):
        if column and column in data.columns:
            for i, value in enumerate(data[column].tolist()):
                if not _is_missing(value) and str(value).strip():
                    tips[i] = html.escape(str(value))
    return tips


def _display_geometry(geoms: gpd.GeoSeries, simplify_m: float | None) -> np.ndarray:
    values = geoms.values
    if simplify_m:
        values = shapely.simplify(np.asarray(values), simplify_m * _DEG_PER_M)
    return shapely.transform(np.asarray(values), lambda xy: np.round(xy, 6))


def _is_scenario(gdf: gpd.GeoDataFrame) -> bool:
    if gdf.attrs.get("scenario"):
        return True
    return "source" in gdf.columns and bool((gdf["source"] == DEMO_SCENARIO_LABEL).any())


def _demand_styles(
    gdf: gpd.GeoDataFrame, base: dict[str, Any], lang: str, title: str
) -> tuple[list[dict[str, Any]], list[LegendItem]]:
    """Demand points sized by √population; demand areas shaded in population quintiles."""
    population = pd.to_numeric(gdf.get("population"), errors="coerce")
    if population is None or population.notna().sum() == 0:
        return [dict(base) for _ in range(len(gdf))], [
            LegendItem(title, base["color"], "circle", base["fillColor"])
        ]
    is_point = (gdf.geom_type == "Point").to_numpy()
    pop = population.to_numpy(dtype=float)
    styles: list[dict[str, Any]] = []
    legend: list[LegendItem] = []
    pmax = np.nanmax(pop) if np.isfinite(pop).any() else 0.0
    unit = _t("people", lang)
    if is_point.any():
        legend.append(
            LegendItem(
                f"{title}（{_t('demand_size', lang)}）"
                if lang == "zh"
                else f"{title} ({_t('demand_size', lang)})",
                base["color"],
                "circle",
                base["fillColor"],
            )
        )
    area_pop = pop[~is_point & np.isfinite(pop)]
    breaks: np.ndarray = (
        np.unique(np.quantile(area_pop, np.linspace(0, 1, 6))) if area_pop.size else np.empty(0)
    )
    n_classes = max(len(breaks) - 1, 1)
    ramp = _DEMAND_RAMP[-n_classes:] if n_classes < len(_DEMAND_RAMP) else _DEMAND_RAMP
    for lo, hi, colour in zip(breaks[:-1], breaks[1:], ramp, strict=False):
        legend.append(
            LegendItem(f"{title} {_number(lo)}–{_number(hi)} {unit}", "#999999", "polygon", colour)
        )
    for value, point in zip(pop, is_point, strict=True):
        style = dict(base)
        if point:
            style["pane"] = "gmPoints"
            share = value / pmax if pmax > 0 and np.isfinite(value) else 0.0
            style["radius"] = round(
                max(_DEMAND_MIN_RADIUS_PX, _DEMAND_MAX_RADIUS_PX * math.sqrt(share)), 1
            )
        elif len(breaks) >= 2 and np.isfinite(value):
            cls = int(np.clip(np.searchsorted(breaks, value, side="right") - 1, 0, n_classes - 1))
            style.update(fillColor=ramp[cls], color="#999999", weight=0.5, fillOpacity=0.6)
        styles.append(style)
    return styles, legend


def _styles(
    gdf: gpd.GeoDataFrame,
    spec: LayerKind | None,
    user: dict[str, Any],
    lang: str,
    title: str,
) -> tuple[list[dict[str, Any]], list[LegendItem]]:
    """One Leaflet style per record and the legend rows that explain them."""
    base_kind = dict(KIND_STYLES.get(spec.name, _GENERIC_STYLE) if spec else _GENERIC_STYLE)
    geom_types = set(gdf.geom_type)
    if spec is not None and spec.name == "demand":
        # size/shade by population whatever the colours; a fixed radius would hide the data
        base = {**_POINT_DEFAULTS, **base_kind, **user}
        return _demand_styles(gdf, base, lang, title)
    styles = []
    for geom_type, row_fclass in zip(
        gdf.geom_type, gdf["fclass"] if "fclass" in gdf.columns else [None] * len(gdf), strict=True
    ):
        if geom_type in ("Point", "MultiPoint"):
            style = {**_POINT_DEFAULTS, **base_kind}
        elif geom_type in ("LineString", "MultiLineString"):
            style = {**_LINE_DEFAULTS, **base_kind}
            style.pop("fillColor", None)
        else:
            style = {**_AREA_DEFAULTS, **base_kind}
        style.update(user)
        if spec is not None and spec.name == "road" and row_fclass in _MAJOR_ROADS:
            style["weight"] = 2 * float(style.get("weight", 1.5))
            if "color" not in user:
                style["color"] = _MAJOR_ROAD_COLOR
        if geom_type in ("Point", "MultiPoint"):
            style["pane"] = "gmPoints"
        else:
            style.pop("radius", None)
        styles.append(style)
    colour = user.get("color", base_kind["color"])
    fill = user.get("fillColor", base_kind.get("fillColor", colour))
    legend = []
    if geom_types & {"Point", "MultiPoint"}:
        legend.append(LegendItem(title, colour, "circle", fill))
    if geom_types & {"LineString", "MultiLineString"}:
        legend.append(LegendItem(title, colour, "line"))
        if spec is not None and spec.name == "road" and "color" not in user:
            major = "主干道路" if lang == "zh" else "Major roads"
            legend.append(
                LegendItem(
                    f"{title}（{major}）" if lang == "zh" else f"{title} ({major})",
                    _MAJOR_ROAD_COLOR,
                    "line",
                )
            )
    if geom_types & {"Polygon", "MultiPolygon"} and not geom_types & {"Point", "MultiPoint"}:
        # a layer of points and areas (shelters mapped either way) is one row: its circle
        legend.append(
            LegendItem(
                title, colour, "polygon", fill, max(float(styles[0].get("fillOpacity", 0.3)), 0.3)
            )
        )
    return styles, legend


def _check_geometry(gdf: gpd.GeoDataFrame, spec: LayerKind | None, layer: str) -> None:
    """Reject geometry types the kind does not allow, listing every offending record."""
    if spec is None:
        return
    allowed = set(spec.geometry_types)
    bad = ~gdf.geom_type.isin(allowed) & gdf.geometry.notna()
    if not bad.any():
        return
    ids = gdf[spec.id_field] if spec.id_field in gdf.columns else pd.Series(gdf.index, gdf.index)
    problems = [
        Problem(f"{spec.name} '{ids[i]}'", "geometry", " or ".join(spec.geometry_types), str(gt))
        for i, gt in gdf.geom_type[bad].items()
    ]
    raise LayerValidationError(layer, problems)


def add_layer(
    m: folium.Map,
    gdf: gpd.GeoDataFrame,
    *,
    kind: str | LayerKind | None,
    title: str,
    style: Mapping[str, Any] | Any | None = None,
    lang: str = "zh",
    popup_fields: Sequence[str] | None = None,
    show: bool = True,
    simplify_m: float | None = 2.0,
    legend: bool = True,
    unit_names: Mapping[str, str] | None = None,
) -> folium.GeoJson:
    """Draw one layer: points as CircleMarkers, lines as polylines, areas filled.

    Parameters
    ----------
    m
        The map (from :func:`new_map`, or any folium Map).
    gdf
        The layer, WGS84 preferred (other CRSs are reprojected on a copy; a missing CRS is an
        error because GCJ-02 data cannot be recognised).
    kind
        Layer kind name (``geo_minzheng.kinds``) giving labels, units, enum translations and the
        default style; None for a layer of no kind (results, isochrones): columns shown as is.
    title
        Name in the layer control and legend, in the map's language.
    style
        Overrides of the kind's style: catalog keys (``color``, ``fill_color``, ``weight``,
        ``fill_opacity``, ``radius``) or Leaflet ones.
    lang
        'zh' or 'en' for popup labels and values.
    popup_fields
        Columns shown in the popup, in order; default every kind field the layer has.
    show
        Whether the layer is switched on when the page opens.
    simplify_m
        Display simplification tolerance in metres (None keeps every vertex).
    legend
        Whether to add this layer's rows to the legend.
    unit_names
        Admin division code -> unit name: popups show admin codes (:data:`ADMIN_CODE_FIELDS`)
        with the unit's name (:func:`layers_map` passes its admin-unit layers').

    Returns
    -------
    folium.GeoJson
        The layer added to ``m``.
    """
    _check_lang(lang)
    layer = str(gdf.attrs.get("layer", title)) if isinstance(gdf, gpd.GeoDataFrame) else title
    spec = _resolve_kind(kind)
    data = _to_wgs84(gdf, layer=layer)
    data = data[data.geometry.notna() & ~data.geometry.is_empty]
    _check_geometry(data, spec, layer)
    user = _user_style(style, layer=layer)
    state = _state(m, lang=lang)
    fields = _popup_fields(data, spec, popup_fields, layer)
    # folium puts aliases and layer names into innerHTML: escape them like the values
    labels = [
        html.escape(_field_spec(spec, f).label(lang) if _field_spec(spec, f) else str(f))  # type: ignore[union-attr]
        for f in fields
    ]
    styles, legend_items = _styles(data, spec, user, lang, title)
    layer_label = _t("layer", lang)
    columns = {
        f"f{j}": _formatted(data, f, _field_spec(spec, f), lang, unit_names)
        for j, f in enumerate(fields)
    }
    tips = _tooltips(data, spec, title, lang)
    escaped_title = html.escape(title)
    features = [
        {
            "type": "Feature",
            "id": str(i),
            "properties": {
                "__layer": escaped_title,
                **{key: values[i] for key, values in columns.items()},
                "__tip": tips[i],
            },
            "geometry": shapely.geometry.mapping(geom),
        }
        for i, geom in enumerate(_display_geometry(data.geometry, simplify_m))
    ]
    geojson = {"type": "FeatureCollection", "features": features}
    has_points = bool(data.geom_type.isin(["Point", "MultiPoint"]).any())
    marker = None
    if has_points:
        # fill=True: folium's CircleMarker defaults to hollow circles, clickable on the rim only
        marker = folium.CircleMarker(radius=float(styles[0].get("radius", 6)), fill=True)
    layer_obj = folium.GeoJson(
        geojson,
        name=escaped_title,
        style_function=lambda feature: styles[int(feature["id"])],
        marker=marker,
        popup=folium.GeoJsonPopup(
            fields=["__layer", *[f"f{j}" for j in range(len(fields))]],
            aliases=[layer_label, *labels],
            labels=True,
            max_width=360,
        )
        if features
        else None,
        tooltip=folium.GeoJsonTooltip(fields=["__tip"], labels=False) if features else None,
        show=show,
        # lines/areas go to their pane through the layer options, points through their style
        pane="gmLines"
        if data.geom_type.isin(["LineString", "MultiLineString"]).any()
        else "gmAreas",
    )
    layer_obj.add_to(m)
    if legend:
        state.legend.extend(legend_items)
    if _is_scenario(data) or _is_scenario(gdf):
        state.scenario = True
    if len(data):
        state.bounds.append(tuple(float(v) for v in data.total_bounds))  # type: ignore[arg-type]
    return layer_obj


def _layer_title(layer_id: str, gdf: gpd.GeoDataFrame, spec: LayerKind, lang: str) -> str:
    attrs = gdf.attrs
    return str(attrs.get(f"title_{lang}") or attrs.get("title") or spec.label(lang) or layer_id)


def layers_map(
    layers: Mapping[str, gpd.GeoDataFrame],
    *,
    styles: Mapping[str, Mapping[str, Any] | Any] | None = None,
    lang: str = "zh",
    basemap: str | basemaps.BaseMap | Sequence[str | basemaps.BaseMap] = "osm",
    title: str | None = None,
    tianditu_token: str | None = None,
    tile_url: str | None = None,
) -> folium.Map:
    """A map of several layers, each styled by its kind, fitted to their extent.

    Parameters
    ----------
    layers
        Layer id → GeoDataFrame; each frame's ``attrs["kind"]`` names its kind, and
        ``attrs["title_zh"]``/``attrs["title_en"]`` (or ``attrs["title"]``) its title, else the
        kind's label is used. Areas are drawn first, then roads, then points.
    styles
        Layer id → style overrides (see :func:`add_layer`), e.g. the catalog's styles.
    lang, basemap, title, tianditu_token, tile_url
        As in :func:`new_map`; ``title`` defaults to a generic one in ``lang``.
    """
    _check_lang(lang)
    problems = [
        Problem(f"layer '{lid}'", "attrs['kind']", "a layer kind name", "nothing")
        for lid, gdf in layers.items()
        if not gdf.attrs.get("kind")
    ]
    if problems:
        where = "layers_map"
        raise LayerValidationError(where, problems)
    m = new_map(
        lang=lang,
        basemap=basemap,
        title=title or _t("default_title", lang),
        tianditu_token=tianditu_token,
        tile_url=tile_url,
    )
    order = {k: i for i, k in enumerate(_DRAW_ORDER)}

    def rank(item: tuple[str, gpd.GeoDataFrame]) -> int:
        kind = item[1].attrs["kind"]
        return order.get(kind, len(order))

    styles = styles or {}
    names = _unit_names(gdf for gdf in layers.values() if gdf.attrs["kind"] == "admin_unit")
    data_boxes = []
    for layer_id, gdf in sorted(layers.items(), key=rank):
        spec = get_kind(gdf.attrs["kind"])
        before = len(_state(m).bounds)
        add_layer(
            m,
            gdf,
            kind=spec,
            title=_layer_title(layer_id, gdf, spec, lang),
            style=styles.get(layer_id),
            lang=lang,
            unit_names=names,
        )
        if spec.name != "admin_unit":
            data_boxes += _state(m).bounds[before:]
    # open on the data: whole districts reach far beyond the facilities, roads and residents
    # of a city's extract, which would then be a blob in the middle; the units stay as context
    _fit(m, data_boxes or _state(m).bounds)
    return m


def _unit_names(units: Iterable[gpd.GeoDataFrame]) -> dict[str, str]:
    """Admin division code -> name from admin-unit layers."""
    out: dict[str, str] = {}
    for gdf in units:
        if "adcode" in gdf.columns and "name" in gdf.columns:
            for code, name in zip(gdf["adcode"], gdf["name"], strict=True):
                if not _is_missing(code) and not _is_missing(name):
                    out.setdefault(str(code).strip(), str(name))
    return out


def save_html(m: folium.Map, path: str | Path, *, offline: bool = True) -> Path:
    """Write the map as one HTML page.

    With ``offline=True`` Leaflet, jQuery and their images are inlined from ``maps/static/vendor``
    so the file works from ``file://`` with no network (only base-map tiles need a tile server;
    use ``basemap="none"`` or an intranet tile server where there is none). With ``offline=False``
    the page keeps its current asset URLs (CDN, or the API's if :func:`use_served_assets` was
    called).
    """
    figure = assets.map_figure(m)
    previous = figure.asset_mode
    if offline:
        figure.asset_mode = "inline"
    try:
        page = figure.render()
    finally:
        figure.asset_mode = previous
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


use_served_assets = assets.use_served_assets
