"""Where to add facilities: maximal covering (MCLP) and set covering (LSCP) as exact MILPs (HiGHS).

The cores take a boolean coverage matrix ``a[i, j]`` (demand ``i`` is within the service time of
candidate ``j``) and solve with HiGHS through highspy; the solver's model status is checked and
anything but a proven optimum raises :class:`~geo_minzheng._errors.SolverError`. Wrappers build the
matrix from layers on the network engine and report coverage before and after.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import highspy
import numpy as np
import pandas as pd
from scipy import sparse

from geo_minzheng import params
from geo_minzheng._errors import SolverError
from geo_minzheng.demand import check_demand
from geo_minzheng.engine import Engine


@dataclass(frozen=True)
class Solution:
    """An optimal siting solution in matrix terms.

    Attributes
    ----------
    selected
        Column indices of the chosen candidates, ascending.
    objective
        Objective value: covered weight (MCLP) or number of sites (LSCP).
    covered
        Boolean per demand row: covered by a chosen candidate.
    uncoverable
        Boolean per demand row: no candidate can cover it (LSCP leaves these out).
    status
        HiGHS model status string ("Optimal").
    """

    selected: np.ndarray
    objective: float
    covered: np.ndarray
    uncoverable: np.ndarray
    status: str


def _as_csc(a: Any) -> sparse.csc_matrix:
    m = sparse.csc_matrix(a, dtype=float)
    m.data = (m.data != 0).astype(float)
    m.eliminate_zeros()
    return m


def _new_highs() -> highspy.Highs:
    """A HiGHS instance, without the licence banner HiGHS writes to stdout when it is created.

    The banner comes from C++ before any option can be set, so file descriptor 1 itself is
    pointed at /dev/null for the constructor (CLI output and JSON on stdout stay clean).
    """
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            return highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _solve(
    cost: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    integer: np.ndarray,
    a: sparse.csc_matrix,
    row_lower: np.ndarray,
    row_upper: np.ndarray,
    *,
    maximize: bool,
    time_limit_s: float | None,
) -> tuple[np.ndarray, float, str]:
    """Solve one MILP with HiGHS from column-wise sparse arrays; raise unless optimal."""
    h = _new_highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 0.0)
    h.setOptionValue("mip_abs_gap", 0.0)
    if time_limit_s is not None:
        h.setOptionValue("time_limit", float(time_limit_s))
    lp = highspy.HighsLp()
    lp.num_col_ = len(cost)
    lp.num_row_ = a.shape[0]
    lp.col_cost_ = np.asarray(cost, dtype=float)
    lp.col_lower_ = np.asarray(lower, dtype=float)
    lp.col_upper_ = np.asarray(upper, dtype=float)
    lp.row_lower_ = np.asarray(row_lower, dtype=float)
    lp.row_upper_ = np.asarray(row_upper, dtype=float)
    lp.sense_ = highspy.ObjSense.kMaximize if maximize else highspy.ObjSense.kMinimize
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a.indptr.astype(np.int32)
    lp.a_matrix_.index_ = a.indices.astype(np.int32)
    lp.a_matrix_.value_ = a.data.astype(float)
    lp.a_matrix_.num_col_ = a.shape[1]
    lp.a_matrix_.num_row_ = a.shape[0]
    lp.integrality_ = [
        highspy.HighsVarType.kInteger if flag else highspy.HighsVarType.kContinuous
        for flag in integer
    ]
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    text = h.modelStatusToString(status)
    if status != highspy.HighsModelStatus.kOptimal:
        msg = f"HiGHS did not prove an optimum: model status '{text}'"
        raise SolverError(msg)
    x = np.asarray(h.getSolution().col_value, dtype=float)
    return x, float(h.getInfo().objective_function_value), text


def max_covering(
    a: Any,
    weights: np.ndarray,
    k: int,
    *,
    time_limit_s: float | None = None,
) -> Solution:
    """Maximal covering location (Church & ReVelle 1974): ``k`` sites covering the most weight.

    max sum_i w_i y_i  s.t.  y_i <= sum_j a_ij x_j,  sum_j x_j = k,  x binary, 0 <= y_i <= 1.
    ``y`` may be continuous: with binary ``x`` an optimal ``y_i`` is min(1, sum_j a_ij x_j).

    Parameters
    ----------
    a
        ``[n_demand, n_candidates]`` boolean coverage matrix (dense or scipy sparse).
    weights
        Weight per demand row (e.g. aged-60+ persons not yet covered).
    k
        Number of sites to choose (1 <= k <= n_candidates).
    """
    m = _as_csc(a)
    n_dem, n_cand = m.shape
    w = np.asarray(weights, dtype=float)
    if w.shape != (n_dem,):
        msg = f"weights must have one value per demand row ({n_dem}), got shape {w.shape}"
        raise ValueError(msg)
    if np.any(~np.isfinite(w)) or np.any(w < 0):
        msg = "weights must be finite and >= 0"
        raise ValueError(msg)
    if not 1 <= k <= n_cand:
        msg = f"k must be between 1 and the number of candidates ({n_cand}), got {k}"
        raise ValueError(msg)
    coverable = np.asarray(m.sum(axis=1)).ravel() > 0
    rows = np.flatnonzero(coverable & (w > 0))
    sub = m[rows].tocsc()
    nr = len(rows)
    # columns: x_0..x_{n_cand-1}, y_0..y_{nr-1}; rows: nr cover rows + 1 cardinality row
    cover = sparse.hstack([-sub, sparse.identity(nr, format="csc")], format="csc")
    card = sparse.csc_matrix(np.r_[np.ones(n_cand), np.zeros(nr)][None, :])
    A = sparse.vstack([cover, card], format="csc")
    x, obj, status = _solve(
        np.r_[np.zeros(n_cand), w[rows]],
        np.zeros(n_cand + nr),
        np.ones(n_cand + nr),
        np.r_[np.ones(n_cand, bool), np.zeros(nr, bool)],
        A,
        np.r_[np.full(nr, -np.inf), k],
        np.r_[np.zeros(nr), k],
        maximize=True,
        time_limit_s=time_limit_s,
    )
    selected = np.flatnonzero(x[:n_cand] > 0.5)
    covered = np.asarray(m[:, selected].sum(axis=1)).ravel() > 0
    return Solution(selected, float(w[covered].sum()), covered, ~coverable, status)


def set_covering(a: Any, *, time_limit_s: float | None = None) -> Solution:
    """Location set covering (Toregas et al. 1971): fewest sites covering every coverable row.

    min sum_j x_j  s.t.  sum_j a_ij x_j >= 1 for every row some candidate can cover; x binary.
    Rows no candidate covers are reported in ``uncoverable`` rather than making the model
    infeasible.
    """
    m = _as_csc(a)
    n_dem, n_cand = m.shape
    coverable = np.asarray(m.sum(axis=1)).ravel() > 0
    rows = np.flatnonzero(coverable)
    if len(rows) == 0:
        return Solution(np.zeros(0, np.int64), 0.0, np.zeros(n_dem, bool), ~coverable, "Optimal")
    sub = m[rows].tocsc()
    x, obj, status = _solve(
        np.ones(n_cand),
        np.zeros(n_cand),
        np.ones(n_cand),
        np.ones(n_cand, bool),
        sub,
        np.ones(len(rows)),
        np.full(len(rows), np.inf),
        maximize=False,
        time_limit_s=time_limit_s,
    )
    selected = np.flatnonzero(x > 0.5)
    covered = np.asarray(m[:, selected].sum(axis=1)).ravel() > 0
    return Solution(selected, float(len(selected)), covered, ~coverable, status)


# --------------------------------------------------------------------------------------------
# Wrappers on layers and the network engine
# --------------------------------------------------------------------------------------------


@dataclass
class SitingResult:
    """Chosen sites and coverage before/after, keyed by the layers' own IDs.

    Attributes
    ----------
    sites
        The chosen candidate records (WGS84) with ``rank`` (order of choice is not meaningful
        for an exact solver, so rank is by newly covered aged-60+ persons) and
        ``new_aged_60_plus`` / ``new_population`` each one covers alone beyond existing cover.
    summary
        One row each for before and after: population, aged_60_plus, covered counts and shares.
    demand
        Demand ids with ``covered_before`` and ``covered_after``.
    objective
        Solver objective (newly covered weight for MCLP, number of sites for LSCP).
    provenance
        Method, break, weight field, k, solver status.
    """

    sites: gpd.GeoDataFrame
    summary: pd.DataFrame
    demand: pd.DataFrame
    objective: float
    provenance: dict[str, Any] = field(default_factory=dict)


def coverage_matrix(
    engine: Engine,
    gdf_demand: gpd.GeoDataFrame,
    gdf_sites: gpd.GeoDataFrame,
    *,
    cutoff_s: float,
    max_snap_m: float = params.DEFAULT_MAX_SNAP_M,
) -> sparse.csr_matrix:
    """Boolean ``[n_demand, n_sites]`` matrix (layer row order): site within ``cutoff_s``.

    Demand or sites that do not snap to the network cover / are covered by nothing.
    """
    dem_ids = pd.Index(gdf_demand["id"].astype(str))
    site_ids = pd.Index(gdf_sites["id"].astype(str))
    shape = (len(dem_ids), len(site_ids))
    if len(site_ids) == 0 or len(dem_ids) == 0:
        return sparse.csr_matrix(shape, dtype=bool)
    dem = engine.snap(gdf_demand, id_field="id", max_snap_m=max_snap_m)
    site = engine.snap(gdf_sites, id_field="id", max_snap_m=max_snap_m)
    if len(dem.ids) == 0 or len(site.ids) == 0:
        return sparse.csr_matrix(shape, dtype=bool)
    frame = engine.od_matrix(site, dem, cutoff=cutoff_s).to_frame()
    frame = frame[frame["cost"] <= cutoff_s]
    i = dem_ids.get_indexer(frame["destination_id"].astype(str))
    j = site_ids.get_indexer(frame["origin_id"].astype(str))
    return sparse.csr_matrix((np.ones(len(i), dtype=bool), (i, j)), shape=shape)


def _summary(
    pop: np.ndarray, aged: np.ndarray, before: np.ndarray, after: np.ndarray
) -> pd.DataFrame:
    rows = []
    for label, cov in (("before", before), ("after", after)):
        rows.append(
            {
                "state": label,
                "population": int(pop.sum()),
                "aged_60_plus": int(aged.sum()),
                "covered_population": int(pop[cov].sum()),
                "covered_aged_60_plus": int(aged[cov].sum()),
                "share_population": float(pop[cov].sum() / pop.sum()) if pop.sum() else np.nan,
                "share_aged_60_plus": float(aged[cov].sum() / aged.sum()) if aged.sum() else np.nan,
            }
        )
    return pd.DataFrame(rows)


def _prepare(
    engine: Engine,
    gdf_demand: gpd.GeoDataFrame,
    gdf_existing: gpd.GeoDataFrame | None,
    gdf_candidates: gpd.GeoDataFrame,
    break_min: float,
    max_snap_m: float,
) -> tuple[np.ndarray, sparse.csr_matrix, np.ndarray, np.ndarray]:
    check_demand(gdf_demand)
    if "id" not in gdf_candidates.columns or gdf_candidates["id"].astype(str).duplicated().any():
        msg = "candidate layer must have a unique 'id' column"
        raise ValueError(msg)
    cutoff_s = params.minutes_to_s(break_min)
    before = np.zeros(len(gdf_demand), dtype=bool)
    if gdf_existing is not None and len(gdf_existing):
        ex = coverage_matrix(
            engine, gdf_demand, gdf_existing, cutoff_s=cutoff_s, max_snap_m=max_snap_m
        )
        before = np.asarray(ex.sum(axis=1)).ravel() > 0
    cand = coverage_matrix(
        engine, gdf_demand, gdf_candidates, cutoff_s=cutoff_s, max_snap_m=max_snap_m
    )
    pop = pd.to_numeric(gdf_demand["population"]).to_numpy(float)
    aged = pd.to_numeric(gdf_demand["aged_60_plus"]).to_numpy(float)
    return before, cand, pop, aged


def _result(
    gdf_demand: gpd.GeoDataFrame,
    gdf_candidates: gpd.GeoDataFrame,
    before: np.ndarray,
    cand: sparse.csr_matrix,
    pop: np.ndarray,
    aged: np.ndarray,
    sol: Solution,
    provenance: dict[str, Any],
) -> SitingResult:
    chosen = cand[:, sol.selected].tocsc()
    after = before | (np.asarray(chosen.sum(axis=1)).ravel() > 0)
    newly = ~before
    sites = gdf_candidates.iloc[sol.selected].copy()
    sites["new_aged_60_plus"] = (
        np.asarray(chosen[newly].T @ aged[newly]).ravel().round().astype(int)
    )
    sites["new_population"] = np.asarray(chosen[newly].T @ pop[newly]).ravel().round().astype(int)
    sites = sites.sort_values(["new_aged_60_plus", "id"], ascending=[False, True])
    sites.insert(0, "rank", np.arange(1, len(sites) + 1))
    if sites.crs is not None and sites.crs.to_epsg() != 4326:
        sites = sites.to_crs(4326)
    sites.attrs = dict(gdf_candidates.attrs) | {"siting": provenance}
    demand = pd.DataFrame(
        {"covered_before": before, "covered_after": after},
        index=pd.Index(gdf_demand["id"].astype(str), name="id"),
    )
    return SitingResult(
        sites, _summary(pop, aged, before, after), demand, sol.objective, provenance
    )


def maximal_covering(
    gdf_demand: gpd.GeoDataFrame,
    gdf_candidates: gpd.GeoDataFrame,
    engine: Engine,
    *,
    k: int,
    gdf_existing: gpd.GeoDataFrame | None = None,
    break_min: float = params.DEFAULT_SITING_BREAK_MIN,
    weight_field: str = "aged_60_plus",
    max_snap_m: float = params.DEFAULT_MAX_SNAP_M,
    time_limit_s: float | None = 60.0,
) -> SitingResult:
    """Choose ``k`` candidate sites that newly cover the most ``weight_field`` within ``break_min``.

    Demand already within ``break_min`` of an ``gdf_existing`` facility carries no weight, so
    the objective is the newly covered weight (aged 60+ persons by default).
    """
    before, cand, pop, aged = _prepare(
        engine, gdf_demand, gdf_existing, gdf_candidates, break_min, max_snap_m
    )
    w = pd.to_numeric(gdf_demand[weight_field]).to_numpy(float) * ~before
    sol = max_covering(cand, w, k, time_limit_s=time_limit_s)
    prov = {
        "method": "MCLP",
        "solver": "HiGHS",
        "status": sol.status,
        "k": k,
        "break_min": break_min,
        "weight_field": weight_field,
    }
    return _result(gdf_demand, gdf_candidates, before, cand, pop, aged, sol, prov)


def minimal_cover(
    gdf_demand: gpd.GeoDataFrame,
    gdf_candidates: gpd.GeoDataFrame,
    engine: Engine,
    *,
    gdf_existing: gpd.GeoDataFrame | None = None,
    break_min: float = params.DEFAULT_SITING_BREAK_MIN,
    max_snap_m: float = params.DEFAULT_MAX_SNAP_M,
    time_limit_s: float | None = 60.0,
) -> SitingResult:
    """Fewest candidate sites so that every reachable demand point is within ``break_min``.

    Demand already covered by ``gdf_existing`` needs no new site; demand no candidate reaches is
    counted in ``provenance["uncoverable"]`` and stays uncovered.
    """
    before, cand, pop, aged = _prepare(
        engine, gdf_demand, gdf_existing, gdf_candidates, break_min, max_snap_m
    )
    need = cand.tocsr()[~before] if (~before).any() else cand.tocsr()[:0]
    sol_sub = set_covering(need, time_limit_s=time_limit_s)
    uncoverable = np.zeros(len(before), dtype=bool)
    uncoverable[np.flatnonzero(~before)] = sol_sub.uncoverable
    prov = {
        "method": "LSCP",
        "solver": "HiGHS",
        "status": sol_sub.status,
        "break_min": break_min,
        "uncoverable": int(uncoverable.sum()),
        "uncoverable_aged_60_plus": int(aged[uncoverable].sum()),
    }
    return _result(gdf_demand, gdf_candidates, before, cand, pop, aged, sol_sub, prov)
