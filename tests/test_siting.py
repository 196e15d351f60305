"""Siting: MCLP/LSCP as exact HiGHS MILPs, checked against PySAL spopt on the same inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pulp
import pytest
from spopt.locate import LSCP, MCLP

from geo_minzheng import siting
from geo_minzheng._errors import SolverError

# spopt builds its PuLP models with the PuLP 3 API, which PuLP warns about ahead of PuLP 4.
pytestmark = pytest.mark.filterwarnings("ignore:.*PuLP 4.0:DeprecationWarning")


def _instance(seed: int, n_dem: int = 120, n_cand: int = 25, radius: float = 1.6):
    rng = np.random.default_rng(seed)
    dem = rng.uniform(0, 10, size=(n_dem, 2))
    cand = rng.uniform(0, 10, size=(n_cand, 2))
    cost = np.linalg.norm(dem[:, None, :] - cand[None, :, :], axis=2)
    weights = rng.integers(0, 400, size=n_dem).astype(float)
    return cost, weights, radius


@pytest.mark.parametrize(("seed", "k"), [(1, 3), (2, 5), (3, 8)])
def test_mclp_matches_spopt(seed: int, k: int) -> None:
    cost, weights, radius = _instance(seed)
    ours = siting.max_covering(cost <= radius, weights, k)
    ref = MCLP.from_cost_matrix(cost, weights, service_radius=radius, p_facilities=k)
    ref = ref.solve(pulp.PULP_CBC_CMD(msg=False))
    assert ours.status == "Optimal"
    assert len(ours.selected) == k
    assert ours.objective == pytest.approx(ref.problem.objective.value())
    # the objective is the weight the chosen sites really cover
    covered = (cost[:, ours.selected] <= radius).any(axis=1)
    assert ours.objective == pytest.approx(weights[covered].sum())


def test_mclp_is_optimal_by_enumeration() -> None:
    cost, weights, radius = _instance(7, n_dem=40, n_cand=9)
    a = cost <= radius
    best = max(
        weights[a[:, list(c)].any(axis=1)].sum() for c in itertools.combinations(range(9), 3)
    )
    assert siting.max_covering(a, weights, 3).objective == pytest.approx(best)


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_lscp_matches_spopt(seed: int) -> None:
    cost, _, radius = _instance(seed, n_dem=100, n_cand=40, radius=2.2)
    a = cost <= radius
    ours = siting.set_covering(a)
    # spopt's LSCP needs every demand coverable; give it the coverable rows
    keep = a.any(axis=1)
    ref = LSCP.from_cost_matrix(cost[keep], service_radius=radius)
    ref = ref.solve(pulp.PULP_CBC_CMD(msg=False))
    assert ours.objective == pytest.approx(ref.problem.objective.value())
    assert ours.covered[keep].all()
    assert (ours.uncoverable == ~keep).all()


def test_bad_inputs_raise_clear_errors() -> None:
    a = np.eye(3, dtype=bool)
    with pytest.raises(ValueError, match="k must be between 1 and the number of candidates"):
        siting.max_covering(a, np.ones(3), 4)
    with pytest.raises(ValueError, match="one value per demand row"):
        siting.max_covering(a, np.ones(2), 1)
    with pytest.raises(ValueError, match="finite and >= 0"):
        siting.max_covering(a, np.array([1.0, -1.0, 2.0]), 1)


def test_solver_status_is_checked() -> None:
    # a 1 ms limit on a hard-enough instance stops HiGHS before it proves an optimum
    cost, weights, radius = _instance(11, n_dem=3000, n_cand=400, radius=1.0)
    with pytest.raises(SolverError, match="model status"):
        siting.max_covering(cost <= radius, weights, 20, time_limit_s=1e-3)
