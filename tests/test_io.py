"""Reading and writing layers: every format, encodings, CRSs, and the real GCJ-02 districts."""

from __future__ import annotations

import hashlib
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
from conftest import CHANGCHUN, DEMO_DATA
from pyproj import Geod, Transformer

from geo_minzheng import crs, io
from geo_minzheng._errors import CRSError, LayerValidationError, UnknownIdError

DISTRICTS = {"220102": "南关区", "220103": "宽城区", "220104": "朝阳区", "220105": "二道区"}

# Hand-made shelter records at real places in central Changchun (WGS84).
SHELTERS = [
    ("S-001", "人民广场", "emergency", 8000.0, 4000, 125.3245, 43.8868),
    ("S-002", "南湖公园", "fixed_long", 250000.0, 60000, 125.3078, 43.8498),
    ("S-003", "长春公园", "fixed_short", 30000.0, 10000, 125.3410, 43.9013),
]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _shelters() -> gpd.GeoDataFrame:
    frame = pd.DataFrame(
        SHELTERS, columns=["id", "name", "shelter_class", "effective_area_m2",
                           "capacity_persons", "lon", "lat"],
    )  # fmt: skip
    return gpd.GeoDataFrame(
        frame.drop(columns=["lon", "lat"]),
        geometry=gpd.points_from_xy(frame.lon, frame.lat),
        crs="EPSG:4326",
    )


def _districts_gcj02() -> gpd.GeoDataFrame:
    """The four central districts as published (GCJ-02 coordinates), with their real codes."""
    frames = []
    for code, name in DISTRICTS.items():
        gdf = gpd.read_file(CHANGCHUN / "districts_gcj02" / f"{code}.geojson")
        frames.append(gdf.assign(adcode=code, name=name, level="district"))
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=None)


@pytest.fixture(scope="module")
def roads() -> gpd.GeoDataFrame:
    return gpd.read_file(CHANGCHUN / "roads_osm.geojson")


def _coords(gdf: gpd.GeoDataFrame) -> np.ndarray:
    return shapely.get_coordinates(np.asarray(gdf.geometry.values))


def test_geojson_round_trip(tmp_path: Path) -> None:
    original = _shelters()
    path = io.write_geojson(original, tmp_path / "shelters.geojson")
    text = path.read_text(encoding="utf-8")
    assert '"crs"' not in text  # RFC 7946: no crs member, WGS84 implied
    back = io.read_layer(path, kind="shelter")
    assert back.crs.to_epsg() == 4326
    assert back["id"].tolist() == ["S-001", "S-002", "S-003"]
    assert back["name"].tolist() == ["人民广场", "南湖公园", "长春公园"]
    assert back["capacity_persons"].dtype == "Int64"
    assert back["capacity_persons"].tolist() == [4000, 60000, 10000]
    np.testing.assert_allclose(_coords(back), _coords(original), atol=1e-7)
    assert back.attrs["kind"] == "shelter" and back.attrs["layer"] == "shelters"


def test_geopackage_several_layers_round_trip(tmp_path: Path) -> None:
    districts = crs.to_wgs84(_districts_gcj02(), "GCJ-02")
    shelters = _shelters()
    path = io.write_gpkg({"districts": districts, "shelters": shelters}, tmp_path / "demo.gpkg")
    names = sorted(str(row[0]) for row in pyogrio.list_layers(path))
    assert names == ["districts", "shelters"]
    back = io.read_layer(path, kind="admin_unit", layer_name="districts")
    assert back["adcode"].tolist() == list(DISTRICTS)
    assert back.attrs["layer"] == "districts"
    np.testing.assert_allclose(_coords(back), _coords(districts), atol=1e-9)
    # areas in the working CRS are unchanged by the round trip (real polygons, km²)
    working = crs.working_crs(125.33, 43.88)
    area_km2 = back.to_crs(working).area.to_numpy() / 1e6
    np.testing.assert_allclose(area_km2, districts.to_crs(working).area.to_numpy() / 1e6)
    assert area_km2.min() > 50 and area_km2.max() < 1000
    # several layers and none named: the error lists them; the layer ID is used when it matches
    with pytest.raises(UnknownIdError, match=r"several layers \(districts, shelters\)"):
        io.read_layer(path, kind="shelter")
    with pytest.raises(UnknownIdError, match="no layer 'refuges'; it has: districts, shelters"):
        io.read_layer(path, kind="shelter", layer_name="refuges")
    assert io.read_layer(path, kind="shelter", layer="shelters")["id"].iloc[0] == "S-001"
    # a second write replaces one layer and keeps the other
    io.write_gpkg({"shelters": shelters.iloc[:2]}, path)
    assert len(io.read_layer(path, kind="shelter", layer_name="shelters")) == 2
    assert len(io.read_layer(path, kind="admin_unit", layer_name="districts")) == 4


