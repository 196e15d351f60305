"""Web maps (maps/): base maps, styles, zh/en labels, offline assets, and the pages in Chromium.

The layers are the real Changchun data in the repository: OSM roads and the district polygons
(GCJ-02, converted to WGS84), plus a few facilities made here with the kinds' fields and the
demo-scenario label.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from functools import partial
from pathlib import Path

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from conftest import CHANGCHUN, DEMO_DATA, browser_errors
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from shapely.geometry import Point, box

from geo_minzheng._errors import CRSError, LayerValidationError, UnknownIdError
from geo_minzheng.crs import to_wgs84, working_crs
from geo_minzheng.kinds import DEMO_SCENARIO_LABEL, KINDS
from maps import assets, basemaps, render

DISTRICTS = ("220102", "220103", "220104", "220105", "220106")
TITLES_ZH = {
    "districts": "行政区划（区）",
    "roads": "道路（OpenStreetMap）",
    "eldercare": "养老服务设施（演示情景）",
    "shelters": "应急避难场所（演示情景）",
}
TITLES_EN = {
    "districts": "Districts",
    "roads": "Roads (OpenStreetMap)",
    "eldercare": "Eldercare facilities (demo scenario)",
    "shelters": "Emergency shelters (demo scenario)",
}
#: the badge element as written into the page script (JSON-escaped HTML)
BADGE = 'class=\\"gm-badge\\"'
REMOTE_ASSET = re.compile(
    r"""<(?:script|link)\b[^>]*\b(?:src|href)\s*=\s*["'](?:https?:)?//[^"']*["']""", re.I
)


# ---------------------------------------------------------------------------------- layers
@pytest.fixture(scope="module")
def roads() -> gpd.GeoDataFrame:
    gdf = gpd.read_file(CHANGCHUN / "roads_osm.geojson").rename(columns={"osm_id": "id"})
    gdf["source"] = "OpenStreetMap"
    gdf.attrs = {"kind": "road", "title_zh": TITLES_ZH["roads"], "title_en": TITLES_EN["roads"]}
    return gdf


@pytest.fixture(scope="module")
def districts() -> gpd.GeoDataFrame:
    names = pd.read_csv(DEMO_DATA / "admin_codes" / "areas_changchun.csv", dtype=str)
    names = names.set_index("code")["name"]
    frames = []
    for code in DISTRICTS:
        part = gpd.read_file(CHANGCHUN / "districts_gcj02" / f"{code}.geojson")
        part["adcode"] = code
        frames.append(part)
    gcj = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry")
    gdf = to_wgs84(gcj, "GCJ-02")
    gdf["name"] = gdf["adcode"].map(names)
    gdf["level"] = "district"
    gdf["parent_adcode"] = "220100"
    gdf.attrs = {
        "kind": "admin_unit",
        "title_zh": TITLES_ZH["districts"],
        "title_en": TITLES_EN["districts"],
    }
    return gdf[["adcode", "name", "level", "parent_adcode", "geometry"]]


@pytest.fixture(scope="module")
def eldercare(roads: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    # three points on real road vertices in the middle of the road extent (so they are in view)
    centre = roads.union_all().centroid
    vertices = shapely.get_coordinates(roads.geometry.values)
    order = np.argsort(np.hypot(vertices[:, 0] - centre.x, vertices[:, 1] - centre.y))
    picked = vertices[order[[0, 400, 800]]]
    gdf = gpd.GeoDataFrame(
        {
            "id": ["YL-001", "YL-002", "YL-003"],
            "name": ["南关区幸福养老院", "朝阳区日间照料中心", "宽城区助餐点"],
            "category": ["nursing_home", "day_care_center", "meal_point"],
            "beds": [120, 30, None],
            "floor_area_m2": [2400.5, 800.0, 150.0],
            "service_types": [["meals", "medical"], ["day_care"], ["meals"]],
            "status": ["open", "open", "planned"],
            "source": [DEMO_SCENARIO_LABEL] * 3,
        },
        geometry=[Point(x, y) for x, y in picked],
        crs="EPSG:4326",
    )
    gdf.attrs = {
        "kind": "eldercare_center",
        "title_zh": TITLES_ZH["eldercare"],
        "title_en": TITLES_EN["eldercare"],
    }
    return gdf


@pytest.fixture(scope="module")
def shelters(eldercare: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    # a square park-like shelter polygon ~300 m east of the first facility
    x, y = eldercare.geometry.iloc[0].x + 0.004, eldercare.geometry.iloc[0].y
    gdf = gpd.GeoDataFrame(
        {
            "id": ["BN-01"],
            "name": ["人民广场避难场所"],
            "shelter_class": ["fixed_short"],
            "effective_area_m2": [18000.0],
            "capacity_persons": [9000],
            "source": [DEMO_SCENARIO_LABEL],
        },
        geometry=[box(x, y - 0.001, x + 0.002, y + 0.001)],
        crs="EPSG:4326",
    )
    gdf.attrs = {
        "kind": "shelter",
        "title_zh": TITLES_ZH["shelters"],
        "title_en": TITLES_EN["shelters"],
    }
    return gdf


@pytest.fixture(scope="module")
def layers(roads, districts, eldercare, shelters) -> dict[str, gpd.GeoDataFrame]:
    return {"roads": roads, "districts": districts, "eldercare": eldercare, "shelters": shelters}


@pytest.fixture(scope="module")
def zh_page(layers, tmp_path_factory) -> tuple[Path, folium.Map]:
    m = render.layers_map(layers, basemap="none", title="长春市养老服务设施")
    return render.save_html(m, tmp_path_factory.mktemp("maps") / "zh.html"), m


# --------------------------------------------------------------------------------- basemaps
def test_tianditu_without_token_is_a_clear_error() -> None:
    for token in (None, "", "   "):
        with pytest.raises(basemaps.BasemapError, match=r"tianditu.*key.*tianditu_token"):
            basemaps.get_basemap("tianditu", tianditu_token=token)
    with pytest.raises(ValueError, match="tianditu"):
        render.new_map(basemap="tianditu")


def test_tianditu_with_token_stacks_vector_and_annotation_tiles() -> None:
    base = basemaps.get_basemap("tianditu", tianditu_token="abc123")
    assert len(base.tile_urls) == 2
    assert "/vec_w/wmts" in base.tile_urls[0] and "LAYER=vec" in base.tile_urls[0]
    assert "/cva_w/wmts" in base.tile_urls[1] and "LAYER=cva" in base.tile_urls[1]
    assert all(u.endswith("tk=abc123") for u in base.tile_urls)
    assert all("TILEMATRIX={z}&TILEROW={y}&TILECOL={x}" in u for u in base.tile_urls)
    page = render.new_map(basemap="tianditu", tianditu_token="abc123").get_root().render()
    assert "t{s}.tianditu.gov.cn/vec_w" in page and "t{s}.tianditu.gov.cn/cva_w" in page
    assert "OpenStreetMap" in page  # OSM attribution stays: the roads are OSM data


def test_intranet_and_unknown_basemaps() -> None:
    url = "http://10.1.2.3/tiles/{z}/{x}/{y}.png"
    assert basemaps.get_basemap("intranet", tile_url=url).tile_urls == (url,)
    with pytest.raises(basemaps.BasemapError, match=r"\{z\}, \{x\} and \{y\}.*got None"):
        basemaps.get_basemap("intranet")
    with pytest.raises(basemaps.BasemapError, match="got 'http://x/tiles.png'"):
        basemaps.get_basemap("intranet", tile_url="http://x/tiles.png")
    with pytest.raises(UnknownIdError, match="unknown basemap 'google'.*osm, tianditu"):
        basemaps.get_basemap("google")
    assert basemaps.get_basemap("none").tiles == ()


# ----------------------------------------------------------------------------- formatting
def test_values_are_translated_with_units() -> None:
    fmt = render.format_value
    category = KINDS["eldercare_center"].field("category")
    services = KINDS["eldercare_center"].field("service_types")
    beds = KINDS["eldercare_center"].field("beds")
    area = KINDS["eldercare_center"].field("floor_area_m2")
    bridge = KINDS["road"].field("bridge")
    assert fmt("nursing_home", category, "zh") == "养老机构"
    assert fmt("nursing_home", category, "en") == "Nursing home"
    assert fmt(["meals", "medical"], services, "zh") == "助餐、医疗服务"
    assert fmt("meals;day_care", services, "en") == "Meals, Day care"
    assert fmt(120, beds, "zh") == "120 张"
    assert fmt(2400.5, area, "en") == "2,400.5 m²"
    assert fmt(None, beds, "zh") == fmt(float("nan"), beds, "zh") == "—"
    assert fmt("T", bridge, "zh") == "是" and fmt("F", bridge, "en") == "No"
    assert fmt("<b>x</b>", None, "zh") == "&lt;b&gt;x&lt;/b&gt;"


def test_years_and_admin_codes_read_as_people_write_them() -> None:
    fmt = render.format_value
    marker = KINDS["boundary_marker"]
    year, side = marker.field("installed_year"), marker.field("unit_a")
    assert fmt(2014, year, "zh") == "2014" and fmt(2014.0, year, "en") == "2014"  # not 2,014
    assert fmt(12000, KINDS["shelter"].field("capacity_persons"), "zh") == "12,000 人"
    names = {"220102": "南关区", "220104": "朝阳区"}
    assert fmt("220102", side, "zh", unit_names=names) == "南关区（220102）"
    assert fmt("220104", side, "en", unit_names=names) == "朝阳区 (220104)"
    assert fmt("220199", side, "zh", unit_names=names) == "220199"  # unknown code: as it is
    assert fmt("220102", side, "zh") == "220102"  # no admin units on the map
    name = marker.field("name")
    assert fmt("220102", name, "zh", unit_names=names) == "220102"  # not a code field
    assert {"unit_a", "unit_b", "admin_code"} <= render.ADMIN_CODE_FIELDS


def _legend_rows(m: folium.Map) -> list[str]:
    """The legend's row labels, from the page script that fills the legend box."""
    page = m.get_root().render()
    (quoted,) = re.findall(r'div\.innerHTML = ("(?:[^"\\]|\\.)*");', page)
    return re.findall(r"<span>([^<]*)</span>", json.loads(quoted))


