"""The CSR engine against networkx Dijkstra on the same real networks (Changchun, OSM)."""

from __future__ import annotations

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import pytest
import shapely

from geo_minzheng import network
from geo_minzheng._errors import LayerValidationError, NetworkError, UnreachableError
from geo_minzheng.engine import EPS_COST, Barriers, Engine, NetworkArrays, ranges
from tests.conftest import CHANGCHUN, OSM_DIR

TOL = 1e-6  # seconds; the engine clamps zero-cost virtual edges to 1e-9


@pytest.fixture(scope="module")
def roads() -> gpd.GeoDataFrame:
    return gpd.read_file(CHANGCHUN / "roads_osm.geojson")


@pytest.fixture(scope="module")
def walk(roads) -> nx.MultiDiGraph:
    return network.from_road_layer(roads, profile="walk")


@pytest.fixture(scope="module")
def drive(roads) -> nx.MultiDiGraph:
    return network.from_road_layer(roads, profile="drive")


def _points(G: nx.MultiDiGraph, n: int, seed: int, prefix: str) -> gpd.GeoDataFrame:
    """Random points over the network's extent (some fall far from any road)."""
    xs = [d["x"] for _, d in G.nodes(data=True)]
    ys = [d["y"] for _, d in G.nodes(data=True)]
    rng = np.random.default_rng(seed)
    x = rng.uniform(min(xs), max(xs), n)
    y = rng.uniform(min(ys), max(ys), n)
    return gpd.GeoDataFrame(
        {"id": [f"{prefix}{i}" for i in range(n)]},
        geometry=gpd.points_from_xy(x, y),
        crs=G.graph["crs"],
    ).to_crs("EPSG:4326")


def _reference(
    G: nx.MultiDiGraph,
    sets: dict[str, gpd.GeoDataFrame],
    *,
    max_snap_m: float = 300.0,
    touched: set[tuple] | None = None,
    mode: str = "close",
    factor: float = 1.0,
) -> tuple[nx.DiGraph, dict[str, dict[str, float]]]:
    """networkx graph with each point inserted on its nearest edge(s), found by brute force.

    Returns the graph (nodes ('pt', id) for the points) and each point's access cost.
    """
    R = nx.DiGraph()
    edges = [(u, v, k, d) for u, v, k, d in G.edges(keys=True, data=True)]
    for u, v, k, d in edges:
        c = d["time_s"]
        if touched is not None and (u, v, k) in touched:
            if mode == "close":
                continue
            c *= factor
        if not R.has_edge(u, v) or R[u][v]["w"] > c:
            R.add_edge(u, v, w=c)
    geoms = np.array([d["geometry"] for *_, d in edges], dtype=object)
    access: dict[str, dict[str, float]] = {}
    on_edge: dict[int, list[tuple[float, object]]] = {}
    for name, gdf in sets.items():
        access[name] = {}
        pts = gdf.to_crs(G.graph["crs"])
        for pid, p in zip(pts["id"], pts.geometry, strict=True):
            dist = shapely.distance(geoms, p)
            best = dist.min()
            if best > max_snap_m:
                continue
            near = np.flatnonzero(dist <= best + 1e-6)
            node = ("pt", pid)
            R.add_node(node)
            rate = min(edges[i][3]["time_s"] / edges[i][3]["length_m"] for i in near)
            access[name][pid] = best * rate
            for i in near:
                u, v, k, d = edges[i]
                c = d["time_s"]
                if touched is not None and (u, v, k) in touched:
                    if mode == "close":
                        continue
                    c *= factor
                f = geoms[i].line_locate_point(p) / geoms[i].length
                R.add_edge(u, node, w=f * c)
                R.add_edge(node, v, w=(1 - f) * c)
                on_edge.setdefault(i, []).append((f, node, c))
    # points sharing an edge also connect directly, in the edge's direction
    for items in on_edge.values():
        for fa, a, c in items:
            for fb, b, _ in items:
                if fb > fa or (fb == fa and a != b):
                    R.add_edge(a, b, w=(fb - fa) * c)
    return R, access


