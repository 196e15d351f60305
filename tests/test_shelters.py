"""Shelter capacity and capacitated catchments.

The min-cost-flow core is checked on hand-solved cases and against networkx ``min_cost_flow`` on
random problems (same objective, capacities and radius respected); the network wrapper against a
networkx computation of the same problem on the real Changchun walk network, and on the real demo
layers (capacities from GB 51143 figures, closed shelters, a flood polygon, bad input).
"""

from __future__ import annotations

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
from conftest import CHANGCHUN, DEMO_DATA
from scipy import sparse

from geo_minzheng import network, shelters, standards
from geo_minzheng._errors import LayerValidationError
from geo_minzheng.engine import Barriers, Engine

DEMO_GPKG = DEMO_DATA / "changchun_demo.gpkg"


# --------------------------------------------------------------------------------------------
# networkx reference: the same problem as a min-cost flow with an "unsheltered" arc per row
# --------------------------------------------------------------------------------------------
def nx_assign(
    cost: np.ndarray, demand: np.ndarray, capacity: np.ndarray, max_cost: np.ndarray | float
) -> tuple[int, int, dict]:
    """(sheltered persons, objective, flow) by ``networkx.min_cost_flow`` on integer costs.

    Leaving a person unsheltered costs ``M = n_cols * max_cost + 1``: more than any augmenting
    path through the shelters can cost, so the optimum shelters as many as possible first.
    """
    lim = np.broadcast_to(np.asarray(max_cost, dtype=float), (cost.shape[1],))
    rows, cols = np.nonzero(np.isfinite(cost) & (cost <= lim[None, :]))
    big = len(capacity) * int(cost[rows, cols].max(initial=0)) + 1
    G = nx.DiGraph()
    total = int(np.sum(demand))
    G.add_node("T", demand=total)
    for i, d in enumerate(demand):
        if d > 0:
            G.add_node(("d", i), demand=-int(d))
            G.add_edge(("d", i), "T", weight=big, capacity=int(d))
    for j, c in enumerate(capacity):
        G.add_edge(("s", j), "T", weight=0, capacity=int(c))
    for r, c in zip(rows, cols, strict=True):
        if demand[r] > 0:
            G.add_edge(("d", r), ("s", c), weight=int(cost[r, c]), capacity=int(demand[r]))
    flow = nx.min_cost_flow(G)
    unsheltered = sum(flow[("d", i)]["T"] for i, d in enumerate(demand) if d > 0)
    objective = nx.cost_of_flow(G, flow) - big * unsheltered
    return total - unsheltered, objective, flow


def _respects(a: shelters.Assignment, cost, capacity, max_cost) -> None:
    lim = np.broadcast_to(np.asarray(max_cost, dtype=float), (len(capacity),))
    assert np.all(a.load <= capacity)
    assert np.all(cost[a.row, a.col] <= lim[a.col])  # nobody beyond the radius (spopt #314)
    assert np.all(a.persons > 0)


# --------------------------------------------------------------------------------------------
# the cost-matrix cores
# --------------------------------------------------------------------------------------------
def test_hand_solved_maximum_sheltered_then_least_cost() -> None:
    # A can reach S1 (1) or S2 (10); B only S1 (1). Cheapest-first would put A in S1 and leave
    # B out; the optimum shelters all four: B -> S1, A -> S2, cost 2*1 + 2*10 = 22.
    inf = np.inf
    cost = np.array([[1.0, 10.0], [1.0, inf]])
    a = shelters.capacitated_from_cost_matrix(cost, [2, 2], [2, 2])
    assert a.sheltered == 4
    assert a.objective == 22.0
    assert list(a.unsheltered) == [0, 0]
    assert list(zip(a.row, a.col, a.persons, strict=True)) == [(0, 1, 2), (1, 0, 2)]
    assert list(a.load) == [2, 2]
    assert a.status == "Optimal"