def test_a_layer_of_points_and_areas_is_one_legend_row(eldercare, shelters) -> None:
    point = shelters.copy()
    point["id"] = ["BN-02"]
    point.geometry = [eldercare.geometry.iloc[1]]
    mixed = pd.concat([shelters, point], ignore_index=True)
    mixed.attrs = dict(shelters.attrs)
    m = render.layers_map({"shelters": mixed, "eldercare": eldercare}, basemap="none")
    rows = _legend_rows(m)
    assert rows.count(TITLES_ZH["shelters"]) == 1 and TITLES_ZH["eldercare"] in rows, rows


def test_layers_map_opens_on_the_data_not_the_districts(layers) -> None:
    m = render.layers_map(layers, basemap="none")
    (fit,) = [c for c in m._children.values() if isinstance(c, folium.map.FitBounds)]
    data = np.array([g.total_bounds for k, g in layers.items() if k != "districts"])
    expected = [[data[:, 1].min(), data[:, 0].min()], [data[:, 3].max(), data[:, 2].max()]]
    np.testing.assert_allclose(fit.bounds, expected)
    whole = layers["districts"].total_bounds
    assert whole[2] - whole[0] > 3 * (expected[1][1] - expected[0][1])  # what it used to fit
    # districts alone: they are the data
    m = render.layers_map({"districts": layers["districts"]}, basemap="none")
    (fit,) = [c for c in m._children.values() if isinstance(c, folium.map.FitBounds)]
    np.testing.assert_allclose(fit.bounds, [[whole[1], whole[0]], [whole[3], whole[2]]])


