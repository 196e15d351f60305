"""Coverage, gaps, per-unit tables, compliance and 2SFCA on the real Changchun walk network.

Coverage times are checked against networkx (multi-source Dijkstra on the same graph), 2SFCA
against PySAL ``access`` on the same cost matrix, siting against PySAL ``spopt``.
"""

from __future__ import annotations

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import pulp
import pytest
import shapely
from access import fca
from access import weights as access_weights
from conftest import CHANGCHUN, DEMO_DATA
from spopt.locate import MCLP

from geo_minzheng import accessibility, compliance, coverage, network, siting, workflows
from geo_minzheng._errors import LayerValidationError
from geo_minzheng.engine import Engine

DEMO_GPKG = DEMO_DATA / "changchun_demo.gpkg"
BREAKS_MIN = (5, 10, 15)


@pytest.fixture(scope="module")
def G() -> nx.MultiDiGraph:
    return network.from_road_layer(gpd.read_file(CHANGCHUN / "roads_osm.geojson"))


@pytest.fixture(scope="module")
def engine(G: nx.MultiDiGraph) -> Engine:
    return Engine.from_graph(G, weight="time_s")


def _node_points(G: nx.MultiDiGraph, nodes: np.ndarray, prefix: str) -> gpd.GeoDataFrame:
    """Points exactly on graph nodes (so the engine's access legs are zero), in WGS84."""
    xy = np.array([(G.nodes[n]["x"], G.nodes[n]["y"]) for n in nodes])
    gdf = gpd.GeoDataFrame(
        {"id": [f"{prefix}{i:04d}" for i in range(len(nodes))], "node": nodes},
        geometry=shapely.points(xy),
        crs=G.graph["crs"],
    )
    return gdf.to_crs(4326)


@pytest.fixture(scope="module")
def node_layers(G: nx.MultiDiGraph) -> dict[str, gpd.GeoDataFrame]:
    """Seeded demand and two facility kinds placed on real network nodes."""
    rng = np.random.default_rng(20240601)
    nodes = np.array(list(G.nodes))
    pick = rng.choice(len(nodes), size=600 + 12 + 25, replace=False)
    demand = _node_points(G, nodes[pick[:600]], "D")
    demand["population"] = rng.integers(50, 900, size=600)
    demand["aged_60_plus"] = (demand["population"] * rng.uniform(0.1, 0.35, 600)).astype(int)
    kind_a = _node_points(G, nodes[pick[600:612]], "A")
    kind_a["beds"] = rng.integers(20, 200, size=12)
    kind_b = _node_points(G, nodes[pick[612:]], "B")
    kind_b["beds"] = rng.integers(5, 60, size=25)
    return {"demand": demand, "kind_a": kind_a, "kind_b": kind_b}


def _nx_times(G: nx.MultiDiGraph, fac_nodes: np.ndarray, dem_nodes: np.ndarray, cutoff: float):
    dist = nx.multi_source_dijkstra_path_length(
        G, set(fac_nodes.tolist()), cutoff=cutoff, weight="time_s"
    )
    return np.array([dist.get(n, np.inf) for n in dem_nodes])


def test_coverage_matches_networkx(G, engine, node_layers) -> None:
    demand = node_layers["demand"]
    facilities = {"kind_a": node_layers["kind_a"], "kind_b": node_layers["kind_b"]}
    res = coverage.analyze(demand, facilities, engine, breaks_min=BREAKS_MIN)
    assert res.not_snapped.empty
    pop = demand["population"].to_numpy(float)
    aged = demand["aged_60_plus"].to_numpy(float)
    for kind, gdf in facilities.items():
        ref = _nx_times(G, gdf["node"].to_numpy(), demand["node"].to_numpy(), 15 * 60.0)
        ours = res.demand[f"time_min_{kind}"].to_numpy() * 60.0
        assert np.isfinite(ref).sum() > 100  # a real mix of covered and uncovered
        assert (~np.isfinite(ref)).sum() > 10
        np.testing.assert_allclose(ours[np.isfinite(ref)], ref[np.isfinite(ref)], atol=1e-6)
        assert np.array_equal(np.isfinite(ours), np.isfinite(ref))
        total = res.table[(res.table["kind"] == kind) & (res.table["unit"] == "total")]
        for b in BREAKS_MIN:
            row = total[total["break_min"] == b].iloc[0]
            inside = ref <= b * 60.0
            assert row["covered_population"] == int(pop[inside].sum())
            assert row["covered_aged_60_plus"] == int(aged[inside].sum())
            assert row["share_aged_60_plus"] == pytest.approx(aged[inside].sum() / aged.sum())
        # the nearest facility named is one at exactly that network time
        near = res.demand[f"nearest_{kind}"].to_numpy()
        node_of = dict(zip(gdf["id"], gdf["node"], strict=True))
        k = int(np.flatnonzero(np.isfinite(ref))[0])
        d = nx.shortest_path_length(G, node_of[near[k]], demand["node"].iat[k], weight="time_s")
        assert d == pytest.approx(ref[k], abs=1e-6)