def test_hand_solved_radius_is_a_hard_limit_and_overflow_is_unsheltered() -> None:
    # Three blocks of 100, 50, 30; S1 holds 120 within 500, S2 holds 1000 but block 0 has it at
    # 800 (beyond a 600 radius). Block 0 fills S1 first? No: block 0 can only use S1, block 1
    # reaches both, block 2 only S2. Least cost: block 0 -> S1 100, block 1 -> S1 20 (cost 300)
    # and S2 30 (cost 400), block 2 -> S2 30 (cost 200).
    cost = np.array([[100.0, 800.0], [300.0, 400.0], [np.inf, 200.0]])
    a = shelters.capacitated_from_cost_matrix(cost, [100, 50, 30], [120, 1000], max_cost=600)
    f = a.to_frame().set_index(["row", "col"])["persons"].to_dict()
    assert f == {(0, 0): 100, (1, 0): 20, (1, 1): 30, (2, 1): 30}
    assert a.objective == 100 * 100 + 20 * 300 + 30 * 400 + 30 * 200
    _respects(a, cost, np.array([120, 1000]), 600)
    # with S1 only 50 places, 50 of block 0 have no place within the radius: unsheltered
    b = shelters.capacitated_from_cost_matrix(cost, [100, 50, 30], [50, 1000], max_cost=600)
    assert list(b.unsheltered) == [50, 0, 0]
    assert (0, 1) not in set(zip(b.row, b.col, strict=True))  # never sent 800 > 600
    # per-column radius: S2's own radius 900 admits block 0
    c = shelters.capacitated_from_cost_matrix(cost, [100, 50, 30], [50, 1000], max_cost=[600, 900])
    assert list(c.unsheltered) == [0, 0, 0]


def test_demand_above_capacity_and_empty_cases() -> None:
    a = shelters.capacitated_from_cost_matrix(np.array([[5.0]]), [30], [10])
    assert (a.sheltered, int(a.unsheltered[0]), a.objective) == (10, 20, 50.0)
    none = shelters.capacitated_from_cost_matrix(np.full((2, 3), np.inf), [4, 5], [1, 1, 1])
    assert none.sheltered == 0 and list(none.unsheltered) == [4, 5]
    zero = shelters.capacitated_from_cost_matrix(np.ones((2, 2)), [0, 0], [0, 3])
    assert zero.sheltered == 0 and list(zero.load) == [0, 0]


def test_sparse_input_is_the_same_problem() -> None:
    rng = np.random.default_rng(3)
    cost = rng.integers(0, 50, size=(30, 6)).astype(float)
    cost[rng.random(cost.shape) < 0.5] = np.inf
    demand = rng.integers(0, 20, 30)
    capacity = rng.integers(0, 60, 6)
    dense = shelters.capacitated_from_cost_matrix(cost, demand, capacity)
    r, c = np.nonzero(np.isfinite(cost))
    sp = sparse.csr_matrix((cost[r, c], (r, c)), shape=cost.shape)  # explicit zeros are arcs
    sp_res = shelters.capacitated_from_cost_matrix(sp, demand, capacity)
    assert (sp_res.sheltered, sp_res.objective) == (dense.sheltered, dense.objective)


def test_nearest_from_cost_matrix() -> None:
    cost = np.array([[3.0, 1.0, 1.0], [np.inf, np.inf, 9.0], [2.0, 8.0, np.inf]])
    col, best = shelters.nearest_from_cost_matrix(cost, max_cost=[5, 5, 5])
    assert list(col) == [1, -1, 0]  # ties: lowest column; 9 > 5: none
    assert list(best) == [1.0, np.inf, 2.0]


@pytest.mark.parametrize("seed", range(6))
def test_random_problems_match_networkx_min_cost_flow(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(20, 80)), int(rng.integers(3, 12))
    cost = rng.integers(0, 1000, size=(n, m)).astype(float)
    cost[rng.random((n, m)) < 0.4] = np.inf
    demand = rng.integers(0, 60, n)
    capacity = rng.integers(0, 250, m)
    radius = rng.integers(300, 1000, m).astype(float)
    ours = shelters.capacitated_from_cost_matrix(cost, demand, capacity, max_cost=radius)
    ref_sheltered, ref_objective, _ = nx_assign(cost, demand, capacity, radius)
    assert ours.sheltered == ref_sheltered
    assert ours.objective == ref_objective
    assert ours.cost_step == 1.0
    _respects(ours, cost, capacity, radius)
    assert np.array_equal(ours.unsheltered + np.bincount(ours.row, ours.persons, n), demand)