# ------------------------------------------------------------------------ layers and styles
def test_geometry_is_simplified_within_tolerance(roads) -> None:
    m = render.new_map(basemap="none")
    layer = render.add_layer(m, roads, kind="road", title="道路", simplify_m=2.0)
    shown = gpd.GeoSeries(
        [shapely.geometry.shape(f["geometry"]) for f in layer.data["features"]], crs=4326
    )
    assert len(shown) == len(roads)
    n_in = len(shapely.get_coordinates(roads.geometry.values))
    n_out = len(shapely.get_coordinates(shown.values))
    assert n_out < n_in
    crs = working_crs(*roads.union_all().centroid.coords[0])
    original = roads.geometry.to_crs(crs).values
    drawn = shown.to_crs(crs).values
    # 2 m simplification + 1e-6° rounding (≤ 0.11 m); the degree→metre factor is ≥ 1 m off
    # the meridian length at 44° N only for longitude, where 1e-5° is 0.8 m: allow 2.5 m
    assert shapely.hausdorff_distance(original, drawn).max() < 2.5


def test_input_frames_are_not_modified(roads, eldercare) -> None:
    before_roads, before_fac = roads.copy(), eldercare.copy()
    render.layers_map({"roads": roads, "eldercare": eldercare}, basemap="none")
    pd.testing.assert_frame_equal(roads, before_roads)
    pd.testing.assert_frame_equal(eldercare, before_fac)


