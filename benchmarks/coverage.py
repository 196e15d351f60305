"""Benchmark: full coverage (3 breaks, all demand, several kinds) against a networkx computation.

Two cases, each timed against networkx computing the same numbers in the same run:

* the real Changchun walk network (layers/data/changchun/roads_osm.geojson) with seeded demand
  and facilities placed on network nodes;
* a synthetic city: a jittered street grid with >= 200,000 demand points.

Demand and facilities sit on network nodes so that both computations answer exactly the same
question (no access legs); the script checks that the covered counts are identical before it
prints the times. The networkx baseline is the best plain-networkx method: one multi-source
Dijkstra per facility kind, bounded by the largest break, then the per-break sums.

Run: ``nice .venv/bin/python benchmarks/coverage.py [--side 450]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from geo_minzheng import coverage, crs, network
from geo_minzheng.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
BREAKS_MIN = (5, 10, 15)


def _points(xy: np.ndarray, ids: list[str], crs_: object) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"id": ids}, geometry=shapely.points(xy), crs=crs_)


def _layers(node_xy: np.ndarray, work_crs: object, n_fac: tuple[int, ...], seed: int):
    """Demand on every node, facility kinds on random nodes (indices into node_xy)."""
    rng = np.random.default_rng(seed)
    n = len(node_xy)
    demand = _points(node_xy, [f"D{i}" for i in range(n)], work_crs)
    demand["population"] = rng.integers(20, 600, size=n)
    demand["aged_60_plus"] = (demand["population"] * rng.uniform(0.1, 0.35, n)).astype(int)
    kinds = {}
    for k, m in enumerate(n_fac):
        idx = rng.choice(n, size=m, replace=False)
        kinds[f"kind{k}"] = (_points(node_xy[idx], [f"F{k}_{i}" for i in idx], work_crs), idx)
    return demand, kinds


def _nx_coverage(G: nx.DiGraph, kinds: dict, demand: gpd.GeoDataFrame) -> pd.DataFrame:
    """Covered population / aged per kind and break with networkx (node i = demand row i)."""
    pop = demand["population"].to_numpy()
    aged = demand["aged_60_plus"].to_numpy()
    rows = []
    cutoff = max(BREAKS_MIN) * 60.0
    for kind, (_, idx) in kinds.items():
        dist = nx.multi_source_dijkstra_path_length(
            G, set(idx.tolist()), cutoff=cutoff, weight="time_s"
        )
        for b in BREAKS_MIN:
            cov_p = cov_a = 0
            for node, d in dist.items():
                if d <= b * 60.0:
                    cov_p += pop[node]
                    cov_a += aged[node]
            rows.append((kind, float(b), int(cov_p), int(cov_a)))
    return pd.DataFrame(rows, columns=["kind", "break_min", "covered_population", "covered_aged"])


def _ours(engine: Engine, kinds: dict, demand: gpd.GeoDataFrame) -> pd.DataFrame:
    res = coverage.analyze(
        demand, {k: v[0] for k, v in kinds.items()}, engine, breaks_min=BREAKS_MIN, gaps=False
    )
    t = res.table[res.table["unit"] == "total"]
    return t[["kind", "break_min", "covered_population", "covered_aged_60_plus"]].rename(
        columns={"covered_aged_60_plus": "covered_aged"}
    )


def _run(name: str, key: str, engine: Engine, G: nx.DiGraph, demand, kinds) -> None:
    # Both sides start from a built network: the networkx graph and the engine with its
    # spatial index of street segments (built on first use, once per engine, like the graph).
    t0 = time.perf_counter()
    engine.snap(demand.head(1), id_field="id")
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    dem = engine.snap(demand, id_field="id")
    t_snap = time.perf_counter() - t0
    snapped = {k: engine.snap(v[0], id_field="id") for k, v in kinds.items()}
    t0 = time.perf_counter()
    for fac in snapped.values():
        engine.nearest(fac, dem, cutoff=max(BREAKS_MIN) * 60.0)
    t_route = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = _ours(engine, kinds, demand)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = _nx_coverage(G, kinds, demand)
    t_nx = time.perf_counter() - t0
    same = ours.reset_index(drop=True).equals(ref.reset_index(drop=True))
    if not same:
        msg = f"{name}: results differ\n{ours}\n{ref}"
        raise SystemExit(msg)
    n_fac = sum(len(v[1]) for v in kinds.values())
    print(
        f"{name}: {len(demand):,} demand points, {n_fac:,} facilities in {len(kinds)} kinds, "
        f"{G.number_of_nodes():,} nodes / {G.number_of_edges():,} edges, breaks {BREAKS_MIN} min"
    )
    print(f"  engine segment index (once per network, not in the ratio): {t_index:8.2f} s")
    print(f"  geo_minzheng.coverage.analyze: {t_ours:8.2f} s (snapping included)")
    print(f"    of which snapping the demand to street edges: {t_snap:8.2f} s")
    print(f"    routing alone (engine.nearest per kind, points pre-snapped): {t_route:8.2f} s")
    print(f"  networkx multi-source Dijkstra: {t_nx:8.2f} s (points on nodes, no snapping)")
    print(f"  speed-up, whole analysis: {t_nx / t_ours:6.1f}x   (covered counts identical: {same})")
    print(f"  speed-up, routing alone:  {t_nx / t_route:6.1f}x")
    print(f"{key}_coverage_vs_networkx ratio={t_nx / t_ours:.1f}")
    print(f"{key}_coverage_routing_vs_networkx ratio={t_nx / t_route:.1f}")
    print(ours.to_string(index=False))


def changchun() -> None:
    G = network.from_road_layer(gpd.read_file(ROOT / "layers/data/changchun/roads_osm.geojson"))
    engine = Engine.from_graph(G)
    nodes = list(G.nodes)
    xy = np.array([(G.nodes[n]["x"], G.nodes[n]["y"]) for n in nodes])
    demand, kinds = _layers(xy, G.graph["crs"], (20, 30, 90), seed=1)
    # networkx on node positions 0..n-1 (same order as demand rows)
    H = nx.DiGraph()
    pos = {n: i for i, n in enumerate(nodes)}
    for u, v, d in G.edges(data=True):
        a, b = pos[u], pos[v]
        if not H.has_edge(a, b) or H[a][b]["time_s"] > d["time_s"]:
            H.add_edge(a, b, time_s=d["time_s"])
    _run("Changchun walk network", "changchun", engine, H, demand, kinds)


def synthetic(side: int, seed: int = 7) -> None:
    """A side x side street grid, 90-110 m blocks, elderly walking speed, two-way streets."""
    rng = np.random.default_rng(seed)
    work = CRS.from_user_input(crs.working_crs(125.33, 43.89))
    i, j = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    x = (i * 100.0 + rng.uniform(-10, 10, i.shape)).ravel()
    y = (j * 100.0 + rng.uniform(-10, 10, j.shape)).ravel()
    node = (i * side + j).ravel()
    right = node[(j < side - 1).ravel()]
    down = node[(i < side - 1).ravel()]
    u = np.concatenate([right, down])
    v = np.concatenate([right + 1, down + side])
    length = np.hypot(x[u] - x[v], y[u] - y[v])
    speed = network.ELDERLY_WALK_SPEED_MPS
    uu, vv = np.concatenate([u, v]), np.concatenate([v, u])
    ll = np.concatenate([length, length])
    engine = Engine(
        node_ids=np.arange(side * side),
        node_x=x,
        node_y=y,
        u=uu,
        v=vv,
        cost=ll / speed,
        length_m=ll,
        geometry=None,
        crs=work,
        weight="time_s",
        walk_speed_mps=speed,
        profile="walk",
    )
    G = nx.DiGraph()
    G.add_weighted_edges_from(
        zip(uu.tolist(), vv.tolist(), (ll / speed).tolist(), strict=True), "time_s"
    )
    demand, kinds = _layers(np.column_stack([x, y]), work, (150, 300, 900), seed=seed)
    _run(f"Synthetic city {side}x{side} grid", "synthetic", engine, G, demand, kinds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=450, help="grid side (side² demand points)")
    args = parser.parse_args()
    changchun()
    synthetic(args.side)


if __name__ == "__main__":
    main()