def test_bad_matrix_input() -> None:
    with pytest.raises(ValueError, match=r"demand\[1\] must be an integer >= 0, got -1"):
        shelters.capacitated_from_cost_matrix(np.ones((2, 1)), [1, -1], [3])
    with pytest.raises(ValueError, match=r"capacity\[0\] must be an integer >= 0, got 2.5"):
        shelters.capacitated_from_cost_matrix(np.ones((2, 1)), [1, 1], [2.5])
    with pytest.raises(ValueError, match="demand must have 2 values"):
        shelters.capacitated_from_cost_matrix(np.ones((2, 1)), [1], [3])
    with pytest.raises(ValueError, match=r"cost\[0, 0\] must be >= 0"):
        shelters.capacitated_from_cost_matrix(-np.ones((1, 1)), [1], [3])


# --------------------------------------------------------------------------------------------
# standards and capacity
# --------------------------------------------------------------------------------------------
def test_shelter_standard_classes_and_flags() -> None:
    classes = standards.shelter_classes()
    assert list(classes) == ["emergency", "fixed_short", "fixed_medium", "fixed_long", "central"]
    m2 = {c: k.m2_per_person.value for c, k in classes.items()}
    assert m2 == {
        "emergency": 1.0,
        "fixed_short": 2.0,
        "fixed_medium": 3.0,
        "fixed_long": 4.5,
        "central": 4.5,
    }
    assert [k.service_radius_m.value for k in classes.values()] == [500, 1000, 1500, 2500, 2500]
    # figures not checked against the standard's text say so
    assert not any(
        k.m2_per_person.confirmed or k.service_radius_m.confirmed for k in classes.values()
    )
    assert standards.load("gb51143_2015").get("classes.codes").confirmed is True
    assert [k.fixed for k in classes.values()] == [False, True, True, True, True]
    share = standards.fixed_shelter_share()
    assert (share.value, share.confirmed) == (0.15, True)
    gb21734 = standards.load("gb21734_2008")
    assert gb21734.get("site.living_area_per_person_m2").value == 1.5
    assert gb21734.get("site.effective_area_m2").confirmed is True


@pytest.fixture(scope="module")
def demo() -> dict[str, gpd.GeoDataFrame]:
    return {
        name: pyogrio.read_dataframe(DEMO_GPKG, layer=name)
        for name in ("demand", "shelters", "districts")
    }


def test_capacity_from_area_and_registry_override(demo) -> None:
    sh = demo["shelters"]
    cap = shelters.shelter_capacity(sh)
    assert cap.attrs["standard"] == "gb51143_2015@2015"
    # SH-001: central, 131,081 m² / 4.5 m² per person = 29,129 (the registry says the same)
    row = cap.loc["SH-001"]
    assert (row["computed_capacity_persons"], row["capacity_persons"]) == (29129, 29129)
    assert row["capacity_source"] == "registry"
    assert (cap["capacity_source"] == "registry").all()
    expected = np.floor(
        sh["effective_area_m2"]
        / sh["shelter_class"].map(
            {
                "emergency": 1.0,
                "fixed_short": 2.0,
                "fixed_medium": 3.0,
                "fixed_long": 4.5,
                "central": 4.5,
            }
        )
    )
    assert list(cap["computed_capacity_persons"]) == list(expected.astype(int))
    # a registry figure below the computed one wins; without the field the computed one is used
    low = sh.copy()
    low.loc[low["id"] == "SH-002", "capacity_persons"] = 1000
    low_cap = shelters.shelter_capacity(low)
    assert low_cap.loc["SH-002", "capacity_persons"] == 1000
    assert low_cap.loc["SH-002", "computed_capacity_persons"] == 3458
    computed = shelters.shelter_capacity(sh.drop(columns="capacity_persons"))
    assert (computed["capacity_source"] == "computed").all()
    assert computed["capacity_persons"].sum() == expected.sum()
    assert shelters.shelter_capacity(sh, use_registry=False)["capacity_persons"].sum() == (
        expected.sum()
    )