def test_gaps_hold_exactly_the_uncovered_demand(engine, node_layers) -> None:
    demand = node_layers["demand"]
    res = coverage.analyze(demand, {"kind_a": node_layers["kind_a"]}, engine, gap_buffer_m=120.0)
    t = res.demand["time_min_kind_a"].to_numpy()
    uncovered = ~(t <= 15.0)
    gaps = res.gaps
    assert gaps["population"].sum() == demand["population"][uncovered].sum()
    assert gaps["aged_60_plus"].sum() == demand["aged_60_plus"][uncovered].sum()
    assert list(gaps["rank"]) == list(range(1, len(gaps) + 1))
    assert gaps["aged_60_plus"].is_monotonic_decreasing
    assert gaps.crs.to_epsg() == 4326
    # every uncovered point lies in a gap polygon, no covered point's disk is needed
    pts = demand[uncovered]
    inside = gpd.sjoin(pts, gaps[["geometry"]], predicate="within")
    assert inside.index.nunique() == uncovered.sum()


def test_gap_polygons_core() -> None:
    xy = np.array([[0, 0], [100, 0], [5000, 0], [5100, 50], [5050, 120], [9000, 9000]], float)
    pop = np.array([10, 20, 5, 5, 5, 100])
    aged = np.array([5, 5, 3, 3, 3, 1])
    labels, gaps = coverage.gap_polygons(xy, pop, aged, buffer_m=100.0)
    # three clusters, ranked by aged-60+: {2,3,4} has 9, {0,1} has 10 -> rank 1, lone point 1
    assert list(gaps["aged_60_plus"]) == [10, 9, 1]
    assert list(gaps["population"]) == [30, 15, 100]
    assert list(labels) == [1, 1, 2, 2, 2, 3]
    assert gaps["area_m2"].iloc[2] == pytest.approx(np.pi * 100**2, rel=0.02)
    empty_labels, empty = coverage.gap_polygons(np.zeros((0, 2)), [], [])
    assert len(empty_labels) == 0 and empty.empty


def test_summarize_units_and_hierarchy() -> None:
    t = np.array([100.0, 700.0, np.inf, 200.0])
    pop = np.array([10, 20, 30, 40])
    aged = np.array([1, 2, 3, 4])
    # rows 0,1 in district X, rows 2,3 in district Y, all four in city C
    rows = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    units = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    out = coverage.summarize(
        t, pop, aged, [300.0, 900.0], membership=(rows, units), unit_ids=["X", "Y", "C"]
    )
    got = out.set_index(["unit", "break_min"])
    assert got.loc[("total", 5.0), "covered_population"] == 50
    assert got.loc[("total", 15.0), "covered_population"] == 70
    assert got.loc[("X", 5.0), "covered_aged_60_plus"] == 1
    assert got.loc[("Y", 15.0), "share_population"] == pytest.approx(40 / 70)
    assert got.loc[("C", 15.0), "population"] == 100
    assert out["unit"].iloc[0] == "total"


def _demo_layers() -> dict[str, gpd.GeoDataFrame]:
    """H2's demo layers when generated, else small seeded layers on the real roads/districts."""
    if DEMO_GPKG.exists():
        read = lambda name: gpd.read_file(DEMO_GPKG, layer=name)  # noqa: E731
        return {n: read(n) for n in ("demand", "eldercare", "service_rooms", "districts")}
    return _seeded_layers()


