"""The numpy grid snapper against GEOS nearest-neighbour search on real street networks."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely

from geo_minzheng import network
from geo_minzheng.engine import Engine
from geo_minzheng.snapping import SegmentGrid
from tests.conftest import CHANGCHUN, OSM_DIR


@pytest.fixture(scope="module")
def segments() -> np.ndarray:
    """Street segments of the real Changchun walk network (projected metres)."""
    G = network.from_road_layer(gpd.read_file(CHANGCHUN / "roads_osm.geojson"), profile="walk")
    return Engine.from_graph(G)._segment_index()[2]


def _geos_nearest(segments: np.ndarray, xy: np.ndarray, max_m: float) -> tuple[np.ndarray, ...]:
    """Nearest segment by GEOS: the lowest-numbered one among equally near segments."""
    pts = shapely.points(xy)
    tree = shapely.STRtree(segments)
    i, j = tree.query_nearest(pts, max_distance=max_m, all_matches=True)
    d = shapely.distance(pts[i], segments[j])
    order = np.lexsort((j, d, i))
    i, j, d = i[order], j[order], d[order]
    first = np.ones(len(i), dtype=bool)
    first[1:] = i[1:] != i[:-1]
    return i[first], j[first], d[first]


def _random_points(segments: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Points over the network's extent and 2 km beyond it (some far from every street)."""
    minx, miny, maxx, maxy = shapely.total_bounds(segments)
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [rng.uniform(minx - 2000, maxx + 2000, n), rng.uniform(miny - 2000, maxy + 2000, n)]
    )


@pytest.mark.parametrize("max_m", [20.0, 300.0, 1500.0])
def test_grid_matches_geos_nearest(segments, max_m) -> None:
    xy = _random_points(segments, 4000, seed=11)
    got = SegmentGrid(segments).nearest(xy, max_distance_m=max_m)
    i, j, d = _geos_nearest(segments, xy, max_m)
    assert np.array_equal(got.point, i)
    assert got.distance_m == pytest.approx(d, abs=1e-9)
    # the same segment, except where two segments are equally near (then the same distance)
    assert np.mean(got.segment == j) > 0.99
    # offsets and snapped positions agree with GEOS projecting onto the chosen segment
    chosen = segments[got.segment]
    pts = shapely.points(xy[got.point])
    assert got.offset_m == pytest.approx(shapely.line_locate_point(chosen, pts), abs=1e-6)
    on = shapely.line_interpolate_point(chosen, got.offset_m)
    assert np.hypot(*(shapely.get_coordinates(on) - got.snapped_xy).T).max() < 1e-6


def test_points_on_vertices_snap_at_distance_zero_with_exact_ends(segments) -> None:
    """A point on a segment's end vertex gets offset exactly 0 or exactly the GEOS length."""
    ends = shapely.get_coordinates(shapely.boundary(segments[:500]))
    got = SegmentGrid(segments).nearest(ends, max_distance_m=50.0)
    assert len(got.point) == len(ends)
    assert np.all(got.distance_m == 0.0)
    length = shapely.length(segments[got.segment])
    assert np.all((got.offset_m == 0.0) | (got.offset_m == length))


def test_long_diagonal_streets_and_another_cell_size() -> None:
    """Streets far longer than a cell, at every angle, with cells of 20 m and 200 m."""
    rng = np.random.default_rng(5)
    start = rng.uniform(0, 5000, (300, 2))
    end = start + rng.uniform(-3000, 3000, (300, 2))
    mid = (start + end) / 2 + rng.uniform(-200, 200, (300, 2))
    lines = shapely.linestrings(np.stack([start, mid, end], axis=1))
    xy = rng.uniform(-500, 5500, (3000, 2))
    i, j, d = _geos_nearest(lines, xy, 400.0)
    for cell in (20.0, 200.0):
        got = SegmentGrid(lines, cell_m=cell).nearest(xy, max_distance_m=400.0)
        assert np.array_equal(got.point, i)
        assert got.distance_m == pytest.approx(d, abs=1e-9)


def test_empty_and_non_finite_points_are_unmatched(segments) -> None:
    xy = np.array([[np.nan, np.nan], [np.inf, 1.0], *_random_points(segments, 3, seed=1)])
    got = SegmentGrid(segments).nearest(xy, max_distance_m=1e5)
    assert got.point.tolist() == [2, 3, 4]


def test_engine_snaps_osm_network_like_geos() -> None:
    """On a second real network (an OSM file), the engine's snap equals GEOS's answer."""
    G = network.from_osm_xml(OSM_DIR / "guixi_jiangxi_center.osm", profile="walk")
    eng = Engine.from_graph(G)
    segs = eng._segment_index()[2]
    xy = _random_points(segs, 2000, seed=3)
    pts = gpd.GeoDataFrame(
        {"id": [f"p{k}" for k in range(len(xy))]}, geometry=shapely.points(xy), crs=eng.crs
    )
    snapped = eng.snap(pts, max_snap_m=300.0)
    i, _, d = _geos_nearest(segs, xy, 300.0)
    assert np.array_equal(snapped.rows, i)
    assert snapped.access_m == pytest.approx(d, abs=1e-9)
    assert sorted(snapped.too_far["id"]) == sorted(f"p{k}" for k in set(range(len(xy))) - set(i))