def _touched(G: nx.MultiDiGraph, geom: shapely.Geometry, tol: float) -> set[tuple]:
    return {
        (u, v, k)
        for u, v, k, d in G.edges(keys=True, data=True)
        if d["geometry"].distance(geom) <= tol
    }


def _check_nearest(
    G, eng, src_gdf, tgt_gdf, *, barriers=None, touched=None, mode="close", factor=1.0, cutoff=None
) -> pd.DataFrame:
    src = eng.snap(src_gdf)
    tgt = eng.snap(tgt_gdf)
    got = eng.nearest(src, tgt, cutoff=cutoff, barriers=barriers)
    R, acc = _reference(G, {"s": src_gdf, "t": tgt_gdf}, touched=touched, mode=mode, factor=factor)
    for sid, a in acc["s"].items():
        R.add_edge("SRC", ("pt", sid), w=a)
    dist, paths = nx.single_source_dijkstra(R, "SRC", weight="w")
    assert set(got.index) == set(acc["t"])
    for tid, a in acc["t"].items():
        exp = dist.get(("pt", tid), np.inf) + a
        if cutoff is not None and exp > cutoff:
            exp = np.inf
        assert got.loc[tid, "cost"] == pytest.approx(exp, abs=TOL), tid
        if np.isfinite(exp):
            assert got.loc[tid, "source_id"] == paths[("pt", tid)][1][1]
        else:
            assert got.loc[tid, "source_id"] is None
    return got


def test_nearest_matches_networkx_walk_edge_snapped(walk, roads) -> None:
    eng = Engine.from_graph(walk)
    got = _check_nearest(walk, eng, _points(walk, 15, 1, "F"), _points(walk, 150, 2, "D"))
    assert np.isfinite(got["cost"]).sum() > 50


def test_nearest_matches_networkx_drive_one_way(drive) -> None:
    eng = Engine.from_graph(drive)
    got = _check_nearest(drive, eng, _points(drive, 10, 3, "F"), _points(drive, 120, 4, "D"))
    assert np.isfinite(got["cost"]).sum() > 50


def test_nearest_with_cutoff_matches_networkx(walk) -> None:
    eng = Engine.from_graph(walk)
    got = _check_nearest(
        walk, eng, _points(walk, 15, 5, "F"), _points(walk, 150, 6, "D"), cutoff=600.0
    )
    assert got["source_id"].isna().any() and got["source_id"].notna().any()


@pytest.mark.parametrize(("mode", "factor"), [("close", None), ("scale", 4.0)])
def test_barriers_match_networkx_with_edges_removed_or_scaled(walk, mode, factor) -> None:
    eng = Engine.from_graph(walk)
    xs = np.array([d["x"] for _, d in walk.nodes(data=True)])
    ys = np.array([d["y"] for _, d in walk.nodes(data=True)])
    cx, cy = np.median(xs), np.median(ys)
    flood = shapely.Point(cx, cy).buffer(600)
    river = shapely.LineString([(cx - 3000, cy + 800), (cx + 3000, cy + 900)])
    gdf = gpd.GeoDataFrame(geometry=[flood, river], crs=walk.graph["crs"]).to_crs(4326)
    barriers = Barriers.from_geodataframe(gdf, mode=mode, factor=factor)
    work = gpd.GeoSeries([flood, river], crs=walk.graph["crs"])
    geom = shapely.union_all(work.to_crs(4326).to_crs(walk.graph["crs"]).to_numpy())
    touched = _touched(walk, geom, barriers.tolerance_m)
    assert len(eng.touched_edges(barriers)) == len(touched) > 50
    got = _check_nearest(
        walk,
        eng,
        _points(walk, 12, 7, "F"),
        _points(walk, 120, 8, "D"),
        barriers=barriers,
        touched=touched,
        mode=mode,
        factor=factor or 1.0,
    )
    src, tgt = eng.snap(_points(walk, 12, 7, "F")), eng.snap(_points(walk, 120, 8, "D"))
    free = eng.nearest(src, tgt)
    assert (got["cost"] >= free["cost"] - TOL).all()
    assert (got["cost"] > free["cost"] + 1).any()
    # the per-(points, barriers) graph cache never leaks one query's barriers into another
    blocked = eng.nearest(src, tgt, barriers=barriers)
    pd.testing.assert_frame_equal(blocked, got)
    pd.testing.assert_frame_equal(eng.nearest(src, tgt), free)