def _seeded_layers(seed: int = 4) -> dict[str, gpd.GeoDataFrame]:
    from geo_minzheng import crs as gm_crs

    rng = np.random.default_rng(seed)
    names = pd.read_csv(DEMO_DATA / "admin_codes" / "areas_changchun.csv", dtype=str)
    names = dict(zip(names["code"], names["name"], strict=True))
    parts = []
    for code in ("220102", "220103", "220104", "220105", "220106"):
        # the file's coordinates are GCJ-02 (see layers/data/README.md)
        g = gpd.read_file(CHANGCHUN / "districts_gcj02" / f"{code}.geojson")
        g = gm_crs.to_wgs84(g, "GCJ-02")
        parts.append(g.assign(adcode=code, name=names[code], level="district"))
    districts = pd.concat(parts, ignore_index=True)[["adcode", "name", "level", "geometry"]]
    districts = gpd.GeoDataFrame(districts, geometry="geometry", crs=4326)
    roads = gpd.read_file(CHANGCHUN / "roads_osm.geojson")
    lines = roads.geometry.to_numpy()

    def along(n: int, prefix: str) -> gpd.GeoDataFrame:
        pick = rng.integers(0, len(lines), size=n)
        pts = shapely.line_interpolate_point(lines[pick], rng.uniform(0, 1, n), normalized=True)
        return gpd.GeoDataFrame(
            {"id": [f"{prefix}{i:04d}" for i in range(n)]}, geometry=pts, crs=4326
        )

    demand = along(800, "DM")
    demand["population"] = rng.integers(50, 900, size=len(demand))
    demand["aged_60_plus"] = (demand["population"] * rng.uniform(0.15, 0.3, len(demand))).astype(
        int
    )
    demand["households"] = (demand["population"] / 2.6).round().astype(int)
    joined = gpd.sjoin(demand, districts[["adcode", "geometry"]], predicate="within")
    demand = joined.drop(columns=["index_right"]).rename(columns={"adcode": "admin_code"})
    demand = demand[~demand.index.duplicated()].reset_index(drop=True)
    eldercare = along(60, "EC")
    eldercare["category"] = rng.choice(
        ["home_care_center", "day_care_center", "nursing_home"], size=60
    )
    eldercare["beds"] = rng.integers(0, 150, size=60)
    eldercare["floor_area_m2"] = rng.uniform(200, 3000, size=60).round(1)
    eldercare["status"] = "open"
    eldercare = gpd.sjoin(eldercare, districts[["adcode", "geometry"]], predicate="within")
    eldercare = eldercare.drop(columns=["index_right"]).rename(columns={"adcode": "admin_code"})
    eldercare = eldercare[~eldercare.index.duplicated()].reset_index(drop=True)
    rooms = along(50, "SR")
    rooms["name"] = [f"服务站{i}" for i in range(len(rooms))]
    rooms["floor_area_m2"] = 300.0
    rooms["status"] = rng.choice(["open", "closed"], size=len(rooms), p=[0.9, 0.1])
    from geo_minzheng.kinds import DEMO_SCENARIO_LABEL

    for gdf in (demand, eldercare, rooms):
        gdf["source"] = DEMO_SCENARIO_LABEL  # generated records, like H2's scenario
    return {
        "demand": demand,
        "eldercare": eldercare,
        "service_rooms": rooms,
        "districts": districts,
    }


@pytest.fixture(scope="module")
def demo(engine) -> dict[str, object]:
    layers = _demo_layers()
    fac = coverage.facility_kinds(layers["eldercare"], layers["service_rooms"])
    res = coverage.analyze(layers["demand"], fac, engine, gdf_units=layers["districts"])
    return {"layers": layers, "result": res, "facilities": fac}


def test_demo_per_district_table(demo) -> None:
    layers, res = demo["layers"], demo["result"]
    assert res.kinds == ["home_care_center", "day_care_center", "community_service_room"]
    assert res.provenance["walk_speed_mps"] == network.ELDERLY_WALK_SPEED_MPS
    assert res.provenance["breaks_min"] == [5.0, 10.0, 15.0]
    table = res.table
    demand = layers["demand"]
    for kind in res.kinds:
        t = table[table["kind"] == kind]
        for b in BREAKS_MIN:
            tb = t[t["break_min"] == b].set_index("unit")
            # every demand record carries a district code: districts add up to the total
            dist = tb.drop(index="total")
            assert dist["population"].sum() == tb.loc["total", "population"]
            assert dist["covered_aged_60_plus"].sum() == tb.loc["total", "covered_aged_60_plus"]
            # independent recount from the per-point times with pandas
            times = res.demand[f"time_min_{kind}"]
            inside = demand[times.to_numpy() <= b]
            by = inside.groupby("admin_code")["aged_60_plus"].sum()
            for code, val in by.items():
                assert dist.loc[code, "covered_aged_60_plus"] == val
        shares = t.pivot_table(index="unit", columns="break_min", values="share_population")
        assert (shares.diff(axis=1).fillna(0) >= 0).all().all()  # more time, more coverage
    wide = res.unit_table("home_care_center")
    assert set(wide["unit_name"]) >= set(layers["districts"]["name"])
    assert "15分钟老年人覆盖率" in wide.columns