def test_bad_shelters_name_record_and_field(demo) -> None:
    bad = demo["shelters"].copy()
    bad.loc[0, "effective_area_m2"] = 0
    bad.loc[1, "effective_area_m2"] = -120
    bad.loc[2, "shelter_class"] = "bunker"
    bad.loc[3, "capacity_persons"] = 99999  # 8,682 m² short-term shelter holds 4,341
    bad.loc[4, "status"] = "closing"
    with pytest.raises(LayerValidationError) as err:
        shelters.shelter_capacity(bad)
    found = {(p.record, p.field) for p in err.value.problems}
    assert found == {
        ("shelter 'SH-001'", "effective_area_m2"),
        ("shelter 'SH-002'", "effective_area_m2"),
        ("shelter 'SH-003'", "shelter_class"),
        ("shelter 'SH-004'", "capacity_persons"),
        ("shelter 'SH-005'", "status"),
    }
    text = str(err.value)
    assert "shelter 'SH-002': effective_area_m2 must be a number > 0 (m²), got -120" in text
    assert "capacity_persons must be <= effective_area_m2 / 2 m² per person of class" in text
    assert "got 99999" in text


# --------------------------------------------------------------------------------------------
# on the real Changchun walk network
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def G() -> nx.MultiDiGraph:
    return network.from_road_layer(gpd.read_file(CHANGCHUN / "roads_osm.geojson"))


@pytest.fixture(scope="module")
def engine(G) -> Engine:
    return Engine.from_graph(G, weight="time_s")


@pytest.fixture(scope="module")
def demo_run(demo, engine) -> shelters.CatchmentResult:
    return shelters.catchments(demo["demand"], demo["shelters"], engine)


def _node_points(G: nx.MultiDiGraph, nodes: np.ndarray, prefix: str) -> gpd.GeoDataFrame:
    xy = np.array([(G.nodes[n]["x"], G.nodes[n]["y"]) for n in nodes])
    gdf = gpd.GeoDataFrame(
        {"id": [f"{prefix}{i:04d}" for i in range(len(nodes))], "node": nodes},
        geometry=shapely.points(xy),
        crs=G.graph["crs"],
    )
    return gdf.to_crs(4326)


def test_capacitated_catchments_match_networkx_on_changchun(G, engine) -> None:
    """Shelters and residents on real nodes (no access legs): the same assignment problem built
    with networkx shortest paths and solved with networkx min_cost_flow gives the same number
    sheltered and the same person-weighted walking time."""
    rng = np.random.default_rng(20250101)
    nodes = np.array(list(G.nodes))
    pick = rng.choice(len(nodes), size=400 + 20, replace=False)
    demand = _node_points(G, nodes[pick[:400]], "D")
    demand["population"] = rng.integers(50, 900, 400)
    demand["aged_60_plus"] = (demand["population"] * rng.uniform(0.1, 0.35, 400)).astype(int)
    sh = _node_points(G, nodes[pick[400:]], "S")
    sh["shelter_class"] = rng.choice(["emergency", "fixed_short", "fixed_medium"], 20)
    sh["effective_area_m2"] = rng.integers(2000, 30000, 20).astype(float)
    res = shelters.catchments(demand, sh, engine)
    assert res.not_snapped.empty

    # networkx: walking distance from each shelter within its class radius
    radius = sh["shelter_class"].map({"emergency": 500, "fixed_short": 1000, "fixed_medium": 1500})
    capacity = res.shelters["capacity_persons"].to_numpy()
    dist = np.full((400, 20), np.inf)
    index = {n: i for i, n in enumerate(demand["node"])}
    for j, (node, r) in enumerate(zip(sh["node"], radius, strict=True)):
        reach = nx.single_source_dijkstra_path_length(G, node, cutoff=r, weight="length_m")
        for n, d in reach.items():
            if n in index:
                dist[index[n], j] = d
    pop = demand["population"].to_numpy()
    aged = demand["aged_60_plus"].to_numpy()
    step = shelters.COST_STEP_S
    cost = np.vstack([dist / shelters.ADULT_WALK_SPEED_MPS, dist / shelters.ELDERLY_WALK_SPEED_MPS])
    cost_int = np.where(np.isfinite(cost), np.rint(cost / step), np.inf)
    ref_sheltered, ref_obj, _ = nx_assign(cost_int, np.r_[pop - aged, aged], capacity, np.inf)
    ours_sheltered = int(res.demand["assigned_persons"].sum())
    assert 0 < ours_sheltered < pop.sum()  # a real mix: some cannot be sheltered
    assert ours_sheltered == ref_sheltered
    ours_obj = res.provenance["objective_person_s"]
    # the same optimum on the rounded times (rounding moves each person by < 0.005 s)
    assert ours_obj == pytest.approx(ref_obj * step, abs=0.005 * ours_sheltered + 1e-6)
    # capacities and radii hold; every person is accounted for
    assert (res.shelters["assigned_persons"] <= res.shelters["capacity_persons"]).all()
    lim = res.shelters["service_radius_m"].reindex(res.assignment["shelter_id"]).to_numpy()
    assert (res.assignment["distance_m"].to_numpy() <= lim + 1e-6).all()
    d = res.demand
    assert (d["assigned_persons"] + d["unsheltered_persons"] == d["population"]).all()
    # the nearest shelter is the networkx nearest within the radius
    near = np.where(np.isfinite(dist).any(axis=1), np.argmin(dist, axis=1), -1)
    ids = np.append(sh["id"].to_numpy(dtype=object), None)
    assert list(d["nearest_shelter"]) == list(ids[near])
    ok = near >= 0
    np.testing.assert_allclose(
        d["nearest_distance_m"].to_numpy()[ok], dist[ok, near[ok]], rtol=1e-9, atol=1e-6
    )