def test_point_barrier_closes_the_road_it_sits_on(walk) -> None:
    eng = Engine.from_graph(walk)
    u, v, d = next((u, v, d) for u, v, d in walk.edges(data=True) if d["length_m"] > 200)
    mid = d["geometry"].interpolate(0.5, normalized=True)
    b = Barriers.from_geodataframe(
        gpd.GeoDataFrame(geometry=[mid], crs=walk.graph["crs"]), mode="close", tolerance_m=0.5
    )
    hit = eng.touched_edges(b)
    assert {(int(eng.u[i]), int(eng.v[i])) for i in hit} >= {(u, v), (v, u)}
    assert np.isinf(eng.edge_costs(b)[hit]).all()


def test_snap_reports_far_points_and_adds_access_leg(walk) -> None:
    eng = Engine.from_graph(walk)
    u, v, d = next((u, v, d) for u, v, d in walk.edges(data=True) if d["length_m"] > 300)
    g = d["geometry"]
    p = g.interpolate(0.5, normalized=True)
    q = g.interpolate(0.5 + 1.0 / g.length, normalized=True)
    nx_, ny_ = -(q.y - p.y), q.x - p.x  # unit normal
    near = shapely.Point(p.x + 40 * nx_, p.y + 40 * ny_)
    xs = [dd["x"] for _, dd in walk.nodes(data=True)]
    far = shapely.Point(max(xs) + 5000, p.y)
    gdf = gpd.GeoDataFrame(
        {"id": ["near", "far", "empty"]}, geometry=[near, far, shapely.Point()], crs=eng.crs
    )
    s = eng.snap(gdf, max_snap_m=300)
    assert list(s.ids) == ["near"]
    all_geoms = [dd["geometry"] for _, _, dd in walk.edges(data=True)]
    assert s.access_m[0] == pytest.approx(shapely.distance(all_geoms, near).min(), abs=1e-6)
    assert s.access_m[0] <= 40 + 1e-6
    assert s.access_cost[0] == pytest.approx(s.access_m[0] / walk.graph["walk_speed_mps"])
    assert list(s.too_far["id"]) == ["far", "empty"]
    assert s.too_far["distance_m"].iloc[0] > 4000
    assert np.isnan(s.too_far["distance_m"].iloc[1])
    # cost from the point to itself is both access legs
    res = eng.nearest(s, s)
    assert res.loc["near", "cost"] == pytest.approx(2 * s.access_cost[0], abs=TOL)


def test_snap_far_away_and_unprojectable_points_are_reported_not_raised(walk) -> None:
    # regression: a point in Africa projects to inf in the Changchun working CRS and crashed
    eng = Engine.from_graph(walk)
    s = eng.snap_xy([33.189], [-1.639], crs="EPSG:4326", max_snap_m=300)
    assert len(s) == 0
    assert list(s.too_far["id"]) == ["0"]
    assert np.isinf(s.too_far["distance_m"].iloc[0])
    # mixed: a near point, an unprojectable one and one 2 degrees away (finite, far)
    nodes = list(walk.nodes(data=True))
    lon, lat = (
        gpd.GeoSeries([shapely.Point(nodes[0][1]["x"], nodes[0][1]["y"])], crs=eng.crs)
        .to_crs(4326)
        .iloc[0]
        .coords[0]
    )
    s = eng.snap_xy([lon, 33.189, lon + 2.0], [lat, -1.639, lat], crs="EPSG:4326")
    assert list(s.ids) == ["0"]
    assert list(s.too_far["id"]) == ["1", "2"]
    far = gpd.GeoSeries([shapely.Point(lon + 2.0, lat)], crs=4326).to_crs(eng.crs).iloc[0]
    all_geoms = [d["geometry"] for _, _, d in walk.edges(data=True)]
    exp = shapely.distance(all_geoms, far).min()
    assert np.isinf(s.too_far["distance_m"].iloc[0])
    assert s.too_far["distance_m"].iloc[1] == pytest.approx(exp, rel=1e-9)
    assert exp > 100_000