def test_demo_units_by_spatial_join_match_admin_codes(engine, demo) -> None:
    layers = demo["layers"]
    no_code = layers["demand"].drop(columns=["admin_code"])
    kinds = {"day_care_center": demo["facilities"]["day_care_center"]}
    res = coverage.analyze(no_code, kinds, engine, gdf_units=layers["districts"])
    by_join = res.table[res.table["break_min"] == 15].set_index("unit")
    by_code = demo["result"].table
    by_code = by_code[(by_code["kind"] == "day_care_center") & (by_code["break_min"] == 15)]
    by_code = by_code.set_index("unit")
    # points are placed inside their district, so both ways agree on the big districts
    for code in ("220102", "220103", "220104", "220105"):
        assert by_join.loc[code, "population"] == pytest.approx(
            by_code.loc[code, "population"], rel=0.02
        )


def test_demo_compliance(demo) -> None:
    layers, res = demo["layers"], demo["result"]
    table = compliance.compliance(res, layers["districts"], layers["eldercare"], province="jilin")
    checks = set(table["check"])
    assert checks == {
        "floor_area_per_100_households",
        "beds_per_1000_aged",
        "coverage_home_care_center_15min",
    }
    assert len(table) == 3 * len(layers["districts"])
    eld = layers["eldercare"]
    dem = layers["demand"]
    for code in layers["districts"]["adcode"]:
        rows = table[table["unit"] == code].set_index("check")
        sel = eld[(eld["admin_code"] == code)]
        area = sel[sel["category"].isin(["home_care_center", "day_care_center"])][
            "floor_area_m2"
        ].sum()
        hh = dem.loc[dem["admin_code"] == code, "households"].sum()
        aged = dem.loc[dem["admin_code"] == code, "aged_60_plus"].sum()
        fa = rows.loc["floor_area_per_100_households"]
        if hh:
            assert fa["value"] == pytest.approx(area / hh * 100)
        assert fa["target"] == 15.0  # Jilin unconfirmed -> national built-up norm
        assert fa["met"] == (area >= hh * 0.15 - 1e-9)
        assert fa["shortfall"] == pytest.approx(max(0.0, hh * 0.15 - area))
        beds = rows.loc["beds_per_1000_aged"]
        if aged:
            assert beds["value"] == pytest.approx(sel["beds"].fillna(0).sum() / aged * 1000)
        assert beds["shortfall"] == pytest.approx(max(0.0, aged * 0.035 - sel["beds"].sum()))
        assert fa["households_source"] in ("admin_unit", "demand")


def test_compliance_estimates_households_and_says_so(demo) -> None:
    layers, res = demo["layers"], demo["result"]
    units = layers["districts"].drop(columns=["households"], errors="ignore")
    res2 = coverage.CoverageResult(
        res.demand.drop(columns=["households"]),
        res.table,
        res.gaps,
        res.not_snapped,
        res.provenance,
    )
    table = compliance.compliance(res2, units, layers["eldercare"], coverage_kind=None)
    fa = table[table["check"] == "floor_area_per_100_households"].set_index("unit")
    assert fa["households_source"].str.contains("2.62").all()
    code = "220102"
    pop = layers["demand"].loc[layers["demand"]["admin_code"] == code, "population"].sum()
    eld = layers["eldercare"]
    area = eld[
        (eld["admin_code"] == code) & eld["category"].isin(["home_care_center", "day_care_center"])
    ]["floor_area_m2"].sum()
    assert fa.loc[code, "value"] == pytest.approx(area / (pop / 2.62) * 100)


def test_bad_demand_lists_every_problem(engine, node_layers) -> None:
    bad = node_layers["demand"].head(4).copy()
    bad.loc[bad.index[0], "population"] = -5
    bad.loc[bad.index[1], "aged_60_plus"] = 10_000
    bad.loc[bad.index[3], "id"] = bad["id"].iloc[2]
    with pytest.raises(LayerValidationError) as info:
        coverage.analyze(bad, {"a": node_layers["kind_a"]}, engine)
    text = str(info.value)
    assert "3 problem(s)" in text
    assert "demand 'D0000': population must be a number >= 0, got -5" in text
    assert "aged_60_plus must be <= population" in text
    assert "id must be unique" in text
    with pytest.raises(LayerValidationError, match="aged_60_plus must be a column"):
        coverage.analyze(bad.drop(columns=["aged_60_plus"]), {}, engine)
    assert bad.loc[bad.index[0], "population"] == -5  # input untouched


def _long(cost: np.ndarray, dem_ids, fac_ids) -> pd.DataFrame:
    i, j = np.nonzero(np.isfinite(cost))
    return pd.DataFrame(
        {"origin": np.asarray(dem_ids)[i], "dest": np.asarray(fac_ids)[j], "cost": cost[i, j]}
    )


