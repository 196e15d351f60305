"""Relief benchmark: exact allocation against networkx, the tour solver on CVRPLIB set A, and the
demo's whole relief step.

Prints, in this order::

    relief_allocation_vs_networkx ratio=X      (>= 50 depots x >= 1,000 shelters x 5 items)
    relief_vrp_gap_mean_pct=X                   (PyVRP, the solver kept; <= --time-limit s each)
    relief_vrp_gap_max_pct=Y
    relief_demo_step_s=Z                        (the demo's relief step: drive network + run)

* Allocation: 50 depots and 1,000 shelters at random places on the real Changchun drive network
  (their travel times from the engine, 3 % of the roads closed so some shelters are cut off),
  5 items, stock short of the needs so the shortage rule is at work. Both solvers get the same
  networks (``relief.allocation_network``, one per item): ours is OR-Tools' compiled min-cost
  flow (``relief.allocate_from_cost_matrix``, including building the networks); the baseline is
  networkx ``min_cost_flow`` on a DiGraph built from the same arrays (graph building included,
  as a user of networkx would have to). Objectives must be equal.
* Tours: the 27 CVRPLIB set A instances kept in tests/data/cvrplib (Augerat et al. 1995; the
  optimum is in each file's comment), distances rounded as CVRPLIB does (EUC_2D, nint); gap =
  (cost - optimum) / optimum. ``--compare`` also runs OR-Tools routing (guided local search) and
  VROOM (pyvroom, exploration level 5) on the same matrices with the same time limit and prints
  one line per solver (``relief_vrp_<solver>_gap_mean_pct``...), which is how the solver kept in
  geo_minzheng.relief was chosen (docs/relief.md).

Run: ``.venv/bin/python benchmarks/relief.py [--time-limit 8] [--compare]``.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import networkx as nx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from geo_minzheng import relief, workflows  # noqa: E402
from geo_minzheng.catalog import load_catalog  # noqa: E402

CVRPLIB = ROOT / "tests" / "data" / "cvrplib"


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------------------------
# Allocation vs networkx
# --------------------------------------------------------------------------------------------
def allocation_problem(
    n_depots: int, n_shelters: int, seed: int = 7
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Travel times (s) on the Changchun drive network with 3 % of the roads closed, stock
    and needs of 5 items (stock short of the needs)."""
    import geopandas as gpd
    import shapely

    from geo_minzheng.engine import Barriers

    layers = workflows.FrameLayers(load_catalog(ROOT / "layers" / "catalog.yml").read_all())
    engine = workflows.engine_for(
        workflows.road_network(layers, workflows.NetworkParams(profile="drive"))
    )
    rng = np.random.default_rng(seed)
    roads = layers.read("roads").to_crs(engine.crs)
    lines = roads.geometry.to_numpy()
    pick = rng.integers(0, len(lines), n_depots + n_shelters)
    pts = shapely.line_interpolate_point(lines[pick], rng.random(len(pick)), normalized=True)
    gdf = gpd.GeoDataFrame({"id": [f"P{i}" for i in range(len(pts))]}, geometry=pts,
                           crs=engine.crs)  # fmt: skip
    snapped = engine.snap(gdf, max_snap_m=300)
    closed = gpd.GeoSeries(lines[rng.random(len(lines)) < 0.03], crs=engine.crs)
    barriers = Barriers.from_geodataframe(closed, tolerance_m=0.0)
    od = engine.od_matrix(snapped, snapped, barriers=barriers)
    full = np.full((len(gdf), len(gdf)), np.inf)
    rows = snapped.rows
    full[rows[od.origin_index], rows[od.destination_index]] = od.cost
    cost = full[:n_depots, n_depots:]
    need = rng.integers(0, 400, (n_shelters, 5))
    need_aged = (need * rng.uniform(0.05, 0.4, (n_shelters, 1))).astype(np.int64)
    available = rng.integers(0, 2 * need.sum(axis=0) // n_depots, (n_depots, 5))  # ~ the needs
    return cost, available, need, need_aged


def networkx_allocation(
    cost: np.ndarray, available: np.ndarray, need: np.ndarray, need_aged: np.ndarray, steps: int
) -> float:
    """The same networks solved by networkx ``min_cost_flow``; returns the summed objective of
    the trip arcs (units x rounded seconds)."""
    cost_int = np.where(np.isfinite(cost), np.rint(np.nan_to_num(cost, posinf=0)), -1)
    cost_int = cost_int.astype(np.int64)
    total = 0.0
    for j in range(need.shape[1]):
        net = relief.allocation_network(
            cost_int, available[:, j], need[:, j], need_aged[:, j], share_steps=steps
        )
        G = nx.DiGraph()
        for node, supply in enumerate(net["supply"]):
            G.add_node(node, demand=-int(supply))
        for t, h, c, w in zip(net["tail"], net["head"], net["capacity"], net["cost"], strict=True):
            G.add_edge(int(t), int(h), capacity=int(c), weight=int(w))
        flow = nx.min_cost_flow(G)
        n_trip = int(net["n_arcs_trip"])
        for t, h, w in zip(net["tail"][:n_trip], net["head"][:n_trip], net["cost"][:n_trip],
                           strict=True):  # fmt: skip
            total += flow[int(t)][int(h)] * int(w)
    return total


def bench_allocation(n_depots: int, n_shelters: int, repeats: int) -> float:
    cost, available, need, need_aged = allocation_problem(n_depots, n_shelters)
    steps = 10
    reachable = np.isfinite(cost).any(axis=0).mean()
    best = math.inf
    res = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = relief.allocate_from_cost_matrix(
            cost, available, need, need_priority=need_aged, share_steps=steps
        )
        best = min(best, time.perf_counter() - t0)
    assert res is not None
    ours = float(np.dot(res.quantity, np.rint(res.cost)))
    t0 = time.perf_counter()
    theirs = networkx_allocation(cost, available, need, need_aged, steps)
    baseline = time.perf_counter() - t0
    if ours != theirs:
        msg = f"objectives differ: ours {ours} != networkx {theirs}"
        raise SystemExit(msg)
    short = 1.0 - res.delivered.sum() / need.sum()
    _out(
        f"# allocation: {n_depots} depots x {n_shelters} shelters x 5 items "
        f"({reachable:.0%} of shelters reachable, {short:.0%} of needs short); "
        f"OR-Tools {best:.3f} s (best of {repeats}), networkx {baseline:.2f} s; "
        f"objective {ours:.0f} unit-seconds both"
    )
    return baseline / best


# --------------------------------------------------------------------------------------------
# CVRPLIB set A
# --------------------------------------------------------------------------------------------
def read_cvrplib(path: Path) -> tuple[np.ndarray, np.ndarray, int, int, int]:
    """(rounded EUC_2D distances, client demands, capacity, optimum, k) of a VRPLIB file."""
    text = path.read_text()
    optimum = int(re.search(r"Optimal value: (\d+)", text).group(1))  # type: ignore[union-attr]
    capacity = int(re.search(r"CAPACITY : (\d+)", text).group(1))  # type: ignore[union-attr]
    k = int(re.search(r"-k(\d+)", path.stem).group(1))  # type: ignore[union-attr]
    lines = text.splitlines()
    a, b, c = (lines.index(s) for s in ("NODE_COORD_SECTION", "DEMAND_SECTION", "DEPOT_SECTION"))
    xy = np.array([[float(v) for v in ln.split()[1:]] for ln in lines[a + 1 : b]])
    demand = np.array([int(ln.split()[1]) for ln in lines[b + 1 : c]])
    diff = xy[:, None, :] - xy[None, :, :]
    dist = np.floor(np.hypot(diff[..., 0], diff[..., 1]) + 0.5)  # TSPLIB nint
    return dist, demand[1:], capacity, optimum, k


def solve_pyvrp(dist: np.ndarray, demand: np.ndarray, cap: int, k: int, limit_s: float) -> float:
    sol = relief.tours_from_cost_matrix(
        dist, demand, capacity=cap, vehicles=len(demand), reload=False,
        max_iterations=10**9, max_runtime_s=limit_s, seed=1,
    )  # fmt: skip
    if sol.missing:
        return math.inf
    return float(sol.cost)


def solve_ortools(dist: np.ndarray, demand: np.ndarray, cap: int, k: int, limit_s: float) -> float:
    from ortools.constraint_solver import pywrapcp, routing_enums_pb2

    n = len(dist)
    manager = pywrapcp.RoutingIndexManager(n, k, 0)
    routing = pywrapcp.RoutingModel(manager)
    d = dist.astype(np.int64)
    cb = routing.RegisterTransitCallback(
        lambda i, j: int(d[manager.IndexToNode(i), manager.IndexToNode(j)])
    )
    routing.SetArcCostEvaluatorOfAllVehicles(cb)
    load = np.concatenate([[0], demand]).astype(np.int64)
    dem = routing.RegisterUnaryTransitCallback(lambda i: int(load[manager.IndexToNode(i)]))
    routing.AddDimensionWithVehicleCapacity(dem, 0, [int(cap)] * k, True, "load")
    search = pywrapcp.DefaultRoutingSearchParameters()
    search.first_solution_strategy = routing_enums_pb2.FirstSolutionStrategy.PATH_CHEAPEST_ARC
    search.local_search_metaheuristic = (
        routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH
    )
    search.time_limit.FromMilliseconds(int(limit_s * 1000))
    solution = routing.SolveWithParameters(search)
    return float(solution.ObjectiveValue()) if solution else math.inf


def solve_vroom(dist: np.ndarray, demand: np.ndarray, cap: int, k: int, limit_s: float) -> float:
    import vroom

    problem = vroom.Input()
    problem.set_durations_matrix(profile="car", matrix_input=dist.astype(np.uint32))
    for v in range(len(demand)):
        problem.add_vehicle(vroom.Vehicle(v + 1, start=0, end=0, capacity=[int(cap)]))
    for i, q in enumerate(demand):
        problem.add_job(vroom.Job(i + 1, location=i + 1, delivery=[int(q)]))
    sol = problem.solve(exploration_level=5, nb_threads=2, timeout=timedelta(seconds=limit_s))
    if len(sol.routes) == 0:
        return math.inf
    if sol.summary.unassigned if hasattr(sol.summary, "unassigned") else False:
        return math.inf
    return float(sol.summary.cost)


SOLVERS = {"pyvrp": solve_pyvrp, "ortools": solve_ortools, "vroom": solve_vroom}


def bench_vrp(
    solver: str, limit_s: float, names: list[str] | None
) -> list[tuple[str, float, float]]:
    files = sorted(CVRPLIB.glob("A-n*.vrp"), key=lambda p: int(p.stem.split("-")[1][1:]))
    if names:
        files = [f for f in files if f.stem in names]
    rows = []
    for f in files:
        dist, demand, cap, opt, k = read_cvrplib(f)
        t0 = time.perf_counter()
        cost = SOLVERS[solver](dist, demand, cap, k, limit_s)
        seconds = time.perf_counter() - t0
        gap = 100.0 * (cost - opt) / opt
        rows.append((f.stem, gap, seconds))
        _out(f"# {solver} {f.stem}: cost {cost:g}, optimum {opt}, gap {gap:.2f} %, {seconds:.1f} s")
    return rows


# --------------------------------------------------------------------------------------------
# The demo's relief step
# --------------------------------------------------------------------------------------------
def bench_demo_step() -> float:
    """Seconds of the demo's whole relief step (drive network, two plans under the demo flood,
    tables, routes, dispatch sheets), after the steps it needs."""
    from geo_minzheng import demo

    names = ("layers", "validate", "network", "shelters", "relief")
    steps = [s for s in demo.DEMO_STEPS if s.name in names]
    with tempfile.TemporaryDirectory() as out:
        state = demo.run_demo(out, steps=steps)
    _out(f"# demo steps: {state.timings_s}")
    return float(state.timings_s["relief"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depots", type=int, default=50)
    parser.add_argument("--shelters", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--time-limit", type=float, default=8.0, help="seconds per instance")
    parser.add_argument("--instances", default=None, help="comma-separated names (default all)")
    parser.add_argument("--compare", action="store_true", help="also OR-Tools and VROOM")
    parser.add_argument("--skip", default="", help="comma-separated: allocation,vrp,demo")
    args = parser.parse_args(argv)
    if not 0 < args.time_limit <= 10:
        parser.error("--time-limit must be in (0, 10] seconds (the goal's limit)")
    skip = set(filter(None, args.skip.split(",")))
    names = args.instances.split(",") if args.instances else None
    if "allocation" not in skip:
        ratio = bench_allocation(args.depots, args.shelters, args.repeats)
        _out(f"relief_allocation_vs_networkx ratio={ratio:.1f}")
    if "vrp" not in skip:
        for solver in ("pyvrp", "ortools", "vroom") if args.compare else ("pyvrp",):
            rows = bench_vrp(solver, args.time_limit, names)
            gaps = np.array([r[1] for r in rows])
            prefix = "relief_vrp" if solver == "pyvrp" else f"relief_vrp_{solver}"
            _out(f"{prefix}_gap_mean_pct={gaps.mean():.2f}")
            _out(f"{prefix}_gap_max_pct={gaps.max():.2f}")
            _out(f"# {solver}: at most {max(r[2] for r in rows):.1f} s per instance")
    if "demo" not in skip:
        _out(f"relief_demo_step_s={bench_demo_step():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
