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
from geo_minzheng._errors import CRSError, LayerReadError, LayerValidationError, UnknownIdError

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


# --------------------------------------------------------------------------------------------
# Files that cannot be read: one LayerReadError naming the file, never a reader's own exception
# --------------------------------------------------------------------------------------------

DISTRICT = CHANGCHUN / "districts_gcj02" / "220102.geojson"
#: A bureau's register as Excel writes "CSV (GBK)": real places in central Changchun.
REGISTER_GBK = (
    "编号,名称,类别,床位数,经度,纬度\n"
    "E-01,南关区社会福利院,养老机构,320,125.3320,43.8760\n"
    "E-02,自强街道日间照料中心,日间照料中心,40,125.3371,43.8802\n"
).encode("gbk")


def _garbage(n_bytes: int = 4096) -> bytes:
    return np.random.default_rng(15).bytes(n_bytes)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _unreadable(tmp_path: Path, case: str) -> Path:
    """A file of each kind a bureau has sent that no reader can read."""
    district = DISTRICT.read_bytes()
    builders = {
        "truncated_geojson": lambda: _write(tmp_path / "220102.geojson", district[:30000]),
        "malformed_geojson": lambda: _write(
            tmp_path / "malformed.geojson", district.replace(b'"type"', b"'type'", 1)
        ),
        "json_not_geojson": lambda: _write(tmp_path / "list.geojson", b'[{"a": 1}]'),
        "zero_bytes_csv": lambda: _write(tmp_path / "empty.csv", b""),
        "zero_bytes_geojson": lambda: _write(tmp_path / "empty.geojson", b""),
        "bom_only_csv": lambda: _write(tmp_path / "bom.csv", b"\xef\xbb\xbf"),
        "blank_csv": lambda: _write(tmp_path / "blank.csv", b"\r\n\r\n"),
        "undecodable_csv": lambda: _write(
            tmp_path / "register.csv", REGISTER_GBK.replace(b"40", b"4\x81", 1)
        ),
        "binary_csv": lambda: _write(tmp_path / "binary.csv", _garbage()),
        "garbage_gpkg": lambda: _write(tmp_path / "garbage.gpkg", _garbage()),
        "garbage_geojson": lambda: _write(tmp_path / "garbage.geojson", _garbage()),
        "garbage_xlsx": lambda: _write(tmp_path / "garbage.xlsx", _garbage()),
        "old_xls": lambda: _write(tmp_path / "old.xls", _garbage()),
        "unknown_suffix": lambda: _write(tmp_path / "garbage.dat", _garbage()),
        "directory": lambda: _mkdir(tmp_path / "layers.geojson"),
        "directory_csv": lambda: _mkdir(tmp_path / "register.csv"),
        "dbf_given": lambda: _write(tmp_path / "shelters.dbf", _garbage()),
    }
    return builders[case]()


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