def test_demand_circles_have_area_proportional_to_population() -> None:
    gdf = gpd.GeoDataFrame(
        {"id": ["a", "b", "c"], "population": [100, 400, 1600], "aged_60_plus": [10, 40, 160]},
        geometry=[Point(125.3, 43.9), Point(125.31, 43.9), Point(125.32, 43.9)],
        crs=4326,
    )
    m = render.new_map(basemap="none")
    layer = render.add_layer(m, gdf, kind="demand", title="人口")
    radii = np.array([layer.style_function(f)["radius"] for f in layer.data["features"]])
    np.testing.assert_allclose(radii**2 / radii[-1] ** 2, np.array([100, 400, 1600]) / 1600)


def test_shelter_polygons_are_filled_polygons(shelters) -> None:
    m = render.new_map(basemap="none")
    layer = render.add_layer(m, shelters, kind="shelter", title="避难场所")
    feature = layer.data["features"][0]
    assert feature["geometry"]["type"] == "Polygon"
    style = layer.style_function(feature)
    assert style["fillOpacity"] > 0 and "radius" not in style


def test_bad_inputs_raise_clear_errors(eldercare, shelters) -> None:
    m = render.new_map(basemap="none")
    with pytest.raises(LayerValidationError, match=r"eldercare_center 'BN-01'.*Point.*Polygon"):
        render.add_layer(m, shelters, kind="eldercare_center", title="x")
    with pytest.raises(CRSError, match="CRS is missing"):
        render.add_layer(m, eldercare.set_crs(None, allow_override=True), kind=None, title="x")
    with pytest.raises(ValueError, match=r"popup_fields \['phone'\] are not columns"):
        render.add_layer(m, eldercare, kind="eldercare_center", title="x", popup_fields=["phone"])
    with pytest.raises(ValueError, match=r"unknown style key\(s\) \['colour'\]"):
        render.add_layer(m, eldercare, kind="eldercare_center", title="x", style={"colour": "red"})
    with pytest.raises(ValueError, match="lang must be one of"):
        render.new_map(lang="fr")
    plain = eldercare.copy()
    plain.attrs = {}
    with pytest.raises(LayerValidationError, match=r"layer 'a': attrs\['kind'\] must be"):
        render.layers_map({"a": plain})


def test_projected_layers_are_reprojected(eldercare) -> None:
    m = render.new_map(basemap="none")
    projected = eldercare.to_crs(working_crs(125.3, 43.9))
    layer = render.add_layer(m, projected, kind="eldercare_center", title="x")
    lon, lat = layer.data["features"][0]["geometry"]["coordinates"]
    assert lon == pytest.approx(eldercare.geometry.iloc[0].x, abs=2e-6)
    assert lat == pytest.approx(eldercare.geometry.iloc[0].y, abs=2e-6)


def test_badge_only_with_scenario_data(roads, districts, eldercare) -> None:
    real = render.layers_map({"roads": roads, "districts": districts}, basemap="none")
    assert BADGE not in real.get_root().render()
    demo = render.layers_map({"roads": roads, "eldercare": eldercare}, basemap="none")
    assert BADGE in demo.get_root().render()
    flagged = districts.copy()
    flagged.attrs = {**districts.attrs, "scenario": True}
    assert BADGE in render.layers_map({"d": flagged}, basemap="none").get_root().render()


# -------------------------------------------------------------------------------- assets
def test_offline_page_has_no_remote_assets(zh_page) -> None:
    path, _ = zh_page
    page = path.read_text(encoding="utf-8")
    assert REMOTE_ASSET.findall(page) == []
    assert "cdn.jsdelivr" not in page and "cdnjs" not in page and "code.jquery" not in page
    assert path.stat().st_size < 5_000_000
    assert BADGE in page and "contributors (ODbL)" in page


def test_osm_page_keeps_only_tile_urls(layers, tmp_path) -> None:
    m = render.layers_map(layers, basemap="osm")
    page = render.save_html(m, tmp_path / "osm.html").read_text(encoding="utf-8")
    assert REMOTE_ASSET.findall(page) == []
    assert basemaps.OSM_TILES in page


