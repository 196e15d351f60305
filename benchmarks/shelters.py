"""Benchmark: capacitated shelter catchments against networkx, and a city end to end.

Two measurements:

* ``shelters_capacitated_vs_networkx``: the capacitated assignment core
  (:func:`geo_minzheng.shelters.capacitated_from_cost_matrix`, OR-Tools' compiled min-cost flow)
  against ``networkx.min_cost_flow`` (network simplex in Python) on the same problem: a city-like
  sparse cost matrix (residents' blocks and shelters scattered over a square, walking distance
  within each shelter's radius, capacities for about 70 % of the residents, integer metres). The
  networkx model is the standard one: each block supplies its residents, each shelter an arc of
  its capacity to a sink, and an arc straight to the sink whose cost exceeds any path through the
  shelters takes whoever cannot be sheltered. The script checks that both find the same number
  sheltered and the same person-weighted cost, and that capacities and radii hold.
* ``shelters_city_end_to_end``: :func:`geo_minzheng.shelters.catchments` (snapping, the
  shortest-path trees from every shelter, nearest and capacitated catchments for two walking
  speeds, result tables) plus :func:`~geo_minzheng.shelters.responsibility_areas` for 100,000
  demand points and 300 shelters on a street grid in WGS84 layers, as a bureau has them.

Run: ``nice .venv/bin/python benchmarks/shelters.py [--blocks 36000] [--side 317]``.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

import geopandas as gpd
import networkx as nx
import numpy as np
import shapely
from pyproj import CRS
from scipy import sparse
from scipy.spatial import cKDTree

from geo_minzheng import crs, shelters
from geo_minzheng.engine import Engine

SPEED_MPS = 0.91


def best_of(func: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Best wall-clock seconds of ``repeat`` calls (the machine may be shared), and a result."""
    best, out = np.inf, None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        out = func()
        best = min(best, time.perf_counter() - t0)
    return best, out


