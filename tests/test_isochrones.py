"""Service-area polygons: geometric properties checked against networkx reachability."""

from __future__ import annotations

import geopandas as gpd
import networkx as nx
import numpy as np
import pytest
import shapely
from shapely.ops import substring

from geo_minzheng import isochrones, network
from geo_minzheng._errors import NetworkError
from geo_minzheng.engine import Barriers, Engine
from geo_minzheng.isochrones import service_areas
from tests.conftest import CHANGCHUN

BUFFER_M = 40.0
CELL_M = BUFFER_M / 2  # the default grid cell


@pytest.fixture(scope="module")
def walk() -> nx.MultiDiGraph:
    return network.from_road_layer(gpd.read_file(CHANGCHUN / "roads_osm.geojson"), profile="walk")


@pytest.fixture(scope="module")
def engine(walk) -> Engine:
    return Engine.from_graph(walk)


def _at_nodes(G: nx.MultiDiGraph, nodes: list) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"id": [f"F{n}" for n in nodes]},
        geometry=[shapely.Point(G.nodes[n]["x"], G.nodes[n]["y"]) for n in nodes],
        crs=G.graph["crs"],
    )


def _reachable_pieces(G, source, brk: float) -> tuple[list, list]:
    """Reachable edge parts (networkx Dijkstra) and the edges not reached at all."""
    dist = nx.single_source_dijkstra_path_length(G, source, cutoff=brk, weight="time_s")
    reached, unreached = [], []
    for u, v, d in G.edges(data=True):
        du = dist.get(u, np.inf)
        dv = dist.get(v, np.inf)
        g = d["geometry"]
        if du < brk:
            r = min(1.0, (brk - du) / d["time_s"])
            reached.append(substring(g, 0, r * g.length))
        elif dv >= brk:
            unreached.append(g)
    return reached, unreached


@pytest.fixture(scope="module")
def facilities(walk) -> list:
    nodes = list(walk.nodes)
    return [nodes[300], nodes[1000], nodes[1700]]


@pytest.fixture(scope="module")
def disks(engine, walk, facilities) -> gpd.GeoDataFrame:
    return service_areas(engine, engine.snap(_at_nodes(walk, facilities)), breaks=(300, 600, 900))


def test_every_reachable_edge_part_is_inside(walk, disks, facilities) -> None:
    for n in facilities:
        for brk in (300.0, 900.0):
            row = disks[(disks["facility_id"] == f"F{n}") & (disks["break"] == brk)]
            poly = row.geometry.iloc[0]
            reached, _ = _reachable_pieces(walk, n, brk)
            assert len(reached) > 20
            # the contour is interpolated on the grid: allow one cell at the break's very end
            grown = poly.buffer(CELL_M)
            assert all(grown.covers(p) for p in reached)
            # and nearly all of the reachable length lies inside the polygon itself
            total = sum(p.length for p in reached)
            inside = sum(p.intersection(poly).length for p in reached)
            assert inside / total > 0.99


def test_no_fringe_over_unreachable_roads(walk, disks, facilities) -> None:
    for n in facilities:
        row = disks[(disks["facility_id"] == f"F{n}") & (disks["break"] == 900.0)]
        poly = row.geometry.iloc[0]
        reached, unreached = _reachable_pieces(walk, n, 900.0)
        reach_union = shapely.union_all(reached)
        far = [g for g in unreached if g.distance(reach_union) > BUFFER_M + 2 * CELL_M]
        assert len(far) > 100
        assert not any(poly.intersects(g) for g in far)


def test_disks_nested_and_rings_disjoint(engine, walk, facilities, disks) -> None:
    rings = service_areas(
        engine, engine.snap(_at_nodes(walk, facilities)), breaks=(300, 600, 900), rings=True
    )
    for n in facilities:
        d = disks[disks["facility_id"] == f"F{n}"].geometry.to_numpy()
        r = rings[rings["facility_id"] == f"F{n}"].geometry.to_numpy()
        assert d[0].area < d[1].area < d[2].area
        assert d[0].difference(d[1]).area < 1.0 and d[1].difference(d[2]).area < 1.0
        for i in range(3):
            for j in range(i + 1, 3):
                assert r[i].intersection(r[j]).area < 1.0
        assert shapely.union_all(r).area == pytest.approx(d[2].area, rel=1e-3)
        assert r[0].area == pytest.approx(d[0].area, rel=1e-6)
        assert all(g.is_valid for g in r) and all(g.is_valid for g in d)


def test_dissolve_covers_each_facility(engine, walk, facilities, disks) -> None:
    merged = service_areas(
        engine, engine.snap(_at_nodes(walk, facilities)), breaks=(300, 600, 900), dissolve=True
    )
    assert list(merged["break"]) == [300.0, 600.0, 900.0]
    assert merged["facility_id"].isna().all()
    for brk, poly in zip(merged["break"], merged.geometry, strict=True):
        each = disks[disks["break"] == brk].geometry
        assert shapely.union_all(each.to_numpy()).difference(poly).area < 1.0
    assert disks.crs.equals(engine.crs)