def test_demo_scenario_numbers(demo, engine, demo_run) -> None:
    res = demo_run
    d, s = res.demand, res.shelters
    assert int(d["population"].sum()) == 716_592
    assert int(d["aged_60_plus"].sum()) == 165_732
    # 36 open shelters for 132,499 persons; one planned shelter (SH-034) takes nobody
    assert len(s) == 37 and int(s["in_use"].sum()) == 36
    assert s.loc["SH-034", "excluded_reason"] == "planned"
    assert s.loc["SH-034", "assigned_persons"] == 0
    assert int(s.loc[s["in_use"], "capacity_persons"].sum()) == 132_499
    sheltered = int(d["assigned_persons"].sum())
    assert sheltered == int(s["assigned_persons"].sum())
    assert sheltered == int(res.assignment["persons"].sum())
    assert sheltered <= 132_499
    with_planned = shelters.catchments(
        demo["demand"], demo["shelters"], engine, include_planned=True
    )
    assert with_planned.shelters["in_use"].all()
    assert int(with_planned.demand["assigned_persons"].sum()) >= sheltered
    full = s["assigned_persons"] == s["capacity_persons"]
    capacity_short = d["reason"] == "capacity"
    assert capacity_short.any()
    # someone unsheltered for capacity has only full shelters within reach
    arcs_ok = set(s.index[full])
    for sid in d.loc[capacity_short, "nearest_shelter"]:
        assert sid in arcs_ok
    # load factors, times and radii
    assert (s["load_factor"] <= 1.0 + 1e-12).all()
    assert (
        s["max_time_min"].dropna()
        <= s.loc[s["max_time_min"].notna(), "service_radius_m"]
        / shelters.ELDERLY_WALK_SPEED_MPS
        / 60
        + 1e-9
    ).all()
    assert set(d["reason"].dropna()) <= {"capacity", "beyond_radius"}
    assert d["reason"].isna().sum() == (d["unsheltered_persons"] == 0).sum()
    beyond = d["reason"] == "beyond_radius"
    assert d.loc[beyond, "nearest_shelter"].isna().all()
    assert res.unsheltered["unsheltered_persons"].sum() == d["unsheltered_persons"].sum()
    summary = res.summary
    assert summary["population"] == 716_592
    assert summary["sheltered_persons"] + summary["unsheltered_persons"] == 716_592
    assert res.provenance["standard"] == "gb51143_2015@2015"
    assert res.provenance["elderly_walk_speed_mps"] == 0.91
    assert res.provenance["adult_walk_speed_mps"] == 1.2