def test_write_joins_list_values(tmp_path: Path) -> None:
    gdf = gpd.GeoDataFrame(
        {
            "id": ["E1"],
            "name": ["南关区居家养老服务中心"],
            "category": ["home_care_center"],
            "service_types": [["meals", "day_care"]],
        },
        geometry=[shapely.Point(125.33, 43.87)],
        crs="EPSG:4326",
    )
    path = io.write_gpkg({"eldercare": gdf}, tmp_path / "e.gpkg")
    back = io.read_layer(path, kind="eldercare_center", layer_name="eldercare")
    assert back.loc[0, "service_types"] == "meals;day_care"
    assert isinstance(gdf.loc[0, "service_types"], list)  # the input frame is untouched


def _as_shapefile_columns(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Column names cut to 10 characters, as a shapefile stores them."""
    return gdf.rename(columns={c: c[:10] for c in gdf.columns if c != "geometry"})


def test_shapefile_with_prj_in_projected_cgcs2000(tmp_path: Path) -> None:
    original = _shelters()
    working = crs.working_crs(125.33, 43.88)
    path = tmp_path / "shelters.shp"
    _as_shapefile_columns(original.to_crs(working)).to_file(path, engine="pyogrio")
    assert path.with_suffix(".prj").exists()
    back = io.read_layer(path, kind="shelter")
    assert back.crs.to_epsg() == 4326
    np.testing.assert_allclose(_coords(back), _coords(original), atol=1e-8)
    assert back.attrs["source_crs"] == "EPSG:4551"
    # truncated names (effective_, capacity_p) are recognised
    assert back["effective_area_m2"].tolist() == [8000.0, 250000.0, 30000.0]
    assert back["capacity_persons"].tolist() == [4000, 60000, 10000]


def test_shapefile_without_prj_needs_source_crs(tmp_path: Path) -> None:
    original = _shelters()
    path = tmp_path / "registry.shp"
    cgcs = _as_shapefile_columns(original.set_crs(crs.CGCS2000, allow_override=True))
    cgcs.to_file(path, engine="pyogrio")
    path.with_suffix(".prj").unlink()
    with pytest.raises(CRSError) as info:
        io.read_layer(path, kind="shelter")
    message = str(info.value)
    assert "registry.shp" in message and ".prj" in message and "source_crs" in message
    back = io.read_layer(path, kind="shelter", source_crs="EPSG:4490")
    np.testing.assert_allclose(_coords(back), _coords(original), atol=1e-9)
    assert back.attrs["source_crs"] == "EPSG:4490"


def test_gbk_shapefile_without_cpg(tmp_path: Path) -> None:
    # DBF field names hold 10 bytes: at most 5 Chinese characters in GBK
    zh = {"name": "名称", "effective_area_m2": "避难面积", "capacity_persons": "可容纳人数"}
    frame = _as_shapefile_columns(_shelters().rename(columns=zh))
    path = tmp_path / "gbk.shp"
    frame.to_file(path, engine="pyogrio", encoding="GBK")
    for sidecar in (".cpg", ".CPG"):
        path.with_suffix(sidecar).unlink(missing_ok=True)
    back = io.read_layer(path, kind="shelter")
    assert back.attrs["encoding"] == "gbk"
    assert back["name"].tolist() == ["人民广场", "南湖公园", "长春公园"]
    assert back["effective_area_m2"].tolist() == [8000.0, 250000.0, 30000.0]


def test_gbk_csv_with_chinese_headers(tmp_path: Path) -> None:
    text = (
        "编号,名称,类别,经度,纬度,床位数,建筑面积（平方米）,状态\n"
        "E-01,南关区社会福利院,养老机构,125.3320,43.8760,320,12000,启用\n"
        "E-02,自强街道日间照料中心,日间照料中心,125.3371,43.8802,,450.5,规划中\n"
    )
    path = tmp_path / "养老机构台账.csv"
    path.write_bytes(text.encode("gbk"))
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")  # really GBK, not UTF-8
    digest = _sha(path)
    gdf = io.read_layer(path, kind="eldercare_center")
    assert _sha(path) == digest
    assert gdf.attrs["encoding"] == "gbk"
    assert gdf["id"].tolist() == ["E-01", "E-02"]
    assert gdf["name"].tolist() == ["南关区社会福利院", "自强街道日间照料中心"]
    assert gdf["category"].tolist() == ["nursing_home", "day_care_center"]
    assert gdf["status"].tolist() == ["open", "planned"]
    assert gdf["beds"].dtype == "Int64"
    assert gdf["beds"].iloc[0] == 320 and pd.isna(gdf["beds"].iloc[1])
    assert gdf["floor_area_m2"].tolist() == [12000.0, 450.5]
    assert "经度" not in gdf.columns and "纬度" not in gdf.columns
    np.testing.assert_allclose(_coords(gdf), [[125.3320, 43.8760], [125.3371, 43.8802]])


def test_gb18030_only_characters(tmp_path: Path) -> None:
    # 㐀 (U+3400) is outside GBK but inside GB18030
    path = tmp_path / "demand.csv"
    text = "编号,名称,人口,60岁及以上人口,lon,lat\nD1,㐀社区,1200,300,125.33,43.88\n"
    path.write_bytes(text.encode("gb18030"))
    gdf = io.read_layer(path, kind="demand")
    assert gdf.attrs["encoding"] == "gb18030"
    assert gdf["name"].tolist() == ["㐀社区"]
    assert gdf["population"].tolist() == [1200] and gdf["aged_60_plus"].tolist() == [300]


def test_utf8_bom_csv(tmp_path: Path) -> None:
    path = tmp_path / "rooms.csv"
    text = "编号,名称,建筑面积,经度,纬度\nR1,华阳社区服务站,650,125.3301,43.8655\n"
    path.write_bytes(text.encode("utf-8-sig"))
    gdf = io.read_layer(path, kind="community_service_room")
    assert gdf.attrs["encoding"] == "utf-8-sig"
    assert gdf["id"].tolist() == ["R1"]  # the BOM did not end up in the first header
    assert gdf["floor_area_m2"].tolist() == [650.0]
    plain = tmp_path / "rooms_plain.csv"
    plain.write_text(text, encoding="utf-8")
    assert io.read_layer(plain, kind="community_service_room").attrs["encoding"] == "utf-8"


def test_xlsx_with_lng_lat_and_numeric_ids(tmp_path: Path) -> None:
    path = tmp_path / "markers.xlsx"
    pd.DataFrame(
        {
            "界桩编号": [220102001, 220102002],
            "相邻区划甲": [220102, 220102],
            "相邻区划乙": [220104, 220105],
            "状态": ["完好", "damaged"],
            "最近检查日期": ["2024/05/01", "2023-11-20"],
            "lng": [125.3012, 125.3570],
            "lat": [43.8612, 43.8840],
        }
    ).to_excel(path, index=False)
    gdf = io.read_layer(path, kind="boundary_marker")
    assert gdf["id"].tolist() == ["220102001", "220102002"]
    assert gdf["unit_b"].tolist() == ["220104", "220105"]
    assert gdf["status"].tolist() == ["intact", "damaged"]
    assert gdf["last_inspected"].tolist() == ["2024-05-01", "2023-11-20"]
    assert gdf.attrs["first_row"] == 2
    np.testing.assert_allclose(_coords(gdf), [[125.3012, 43.8612], [125.3570, 43.8840]])


def test_table_in_gcj02_and_bd09_is_converted(tmp_path: Path) -> None:
    lon, lat = np.array([125.3245, 125.3078]), np.array([43.8868, 43.8498])
    gcj_lon, gcj_lat = crs.wgs84_to_gcj02(lon, lat)
    bd_lon, bd_lat = crs.wgs84_to_bd09(lon, lat)
    for name, x, y, source_crs in (
        ("gcj.csv", gcj_lon, gcj_lat, "GCJ-02"),
        ("bd.csv", bd_lon, bd_lat, "BD-09"),
    ):
        path = tmp_path / name
        pd.DataFrame(
            {"id": ["a", "b"], "name": ["甲", "乙"], "population": [10, 20],
             "aged_60_plus": [1, 2], "x": x, "y": y}
        ).to_csv(path, index=False)  # fmt: skip
        gdf = io.read_layer(path, kind="demand", source_crs=source_crs)
        # independent check: geodesic distance to the true WGS84 points is sub-millimetre
        got = _coords(gdf)
        dist = Geod(ellps="WGS84").inv(got[:, 0], got[:, 1], lon, lat)[2]
        assert np.max(dist) < 0.001
        assert gdf.attrs["source_crs"] == source_crs


def test_gcj02_districts_line_up_with_osm_roads_after_conversion(
    tmp_path: Path, roads: gpd.GeoDataFrame
) -> None:
    """The real case: Amap (GCJ-02) district boundaries against OpenStreetMap roads."""
    path = tmp_path / "districts.geojson"
    _districts_gcj02().set_crs("EPSG:4326").to_file(path, engine="pyogrio")  # GCJ-02 numbers
    as_declared = io.read_layer(path, kind="admin_unit")
    converted = io.read_layer(path, kind="admin_unit", source_crs="GCJ-02")
    working = crs.working_crs(125.33, 43.88)
    lines = np.asarray(roads.to_crs(working).geometry.values)
    to_m = Transformer.from_crs(4326, working, always_xy=True)
    west, south, east, north = roads.total_bounds

    def distances(gdf: gpd.GeoDataFrame) -> np.ndarray:
        xy = np.unique(_coords(gdf), axis=0)
        xy = xy[(xy[:, 0] > west) & (xy[:, 0] < east) & (xy[:, 1] > south) & (xy[:, 1] < north)]
        x, y = to_m.transform(xy[:, 0], xy[:, 1])
        points = shapely.points(x, y)
        # brute force over every road (independent of the STRtree used by validation)
        return np.min(shapely.distance(points[:, None], lines[None, :]), axis=1)

    before, after = distances(as_declared), distances(converted)
    assert len(before) > 300
    # vertices on roads: lower quartile 19 m -> 5 m; share within 10 m of a road 0.15 -> 0.36
    assert np.quantile(after, 0.25) < 0.4 * np.quantile(before, 0.25)
    assert np.quantile(after, 0.25) < 8.0
    assert (after < 10).mean() > 2 * (before < 10).mean()
    # the shift applied is the GCJ-02 one, 300-600 m in Changchun
    shift = Transformer.from_crs(4326, working, always_xy=True)
    x0, y0 = shift.transform(*_coords(as_declared).T)
    x1, y1 = shift.transform(*_coords(converted).T)
    moved = np.hypot(x1 - x0, y1 - y0)
    assert moved.min() > 200 and moved.max() < 700


def test_unreadable_values_are_kept_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "eldercare.csv"
    path.write_text(
        "id,name,category,beds,lon,lat\n"
        "E1,甲养老院,nursing_home,约50,125.33,43.88\n"
        "E2,乙养老院,nursing_home,80,125.3x,43.88\n",
        encoding="utf-8",
    )
    gdf = io.read_layer(path, kind="eldercare_center", validate=False)
    assert gdf["beds"].tolist() == ["约50", 80]  # nothing replaced by NaN
    assert gdf["lon"].tolist() == ["125.33", "125.3x"]  # raw coordinates kept when unreadable
    with pytest.raises(LayerValidationError) as info:
        io.read_layer(path, kind="eldercare_center")
    messages = [str(p) for p in info.value.problems]
    assert "eldercare_center 'E1': beds must be an integer, got '约50'" in messages
    assert any(m.startswith("row 3: lon must be a number") and "125.3x" in m for m in messages)


def test_field_map_and_missing_coordinate_columns(tmp_path: Path) -> None:
    path = tmp_path / "custom.csv"
    path.write_text("代号,机构,核定人数,E,N\nS1,甲场所,100,125.33,43.88\n", encoding="utf-8")
    with pytest.raises(LayerValidationError) as info:
        io.read_layer(path, kind="shelter")
    problem = info.value.problems[0]
    assert problem.code == "missing_lonlat" and "代号, 机构, 核定人数, E, N" in problem.found
    gdf = io.read_layer(
        path,
        kind="shelter",
        field_map={"id": "代号", "name": "机构", "capacity_persons": "核定人数"},
        lon_field="E",
        lat_field="N",
        validate=False,
    )
    assert gdf["id"].tolist() == ["S1"] and gdf["capacity_persons"].tolist() == [100]
    assert _coords(gdf).tolist() == [[125.33, 43.88]]


def test_demo_geopackage_reads_if_built() -> None:
    path = DEMO_DATA / "changchun_demo.gpkg"
    if not path.exists():
        pytest.skip("layers/data/changchun_demo.gpkg not built yet (geo-minzheng demo)")
    roads = io.read_layer(path, kind="road", layer_name="roads")
    assert len(roads) == 1253 and roads.crs.to_epsg() == 4326