UNREADABLE = {
    "truncated_geojson": "truncated",
    "malformed_geojson": "bad_json",
    "json_not_geojson": "not_geojson",
    "zero_bytes_csv": "empty_file",
    "zero_bytes_geojson": "empty_file",
    "bom_only_csv": "no_content",
    "blank_csv": "no_content",
    "undecodable_csv": "bad_encoding",
    "binary_csv": "not_text",
    "garbage_gpkg": "bad_format",
    "garbage_geojson": "bad_format",
    "garbage_xlsx": "bad_format",
    "old_xls": "old_excel",
    "unknown_suffix": "unknown_format",
    "directory": "not_a_file",
    "directory_csv": "not_a_file",
    "dbf_given": "shapefile_part",
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_unreadable_file_raises_one_read_error_naming_it(tmp_path: Path, case: str) -> None:
    path = _unreadable(tmp_path, case)
    before = _sha(path) if path.is_file() else None
    for read in (
        lambda: io.read_layer(path, kind="eldercare_center"),
        lambda: io.validate_file(path, kind="eldercare_center"),
    ):
        with pytest.raises(LayerReadError) as info:
            read()
        error = info.value
        assert type(error) is LayerReadError  # not a reader's exception passing through
        assert error.code == UNREADABLE[case], (error.code, str(error))
        assert error.path == str(path)
        assert str(error).startswith(f"cannot read {path}: ")
        assert "\n" not in str(error) and "Traceback" not in str(error)
    if before is not None:
        assert _sha(path) == before  # nothing the user gave is modified


def test_read_errors_say_where_the_file_breaks(tmp_path: Path) -> None:
    # the real district boundary cut after 30,000 bytes: JSON ends at its last character
    text = DISTRICT.read_bytes()[:30000].decode("utf-8")
    lines = text.rstrip().split("\n")
    with pytest.raises(LayerReadError) as info:
        io.read_layer(_unreadable(tmp_path, "truncated_geojson"), kind="admin_unit")
    assert info.value.values["line"] == len(lines)
    assert info.value.values["column"] == len(lines[-1]) + 1
    # the GBK register with one stray byte in row 3 ("4\x81"): line 3, byte after "E-02,...,4"
    with pytest.raises(LayerReadError) as info:
        io.read_layer(_unreadable(tmp_path, "undecodable_csv"), kind="eldercare_center")
    row = REGISTER_GBK.split(b"\n")[2]
    assert info.value.values["line"] == 3
    assert info.value.values["column"] == row.index(b"40") + 2
    assert info.value.values["byte"] == "0x81"
    assert "utf-8, gbk, gb18030" in str(info.value)


def test_table_row_with_more_cells_than_the_header(tmp_path: Path) -> None:
    path = tmp_path / "register.csv"
    path.write_bytes(REGISTER_GBK + "E-03,清和街道,助餐点,0,125,3,43,9\n".encode("gbk"))
    with pytest.raises(LayerReadError) as info:
        io.read_layer(path, kind="eldercare_center")
    assert info.value.code == "bad_table"
    assert info.value.values == {"line": 4, "expected": 6, "found": 8, "sep": ","}


def test_workbooks_that_cannot_be_read(tmp_path: Path) -> None:
    import zipfile

    renamed = tmp_path / "renamed.xlsx"  # a ZIP file, but no workbook inside
    with zipfile.ZipFile(renamed, "w") as archive:
        archive.writestr("readme.txt", "not a workbook")
    with pytest.raises(LayerReadError) as info:
        io.read_layer(renamed, kind="shelter")
    assert info.value.code == "damaged_workbook"
    empty = tmp_path / "empty.xlsx"
    pd.DataFrame().to_excel(empty, index=False)
    with pytest.raises(LayerReadError) as info:
        io.read_layer(empty, kind="shelter")
    assert info.value.code == "no_content" and info.value.values["sheet"] == "Sheet1"
    with pytest.raises(UnknownIdError, match="has no sheet '避难场所'; it has: Sheet1"):
        io.read_layer(empty, kind="shelter", layer_name="避难场所")


def test_geopackage_damaged_or_without_geometry(tmp_path: Path) -> None:
    table = tmp_path / "table.gpkg"
    pyogrio.write_dataframe(pd.DataFrame({"id": ["S-001"], "名称": ["人民广场"]}), table)
    with pytest.raises(LayerReadError) as info:
        io.read_layer(table, kind="shelter")
    assert info.value.code == "no_geometry"
    cut = _write(tmp_path / "cut.gpkg", (DEMO_DATA / "changchun_demo.gpkg").read_bytes()[:8192])
    for read in (lambda: io.read_layer(cut, kind="road"), lambda: io.layer_names(cut)):
        with pytest.raises(LayerReadError) as info:
            read()
        assert info.value.code == "damaged" and "malformed" in str(info.value)
        assert "sqlite3_prepare" not in str(info.value)


def test_shapefile_without_its_parts(tmp_path: Path) -> None:
    path = tmp_path / "shelters.shp"
    _as_shapefile_columns(_shelters()).to_file(path, engine="pyogrio")
    assert len(io.read_layer(path, kind="shelter")) == 3
    for part in (".shx", ".dbf"):
        kept = path.with_suffix(part).read_bytes()
        path.with_suffix(part).unlink()
        with pytest.raises(LayerReadError) as info:
            io.read_layer(path, kind="shelter")
        assert info.value.code == "missing_part" and info.value.values["part"] == part
        path.with_suffix(part).write_bytes(kept)
    with pytest.raises(LayerReadError, match=r"give the \.shp file \(shelters\.shp\)"):
        io.read_layer(path.with_suffix(".dbf"), kind="shelter")


def test_read_error_explains_a_readers_own_exception(tmp_path: Path) -> None:
    """For callers that read with geopandas themselves (the CLI's --hazards, say)."""
    path = _unreadable(tmp_path, "truncated_geojson")
    with pytest.raises(pyogrio.errors.DataSourceError) as raw:
        gpd.read_file(path)
    error = io.read_error(raw.value, path)
    assert error.code == "truncated" and error.path == str(path)
    empty = _unreadable(tmp_path, "zero_bytes_geojson")
    with pytest.raises(pyogrio.errors.DataSourceError) as raw:
        gpd.read_file(empty)
    # without a path, the one the GDAL message quotes is used
    assert io.read_error(raw.value).code == "empty_file"
    with pytest.raises(LayerReadError) as info:
        io.read_features(path)
    assert info.value.code == "truncated"
    flood = io.read_features(DISTRICT)
    assert len(flood) == 1 and flood.geometry.iloc[0].geom_type in ("Polygon", "MultiPolygon")


def test_utf16_table_from_excel_unicode_text(tmp_path: Path) -> None:
    """Excel's "Unicode text (*.txt)": UTF-16 with a byte-order mark, tab-separated."""
    path = tmp_path / "养老机构.txt"
    text = REGISTER_GBK.decode("gbk").replace(",", "\t")
    path.write_bytes(text.encode("utf-16"))
    gdf = io.read_layer(path, kind="eldercare_center")
    assert gdf.attrs["encoding"] == "utf-16"
    assert gdf["name"].tolist() == ["南关区社会福利院", "自强街道日间照料中心"]
    assert gdf["beds"].tolist() == [320, 40]