def test_responsibility_areas_do_not_overlap(demo_run) -> None:
    areas = shelters.responsibility_areas(demo_run)
    used = demo_run.shelters.index[demo_run.shelters["assigned_persons"] > 0]
    assert set(areas["shelter_id"]) <= set(used)
    assert areas["shelter_id"].is_unique
    geoms = areas.to_crs(demo_run.crs).geometry.to_numpy()
    total = shapely.area(shapely.union_all(geoms))
    assert total == pytest.approx(shapely.area(geoms).sum(), rel=1e-6)  # no overlap
    # each record's home lies in its main shelter's area
    d = demo_run.demand[demo_run.demand["shelter"].notna()]
    joined = gpd.sjoin(d[["id", "shelter", "geometry"]], areas, predicate="within")
    assert (joined["shelter"] == joined["shelter_id"]).all()
    assert len(joined) == len(d)


def test_checks_fixed_share_area_overload_beyond(demo, demo_run) -> None:
    ch = shelters.checks(demo_run, demo["districts"])
    total = ch.units.iloc[0]
    s = demo_run.shelters[demo_run.shelters["in_use"]]  # the planned SH-034 does not count
    fixed = s.loc[s["fixed"], "capacity_persons"].sum()
    assert total["unit"] == "total"
    assert total["fixed_capacity_persons"] == fixed
    assert total["fixed_share"] == pytest.approx(fixed / 716_592)
    assert total["shelter_area_m2"] == pytest.approx(s["effective_area_m2"].sum(), abs=1)
    assert total["area_per_resident_m2"] == pytest.approx(
        s["effective_area_m2"].sum() / 716_592, rel=1e-6
    )
    assert bool(total["fixed_share_met"]) == (fixed >= np.ceil(0.15 * 716_592))
    units = ch.units.iloc[1:]
    assert units["population"].sum() == 716_592  # the districts partition the demo's demand
    assert (units["fixed_share_met"] == (units["shortfall_persons"] == 0)).all()
    everyone = demo_run.shelters
    assert set(ch.overloaded["id"]) == set(everyone.index[everyone["overloaded"]])
    assert (ch.overloaded["excess_persons"] > 0).all()
    far = demo_run.demand["reason"] == "beyond_radius"
    assert set(ch.beyond_radius["id"]) == set(demo_run.demand.loc[far, "id"])


def test_closed_shelter_and_flood_change_the_catchments(demo, engine, demo_run) -> None:
    sh = demo["shelters"].copy()
    sh.loc[sh["id"] == "SH-009", "status"] = "closed"
    sh.loc[sh["id"] == "SH-010", "status"] = "full"
    closed = shelters.catchments(demo["demand"], sh, engine)
    for sid, why in (("SH-009", "closed"), ("SH-010", "full")):
        row = closed.shelters.loc[sid]
        assert not row["in_use"] and row["excluded_reason"] == why
        assert row["assigned_persons"] == 0
    assert (closed.assignment["shelter_id"] != "SH-009").all()

    # a flood over the central shelter (SH-001) and the streets around it
    work = demo_run.crs
    centre = demo["shelters"].set_index("id").geometry.to_crs(work)["SH-001"].centroid
    flood = gpd.GeoDataFrame({"id": ["F1"]}, geometry=[centre.buffer(600)], crs=work).to_crs(4326)
    after = shelters.catchments(demo["demand"], demo["shelters"], engine, hazards=flood)
    assert after.shelters.loc["SH-001", "excluded_reason"] == "hazard"
    assert after.shelters.loc["SH-001", "assigned_persons"] == 0
    assert after.provenance["hazards"] == 1
    cut = after.demand["reason"] == "in_hazard"
    assert cut.any()
    inside = shapely.intersects(shapely.points(after.home_xy), after.hazard_geometry)
    assert not (cut & ~inside).any()
    diff = shelters.compare(demo_run, after)
    flooded_shelters = set(after.shelters.index[after.shelters["excluded_reason"] == "hazard"])
    assert "SH-001" in flooded_shelters
    assert diff.summary["shelters_disabled"] == len(flooded_shelters)
    assert diff.summary["lost_persons"] > 0
    lost_before = demo_run.demand.set_index("id")["unsheltered_persons"]
    lost_after = after.demand.set_index("id")["unsheltered_persons"]
    assert diff.summary["lost_persons"] == int((lost_after - lost_before).clip(lower=0).sum())
    assert set(diff.lost["id"]) == set(lost_after.index[lost_after > lost_before])
    assert not diff.shelters.loc["SH-001", "in_use_after"]
    # residents of SH-001 who still get a place go elsewhere
    was = demo_run.demand.set_index("id")["shelter"] == "SH-001"
    moved = diff.moved.set_index("id")
    assert (moved["shelter_after"] != "SH-001").all()
    assert set(moved.index) & set(was.index[was])
    # the streets of the flooded area are closed: no route crosses it
    areas = shelters.responsibility_areas(after)
    flooded = flood.to_crs(work).geometry.iat[0]
    assert all(
        shapely.area(shapely.intersection(g, flooded)) < 1e-6 for g in areas.to_crs(work).geometry
    )


