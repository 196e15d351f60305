"""One routing solver for the analyses that order stops: PyVRP, through the relief module.

The relief analysis plans capacitated tours with :func:`geo_minzheng.relief.tours_from_cost_matrix`
(PyVRP, chosen there against OR-Tools and VROOM, docs/relief.md). :func:`visiting_order` is the
single-vehicle case of that same function: every point visited once from a start, as a closed
tour or an open path. The boundary inspection route (:mod:`geo_minzheng.boundaries`) uses it, so
both analyses share one maintained solver, its stopping rule and its handling of unreachable legs.
"""

from __future__ import annotations

import numpy as np

from geo_minzheng import params
from geo_minzheng.relief import tours_from_cost_matrix

#: The largest finite leg is scaled to this many whole units before solving: PyVRP costs are
#: integers, and 1e7 keeps orders that differ by more than 1e-7 of a leg apart.
COST_RESOLUTION = 10_000_000
#: Name of the solver, as reports show it.
SOLVER_NAME = "PyVRP (relief.tours_from_cost_matrix, one vehicle)"


def visiting_order(
    cost: np.ndarray,
    *,
    start: int = 0,
    return_to_start: bool = False,
    time_limit_s: float | None = None,
    max_iterations: int = params.DEFAULT_VRP_ITERATIONS,
    seed: int = 1,
) -> list[int]:
    """The order visiting every point once from ``start`` at least total cost (a TSP path).

    Parameters
    ----------
    cost
        ``[n, n]`` cost from point i to j (any unit; ``inf`` where there is no path).
    start
        Position of the starting point.
    return_to_start
        Close the tour back to ``start``; otherwise the path ends wherever is cheapest (the legs
        back to the start cost nothing).
    time_limit_s
        Search time limit; default 50 ms + 10 ms per point, at most 2 s. The iterations
        (``max_iterations``, seeded) stop it first on small problems, so the order is the same on
        every run there.

    Returns
    -------
    list[int]
        Point positions, ``start`` first (not repeated at the end).
    """
    c = np.asarray(cost, dtype=float)
    n = len(c)
    if c.ndim != 2 or c.shape != (n, n):
        msg = f"cost must be a square matrix, got shape {c.shape}"
        raise ValueError(msg)
    if not 0 <= start < max(n, 1):
        msg = f"start must be a point position in [0, {n}), got {start}"
        raise ValueError(msg)
    if n <= 2:
        return [start, *[i for i in range(n) if i != start]]
    # the start is the depot (location 0), the other points the clients, in this order
    where = [start, *[i for i in range(n) if i != start]]
    sub = c[np.ix_(where, where)]
    finite = np.isfinite(sub)
    np.fill_diagonal(finite, False)
    top = float(np.abs(sub[finite]).max()) if finite.any() else 1.0
    scaled = np.where(np.isfinite(sub), np.round(sub * (COST_RESOLUTION / max(top, 1e-12))), np.inf)
    np.fill_diagonal(scaled, 0.0)
    if not return_to_start:
        scaled[1:, 0] = 0.0  # an open path: going "home" from the last point is free
    limit = time_limit_s if time_limit_s is not None else min(2.0, 0.05 + 0.01 * n)
    solution = tours_from_cost_matrix(
        scaled,
        np.zeros(n - 1),
        capacity=1,
        vehicles=1,
        reload=False,
        max_iterations=max_iterations,
        max_runtime_s=limit,
        seed=seed,
    )
    visited = [k for _, _, trips in solution.routes for trip in trips for k in trip]
    return [start, *[where[1 + k] for k in visited]]
