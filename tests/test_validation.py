"""Validation: one test per kind of problem, each naming the record and field; nothing is lost."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from conftest import CHANGCHUN, DEMO_DATA

from geo_minzheng import crs, io, validation
from geo_minzheng._errors import LayerValidationError, Problem
from geo_minzheng.io import validate_file
from geo_minzheng.reports import format_report
from geo_minzheng.validation import (
    alignment_offsets,
    check,
    check_alignment,
    repair_geometries,
    validate,
)


def _shelters() -> gpd.GeoDataFrame:
    """Three valid shelters at real places in central Changchun (WGS84)."""
    return gpd.GeoDataFrame(
        {
            "id": ["S-001", "S-002", "S-003"],
            "name": ["人民广场", "南湖公园", "长春公园"],
            "shelter_class": ["emergency", "fixed_long", "fixed_short"],
            "effective_area_m2": [8000.0, 250000.0, 30000.0],
            "capacity_persons": pd.array([4000, 60000, 10000], dtype="Int64"),
            "status": ["open", "open", "planned"],
        },
        geometry=gpd.points_from_xy([125.3245, 125.3078, 125.3410], [43.8868, 43.8498, 43.9013]),
        crs="EPSG:4326",
    )


def _demand() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "id": ["D1", "D2"],
            "population": [5200, 3100],
            "aged_60_plus": [1300, 800],
        },
        geometry=gpd.points_from_xy([125.33, 125.35], [43.87, 43.88]),
        crs="EPSG:4326",
    )


def _only(problems: list[Problem], code: str) -> Problem:
    matching = [p for p in problems if p.code == code]
    assert len(matching) == 1, problems
    return matching[0]


def test_clean_layer_has_no_problems() -> None:
    assert validate(_shelters(), "shelter", layer="shelters") == []
    assert validate(_demand(), "demand", layer="demand") == []
    check(_shelters(), "shelter", layer="shelters")  # does not raise


def test_missing_required_column() -> None:
    gdf = _shelters().drop(columns=["shelter_class"])
    problem = _only(validate(gdf, "shelter", layer="shelters"), "missing_field")
    assert problem.record == "layer 'shelters'" and problem.field == "shelter_class"
    assert "场所类别" in problem.expected and "effective_area_m2" in problem.found


def test_missing_required_value() -> None:
    gdf = _shelters()
    gdf.loc[1, "name"] = None
    problem = _only(validate(gdf, "shelter", layer="shelters"), "missing_value")
    assert str(problem) == "shelter 'S-002': name must be a value (名称), got empty"


def test_record_without_id_is_named_by_row() -> None:
    gdf = _shelters()
    gdf.loc[2, "id"] = ""
    problem = _only(validate(gdf, "shelter", layer="shelters"), "missing_value")
    assert problem.record == "row 3" and problem.field == "id"
    gdf.attrs["first_row"] = 2  # as io.read_layer sets for CSV/XLSX (header is row 1)
    assert _only(validate(gdf, "shelter"), "missing_value").record == "row 4"


def test_value_of_wrong_type() -> None:
    gdf = _shelters()
    gdf["capacity_persons"] = gdf["capacity_persons"].astype(object)
    gdf.loc[0, "capacity_persons"] = "约四千"
    problem = _only(validate(gdf, "shelter"), "bad_type")
    assert str(problem) == "shelter 'S-001': capacity_persons must be an integer, got '约四千'"


def test_missing_coordinates_in_a_table(tmp_path: Path) -> None:
    path = tmp_path / "shelters.csv"
    path.write_text(
        "编号,名称,场所类别,有效避难面积,经度,纬度\n"
        "S-001,人民广场,emergency,8000,125.3245,43.8868\n"
        "S-002,南湖公园,fixed_long,250000,,\n",
        encoding="utf-8",
    )
    with pytest.raises(LayerValidationError) as info:
        io.read_layer(path, kind="shelter")
    problem = _only(info.value.problems, "empty_geometry")
    assert problem.record == "shelter 'S-002'" and problem.field == "geometry"


def test_swapped_lon_lat() -> None:
    gdf = _shelters()
    gdf.loc[1, "geometry"] = shapely.Point(43.8498, 125.3078)
    problem = _only(validate(gdf, "shelter"), "swapped_lonlat")
    assert problem.record == "shelter 'S-002'" and problem.field == "geometry"
    assert "swap" in problem.expected and "lat 125.307800" in problem.found


def test_outside_china() -> None:
    gdf = _shelters()
    gdf.loc[0, "geometry"] = shapely.Point(2.3522, 48.8566)  # Paris
    problem = _only(validate(gdf, "shelter"), "outside_china")
    assert problem.record == "shelter 'S-001'" and "lon 2.352200" in problem.found


def test_self_intersecting_polygon_is_reported_not_fixed() -> None:
    gdf = _shelters()
    bow_tie = shapely.Polygon(
        [(125.30, 43.84), (125.31, 43.85), (125.31, 43.84), (125.30, 43.85), (125.30, 43.84)]
    )
    gdf.loc[1, "geometry"] = bow_tie
    problem = _only(validate(gdf, "shelter"), "invalid_geometry")
    assert problem.record == "shelter 'S-002'" and problem.field == "geometry"
    assert problem.found == shapely.is_valid_reason(bow_tie)
    assert problem.found.startswith("Self-intersection")
    assert gdf.loc[1, "geometry"].equals(bow_tie)  # not repaired behind the user's back
    repaired = repair_geometries(gdf)
    assert repaired.is_valid.all() and not gdf.is_valid.all()
    # make_valid keeps the area: two triangles of a quarter cell each
    assert repaired.geometry.iloc[1].area == pytest.approx(0.5 * 0.01 * 0.01)
    assert validate(repaired, "shelter") == []


def test_duplicate_ids() -> None:
    gdf = _shelters()
    gdf.loc[2, "id"] = "S-001"
    problem = _only(validate(gdf, "shelter"), "duplicate_id")
    assert problem.record == "shelter 'S-001'" and problem.field == "id"
    assert "2 records" in problem.found and "rows 1, 3" in problem.found
    assert "编号重复：第 1、3 行使用同一编号" in format_report([problem])


@pytest.mark.parametrize(
    ("kind", "field", "value", "expected"),
    [
        ("shelter", "effective_area_m2", -120.0, "> 0 m²"),
        ("shelter", "effective_area_m2", 0.0, "> 0 m²"),
        ("shelter", "capacity_persons", -5, ">= 0 人"),
        ("community_service_room", "resident_share", 1.5, ">= 0 and <= 1"),
        ("boundary_marker", "installed_year", 1900, ">= 1949"),
    ],
)
def test_out_of_range_values(kind: str, field: str, value: float, expected: str) -> None:
    records = {
        "shelter": _shelters(),
        "community_service_room": _shelters()[["id", "name", "geometry"]].assign(
            floor_area_m2=600.0, resident_share=0.6
        ),
        "boundary_marker": _shelters()[["id", "geometry"]].assign(
            unit_a="220102", unit_b="220104", status="intact", installed_year=1998
        ),
    }[kind]
    assert validate(records, kind) == []
    records[field] = records[field].astype(object)
    records.loc[0, field] = value
    problem = _only(validate(records, kind), "out_of_range")
    assert problem.record == f"{kind} 'S-001'" and problem.field == field
    assert problem.expected == expected


def test_demand_aged_more_than_population() -> None:
    gdf = _demand()
    gdf.loc[1, "aged_60_plus"] = 4000
    problem = _only(validate(gdf, "demand"), "inconsistent")
    assert str(problem) == "demand 'D2': aged_60_plus must be <= population (3100), got 4000"


def test_shelter_capacity_impossible_for_its_area() -> None:
    gdf = _shelters()
    gdf.loc[0, "capacity_persons"] = 9000  # 8,000 m² cannot hold 9,000 people at >= 1 m² each
    problem = _only(validate(gdf, "shelter"), "inconsistent")
    assert problem.record == "shelter 'S-001'" and problem.field == "capacity_persons"
    assert "(8000)" in problem.expected and problem.found == "9000"


def test_unknown_enum_value_lists_allowed_values() -> None:
    gdf = _shelters()
    gdf.loc[2, "shelter_class"] = "temporary"
    problem = _only(validate(gdf, "shelter"), "unknown_value")
    assert problem.record == "shelter 'S-003'" and problem.field == "shelter_class"
    assert problem.found == "'temporary'"
    for allowed in ("emergency", "fixed_short", "fixed_medium", "fixed_long", "central"):
        assert allowed in problem.expected


def test_unknown_item_of_a_list_field() -> None:
    gdf = gpd.GeoDataFrame(
        {
            "id": ["E1"],
            "name": ["甲"],
            "category": ["nursing_home"],
            "service_types": ["meals;karaoke"],
        },
        geometry=[shapely.Point(125.33, 43.88)],
        crs="EPSG:4326",
    )
    problem = _only(validate(gdf, "eldercare_center"), "unknown_value")
    assert problem.field == "service_types" and problem.found == "'karaoke'"


def test_wrong_geometry_type() -> None:
    gdf = _shelters()
    gdf.loc[0, "geometry"] = shapely.LineString([(125.32, 43.88), (125.33, 43.89)])
    problem = _only(validate(gdf, "shelter"), "wrong_geometry_type")
    assert problem.record == "shelter 'S-001'"
    assert problem.expected == "Point or Polygon or MultiPolygon" and problem.found == "LineString"


def test_empty_and_missing_geometry() -> None:
    gdf = _shelters()
    gdf.loc[0, "geometry"] = shapely.Point()
    gdf.loc[2, "geometry"] = None
    problems = [p for p in validate(gdf, "shelter") if p.code == "empty_geometry"]
    assert [p.record for p in problems] == ["shelter 'S-001'", "shelter 'S-003'"]


def test_missing_and_wrong_crs() -> None:
    no_crs = _shelters().set_crs(None, allow_override=True)
    problem = _only(validate(no_crs, "shelter", layer="shelters"), "missing_crs")
    assert problem.record == "layer 'shelters'" and problem.field == "crs"
    projected = _shelters().to_crs(crs.working_crs(125.33, 43.88))
    problems = validate(projected, "shelter", layer="shelters")
    problem = _only(problems, "wrong_crs")
    assert problem.found == "EPSG:4551"
    assert len(problems) == 1  # coordinates are still checked, in lon/lat, and are fine


def test_check_raises_once_with_every_problem() -> None:
    gdf = _shelters()
    gdf.loc[0, "shelter_class"] = "temporary"
    gdf.loc[1, "effective_area_m2"] = -1.0
    gdf.loc[2, "geometry"] = shapely.Point(43.9013, 125.3410)
    with pytest.raises(LayerValidationError) as info:
        check(gdf, "shelter", layer="shelters")
    error = info.value
    assert error.layer == "shelters"
    assert sorted(p.code for p in error.problems) == [
        "inconsistent",  # capacity 60000 > area -1
        "out_of_range",
        "swapped_lonlat",
        "unknown_value",
    ]
    assert "layer 'shelters' has 4 problem(s)" in str(error)
    assert isinstance(error, ValueError)


def test_invalid_layer_loses_no_data(tmp_path: Path) -> None:
    path = tmp_path / "demand.csv"
    rows = [
        "编号,名称,人口,60岁及以上人口,经度,纬度",
        "D1,华阳社区,5200,1300,125.3301,43.8655",
        "D2,恒安社区,三千,800,125.3402,43.8711",
        "D2,自强社区,2800,3900,43.8760,125.3320",
        ",无编号社区,1000,-5,125.3500,43.8800",
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    gdf = io.read_layer(path, kind="demand", validate=False)
    before = gdf.copy()
    problems = validate(gdf, "demand")
    pd.testing.assert_frame_equal(gdf, before)  # validation changed nothing
    assert len(gdf) == 4
    assert gdf["name"].tolist() == ["华阳社区", "恒安社区", "自强社区", "无编号社区"]
    assert gdf["population"].tolist() == [5200, "三千", 2800, 1000]
    codes = {(p.record, p.field, p.code) for p in problems}
    assert codes == {
        ("demand 'D2'", "population", "bad_type"),
        ("demand 'D2'", "id", "duplicate_id"),
        ("demand 'D2'", "aged_60_plus", "inconsistent"),
        ("demand 'D2'", "geometry", "swapped_lonlat"),
        ("row 5", "id", "missing_value"),
        ("row 5", "aged_60_plus", "out_of_range"),
    }
    with pytest.raises(LayerValidationError) as info:
        io.read_layer(path, kind="demand")
    assert len(info.value.problems) == len(problems)


def test_format_report_in_chinese_and_english() -> None:
    gdf = _shelters()
    gdf.loc[1, "effective_area_m2"] = -120.0
    gdf.loc[2, "shelter_class"] = "temporary"
    problems = validate(gdf, "shelter", layer="shelters")
    zh = format_report(problems)
    assert zh.startswith("发现 3 个问题")
    assert "应急避难场所 'S-002'：「有效避难面积」(effective_area_m2)应 > 0 m²，实际为 -120" in zh
    assert "「场所类别」(shelter_class)的取值 'temporary' 不在允许范围内" in zh
    en = format_report(problems, lang="en")
    assert "shelter 'S-002': effective_area_m2 must be > 0 m², got -120" in en
    assert format_report([]) == "未发现问题。"
    with pytest.raises(ValueError, match="lang must be 'zh' or 'en'"):
        format_report(problems, lang="fr")


def test_validate_file_returns_problems(tmp_path: Path) -> None:
    path = tmp_path / "rooms.csv"
    path.write_bytes(
        "编号,名称,建筑面积,经度,纬度\nR1,华阳社区服务站,0,125.33,43.86\n".encode("gbk")
    )
    problems = validate_file(path, kind="community_service_room")
    assert [(p.record, p.field, p.code) for p in problems] == [
        ("community_service_room 'R1'", "floor_area_m2", "out_of_range")
    ]


def test_validation_imports_neither_io_nor_reports() -> None:
    """The rules module stands alone: io imports it one way, reports words its problems."""
    source = Path(validation.__file__).read_text(encoding="utf-8")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):  # function-level imports count too
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    assert not imported & {"geo_minzheng.io", "geo_minzheng.reports"}, sorted(imported)
    # and importing it in a fresh interpreter loads neither
    code = (
        "import sys, geo_minzheng.validation; print(sorted(m for m in sys.modules if m in "
        "('geo_minzheng.io', 'geo_minzheng.reports')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def _districts(*, convert: bool) -> gpd.GeoDataFrame:
    frames = [
        gpd.read_file(CHANGCHUN / "districts_gcj02" / f"{code}.geojson").assign(adcode=code)
        for code in ("220102", "220103", "220104", "220105")
    ]
    gdf = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs="EPSG:4326")
    return crs.to_wgs84(gdf, "GCJ-02") if convert else gdf


@pytest.fixture(scope="module")
def roads() -> gpd.GeoDataFrame:
    return gpd.read_file(CHANGCHUN / "roads_osm.geojson")


def test_gcj02_layer_declared_wgs84_is_detected(roads: gpd.GeoDataFrame) -> None:
    raw = _districts(convert=False)  # Amap GCJ-02 numbers, wrongly declared WGS84
    problem = _only(check_alignment(raw, roads, layer="districts"), "gcj02_offset")
    assert problem.record == "layer 'districts'" and "source_crs='GCJ-02'" in problem.expected
    zh = format_report([problem])
    assert "图层 'districts'" in zh and "按 GCJ-02 转换后为" in zh and "source_crs='GCJ-02'" in zh
    stats = alignment_offsets(raw, roads)
    assert stats["n_vertices"] > 300
    assert stats["as_gcj02"] < 0.4 * stats["as_given"]


def test_converted_layer_is_not_flagged(roads: gpd.GeoDataFrame) -> None:
    converted = _districts(convert=True)
    assert check_alignment(converted, roads, layer="districts") == []
    stats = alignment_offsets(converted, roads)
    # converting once more moves the on-road vertices off their roads
    assert stats["as_given"] < 8.0 < stats["as_gcj02"]


def test_alignment_of_points_taken_from_roads(roads: gpd.GeoDataFrame) -> None:
    """Points on real roads, shifted to GCJ-02, are detected; the originals are not."""
    lines = np.asarray(roads.geometry.values)[::5]
    points = shapely.line_interpolate_point(lines, 0.5, normalized=True)
    on_roads = gpd.GeoDataFrame(geometry=points, crs="EPSG:4326")
    assert check_alignment(on_roads, roads) == []
    shifted = crs.from_wgs84(on_roads, "GCJ-02").set_crs("EPSG:4326")
    assert _only(check_alignment(shifted, roads), "gcj02_offset")
    baidu = crs.from_wgs84(on_roads, "BD-09").set_crs("EPSG:4326")
    assert _only(check_alignment(baidu, roads), "bd09_offset")


# --------------------------------------------------------------------------------------------
# Files with a header but no records; header variants; likely matches for missing fields
# --------------------------------------------------------------------------------------------

DEMO_GPKG = DEMO_DATA / "changchun_demo.gpkg"


def _demo(layer: str, kind: str) -> gpd.GeoDataFrame:
    return io.read_layer(DEMO_GPKG, kind=kind, layer_name=layer)


def _as_register(
    gdf: gpd.GeoDataFrame, headers: dict[str, str], path: Path, *, encoding: str = "utf-8"
) -> Path:
    """``gdf`` as a bureau's CSV: the given headers, lon/lat columns, nothing else.

    Areas (some shelters are parks) are given by a point inside them, as registers do.
    """
    columns = {h: gdf[f] for f, h in headers.items() if f not in ("lon", "lat")}
    frame = pd.DataFrame(columns)
    points = gdf.geometry.representative_point()
    frame[headers.get("lon", "lon")] = points.x.round(7)
    frame[headers.get("lat", "lat")] = points.y.round(7)
    path.write_bytes(frame.to_csv(index=False).encode(encoding))
    return path


def _codes(problems: list[Problem]) -> list[str]:
    return [p.code for p in problems]


def test_header_only_file_is_no_records_not_valid(tmp_path: Path) -> None:
    path = tmp_path / "养老机构台账.csv"
    path.write_bytes("编号,名称,类别,床位数,经度,纬度\r\n".encode("gbk"))
    problems = validate_file(path, kind="eldercare_center")
    assert [(p.record, p.field, p.code) for p in problems] == [
        ("layer '养老机构台账'", "records", "no_records")
    ]
    assert str(problems[0]) == (
        "layer '养老机构台账': records must be at least one record (a header alone is not a "
        "layer), got 0 records"
    )
    assert "图层没有任何记录（0 条）" in format_report(problems)
    with pytest.raises(LayerValidationError) as info:
        io.read_layer(path, kind="eldercare_center")
    assert _codes(info.value.problems) == ["no_records"]
    # without lon/lat columns too: both are said, not only the missing columns
    bare = tmp_path / "bare.csv"
    bare.write_text("编号,名称,类别\n", encoding="utf-8")
    assert _codes(validate_file(bare, kind="eldercare_center")) == ["missing_lonlat", "no_records"]


def test_empty_vector_layers_are_no_records(tmp_path: Path) -> None:
    shelters = _demo("shelters", "shelter")
    gpkg = io.write_gpkg({"shelters": shelters.iloc[:0]}, tmp_path / "empty.gpkg")
    problems = validate_file(gpkg, kind="shelter")
    assert _codes(problems) == ["no_records"]  # every column is there, no record
    geojson = tmp_path / "empty.geojson"
    geojson.write_text('{"type": "FeatureCollection", "features": []}', encoding="utf-8")
    problems = validate_file(geojson, kind="shelter")
    assert _codes(problems)[0] == "no_records"
    assert {p.field for p in problems if p.code == "missing_field"} == {
        "id", "name", "shelter_class", "effective_area_m2"
    }  # fmt: skip
    assert validate(shelters, "shelter") == []  # the real layer itself is clean


@pytest.mark.parametrize(
    ("headers", "encoding"),
    [
        (
            {"id": "ID", "name": "Facility Name", "category": "Type", "beds": "Number of Beds",
             "floor_area_m2": "Floor Area (m2)", "service_types": "Services",
             "status": "Status", "lon": "Longitude", "lat": "Latitude"},
            "utf-8",
        ),
        (
            {"id": "机构编号", "name": "机构名称", "category": "机构类别", "beds": "床位总数",
             "floor_area_m2": "服务用房面积（㎡）", "service_types": "服务项目",
             "status": "运营状态", "lon": "经度", "lat": "纬度"},
            "gbk",
        ),
    ],
)  # fmt: skip
def test_english_and_chinese_header_variants_map_to_fields(
    tmp_path: Path, headers: dict[str, str], encoding: str
) -> None:
    eldercare = _demo("eldercare", "eldercare_center")
    path = _as_register(eldercare, headers, tmp_path / "eldercare.csv", encoding=encoding)
    back = io.read_layer(path, kind="eldercare_center")  # valid: every field was recognised
    for field in ("id", "name", "category", "beds", "service_types", "status"):
        assert back[field].tolist() == eldercare[field].tolist(), field
    np.testing.assert_allclose(back["floor_area_m2"], eldercare["floor_area_m2"])
    assert len(back) == 102


def test_shelter_header_variants_and_a_bare_area_left_to_the_user(tmp_path: Path) -> None:
    shelters = _demo("shelters", "shelter")
    headers = {"id": "No.", "name": "场所名称", "shelter_class": "Class",
               "effective_area_m2": "Effective Area", "capacity_persons": "Capacity",
               "status": "使用状态"}  # fmt: skip
    back = io.read_layer(_as_register(shelters, headers, tmp_path / "a.csv"), kind="shelter")
    assert back["shelter_class"].tolist() == shelters["shelter_class"].tolist()
    assert back["capacity_persons"].tolist() == shelters["capacity_persons"].tolist()
    np.testing.assert_allclose(back["effective_area_m2"], shelters["effective_area_m2"])
    # "面积" may be the site area (GB 51143): named as the likely match, never taken silently
    headers["effective_area_m2"] = "面积"
    path = _as_register(shelters, headers, tmp_path / "b.csv")
    problems = validate_file(path, kind="shelter")
    missing = _only(problems, "missing_field")
    assert missing.field == "effective_area_m2"
    assert "likely match: '面积'" in missing.found
    assert "fields: {effective_area_m2: 面积}" in missing.found
    assert "field_map={'effective_area_m2': '面积'}" in missing.found
    zh = format_report(problems, kind="shelter")
    assert "缺少字段「有效避难面积」(effective_area_m2)" in zh
    assert "列「面积」可能就是该字段" in zh and "fields: {effective_area_m2: 面积}" in zh
    gdf = io.read_layer(path, kind="shelter", field_map={"effective_area_m2": "面积"})
    np.testing.assert_allclose(gdf["effective_area_m2"], shelters["effective_area_m2"])


@pytest.mark.parametrize(
    ("header", "likely"),
    [("机构性质", "机构性质"), ("Catagory", "Catagory"), ("设施类别名称", "设施类别名称"),
     ("联系电话", None)],
)  # fmt: skip
def test_missing_field_names_the_column_that_looks_like_it(
    tmp_path: Path, header: str, likely: str | None
) -> None:
    eldercare = _demo("eldercare", "eldercare_center").head(5)
    headers = {"id": "编号", "name": "名称", "category": header, "beds": "床位数",
               "service_types": "服务类型"}  # fmt: skip
    problems = validate_file(
        _as_register(eldercare, headers, tmp_path / "e.csv"), kind="eldercare_center"
    )
    problem = _only(problems, "missing_field")
    assert problem.field == "category"
    if likely is None:
        assert "likely match" not in problem.found
        assert "可能就是" not in format_report(problems)
    else:
        assert f"likely match: '{likely}'" in problem.found
        assert f"列「{likely}」可能就是该字段" in format_report(problems)
    # the services column looks like a category too, but more like its own field: never offered
    assert "服务类型" not in problem.found.split("likely match")[-1]