def test_od_matrix_matches_networkx(walk) -> None:
    eng = Engine.from_graph(walk)
    o_gdf, d_gdf = _points(walk, 8, 11, "O"), _points(walk, 40, 12, "D")
    o, d = eng.snap(o_gdf), eng.snap(d_gdf)
    od = eng.od_matrix(o, d, cutoff=1200.0)
    dense = od.to_dense()
    R, acc = _reference(walk, {"o": o_gdf, "d": d_gdf})
    for i, oid in enumerate(od.origin_ids):
        dist = nx.single_source_dijkstra_path_length(R, ("pt", oid), weight="w")
        for j, did in enumerate(od.destination_ids):
            exp = acc["o"][oid] + dist.get(("pt", did), np.inf) + acc["d"][did]
            exp = exp if exp <= 1200.0 else np.inf
            assert dense[i, j] == pytest.approx(exp, abs=TOL)
    frame = od.to_frame()
    assert len(frame) == np.isfinite(dense).sum() > 0
    assert (frame["cost"] <= 1200.0).all()
    assert od.to_dense(fill=-1.0).min() == -1.0


def test_route_matches_networkx_path(walk) -> None:
    eng = Engine.from_graph(walk)
    nodes = list(walk.nodes)
    a, b = nodes[10], nodes[2000]
    pa = (walk.nodes[a]["x"], walk.nodes[a]["y"])
    pb = (walk.nodes[b]["x"], walk.nodes[b]["y"])
    r = eng.route(pa, pb)
    assert r.cost == pytest.approx(nx.shortest_path_length(walk, a, b, weight="time_s"), abs=TOL)
    assert r.length_m == pytest.approx(
        nx.shortest_path_length(walk, a, b, weight="length_m"), rel=1e-9
    )
    assert r.geometry.length == pytest.approx(r.length_m, rel=1e-9)
    assert r.geometry.coords[0] == pytest.approx(pa) and r.geometry.coords[-1] == pytest.approx(pb)
    # the same route given in WGS84
    ll = gpd.GeoSeries([shapely.Point(pa), shapely.Point(pb)], crs=eng.crs).to_crs(4326)
    r2 = eng.route((ll[0].x, ll[0].y), (ll[1].x, ll[1].y), crs="EPSG:4326")
    assert r2.cost == pytest.approx(r.cost, abs=1e-3)
    # closing every road around the destination makes it unreachable
    ring = gpd.GeoDataFrame(geometry=[shapely.Point(pb).buffer(120)], crs=eng.crs)
    with pytest.raises(UnreachableError, match="no path"):
        eng.route(pa, pb, barriers=Barriers.from_geodataframe(ring))
    with pytest.raises(UnreachableError, match="destination"):
        eng.route(pa, (pb[0] + 50_000, pb[1]))


def test_osm_network_nearest_nodes_matches_networkx() -> None:
    G = network.from_osm_xml(OSM_DIR / "guixi_jiangxi_center.osm", profile="drive")
    eng = Engine.from_graph(G, weight="length_m")
    nodes = list(G.nodes)
    chosen = nodes[::40]
    pts = gpd.GeoDataFrame(
        {"id": [str(n) for n in chosen]},
        geometry=[shapely.Point(G.nodes[n]["x"], G.nodes[n]["y"]) for n in chosen],
        crs=eng.crs,
    )
    got = eng.nearest_nodes(eng.snap(pts), cutoff=1500.0)
    exp = nx.multi_source_dijkstra_path_length(G, set(chosen), cutoff=1500.0, weight="length_m")
    cost = got["cost"].to_numpy()
    ref = np.array([exp.get(n, np.inf) for n in got.index])
    assert np.array_equal(np.isinf(cost), np.isinf(ref))
    fin = np.isfinite(ref)
    assert np.abs(cost[fin] - ref[fin]).max() < TOL
    # points exactly on nodes of a one-way network: each reaches itself at no cost, whichever
    # of the node's edges it was snapped to
    s = eng.snap(pts)
    self_cost = eng.nearest(s, s)
    assert (self_cost["cost"].to_numpy() < TOL).all()
    assert list(self_cost["source_id"]) == list(s.ids)