def test_polygon_barrier_area_is_excluded(engine, walk, facilities) -> None:
    n = facilities[1]
    x, y = walk.nodes[n]["x"], walk.nodes[n]["y"]
    flood = shapely.Point(x + 350, y).buffer(200)
    barriers = Barriers.from_geodataframe(gpd.GeoDataFrame(geometry=[flood], crs=engine.crs))
    pts = engine.snap(_at_nodes(walk, [n]))
    free = service_areas(engine, pts, breaks=(900,)).geometry.iloc[0]
    cut = service_areas(engine, pts, breaks=(900,), barriers=barriers).geometry.iloc[0]
    assert free.intersection(flood).area > 0.5 * flood.area
    assert cut.intersection(flood).area < 1.0
    assert cut.area < free.area


def _square_network(with_inside: bool) -> nx.MultiDiGraph:
    """A 1 km square ring road; optionally a street grid inside joined by one link."""
    x0, y0 = 445_000.0, 4_861_000.0
    lines = [
        [(x0, y0), (x0 + 1000, y0)],
        [(x0 + 1000, y0), (x0 + 1000, y0 + 1000)],
        [(x0 + 1000, y0 + 1000), (x0, y0 + 1000)],
        [(x0, y0 + 1000), (x0, y0 + 500), (x0, y0)],
    ]
    if with_inside:
        lines.append([(x0, y0 + 500), (x0 + 300, y0 + 500)])  # the only way in
        lines += [
            [(x0 + 300, y0 + 300), (x0 + 300, y0 + 500), (x0 + 300, y0 + 700)],
            [(x0 + 300, y0 + 700), (x0 + 700, y0 + 700)],
            [(x0 + 700, y0 + 700), (x0 + 700, y0 + 300)],
            [(x0 + 700, y0 + 300), (x0 + 300, y0 + 300)],
        ]
    gdf = gpd.GeoDataFrame(
        {"id": [str(i) for i in range(len(lines))], "fclass": "residential"},
        geometry=[shapely.LineString(c) for c in lines],
        crs="EPSG:4551",
    )
    return network.from_road_layer(gdf, profile="walk")


def test_enclosed_block_is_filled_only_when_surrounded_by_reached_streets() -> None:
    G = _square_network(with_inside=False)
    eng = Engine.from_graph(G, weight="length_m")
    fac = eng.snap_xy([445_000.0], [4_861_000.0])
    centre = shapely.Point(445_500, 4_861_500)
    full = service_areas(eng, fac, breaks=(1500.0, 4100.0))
    assert not full.geometry.iloc[0].contains(centre)  # 3 of 4 km reached: not enclosed
    assert full.geometry.iloc[1].contains(centre)  # the whole ring reached: block filled
    assert full.geometry.iloc[1].area == pytest.approx((1000 + 2 * BUFFER_M) ** 2, rel=0.02)