@pytest.mark.parametrize("steps", [None, {300.0: 1.0, 600.0: 0.68, 900.0: 0.22}])
def test_two_step_fca_matches_pysal_access(engine, node_layers, steps) -> None:
    demand, supply = node_layers["demand"], node_layers["kind_b"]
    dem = engine.snap(demand, id_field="id")
    fac = engine.snap(supply, id_field="id")
    cost = engine.od_matrix(dem, fac, cutoff=1200.0).to_dense()
    ours = accessibility.accessibility(
        demand, supply, engine, capacity_field="beds", max_cost_min=15.0, weights=steps
    )
    demand_df = pd.DataFrame(
        {"aged": demand["aged_60_plus"].to_numpy(float)}, index=demand["id"].to_numpy()
    )
    supply_df = pd.DataFrame({"beds": supply["beds"].to_numpy(float)}, index=supply["id"])
    ref = fca.two_stage_fca(
        demand_df,
        supply_df,
        _long(cost, dem.ids, fac.ids),
        max_cost=900.0,
        demand_index=True,
        demand_name="aged",
        supply_name="beds",
        weight_fn=None if steps is None else access_weights.step_fn(steps),
    )
    assert len(ref) > 100
    np.testing.assert_allclose(ours.loc[ref.index, "access"], ref.to_numpy(), rtol=1e-12)
    missing = ours.index.difference(ref.index)
    assert (ours.loc[missing, "access"] == 0).all()
    assert ours["access"].gt(0).sum() == len(ref[ref > 0])


def test_two_step_fca_core_by_hand() -> None:
    # two demand points, two facilities; d0 reaches both, d1 reaches only f1
    cost = np.array([[1.0, 2.0], [np.inf, 1.0]])
    acc, ratio = accessibility.two_step_fca(cost, [100, 300], [10, 20], max_cost=5)
    assert ratio == pytest.approx([10 / 100, 20 / 400])
    assert acc == pytest.approx([0.1 + 0.05, 0.05])
    acc_w, _ = accessibility.two_step_fca(
        cost, [100, 300], [10, 20], max_cost=5, weights={1: 1, 2: 0.5}
    )
    # f0 demand 100*1, f1 demand 100*0.5 + 300*1 = 350
    assert acc_w == pytest.approx([10 / 100 + 0.5 * 20 / 350, 20 / 350])


@pytest.mark.filterwarnings("ignore:.*PuLP 4.0:DeprecationWarning")  # spopt uses the PuLP 3 API
def test_siting_on_network_matches_spopt(engine, node_layers) -> None:
    demand = node_layers["demand"]
    existing = node_layers["kind_a"]
    candidates = node_layers["kind_b"]
    res = siting.maximal_covering(
        demand, candidates, engine, k=4, gdf_existing=existing, break_min=10.0
    )
    # the same inputs for spopt: network cost matrix, weights zero where already covered
    dem = engine.snap(demand, id_field="id")
    cand = engine.snap(candidates, id_field="id")
    cost = engine.od_matrix(dem, cand).to_dense().copy()
    ex = engine.nearest(engine.snap(existing, id_field="id"), dem, cutoff=600.0)
    w = demand["aged_60_plus"].to_numpy(float) * ~np.isfinite(ex["cost"].to_numpy())
    ref = MCLP.from_cost_matrix(cost, w, service_radius=600.0, p_facilities=4)
    ref = ref.solve(pulp.PULP_CBC_CMD(msg=False))
    assert res.objective == pytest.approx(ref.problem.objective.value())
    before, after = res.summary.set_index("state").loc[["before", "after"], "covered_aged_60_plus"]
    assert after - before == pytest.approx(res.objective)
    assert len(res.sites) == 4 and res.sites.crs.to_epsg() == 4326
    lscp = siting.minimal_cover(demand, candidates, engine, gdf_existing=existing, break_min=10.0)
    covered_after = lscp.demand["covered_after"]
    reachable = (cost <= 600.0).any(axis=1) | np.isfinite(ex["cost"].to_numpy())
    assert covered_after.to_numpy()[reachable].all()
    assert lscp.provenance["uncoverable"] == int((~reachable).sum())