def test_served_assets_point_at_the_static_folder(eldercare) -> None:
    m = render.layers_map({"eldercare": eldercare}, basemap="none")
    render.use_served_assets(m, base_url="/static/vendor")
    page = m.get_root().render()
    assert REMOTE_ASSET.findall(page) == []
    local = re.findall(r"""(?:src|href)="/static/vendor/([^"]+)\"""", page)
    assert sorted(local) == ["jquery/jquery.min.js", "leaflet/leaflet.css", "leaflet/leaflet.js"]
    for rel in local:
        assert (assets.STATIC_DIR / "vendor" / rel).is_file()


def test_icon_markers_are_refused_offline(tmp_path) -> None:
    m = render.new_map(basemap="none")
    folium.Marker((43.9, 125.3), icon=folium.Icon(icon="home")).add_to(m)
    with pytest.raises(assets.OfflineAssetError, match=r"(?s)folium.Icon.*Leaflet.awesome-markers"):
        render.save_html(m, tmp_path / "icons.html")


def test_vendored_files_are_listed_with_licences() -> None:
    readme = (assets.VENDOR_DIR / "README.md").read_text(encoding="utf-8")
    for asset in assets.ASSETS:
        assert asset.file.is_file(), asset.path
        assert asset.path in readme
    assert "leaflet@1.9.3" in readme and "BSD-2-Clause" in readme
    assert "jquery@3.7.1" in readme and "MIT" in readme
    # what a map page inlines stays small; the API documentation's assets (Swagger UI, ReDoc)
    # are served only by the API, never inlined into a map
    docs = {"swagger-ui", "redoc"}
    files = assets.vendored_files()
    in_maps = [p for p in files if not docs & set(p.relative_to(assets.VENDOR_DIR).parts)]
    assert sum(p.stat().st_size for p in in_maps) < 300_000
    for name in docs:
        assert name in readme
    assert sum(p.stat().st_size for p in files) < 4_000_000


# ------------------------------------------------------------------------------- browser
def _open(driver, url: str) -> None:
    driver.get_log("browser")  # drop messages of earlier pages
    driver.get(url)


def _paths(driver) -> int:
    return driver.execute_script(
        "return document.querySelectorAll('.leaflet-map-pane path.leaflet-interactive').length"
    )


def _overlay_labels(driver) -> dict[str, object]:
    labels = driver.find_elements(By.CSS_SELECTOR, ".leaflet-control-layers-overlays label")
    return {label.text.strip(): label for label in labels}


def _click_feature(driver, m: folium.Map, lon: float, lat: float) -> None:
    """Zoom to street level around the point (as a user would), then click on it."""
    x, y = driver.execute_script(
        "var map = window[arguments[0]];"
        "map.setView([arguments[1], arguments[2]], 16, {animate: false});"
        "var p = map.latLngToContainerPoint([arguments[1], arguments[2]]);"
        "return [p.x, p.y];",
        m.get_name(),
        lat,
        lon,
    )
    container = driver.find_element(By.CSS_SELECTOR, ".folium-map")
    size = container.size
    ActionChains(driver).move_to_element_with_offset(
        container, int(x - size["width"] / 2), int(y - size["height"] / 2)
    ).click().perform()


@pytest.mark.browser
def test_offline_map_in_chromium(chromium, zh_page, layers) -> None:
    driver = chromium
    path, m = zh_page
    _open(driver, path.as_uri())
    assert driver.execute_script("return window.L && L.version") == "1.9.3"
    n_features = sum(len(g) for g in layers.values())
    assert _paths(driver) == n_features  # every road, district, facility and shelter drawn

    labels = _overlay_labels(driver)
    assert set(labels) == set(TITLES_ZH.values())
    checkbox = labels[TITLES_ZH["roads"]].find_element(By.TAG_NAME, "input")
    checkbox.click()
    assert _paths(driver) == n_features - len(layers["roads"])
    checkbox.click()
    assert _paths(driver) == n_features

    facility = layers["eldercare"].iloc[0]
    _click_feature(driver, m, facility.geometry.x, facility.geometry.y)
    text = _popup_text(driver)
    for expected in ("名称", "南关区幸福养老院", "类别", "养老机构", "床位数", "120 张"):
        assert expected in text, (expected, text)
    assert "助餐、医疗服务" in text and "2,400.5 m²" in text

    legend = driver.find_element(By.CSS_SELECTOR, ".gm-legend")
    assert legend.is_displayed() and legend.text.startswith("图例")
    for title in TITLES_ZH.values():
        assert title in legend.text
    badge = driver.find_element(By.CSS_SELECTOR, ".gm-badge")
    assert badge.is_displayed() and badge.text == DEMO_SCENARIO_LABEL
    assert driver.find_element(By.CSS_SELECTOR, ".gm-title").text == "长春市养老服务设施"
    assert driver.find_element(By.CSS_SELECTOR, ".leaflet-control-scale").is_displayed()
    attribution = driver.find_element(By.CSS_SELECTOR, ".leaflet-control-attribution").text
    assert "OpenStreetMap contributors (ODbL)" in attribution
    assert browser_errors(driver) == []