# ------------------------------------------------------------------ the assignment core
def city_problem(n_blocks: int, seed: int = 11) -> dict[str, np.ndarray]:
    """Blocks and shelters over a square at the demo city's density (one block per 200 x 200 m,
    one shelter per ~20 blocks), arcs within each shelter's radius (500-1,500 m by class)."""
    rng = np.random.default_rng(seed)
    side = 200.0 * np.sqrt(n_blocks)
    n_shel = max(3, n_blocks // 20)
    blocks = rng.uniform(0, side, (n_blocks, 2))
    shel = rng.uniform(0, side, (n_shel, 2))
    radius = rng.choice([500.0, 1000.0, 1500.0], n_shel, p=[0.2, 0.6, 0.2])
    tree = cKDTree(blocks)
    rows, cols, cost = [], [], []
    for j, (xy, r) in enumerate(zip(shel, radius, strict=True)):
        near = np.asarray(tree.query_ball_point(xy, r), dtype=np.int64)
        # walking distance ~ 1.3 x the straight line (a street detour factor), integer metres
        d = np.rint(1.3 * np.hypot(*(blocks[near] - xy).T))
        ok = d <= r
        rows.append(near[ok])
        cols.append(np.full(int(ok.sum()), j))
        cost.append(d[ok])
    population = rng.integers(50, 900, n_blocks)
    share = rng.uniform(0.5, 1.5, n_shel)
    capacity = np.rint(share / share.sum() * 0.7 * population.sum()).astype(np.int64)
    return {
        "row": np.concatenate(rows),
        "col": np.concatenate(cols),
        "cost": np.concatenate(cost),
        "demand": population,
        "capacity": capacity,
        "radius": radius,
    }


def ours_core(p: dict[str, np.ndarray]) -> shelters.Assignment:
    m = sparse.csr_matrix(
        (p["cost"], (p["row"], p["col"])), shape=(len(p["demand"]), len(p["capacity"]))
    )
    return shelters.capacitated_from_cost_matrix(m, p["demand"], p["capacity"], p["radius"])


def nx_core(p: dict[str, np.ndarray]) -> tuple[int, int]:
    """(sheltered, cost) by networkx.min_cost_flow with an 'unsheltered' arc per block."""
    big = len(p["capacity"]) * int(p["cost"].max()) + 1
    G = nx.DiGraph()
    total = int(p["demand"].sum())
    G.add_node("T", demand=total)
    for i, d in enumerate(p["demand"].tolist()):
        G.add_node(("d", i), demand=-d)
        G.add_edge(("d", i), "T", weight=big, capacity=d)
    for j, c in enumerate(p["capacity"].tolist()):
        G.add_edge(("s", j), "T", weight=0, capacity=c)
    demand = p["demand"].tolist()
    for r, c, w in zip(p["row"].tolist(), p["col"].tolist(), p["cost"].tolist(), strict=True):
        G.add_edge(("d", r), ("s", c), weight=int(w), capacity=demand[r])
    flow = nx.min_cost_flow(G)
    unsheltered = sum(flow[("d", i)]["T"] for i in range(len(demand)))
    return total - unsheltered, nx.cost_of_flow(G, flow) - big * unsheltered


def core(n_blocks: int) -> None:
    p = city_problem(n_blocks)
    t_ours, a = best_of(lambda: ours_core(p), 3)
    t_nx, (sheltered, cost) = best_of(lambda: nx_core(p), 1)
    assert isinstance(a, shelters.Assignment)
    if (a.sheltered, a.objective) != (sheltered, cost):
        msg = f"objectives differ: ours {a.sheltered}, {a.objective}; networkx {sheltered}, {cost}"
        raise SystemExit(msg)
    if np.any(a.load > p["capacity"]) or np.any(a.cost > p["radius"][a.col]):
        msg = "capacities or radii broken"
        raise SystemExit(msg)
    print(
        f"capacitated assignment: {len(p['demand']):,} blocks ({int(p['demand'].sum()):,} "
        f"residents), {len(p['capacity']):,} shelters, {len(p['row']):,} arcs within radius"
    )
    print(f"  shelters.capacitated_from_cost_matrix (OR-Tools): {t_ours:8.3f} s (best of 3)")
    print(f"  networkx.min_cost_flow:                           {t_nx:8.3f} s")
    print(
        f"  both: {a.sheltered:,} sheltered, {int(p['demand'].sum()) - a.sheltered:,} "
        f"unsheltered, person-weighted distance {a.objective:,.0f} m (equal)"
    )
    print(f"shelters_capacitated_vs_networkx ratio={t_nx / t_ours:.1f}")


# ------------------------------------------------------------------ a city end to end
def grid_city(side: int, seed: int = 7) -> Engine:
    """A side x side street grid, 90-110 m blocks, two-way streets, elderly walking speed."""
    rng = np.random.default_rng(seed)
    work = CRS.from_user_input(crs.working_crs(125.33, 43.89))
    i, j = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    x = (440_000.0 + i * 100.0 + rng.uniform(-10, 10, i.shape)).ravel()
    y = (4_850_000.0 + j * 100.0 + rng.uniform(-10, 10, j.shape)).ravel()
    node = (i * side + j).ravel()
    right = node[(j < side - 1).ravel()]
    down = node[(i < side - 1).ravel()]
    a = np.concatenate([right, down, right + 1, down + side])
    b = np.concatenate([right + 1, down + side, right, down])
    length = np.hypot(x[a] - x[b], y[a] - y[b])
    xy = np.column_stack([x, y])
    return Engine(
        node_ids=np.arange(side * side),
        node_x=x,
        node_y=y,
        u=a,
        v=b,
        cost=length / SPEED_MPS,
        length_m=length,
        geometry=shapely.linestrings(np.stack([xy[a], xy[b]], axis=1)),
        crs=work,
        weight="time_s",
        walk_speed_mps=SPEED_MPS,
        profile="walk",
    )


def city(side: int, n_demand: int = 100_000, n_shelters: int = 300, seed: int = 8) -> None:
    engine = grid_city(side)
    rng = np.random.default_rng(seed)
    nodes = np.column_stack([engine.node_x, engine.node_y])
    pick = rng.choice(len(nodes), n_demand, replace=False)
    xy = nodes[pick] + rng.uniform(-30, 30, (n_demand, 2))
    demand = gpd.GeoDataFrame(
        {"id": [f"D{k}" for k in range(n_demand)], "population": rng.integers(5, 60, n_demand)},
        geometry=shapely.points(xy),
        crs=engine.crs,
    ).to_crs(4326)
    demand["aged_60_plus"] = (demand["population"] * rng.uniform(0.1, 0.35, n_demand)).astype(int)
    where = nodes[rng.choice(len(nodes), n_shelters, replace=False)]
    cls = rng.choice(
        ["emergency", "fixed_short", "fixed_medium", "fixed_long", "central"],
        n_shelters,
        p=[0.3, 0.4, 0.2, 0.08, 0.02],
    )
    sh = gpd.GeoDataFrame(
        {
            "id": [f"S{k:03d}" for k in range(n_shelters)],
            "shelter_class": cls,
            "effective_area_m2": rng.uniform(2_000, 40_000, n_shelters).round(),
        },
        geometry=shapely.points(where + rng.uniform(-20, 20, (n_shelters, 2))),
        crs=engine.crs,
    ).to_crs(4326)
    engine.snap(demand.head(1), id_field="id")  # the spatial index, built once per network

    def run() -> tuple[shelters.CatchmentResult, gpd.GeoDataFrame, dict[str, float]]:
        t0 = time.perf_counter()
        res = shelters.catchments(demand, sh, engine)
        t1 = time.perf_counter()
        areas = shelters.responsibility_areas(res)
        t2 = time.perf_counter()
        return res, areas, {"catchments": t1 - t0, "areas": t2 - t1}

    total, (res, areas, parts) = best_of(run, 3)
    s = res.summary
    print(
        f"city end to end: {n_demand:,} demand points ({s['population']:,} residents), "
        f"{n_shelters} shelters, {engine.n_nodes:,} nodes / {len(engine.u):,} edges"
    )
    print(
        f"  catchments (snap, trees, nearest + capacitated for 2 speeds, tables): "
        f"{parts['catchments']:.2f} s; responsibility areas: {parts['areas']:.2f} s"
    )
    print(
        f"  {s['sheltered_persons']:,} sheltered, {s['unsheltered_persons']:,} unsheltered "
        f"({s['beyond_radius_persons']:,} beyond every radius), {len(areas)} areas, "
        f"{len(res.assignment):,} assignment rows"
    )
    print(f"shelters_city_end_to_end seconds={total:.2f} (goal < 10)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=36000, help="blocks in the core problem")
    parser.add_argument("--side", type=int, default=317, help="street grid side (side² nodes)")
    args = parser.parse_args()
    core(args.blocks)
    city(args.side)


if __name__ == "__main__":
    main()