@pytest.mark.browser
@pytest.mark.slow
def test_coverage_map_in_browser(chromium, engine, demo, tmp_path) -> None:
    from conftest import browser_errors

    from maps import coverage_map, render

    layers, res = demo["layers"], demo["result"]
    kind = "home_care_center"
    sites = siting.maximal_covering(
        layers["demand"],
        layers["service_rooms"],
        engine,
        k=3,
        gdf_existing=demo["facilities"][kind],
    ).sites
    areas = workflows.service_areas(engine, demo["facilities"][kind])
    m = coverage_map.coverage_map(
        res,
        demo["facilities"],
        areas,
        kind=kind,
        gdf_units=layers["districts"],
        sites=sites,
        basemap="none",  # no tile requests: the test machine is offline
    )
    path = render.save_html(m, tmp_path / "coverage.html")
    chromium.get(path.as_uri())
    names = chromium.execute_script(
        "return Array.from(document.querySelectorAll("
        "'.leaflet-control-layers-overlays label')).map(e => e.textContent.trim());"
    )
    for expected in (
        "5分钟步行服务圈",
        "10分钟步行服务圈",
        "15分钟步行服务圈",
        "服务空白区（15分钟外）",
        "建议新增选址",
        "现有设施：居家养老服务中心",
    ):
        assert expected in names, names
    assert any(n.startswith("人口点：") for n in names)
    body = chromium.find_element("tag name", "body").text
    assert "演示情景" in body
    assert "OpenStreetMap" in body
    table = chromium.execute_script(
        "return Array.from(document.querySelectorAll('#gm-coverage-panel tbody tr'))"
        ".map(r => r.cells[0].textContent);"
    )
    assert table[0] == "合计"
    assert set(layers["districts"]["name"]) <= set(table)
    # open the first gap polygon's popup: it shows the gap's population
    top = res.gaps[res.gaps["kind"] == kind].iloc[0]
    text = chromium.execute_script(
        f"""
        const map = {m.get_name()};
        let target = null;
        map.eachLayer(l => {{
          if (!target && l.feature && l.feature.properties.__layer === '服务空白区（15分钟外）'
              && l.feature.properties.f0 === '1') target = l;
        }});
        if (!target) return null;
        target.fire('click', {{latlng: target.getBounds().getCenter()}}, true);
        const el = document.querySelector('.leaflet-popup-content');
        return el ? el.textContent : null;
        """
    )
    assert text is not None
    digits = text.replace(",", "").replace(" ", "")
    assert str(int(top["population"])) in digits
    assert str(int(top["aged_60_plus"])) in digits
    assert not browser_errors(chromium)


def test_units_from_admin_code_without_unit_layer(engine, demo) -> None:
    layers = demo["layers"]
    kinds = {"day_care_center": demo["facilities"]["day_care_center"]}
    res = coverage.analyze(layers["demand"], kinds, engine, breaks_min=(15,), gaps=False)
    t = res.table.set_index("unit")
    codes = sorted(layers["demand"]["admin_code"].unique())
    assert list(t.index) == ["total", *codes]
    ref = demo["result"].table
    ref = ref[(ref["kind"] == "day_care_center") & (ref["break_min"] == 15)].set_index("unit")
    for code in codes:
        assert t.loc[code, "covered_population"] == ref.loc[code, "covered_population"]
    assert res.gaps.empty


def test_city_and_district_levels_together(engine, demo) -> None:
    layers = demo["layers"]
    districts = layers["districts"]
    city = gpd.GeoDataFrame(
        {"adcode": ["220100"], "name": ["长春市"], "level": ["city"], "parent_adcode": [None]},
        geometry=[districts.union_all()],
        crs=districts.crs,
    )
    units = pd.concat([districts.assign(parent_adcode="220100"), city], ignore_index=True)
    kinds = {"day_care_center": demo["facilities"]["day_care_center"]}
    res = coverage.analyze(layers["demand"], kinds, engine, gdf_units=units, gaps=False)
    t = res.table[res.table["break_min"] == 10].set_index("unit")
    # the city counts every demand record once, through its district's parent code
    assert t.loc["220100", "population"] == t.loc["total", "population"]
    assert t.loc["220100", "covered_aged_60_plus"] == t.loc["total", "covered_aged_60_plus"]
    assert t.loc["220100", "level"] == "city"


def test_facility_kinds_are_parameters_and_english_table(demo) -> None:
    layers = demo["layers"]
    eld = layers["eldercare"]
    every = coverage.facility_kinds(eld, None, categories=None, open_only=False)
    assert sorted(every) == sorted(eld["category"].unique())
    assert sum(len(v) for v in every.values()) == len(eld)
    rooms = coverage.facility_kinds(None, layers["service_rooms"], room_kind="rooms")
    assert list(rooms) == ["rooms"]
    assert rooms["rooms"]["status"].isin(["open", "full"]).all()

    from maps import coverage_map

    html = coverage_map.unit_table_html(demo["result"], "day_care_center", lang="en")
    assert "Coverage by admin unit: Day-care centre" in html
    assert "<td>Total</td>" in html
    for name in layers["districts"]["name"]:
        assert f"<td>{name}</td>" in html