def test_input_errors(walk) -> None:
    eng = Engine.from_graph(walk)
    other = Engine.from_graph(walk)
    pts = _points(walk, 5, 13, "P")
    s = other.snap(pts)
    with pytest.raises(NetworkError, match="another engine"):
        eng.nearest(s, s)
    dup = pts.copy()
    dup["id"] = ["a", "a", "b", "c", "d"]
    with pytest.raises(LayerValidationError, match="record 'a': id must be unique"):
        eng.snap(dup)
    with pytest.raises(NetworkError, match="id_field 'code'"):
        eng.snap(pts, id_field="code")
    with pytest.raises(NetworkError, match="factor > 0"):
        Barriers.from_geodataframe(pts, mode="scale")
    with pytest.raises(NetworkError, match="weight 'cost'"):
        Engine.from_graph(walk, weight="cost")


def test_queries_keep_no_point_sets_or_barriers_alive(walk) -> None:
    """What the engine prepares for a point set (edge pairs, sort order, source graph) lives
    with the points and a barrier's edge mask with the barrier: once the caller drops them,
    nothing of theirs stays in memory (a coverage server snaps new demand on every request)."""
    import gc
    import weakref

    eng = Engine.from_graph(walk)
    src, tgt = eng.snap(_points(walk, 12, 7, "F")), eng.snap(_points(walk, 120, 8, "D"))
    area = gpd.GeoDataFrame(geometry=[shapely.Point(*src.xy.mean(axis=0)).buffer(300)], crs=eng.crs)
    barriers = Barriers.from_geodataframe(area, mode="scale", factor=3.0)
    first = eng.nearest(src, tgt, barriers=barriers)
    again = eng.nearest(src, tgt, barriers=barriers)  # from what the points and barriers keep
    pd.testing.assert_frame_equal(first, again)
    assert src._memo and tgt._memo and barriers._touched
    refs = [weakref.ref(obj) for obj in (src, tgt, barriers)]
    del src, tgt, barriers, first, again
    gc.collect()
    assert [r() for r in refs] == [None, None, None]


def test_network_arrays_are_a_read_only_view_of_the_edges(drive) -> None:
    """The view isochrones read (out-edges, twins, vertices, segments): checked against the
    edges' own geometries and end nodes, one by one; read-only, shared, built once."""
    eng = Engine.from_graph(drive)  # one-way streets: edges without a twin
    a = eng.arrays
    assert isinstance(a, NetworkArrays) and eng.arrays is a
    arrays = [getattr(a, f) for f in NetworkArrays.__dataclass_fields__ if f != "segment_tree"]
    assert not any(x.flags.writeable for x in arrays)
    with pytest.raises(ValueError, match="read-only"):
        a.twin[0] = 5
    assert np.shares_memory(a.u, eng.u) and np.shares_memory(a.v, eng.v)
    assert eng.u.flags.writeable  # the engine's own arrays are untouched
    n_edges = len(eng.u)
    # out-edges: every edge once, grouped by start node, in edge order within a node
    assert sorted(a.out_edges.tolist()) == list(range(n_edges))
    starts = np.repeat(np.arange(eng.n_nodes), np.diff(a.out_ptr))
    assert (eng.u[a.out_edges] == starts).all()
    for k in range(0, eng.n_nodes, 97):
        assert a.out_edges[a.out_ptr[k] : a.out_ptr[k + 1]].tolist() == (
            np.flatnonzero(eng.u == k).tolist()
        )
    # twins: the reverse edge over the same line (the same vertices backwards), -1 for none
    reverse = {}
    for e in range(n_edges):
        key = (int(eng.v[e]), int(eng.u[e]), shapely.reverse(eng.geometry[e]).wkb)
        reverse.setdefault(key, e)
    has_twin = 0
    for e in range(n_edges):
        t = int(a.twin[e])
        mine = reverse.get((int(eng.u[e]), int(eng.v[e]), eng.geometry[e].wkb))
        if t < 0:
            assert mine is None
        else:
            has_twin += 1
            assert (eng.u[t], eng.v[t]) == (eng.v[e], eng.u[e])
            assert shapely.equals_exact(shapely.reverse(eng.geometry[t]), eng.geometry[e], 1e-6)
    assert 0 < has_twin < n_edges
    # vertices and arc lengths of every edge geometry
    for e in range(0, n_edges, 41):
        xy = a.vertex_xy[a.vertex_ptr[e] : a.vertex_ptr[e + 1]]
        np.testing.assert_array_equal(xy, shapely.get_coordinates(eng.geometry[e]))
        arc = a.vertex_arc_m[a.vertex_ptr[e] : a.vertex_ptr[e + 1]]
        assert arc[0] == 0.0
        assert arc[-1] == pytest.approx(eng.geometry[e].length, rel=1e-9)
    # one segment per twin pair, indexed by the tree
    assert len(a.segment_geometry) == n_edges - has_twin // 2
    probe = shapely.buffer(eng.geometry[0], 1.0)
    hits = a.segment_tree.query(probe, predicate="intersects")
    assert shapely.intersects(a.segment_geometry[hits], probe).all() and len(hits) >= 1


