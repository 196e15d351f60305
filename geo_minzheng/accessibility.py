"""Accessibility by two-step floating catchment (2SFCA; E2SFCA with distance-decay weights).

The core works on a cost matrix (:func:`two_step_fca`, checked against PySAL ``access``); the
wrapper (:func:`accessibility`) builds that matrix from layers on the network
:class:`~geo_minzheng.engine.Engine` and returns capacity per person keyed by the demand IDs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy import sparse

from geo_minzheng import params
from geo_minzheng._errors import LayerValidationError, Problem
from geo_minzheng.demand import check_demand
from geo_minzheng.engine import Engine

#: Distance-decay weights: None (2SFCA), ``{bound: weight}`` steps or a vectorised function.
WeightSpec = Mapping[float, float] | Callable[[np.ndarray], np.ndarray] | None


def _weights(cost: np.ndarray, weights: WeightSpec) -> np.ndarray:
    """Distance-decay weight of each cost: 1 (2SFCA), steps, or a vectorised function."""
    if weights is None:
        return np.ones_like(cost)
    if callable(weights):
        return np.asarray(weights(cost), dtype=float)
    # Steps as in Luo & Qi (2009) and PySAL access.weights.step_fn: cost <= bound -> weight of
    # the smallest bound at or above the cost; beyond the largest bound -> 0.
    bounds = np.array(sorted(weights), dtype=float)
    values = np.array([weights[b] for b in sorted(weights)], dtype=float)
    idx = np.searchsorted(bounds, cost, side="left")
    out = np.zeros_like(cost)
    inside = idx < len(bounds)
    out[inside] = values[idx[inside]]
    return out


def two_step_fca(
    cost: np.ndarray,
    demand: np.ndarray,
    supply: np.ndarray,
    *,
    max_cost: float,
    weights: WeightSpec = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Two-step floating catchment accessibility (2SFCA; E2SFCA when ``weights`` is given).

    Step 1 gives each facility ``j`` its supply-to-demand ratio
    ``R_j = S_j / sum_i W(c_ij) D_i`` over demand within ``max_cost``; step 2 sums
    ``A_i = sum_j W(c_ij) R_j`` over facilities within ``max_cost`` (Luo & Wang 2003;
    Luo & Qi 2009 for the weighted form, which PySAL ``access`` also follows).

    Parameters
    ----------
    cost
        ``[n_demand, n_supply]`` travel costs; ``inf`` where unreachable.
    demand, supply
        Demand per demand point (e.g. persons aged 60+), capacity per facility (beds, m²).
    max_cost
        Catchment size in the cost's unit (inclusive).
    weights
        None for 2SFCA; ``{bound: weight}`` steps or a vectorised function for E2SFCA.

    Returns
    -------
    (access, ratio)
        Accessibility per demand point (capacity per person; 0 with no facility in reach) and
        the ratio ``R_j`` per facility (0 when no demand is in its catchment).
    """
    c = np.asarray(cost, dtype=float)
    d = np.asarray(demand, dtype=float)
    s = np.asarray(supply, dtype=float)
    if c.shape != (len(d), len(s)):
        msg = f"cost must have shape (n_demand, n_supply) = {(len(d), len(s))}, got {c.shape}"
        raise ValueError(msg)
    i, j = np.nonzero(c <= max_cost)
    w = _weights(c[i, j], weights)
    m = sparse.csr_matrix((w, (i, j)), shape=c.shape)
    weighted_demand = m.T @ d
    ratio = np.divide(s, weighted_demand, out=np.zeros_like(s), where=weighted_demand > 0)
    return m @ ratio, ratio


def accessibility(
    gdf_demand: gpd.GeoDataFrame,
    gdf_supply: gpd.GeoDataFrame,
    engine: Engine,
    *,
    capacity_field: str = "beds",
    demand_field: str = "aged_60_plus",
    max_cost_min: float = params.DEFAULT_SITING_BREAK_MIN,
    weights: WeightSpec = None,
    max_snap_m: float = params.DEFAULT_MAX_SNAP_M,
) -> pd.DataFrame:
    """2SFCA (or E2SFCA with ``weights``) of facility capacity per person over network times.

    Parameters
    ----------
    capacity_field
        Supply column: ``beds`` or ``floor_area_m2``.
    demand_field
        Demand column: ``aged_60_plus`` (default) or ``population``.
    max_cost_min
        Catchment in minutes.
    weights
        ``{bound_s: weight}`` distance-decay steps (seconds) or a vectorised function of seconds.

    Returns
    -------
    pandas.DataFrame
        Index = demand id: ``access`` (capacity per person, e.g. beds per aged resident) and
        ``access_per_1000`` (the same per 1000 people).
    """
    check_demand(gdf_demand)
    layer = str(gdf_supply.attrs.get("layer", "supply"))
    problems = []
    if capacity_field not in gdf_supply.columns:
        problems.append(Problem("layer 'supply'", capacity_field, "a column", "missing", "missing"))
    if problems:
        raise LayerValidationError(layer, problems)
    supply = pd.to_numeric(gdf_supply[capacity_field], errors="coerce")
    for rid, raw in zip(
        gdf_supply["id"][supply.isna() | (supply < 0)],
        gdf_supply[capacity_field][supply.isna() | (supply < 0)],
        strict=True,
    ):
        problems.append(Problem(f"supply '{rid}'", capacity_field, "a number >= 0", repr(raw)))
    if problems:
        raise LayerValidationError(layer, problems)
    max_cost_s = params.minutes_to_s(max_cost_min)
    dem = engine.snap(gdf_demand, id_field="id", max_snap_m=max_snap_m)
    fac = engine.snap(gdf_supply, id_field="id", max_snap_m=max_snap_m)
    od = engine.od_matrix(dem, fac, cutoff=max_cost_s)
    cost = od.to_dense(fill=np.inf)
    dem_ids = [str(i) for i in od.origin_ids]
    fac_ids = [str(i) for i in od.destination_ids]
    d = pd.to_numeric(gdf_demand.set_index(gdf_demand["id"].astype(str))[demand_field])
    s = supply.set_axis(gdf_supply["id"].astype(str))
    acc, _ = two_step_fca(
        cost,
        d.reindex(dem_ids).to_numpy(float),
        s.reindex(fac_ids).to_numpy(float),
        max_cost=max_cost_s,
        weights=weights,
    )
    out = pd.DataFrame({"access": acc}, index=pd.Index(dem_ids, name="id"))
    out = out.reindex(gdf_demand["id"].astype(str)).fillna(0.0)
    out["access_per_1000"] = out["access"] * 1000.0
    out.attrs["provenance"] = {
        "method": "2SFCA" if weights is None else "E2SFCA",
        "capacity_field": capacity_field,
        "demand_field": demand_field,
        "max_cost_min": max_cost_min,
        "weights": None if weights is None or callable(weights) else dict(weights),
    }
    return out