def test_unit_layer_and_time_engine_check(G, demo) -> None:
    layers, res = demo["layers"], demo["result"]
    lay = res.unit_layer(layers["districts"], "home_care_center")
    assert lay.crs.to_epsg() == 4326 and len(lay) == len(layers["districts"])
    t = res.table[(res.table["kind"] == "home_care_center") & (res.table["break_min"] == 15)]
    share = t.set_index("unit")["share_aged_60_plus"]
    for code, value in zip(lay["adcode"], lay["15分钟老年人覆盖率"], strict=True):
        assert value == pytest.approx(share[code], nan_ok=True)  # nan: no demand in the unit
    by_length = Engine.from_graph(G, weight="length_m")
    with pytest.raises(ValueError, match="weight='time_s'.*got weight='length_m'"):
        coverage.analyze(layers["demand"], demo["facilities"], by_length)


# ------------------------------------------------------------------ any eldercare, gap units, roads


def test_any_eldercare_row_counts_the_nearest_of_every_category(engine, demo) -> None:
    layers, res = demo["layers"], demo["result"]
    assert res.provenance["combined"] == {
        coverage.ANY_ELDERCARE: ["home_care_center", "day_care_center"]
    }
    assert coverage.ANY_ELDERCARE not in res.kinds  # a row of the table, not a facility kind
    demand, table = res.demand, res.table
    # independent: a resident is covered when either category's nearest centre is in reach
    either = np.minimum(
        demand["time_min_home_care_center"].to_numpy(), demand["time_min_day_care_center"]
    )
    np.testing.assert_array_equal(demand["time_min_any_eldercare"].to_numpy(), either)
    faster_home = demand["time_min_home_care_center"] <= demand["time_min_day_care_center"]
    reached = np.isfinite(either)
    expected_id = np.where(
        faster_home, demand["nearest_home_care_center"], demand["nearest_day_care_center"]
    )
    assert list(demand["nearest_any_eldercare"][reached]) == list(expected_id[reached])
    assert demand["nearest_any_eldercare"][~reached].isna().all()
    for b in BREAKS_MIN:
        rows = table[(table["kind"] == coverage.ANY_ELDERCARE) & (table["break_min"] == b)]
        rows = rows.set_index("unit")
        inside = layers["demand"][either <= b]
        assert rows.loc["total", "covered_aged_60_plus"] == inside["aged_60_plus"].sum()
        for code, aged in inside.groupby("admin_code")["aged_60_plus"].sum().items():
            assert rows.loc[code, "covered_aged_60_plus"] == aged
        for kind in ("home_care_center", "day_care_center"):
            one = table[(table["kind"] == kind) & (table["break_min"] == b)].set_index("unit")
            assert (rows["covered_aged_60_plus"] >= one["covered_aged_60_plus"]).all()
    total = table[(table["unit"] == "total") & (table["break_min"] == 15)].set_index("kind")
    # the Changchun demo: 40.5 % and 40.8 % alone, 59.0 % with either (seeded scenario)
    assert total.loc["any_eldercare", "share_aged_60_plus"] > max(
        total.loc["home_care_center", "share_aged_60_plus"],
        total.loc["day_care_center", "share_aged_60_plus"],
    )
    assert set(res.gaps["kind"]) >= {"any_eldercare"}
    # one eldercare category, or combined={}: no combined row
    one = {"day_care_center": demo["facilities"]["day_care_center"]}
    assert "any_eldercare" not in set(coverage.analyze(demand, one, engine, gaps=False).table.kind)
    none = coverage.analyze(demand, demo["facilities"], engine, gaps=False, combined={})
    assert set(none.table["kind"]) == set(res.kinds)


def test_gaps_carry_the_admin_unit_they_lie_in(demo) -> None:
    layers, res = demo["layers"], demo["result"]
    gaps = res.gaps
    assert list(gaps.columns[:5]) == ["kind", "break_min", "rank", "unit", "unit_name"]
    names = dict(zip(layers["districts"]["adcode"], layers["districts"]["name"], strict=True))
    assert gaps["unit"].notna().all()
    assert (gaps["unit_name"] == gaps["unit"].map(names)).all()
    # independent: the uncovered residents of each gap, grouped by their district code; the
    # gap's unit is the district holding most of its aged 60+
    for kind in ("home_care_center", "community_service_room"):
        kg = gaps[gaps["kind"] == kind]
        far = layers["demand"][~(res.demand[f"time_min_{kind}"].to_numpy() <= 15)]
        joined = gpd.sjoin(far, kg[["rank", "geometry"]], predicate="within")
        by = joined.groupby(["rank", "admin_code"])["aged_60_plus"].sum().reset_index()
        best = by.sort_values(["rank", "aged_60_plus"], ascending=[True, False])
        best = best.drop_duplicates("rank").set_index("rank")["admin_code"]
        assert (kg.set_index("rank")["unit"] == best.reindex(kg["rank"])).all()
    # "gaps per district" is one groupby away
    per = gaps[gaps["kind"] == "home_care_center"].groupby("unit_name")["aged_60_plus"].sum()
    assert per.sum() == gaps.loc[gaps["kind"] == "home_care_center", "aged_60_plus"].sum()