def test_closed_roads_as_barriers(demo, engine, demo_run) -> None:
    # close every street crossing a 100 m ring around a point shelter: only residents inside the
    # ring can still reach it
    work = demo_run.crs
    sid = "SH-014"
    assert demo_run.shelters.loc[sid, "assigned_persons"] > 0
    centre = demo["shelters"].set_index("id").geometry.to_crs(work)[sid]
    disk = centre.buffer(100)
    ring = gpd.GeoSeries([disk.boundary], crs=work)
    res = shelters.catchments(
        demo["demand"], demo["shelters"], engine, barriers=Barriers.from_geodataframe(ring)
    )
    assert res.provenance["barriers"] == 1
    inside = set(res.demand["id"][shapely.within(shapely.points(res.home_xy), disk)])
    came = set(res.assignment.loc[res.assignment["shelter_id"] == sid, "demand_id"])
    assert came <= inside
    before = demo_run.assignment
    assert set(before.loc[before["shelter_id"] == sid, "demand_id"]) - inside  # came from outside


def test_bad_demand_and_hazard_input(demo, engine) -> None:
    dem = demo["demand"].copy()
    dem["population"] = dem["population"].astype(float)
    dem.loc[0, "population"] = np.nan
    dem.loc[1, "population"] = 299.5
    with pytest.raises(LayerValidationError) as err:
        shelters.catchments(dem, demo["shelters"], engine)
    assert {(p.record, p.field) for p in err.value.problems} == {
        ("demand 'DM-00001'", "population")
    }
    dem.loc[0, "population"] = 64
    with pytest.raises(LayerValidationError, match="demand 'DM-00002': population must be a whole"):
        shelters.catchments(dem, demo["shelters"], engine)
    line = gpd.GeoDataFrame(
        {"id": ["H1", "H2"]},
        geometry=[
            shapely.LineString([(125.3, 43.9), (125.31, 43.9)]),
            shapely.box(125.3, 43.9, 125.31, 43.91),
        ],
        crs=4326,
    )
    with pytest.raises(LayerValidationError) as err:
        shelters.catchments(demo["demand"], demo["shelters"], engine, hazards=line)
    assert [(p.record, p.field, p.found) for p in err.value.problems] == [
        ("hazard 'H1'", "geometry", "LineString")
    ]
    with pytest.raises(ValueError, match="adult_walk_speed_mps"):
        shelters.catchments(demo["demand"], demo["shelters"], engine, adult_walk_speed_mps=0)


def test_catchment_frames_are_keyed_by_layer_ids(demo_run) -> None:
    d, s = demo_run.demand, demo_run.shelters
    assert d.crs.to_epsg() == 4326 and s.crs.to_epsg() == 4326
    assert s.index.name == "id" and s.index[0] == "SH-001"
    assert set(demo_run.assignment["group"]) == {"under_60", "aged_60_plus"}
    a = demo_run.assignment.groupby("demand_id")["persons"].sum()
    assert (a == d.set_index("id").loc[a.index, "assigned_persons"]).all()
    aged = demo_run.assignment[demo_run.assignment["group"] == "aged_60_plus"]
    # the older residents' times are their distances at the elderly speed
    np.testing.assert_allclose(
        aged["time_min"], aged["distance_m"] / shelters.ELDERLY_WALK_SPEED_MPS / 60, rtol=1e-9
    )
    assert isinstance(demo_run.not_snapped, pd.DataFrame)