def test_point_edges_locate_each_point_on_its_edges(walk) -> None:
    eng = Engine.from_graph(walk)
    pts = eng.snap(_points(walk, 60, 21, "P"))
    pe = eng.point_edges(pts)
    assert eng.point_edges(pts) is pe  # kept with the points
    assert not any(x.flags.writeable for x in pe)
    assert (np.diff(pe.point) >= 0).all() and set(pe.point.tolist()) == set(range(len(pts)))
    # the point lies on each of its edges at that fraction (both directions of a street)
    along = pe.fraction * shapely.length(eng.geometry[pe.edge])
    np.testing.assert_allclose(eng.interpolate(pe.edge, along), pts.snapped_xy[pe.point], atol=1e-6)
    with pytest.raises(NetworkError, match="another engine"):
        Engine.from_graph(walk).point_edges(pts)


def test_subset_and_ranges(walk) -> None:
    eng = Engine.from_graph(walk)
    pts = eng.snap(_points(walk, 40, 5, "P"))
    part = pts.subset(slice(3, 9))
    assert part.ids.tolist() == pts.ids[3:9].tolist()
    assert np.shares_memory(part.snapped_xy, pts.snapped_xy)  # views, no copy
    picked = pts.subset(np.array([7, 2]))
    assert picked.ids.tolist() == [pts.ids[7], pts.ids[2]]
    whole = eng.nearest(pts, pts)
    assert (eng.nearest(part, pts)["cost"] >= whole["cost"] - TOL).all()
    pd.testing.assert_frame_equal(eng.nearest(pts, part), whole.iloc[3:9])
    starts, counts = np.array([5, 0, 9, 2]), np.array([3, 0, 1, 4])
    want = np.concatenate([np.arange(s, s + c) for s, c in zip(starts, counts, strict=True)])
    np.testing.assert_array_equal(ranges(starts, counts), want)
    assert eng.cost.min() >= EPS_COST > 0


def test_derived_state_lives_on_the_engine_and_pickles_empty(walk) -> None:
    """Per-engine state of other modules (isochrones' road raster) is kept on the engine,
    under its own lock; a pickled engine comes back with none of it, and works."""
    import pickle

    eng = Engine.from_graph(walk)
    blocks = eng.derived.entry(("test.blocks", 20.0), dict)
    blocks[(0, 0)] = np.zeros(3)
    assert eng.derived.entry(("test.blocks", 20.0), dict) is blocks
    assert ("test.blocks", 20.0) in eng.derived
    assert ("test.blocks", 10.0) not in eng.derived
    assert Engine.from_graph(walk).derived is not eng.derived
    with eng.derived.lock, eng.derived.lock:  # re-entrant: fill while holding it
        eng.derived.entry(("test.other",), list).append(1)
    _ = eng.arrays
    copy = pickle.loads(pickle.dumps(eng))
    assert ("test.blocks", 20.0) not in copy.derived
    np.testing.assert_array_equal(copy.arrays.twin, eng.arrays.twin)
    pts = copy.snap(_points(walk, 5, 3, "P"))
    assert len(copy.nearest(pts, pts)) == len(pts)