def test_finest_unit_and_gap_unit_cores() -> None:
    # rows 0, 1 in a district and its city; row 2 only in the city; row 3 in nothing
    rows = np.array([0, 0, 1, 1, 2])
    units = np.array([2, 0, 0, 1, 0])
    levels = ["city", "district", "district"]
    np.testing.assert_array_equal(coverage.finest_units(rows, units, levels, 4), [2, 1, 0, -1])
    # gap 1: unit 1 holds 7 aged, unit 2 holds 3; gap 2: a tie on aged, more residents in 2
    gap = np.array([1, 1, 1, 2, 2, 2])
    unit = np.array([1, 2, 1, 1, 2, -1])
    aged = np.array([4, 3, 3, 5, 5, 50])
    pop = np.array([10, 10, 10, 10, 30, 100])
    np.testing.assert_array_equal(coverage.gap_units(gap, unit, aged, pop, 3), [1, 2, -1])


def test_sparse_road_units_core() -> None:
    km = np.array([100.0, 50.0, 1.0, 0.0, 3.0])
    area = np.array([10.0, 10.0, 10.0, 10.0, 500.0])
    levels = ["district", "district", "district", "district", "city"]
    # median district density 2.55 km/km²: 0.1 and 0 are below 5 % of it; a level's only unit
    # (the city) is never flagged
    assert list(coverage.sparse_road_units(km, area, levels)) == [False, False, True, True, False]
    assert list(coverage.sparse_road_units(km, area, levels, share=0.01)) == [
        False,
        False,
        False,
        True,
        False,
    ]


def test_district_with_almost_no_road_data_says_so(G, demo) -> None:
    layers, res = demo["layers"], demo["result"]
    table = res.table
    rows = table[table["break_min"] == 15].drop_duplicates("unit").set_index("unit")
    # 绿园区 (220106) lies almost wholly outside the central-Changchun road extract
    assert rows.loc["220106", "sparse_roads"]
    assert rows.loc["220106", "road_km"] < 2.0
    assert not rows.drop(index="220106")["sparse_roads"].any()
    # independent: the network's streets (each once) clipped to each district, in metres
    streets = [
        d.get("geometry") or shapely.LineString([(G.nodes[u]["x"], G.nodes[u]["y"]),
                                                 (G.nodes[v]["x"], G.nodes[v]["y"])])
        for u, v, d in G.to_undirected().edges(data=True)
    ]  # fmt: skip
    units = layers["districts"].to_crs(G.graph["crs"])
    for code, poly in zip(units["adcode"], units.geometry, strict=True):
        clipped_km = shapely.length(shapely.intersection(streets, poly)).sum() / 1e3
        if code != "220106":
            assert rows.loc[code, "road_km"] == pytest.approx(clipped_km, rel=0.02)
        else:
            assert clipped_km < 1.0
    sparse = table[table["unit"] == "220106"]
    assert sparse["share_aged_60_plus"].isna().all() and sparse["share_population"].isna().all()
    assert sparse["aged_60_plus"].gt(0).all()  # residents are there; their share is unknown
    big = table[table["unit"].isin(["220102", "220103"])]
    assert big["share_aged_60_plus"].notna().all()
    assert res.provenance["sparse_road_units"] == ["220106"]
    km = f"{rows.loc['220106', 'road_km']:.1f} km"
    assert res.unit_notes(lang="zh") == {
        "220106": f"路网数据几乎未覆盖本区（仅 {km} 道路），覆盖率无法计算"
    }
    assert "almost no road data" in res.unit_notes(lang="en")["220106"]
    wide = res.unit_table("home_care_center").set_index("unit")
    assert wide.loc["220106", "备注"].startswith("路网数据几乎未覆盖本区")
    assert np.isnan(wide.loc["220106", "15分钟老年人覆盖率"])
    assert wide["备注"].drop(index="220106").isna().all()
    en = res.unit_table("home_care_center", lang="en").set_index("unit")
    assert "almost no road data" in en.loc["220106", "note"]

    from maps import coverage_map

    html = coverage_map.unit_table_html(res, "home_care_center")
    row = html.split('data-unit="220106"')[1].split("</tr>")[0]
    assert "路网数据几乎未覆盖本区" in row and "0.0%" not in row