def _popup_text(driver) -> str:
    """The open popup's visible text, once Leaflet's fade-in has made it visible (up to 5 s).

    Selenium reads no text from an element still at opacity 0, so reading at once is racy.
    """
    return WebDriverWait(driver, 5).until(
        lambda d: d.find_element(By.CSS_SELECTOR, ".leaflet-popup-content").text
    )


@pytest.mark.browser
def test_english_map_in_chromium(chromium, layers, tmp_path) -> None:
    driver = chromium
    m = render.layers_map(layers, lang="en", basemap="none", title="Changchun eldercare")
    _open(driver, render.save_html(m, tmp_path / "en.html").as_uri())
    assert set(_overlay_labels(driver)) == set(TITLES_EN.values())
    shelter = layers["shelters"].geometry.iloc[0].centroid
    _click_feature(driver, m, shelter.x, shelter.y)
    text = _popup_text(driver)
    for expected in ("Name", "Shelter class (GB 51143)", "Fixed shelter, short-term", "18,000 m²"):
        assert expected in text, (expected, text)
    assert driver.find_element(By.CSS_SELECTOR, ".gm-legend").text.startswith("Legend")
    assert browser_errors(driver) == []


@pytest.mark.browser
def test_osm_base_map_only_fails_on_tiles_offline(chromium, layers, tmp_path) -> None:
    driver = chromium
    m = render.layers_map(layers, basemap=["osm", "none"])
    _open(driver, render.save_html(m, tmp_path / "osm.html").as_uri())
    bases = driver.find_elements(By.CSS_SELECTOR, ".leaflet-control-layers-base label")
    assert [b.text.strip() for b in bases] == ["OpenStreetMap 地图", "无底图"]
    assert driver.execute_script("return document.querySelectorAll('img.leaflet-tile').length") > 0
    bases[1].find_element(By.TAG_NAME, "input").click()
    assert driver.execute_script("return document.querySelectorAll('img.leaflet-tile').length") == 0
    errors = browser_errors(driver)
    # the test machine has no network: tile requests fail, and nothing else may
    assert all("tile.openstreetmap.org" in e for e in errors), errors


class _StaticHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the page folder at / and maps/static at /static, as the API does."""

    def __init__(self, *args, page_dir: Path, **kwargs) -> None:
        self.page_dir = page_dir
        super().__init__(*args, directory=str(page_dir), **kwargs)

    def translate_path(self, path: str) -> str:
        if path.startswith("/static/"):
            return str(assets.STATIC_DIR / path.removeprefix("/static/").split("?")[0])
        return super().translate_path(path)

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass


@pytest.mark.browser
def test_served_assets_work_over_http(chromium, eldercare, tmp_path) -> None:
    m = render.layers_map({"eldercare": eldercare}, basemap="none")
    render.use_served_assets(m)
    render.save_html(m, tmp_path / "served.html", offline=False)
    handler = partial(_StaticHandler, page_dir=tmp_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _open(chromium, f"http://127.0.0.1:{server.server_address[1]}/served.html")
        assert chromium.execute_script("return window.L && L.version") == "1.9.3"
        assert _paths(chromium) == len(eldercare)
        loaded = chromium.execute_script(
            "return performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)"
        )
        assert {
            "/static/vendor/leaflet/leaflet.js",
            "/static/vendor/leaflet/leaflet.css",
            "/static/vendor/jquery/jquery.min.js",
        } <= set(loaded)
        # the browser asks for /favicon.ico on its own; nothing else may fail
        assert [e for e in browser_errors(chromium) if "/favicon.ico" not in e] == []
    finally:
        server.shutdown()
        server.server_close()