@pytest.mark.parametrize("angle_deg", [10.0, 30.0, 45.0])
def test_block_between_oblique_streets_is_filled(angle_deg: float) -> None:
    """A 1 km square ring road turned by ``angle_deg``, reached all round: its block is in the
    polygon, whose area is the square grown by the buffer, (1000 + 2 * 40 m)^2 (the raster's
    corner cuts along oblique streets must not count as unreached roads)."""
    t = np.radians(angle_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    corners = np.array([(0, 0), (1000, 0), (1000, 1000), (0, 1000)]) @ rot.T + (445_000, 4_861_000)
    gdf = gpd.GeoDataFrame(
        {"id": ["0", "1", "2", "3"], "fclass": "residential"},
        geometry=[shapely.LineString([corners[i], corners[(i + 1) % 4]]) for i in range(4)],
        crs="EPSG:4551",
    )
    eng = Engine.from_graph(network.from_road_layer(gdf, profile="walk"), weight="length_m")
    fac = eng.snap_xy([corners[0, 0]], [corners[0, 1]])
    poly = service_areas(eng, fac, breaks=(4100.0,)).geometry.iloc[0]
    assert poly.contains(shapely.Point(*(np.array([500.0, 500.0]) @ rot.T + (445_000, 4_861_000))))
    assert poly.area == pytest.approx((1000 + 2 * BUFFER_M) ** 2, rel=0.04)


def test_hole_where_a_block_is_unreachable() -> None:
    G = _square_network(with_inside=True)
    eng = Engine.from_graph(G, weight="length_m")
    fac = eng.snap_xy([445_000.0], [4_861_000.0])
    inner = shapely.Point(445_700, 4_861_500)
    open_ = service_areas(eng, fac, breaks=(6000.0,)).geometry.iloc[0]
    assert open_.contains(inner)
    gate = gpd.GeoDataFrame(geometry=[shapely.Point(445_150, 4_861_500)], crs="EPSG:4551")
    closed = service_areas(
        eng, fac, breaks=(6000.0,), barriers=Barriers.from_geodataframe(gate)
    ).geometry.iloc[0]
    assert not closed.contains(inner)
    assert sum(len(p.interiors) for p in getattr(closed, "geoms", [closed])) >= 1
    assert closed.contains(shapely.Point(445_500, 4_861_000))  # the ring road itself


def test_bad_breaks() -> None:
    G = _square_network(with_inside=False)
    eng = Engine.from_graph(G, weight="length_m")
    fac = eng.snap_xy([445_000.0], [4_861_000.0])
    with pytest.raises(NetworkError, match="breaks must be positive, finite and increasing"):
        service_areas(eng, fac, breaks=(600, 300))
    with pytest.raises(NetworkError, match="buffer_m"):
        service_areas(eng, fac, buffer_m=0)


def test_polygons_are_valid_without_repair(engine, walk) -> None:
    """Levels lie between the surface's integer steps, so contour rings never touch: no
    make_valid pass is run, so GEOS must find every polygon valid as built."""
    nodes = list(walk.nodes)[::25]
    pts = engine.snap(_at_nodes(walk, nodes))
    for rings in (False, True):
        out = service_areas(engine, pts, breaks=(300, 600, 900), rings=rings)
        geoms = out.geometry.to_numpy()
        assert len(geoms) == 3 * len(nodes)
        assert shapely.is_valid(geoms).all()
        assert (shapely.area(geoms[2::3]) > 0).mean() > 0.9


def test_road_raster_blocks_follow_the_roads(engine) -> None:
    """The lazily drawn road cells: every road vertex's cell is marked, and every marked cell
    is within half a cell diagonal of a road (shapely distances, independent of the sampling)."""
    from geo_minzheng.isochrones import _BLOCK, _ROAD, _road_blocks

    cx = float(np.median(engine.node_x)) // CELL_M
    cy = float(np.median(engine.node_y)) // CELL_M
    i0, j0 = np.array([int(cx) - 50]), np.array([int(cy) - 50])
    blocks = _road_blocks(engine, CELL_M, j0, j0 + 100, i0, i0 + 100)
    keys = [k for k in blocks if abs(k[0] - cy // _BLOCK) <= 1 and abs(k[1] - cx // _BLOCK) <= 1]
    assert keys
    marked = []
    for bj, bi in keys:
        jj, ii = np.nonzero(blocks[(bj, bi)] == _ROAD)
        marked.append(np.column_stack([ii + bi * _BLOCK, jj + bj * _BLOCK]))
    cells = np.concatenate(marked)
    assert len(cells) > 500
    roads = shapely.union_all(engine.geometry)
    centres = shapely.points(cells * CELL_M)
    assert (shapely.distance(centres, roads) <= CELL_M * 0.7072).all()
    lo = np.array([min(k[1] for k in keys), min(k[0] for k in keys)]) * _BLOCK
    hi = (np.array([max(k[1] for k in keys), max(k[0] for k in keys)]) + 1) * _BLOCK
    verts = np.rint(shapely.get_coordinates(engine.geometry) / CELL_M).astype(np.int64)
    verts = verts[((verts >= lo) & (verts < hi)).all(axis=1)]
    assert len(verts) > 100
    have = {tuple(c) for c in cells.tolist()}
    assert all(tuple(v) in have for v in verts.tolist())


def test_repeated_call_reuses_the_cache_with_identical_result(engine, walk, facilities) -> None:
    pts = engine.snap(_at_nodes(walk, facilities))
    a = service_areas(engine, pts, breaks=(600, 900)).geometry.to_numpy()
    b = service_areas(engine, pts, breaks=(600, 900)).geometry.to_numpy()
    assert shapely.equals_exact(a, b, tolerance=0.0).all()


def test_reach_of_far_apart_facilities_matches_networkx(engine, walk) -> None:
    """Facilities whose trees cannot overlap are run together (one multi-source pass per
    group); every facility's costs to the real nodes must still be its own Dijkstra tree."""
    nodes = list(walk.nodes)[::64]
    pts = engine.snap(_at_nodes(walk, nodes))
    cutoff = 300.0
    groups = engine._disjoint_groups(pts, engine.cost, cutoff)
    assert groups is not None and max(len(g) for g in groups) > 1  # the grouped path runs
    reach = engine.reach(pts, cutoff=cutoff)
    real = reach.cost[:, : engine.n_nodes].tocsr()
    pos = {n: i for i, n in enumerate(engine.node_ids.tolist())}
    for i, n in enumerate(nodes):
        ref = nx.single_source_dijkstra_path_length(walk, n, cutoff=cutoff, weight="time_s")
        row = real.getrow(i)
        got = dict(zip(row.indices.tolist(), row.data.tolist(), strict=True))
        assert set(got) == {pos[m] for m in ref}
        for m, d in ref.items():
            assert got[pos[m]] == pytest.approx(d, abs=1e-6)


@pytest.mark.parametrize("rings", [False, True])
def test_polygons_do_not_depend_on_how_facilities_are_split(
    engine, walk, monkeypatch, rings
) -> None:
    """Facilities are split over threads and packed on canvases by size; a facility's polygons
    must be the same whichever tiles are packed beside its own (gaps wide enough that no
    neighbour's roads close the land at a tile's edge) and however many threads run."""
    pts = engine.snap(_at_nodes(walk, list(walk.nodes)[::12]))
    assert len(pts) > 150
    got = {}
    for threads in (1, 2, 3):
        monkeypatch.setattr(isochrones, "_threads", lambda reached, n=threads: n)
        got[threads] = service_areas(engine, pts, breaks=(300, 600, 900), rings=rings)
    one = got[1].geometry.to_numpy()
    assert shapely.area(one).sum() > 1e7  # hundreds of real polygons
    for threads in (2, 3):
        assert (got[threads]["facility_id"] == got[1]["facility_id"]).all()
        # (equal to a micrometre: tiles at other canvas positions round coordinates apart)
        assert shapely.equals_exact(got[threads].geometry.to_numpy(), one, tolerance=1e-6).all()


def test_large_requests_run_on_several_threads(engine, walk, monkeypatch) -> None:
    """The thread split is taken for real requests (not only when forced)."""
    calls = []
    real_threads = isochrones._threads
    monkeypatch.setattr(isochrones, "_threads", lambda n: calls.append(n) or real_threads(n))
    monkeypatch.setattr(isochrones.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    pts = engine.snap(_at_nodes(walk, list(walk.nodes)[::12]))
    service_areas(engine, pts, breaks=(900,))
    assert calls and calls[0] >= isochrones._PARALLEL_MIN_REACHED
    assert real_threads(calls[0]) == 2
    assert real_threads(isochrones._PARALLEL_MIN_REACHED - 1) == 1


def test_a_facility_has_the_same_polygons_alone_as_in_a_request(engine, walk) -> None:
    """Other facilities' points split the streets they lie on in the search graph; a
    facility's polygons must not change with them (sampled as if it were asked for alone)."""
    # two facilities on each of 60 streets, a third and two thirds along
    lines = [d["geometry"] for _, _, d in list(walk.edges(data=True))[::130]]
    points = [line.interpolate(share, normalized=True) for line in lines for share in (0.3, 0.7)]
    layer = gpd.GeoDataFrame(
        {"id": [f"F{k}" for k in range(len(points))]}, geometry=points, crs=walk.graph["crs"]
    )
    pts = engine.snap(layer)
    assert len(pts) >= 100
    breaks = (300, 600, 900)
    together = service_areas(engine, pts, breaks=breaks).geometry.to_numpy().reshape(len(pts), 3)
    for i in range(0, len(pts), 8):
        alone = service_areas(engine, pts.subset(slice(i, i + 1)), breaks=breaks)
        assert shapely.equals_exact(together[i], alone.geometry.to_numpy(), tolerance=1e-6).all()


def test_road_raster_is_kept_on_the_engine_and_dropped_with_it(walk) -> None:
    """The road blocks live on their engine (``engine.derived``), one set per cell size, not in
    a module-global registry: a dropped engine takes its raster with it."""
    import gc
    import weakref

    eng = Engine.from_graph(walk)
    pts = eng.snap(_at_nodes(walk, list(walk.nodes)[:3]))
    key = (isochrones._ROAD_BLOCKS_KEY, CELL_M)
    assert key not in eng.derived
    first = service_areas(eng, pts, breaks=(600,))
    assert key in eng.derived
    blocks = eng.derived.entry(key, dict)
    side = isochrones._BLOCK
    assert blocks and all(b.shape == (side, side) for b in blocks.values())
    n_blocks = len(blocks)
    again = service_areas(eng, pts, breaks=(600,))  # drawn blocks are reused, not redrawn
    assert len(eng.derived.entry(key, dict)) == n_blocks
    assert shapely.equals_exact(first.geometry.to_numpy(), again.geometry.to_numpy(), 0.0).all()
    service_areas(eng, pts, breaks=(600,), cell_m=15.0)
    assert (isochrones._ROAD_BLOCKS_KEY, 15.0) in eng.derived
    assert not any(isinstance(v, weakref.WeakKeyDictionary) for v in vars(isochrones).values())
    ref = weakref.ref(eng)
    del eng, pts, blocks
    gc.collect()
    assert ref() is None
