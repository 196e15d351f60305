# ruff: noqa: F811 - pytest fixtures imported from tests.test_api_support
"""The relief analysis through its workflow on the real Changchun drive network: the plan under
the demo flood, bad input, the CLI verb and its dispatch sheets, the API job, the map page in
Chromium."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from fastapi.testclient import TestClient

from geo_minzheng import cli, relief, scenario, workflows
from geo_minzheng._errors import CapacityError, LayerValidationError
from geo_minzheng.catalog import load_catalog
from geo_minzheng.io import write_gpkg
from tests.conftest import DEMO_DATA, ROOT, browser_errors
from tests.test_api_support import (  # noqa: F401 - fixtures
    ADMIN_KEY,
    CATALOG,
    LiveServer,
    city_layers,
    fresh_store,
    make_settings,
)

FAST = workflows.ReliefParams(days=1, vrp_iterations=300, depart_at="2025-07-01T08:00")


@pytest.fixture(scope="module")
def layers() -> workflows.FrameLayers:
    return workflows.FrameLayers(load_catalog(ROOT / "layers" / "catalog.yml").read_all())


@pytest.fixture(scope="module")
def drive(layers):
    G = workflows.road_network(layers, workflows.NetworkParams(profile="drive"))
    return workflows.engine_for(G)


@pytest.fixture(scope="module")
def walk(layers):
    return workflows.engine_for(workflows.road_network(layers))


@pytest.fixture(scope="module")
def flood_run(layers, drive, walk) -> workflows.ReliefRun:
    hazards, closed = scenario.demo_flood(layers.read("roads"))
    return workflows.run_relief(
        layers, drive, FAST, walk_engine=walk, gdf_hazards=hazards, gdf_closed_roads=closed
    )


def test_plan_sends_only_stock_above_the_reserve_and_every_truck_carries_what_fits(
    layers, drive, walk
) -> None:
    p = workflows.ReliefParams(days=1, vrp_iterations=300, reserve_share=0.25)
    run = workflows.run_relief(layers, drive, p, walk_engine=walk)
    plan = run.plan
    stock = plan.stock
    # a quarter of every stock stays in its depot; nothing above the rest is sent
    assert (stock["reserve"] == np.ceil(stock["stock"] * 0.25 - 1e-9)).all()
    assert (stock["sent"] <= stock["available"]).all()
    assert (stock["stock"] - stock["sent"] >= stock["reserve"]).all()
    # the demo stock is far below three days' needs: all of it that can go is sent
    assert (stock["sent"] == stock["available"]).all()
    # needs: delivered + unmet = need, never more delivered than needed
    needs = plan.needs
    assert (needs["delivered"] + needs["unmet"] == needs["need"]).all()
    assert (needs["delivered"] <= needs["need"]).all()
    # the rule: for every item, either every reachable aged 60+ need is met, or nothing at all
    # goes to the other residents (the network is one strongly connected piece, so every
    # located shelter is reachable from every depot)
    out = set(plan.unreachable["shelter_id"])
    for item, rows in needs.groupby("item"):
        reach = rows[~rows["shelter_id"].isin(out)]
        aged_met = (reach["unmet_aged"] == 0).all()
        assert aged_met or (reach["delivered"] <= reach["need_aged"]).all(), item
        gone = rows[rows["shelter_id"].isin(out)]
        assert (gone["delivered"] == 0).all() and (gone["unmet_aged"] == gone["need_aged"]).all()
    by_item = plan.allocation.groupby("item")["quantity"].sum()
    assert by_item.to_dict() == needs.groupby("item")["delivered"].sum()[by_item.index].to_dict()
    # every trip within a 5 t / 30 m³ truck; what trucks carry + what they could not = allocated
    tours = plan.tours
    assert (tours["load_kg"] <= 5000 + 1e-6).all() and (tours["load_m3"] <= 30 + 1e-9).all()
    for item in plan.items:
        carried = int(tours[f"load_{item}"].sum())
        left = int(plan.undelivered.loc[plan.undelivered["item"] == item, "quantity"].sum())
        assert carried + left == int(by_item.get(item, 0))
    # a shelter needing more than one truck gets several deliveries (split deliveries)
    per_shelter = plan.stops.groupby("shelter_id")["tour_id"].nunique()
    assert per_shelter.max() >= 2
    # four trucks per depot, each within its 8-hour shift
    assert tours.groupby("depot_id")["vehicle_id"].nunique().max() <= 4
    assert tours["return_min"].max() <= 8 * 60 + 1e-6
    # shelters too far from a drivable road are reported, the rest still planned
    assert set(plan.unreachable["reason"]) == {"not_snapped"}
    assert plan.summary["shelters_supplied"] >= 25


def test_tours_follow_the_roads_and_their_lengths(flood_run) -> None:
    plan = flood_run.plan
    tours = plan.tours
    assert len(tours) > 10 and tours.geometry.notna().all()
    metric = tours.to_crs(tours.estimate_utm_crs())
    np.testing.assert_allclose(metric.length / 1000.0, tours["distance_km"], rtol=0.02)
    depots = plan.depots.to_crs(metric.crs)
    for row in metric.itertuples():
        start = shapely.get_point(shapely.get_parts(row.geometry)[0], 0)
        assert start.distance(depots.geometry[row.depot_id]) < 300
    # no tour drives through the flooded area or over the closed bridge
    hazard = shapely.union_all(flood_run.gdf_hazards.to_crs(metric.crs).geometry.to_numpy())
    bridge = shapely.union_all(flood_run.gdf_closed_roads.to_crs(metric.crs).geometry.to_numpy())
    for geom in metric.geometry:
        assert shapely.intersection(geom, hazard).length < 60  # at most a snapped access leg
        assert shapely.intersection(geom, bridge.buffer(1.0)).length < 5


def test_the_flood_replans_and_reports_what_changed(flood_run) -> None:
    run = flood_run
    before, after, change = run.baseline, run.plan, run.changes
    assert before is not None and change is not None
    summary = change.summary
    # shelters east of the river are cut off by the flooded streets: named, with the reason
    cut = after.unreachable[after.unreachable["reason"] == "cut_off"]
    assert len(cut) >= 3
    newly = change.newly_unreachable.set_index("shelter_id")
    assert set(cut["shelter_id"]) <= set(newly.index)
    assert summary["shelters_newly_unreachable"] == len(newly)
    assert summary["persons_newly_unreachable"] == int(newly["persons"].sum())
    # nothing is sent to a shelter that cannot be reached; they were supplied before the flood
    assert not set(cut["shelter_id"]) & set(after.allocation["shelter_id"])
    assert set(cut["shelter_id"]) & set(before.allocation["shelter_id"])
    # the Erdao depot's streets are flooded: it cannot send, and says why
    assert after.depots.loc["DP-02", "excluded_reason"] == "cut_off"
    assert before.depots.loc["DP-02", "sent_weight_kg"] > 0
    assert after.depots.loc["DP-02", "sent_weight_kg"] == 0
    assert summary["allocated_t_after"] < summary["allocated_t_before"]
    assert summary["vehicles_changed"] >= 1 and len(change.tours) == summary["vehicles_changed"]
    # arrival changes are reported per shelter, in minutes
    both = change.shelters.dropna(subset=["first_arrival_min_before", "first_arrival_min_after"])
    np.testing.assert_allclose(
        both["delay_min"], both["first_arrival_min_after"] - both["first_arrival_min_before"]
    )


def test_dispatch_sheets_in_chinese_xlsx_and_csv(flood_run, tmp_path: Path) -> None:
    plan = flood_run.plan
    paths = relief.write_dispatch_sheets(plan, tmp_path)
    vehicles = sorted(plan.tours["vehicle_id"].unique())
    workbook = pd.read_excel(paths["dispatch_xlsx"], sheet_name=None)
    assert sorted(workbook) == vehicles
    sheet = pd.read_csv(paths[f"dispatch_{vehicles[0]}"], encoding="utf-8-sig")
    for column in ("出发库", "车辆", "趟次", "途经顺序", "避难场所", "装载明细", "本段里程（公里）",
                   "累计里程（公里）", "预计到达时间"):  # fmt: skip
        assert column in sheet.columns, column
    assert sheet["出发库"].str.contains("救灾物资储备库").all()
    assert (sheet["车辆"] == vehicles[0]).all()
    # clock times from the 08:00 departure, never earlier, in order along each trip
    eta = pd.to_datetime(sheet["预计到达时间"])
    assert eta.min() == pd.Timestamp("2025-07-01 08:00")
    for _, trip in sheet.groupby("趟次"):
        times = pd.to_datetime(trip["预计到达时间"]).to_numpy()
        assert (np.diff(times) >= np.timedelta64(0)).all()
    # the running distance ends at the vehicle's total
    km = plan.tours.loc[plan.tours["vehicle_id"] == vehicles[0], "distance_km"].sum()
    assert sheet["累计里程（公里）"].iloc[-1] == pytest.approx(km, abs=0.05)
    stops = sheet[sheet["避难场所编号"].notna()]
    assert len(stops) and stops["避难场所编号"].str.startswith("SH-").all()
    assert stops["装载明细"].str.contains("顶|床|升|千克|套").all()
    assert (sheet.loc[sheet["避难场所编号"].isna(), "避难场所"].isin(["出发", "返回储备库"])).all()


def test_registry_occupancy_instead_of_catchments(layers, drive) -> None:
    shelters = layers.read("shelters").copy()
    shelters["occupancy_persons"] = 0
    shelters.loc[shelters["id"] == "SH-002", "occupancy_persons"] = 262
    own = workflows.FrameLayers({**layers.frames, "shelters": shelters})
    p = workflows.ReliefParams(days=1, occupancy_field="occupancy_persons", vrp_iterations=200)
    plan = workflows.run_relief(own, drive, p).plan
    need = plan.needs.set_index(["shelter_id", "item"])["need"]
    assert need[("SH-002", "tent")] == 100 and need[("SH-002", "water")] == 786
    assert need.drop("SH-002", level=0).sum() == 0
    assert set(plan.allocation["shelter_id"]) == {"SH-002"}
    assert (plan.needs["unmet"] == 0).all()  # the stock suffices for one shelter


def test_bad_input_is_refused_before_anything_is_planned(layers, drive, walk) -> None:
    with pytest.raises(ValueError, match="vehicle_capacity_t must be tonnes in \\(0, 100\\]"):
        workflows.ReliefParams(vehicle_capacity_t=0)
    with pytest.raises(ValueError, match="items must be some of"):
        workflows.ReliefParams(items=("tent", "rice"))
    # a truck of 20 kg cannot carry one 30 kg tent
    tiny = workflows.ReliefParams(days=1, vehicle_capacity_t=0.02, vrp_iterations=50)
    with pytest.raises(CapacityError, match="depot 'DP-01': one unit of 'tent' \\(30 kg"):
        workflows.run_relief(layers, drive, tiny, walk_engine=walk)
    depots = layers.read("depots").copy()
    depots.loc[depots["id"] == "DP-03", "stock_water"] = -100.0
    bad = workflows.FrameLayers({**layers.frames, "depots": depots})
    with pytest.raises(LayerValidationError, match="depot 'DP-03': stock_water must be"):
        workflows.run_relief(bad, drive, FAST, walk_engine=walk)
    with pytest.raises(ValueError, match="give a shelter run, a walk network"):
        workflows.run_relief(layers, drive, FAST)


def test_cli_relief_writes_tables_routes_and_sheets(tmp_path: Path, capsys) -> None:
    out = tmp_path / "rf"
    assert cli.main(["relief", "--out", str(out), "--demo-flood", "--days", "1"]) == cli.EXIT_OK
    printed = capsys.readouterr().out
    assert "relief_dispatch_xlsx" in printed and "relief_map" in printed
    allocation = pd.read_csv(out / "relief_allocation.csv", encoding="utf-8-sig")
    stock = pd.read_csv(out / "relief_stock.csv", encoding="utf-8-sig")
    sent = allocation.groupby(["depot_id", "item"])["quantity"].sum()
    avail = stock.set_index(["depot_id", "item"])["available"]
    assert (sent <= avail.reindex(sent.index)).all()
    routes = gpd.read_file(out / "relief_routes.geojson")
    assert len(routes) == len(pd.read_csv(out / "relief_tours.csv", encoding="utf-8-sig"))
    assert routes.crs.to_epsg() == 4326
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    rf = summary["relief"]
    assert rf["days"] == 1.0 and rf["changes"]["shelters_newly_unreachable"] >= 1
    assert rf["plan"]["allocated_t"] == pytest.approx(
        (allocation["weight_kg"].sum()) / 1000.0, abs=0.01
    )
    assert "救灾物资调运" in (out / "summary.md").read_text(encoding="utf-8")
    assert (out / "relief_map.html").stat().st_size > 10_000
    assert cli.main(["relief", "--out", str(out), "--capacity-t", "0"]) == cli.EXIT_USAGE
    assert cli.main(["relief", "--out", str(out), "--items", "tent,rice"]) == cli.EXIT_USAGE


# --------------------------------------------------------------------------------------------
# The API job and the map page
# --------------------------------------------------------------------------------------------
RELIEF_CATALOG = (
    CATALOG
    + """  depots:
    kind: supply_depot
    title_zh: 救灾物资储备库
    title_en: Relief depots
    source: city.gpkg
    scenario: true
    editable: true
    editable_fields:
      [stock_tent, stock_quilt, stock_folding_bed, stock_water, stock_food, stock_clothing]
"""
)


@pytest.fixture(scope="module")
def relief_city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The API test city with the demo's three depots."""
    folder = tmp_path_factory.mktemp("relief_city")
    depots = gpd.read_file(DEMO_DATA / "changchun_demo.gpkg", layer="depots")
    write_gpkg(city_layers() | {"depots": depots}, folder / "city.gpkg")
    (folder / "catalog.yml").write_text(RELIEF_CATALOG, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def relief_store(relief_city: Path) -> Path:
    from api.app import create_app

    path = relief_city / "seed-store.gpkg"
    with TestClient(create_app(make_settings(relief_city, path))):
        pass
    return path


@pytest.fixture
def client(relief_city: Path, relief_store: Path, tmp_path: Path) -> Iterator[TestClient]:
    from api.app import create_app

    settings = make_settings(relief_city, fresh_store(relief_store, tmp_path))
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _result(client: TestClient, response) -> dict:
    assert response.status_code == 202, response.text
    status: dict = {}
    for _ in range(1200):
        status = client.get(response.headers["Location"]).json()
        if status["status"] in ("succeeded", "failed"):
            break
    assert status["status"] == "succeeded", status
    return client.get(status["links"][-1]["href"]).json()


def test_api_job_plans_and_honours_stock_set_through_the_api(client: TestClient) -> None:
    body = _result(client, client.post("/analysis/relief", json={"days": 1}))
    assert body["type"] == "FeatureCollection" and body["features"]
    props = body["features"][0]["properties"]
    assert {"vehicle_id", "depot_id", "stops", "load_kg", "distance_km"} <= set(props)
    assert body["dispatch"] and all(rows for rows in body["dispatch"].values())
    first = next(iter(body["dispatch"].values()))[0]
    assert {"出发库", "车辆", "装载明细", "预计到达时间"} <= set(first)
    sent = pd.DataFrame(body["allocation"]).groupby("depot_id")["weight_kg"].sum()
    busiest = str(sent.idxmax())
    assert sent[busiest] > 0
    # the bureau empties that depot through the API: the next plan sends nothing from it
    url = f"/collections/depots/items/{busiest}"
    etag = client.get(url).headers["ETag"]
    empty = {f"stock_{i}": 0 for i in ("tent", "quilt", "folding_bed", "water", "food", "clothing")}
    patched = client.patch(
        url, json={"properties": empty}, headers={"If-Match": etag, "X-API-Key": ADMIN_KEY}
    )
    assert patched.status_code == 200, patched.text
    again = _result(client, client.post("/analysis/relief", json={"days": 1}))
    depots = {f["properties"]["id"]: f["properties"] for f in again["depots"]["features"]}
    assert depots[busiest]["sent_weight_kg"] == 0
    assert busiest not in {f["properties"]["depot_id"] for f in again["features"]}
    # the other depots make up what they can: never less sent from them, never more in total
    before = {f["properties"]["id"]: f["properties"] for f in body["depots"]["features"]}
    for depot, row in depots.items():
        if depot != busiest:
            assert row["sent_weight_kg"] >= before[depot]["sent_weight_kg"] - 1e-6
    assert again["summary"]["allocated_t"] <= body["summary"]["allocated_t"]
    assert client.post("/analysis/relief", json={"vehicle_capacity_t": 0}).status_code == 422
    assert client.post("/analysis/relief", json={"speed_kmh": 0}).status_code == 422
    wrong = client.post("/analysis/relief", json={"shelter_layer": "roads"})
    assert wrong.status_code == 422 and "expected 'shelter'" in wrong.text
    assert client.post("/analysis/relief", json={"items": ["rice"]}).status_code == 422


@pytest.fixture(scope="module")
def live(
    relief_city: Path, relief_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    from api.app import create_app

    store = fresh_store(relief_store, tmp_path_factory.mktemp("relief_live"))
    settings = make_settings(relief_city, store, build_network_on_start=True)
    with LiveServer(create_app(settings)) as server:
        yield server.url


@pytest.mark.browser
def test_relief_map_page_in_chromium(chromium, live: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium
    driver.get(live + "/?lang=zh")
    assert driver.find_element("id", "map-relief").text == "救灾物资调运"
    driver.get(live + "/maps/relief?flood=1")
    WebDriverWait(driver, 240).until(
        lambda d: d.find_elements("css selector", ".leaflet-control-layers-overlays label")
    )
    labels = " ".join(
        e.get_attribute("textContent")
        for e in driver.find_elements("css selector", ".leaflet-control-layers-overlays label")
    )
    for label in ("救灾物资储备库", "车辆路线：DP-01-V1", "调运关系", "灾害影响区（演示情景）",
                  "封闭道路"):  # fmt: skip
        assert label in labels, (label, labels)
    panel = driver.find_element("id", "gm-relief-panel").get_attribute("textContent")
    assert "需求" in panel and "封路后" in panel
    # the tours are drawn: one SVG path per trip at least
    paths = driver.find_elements("css selector", "path.leaflet-interactive")
    assert len(paths) > 20
    body = driver.find_element("css selector", "body").get_attribute("textContent")
    assert "演示情景" in body
    errors = [e for e in browser_errors(driver) if "tile.openstreetmap.org" not in e]
    assert errors == []
    driver.get(live + "/maps/relief?lang=en")
    WebDriverWait(driver, 240).until(lambda d: d.find_elements("id", "gm-relief-panel"))
    assert "vehicles" in driver.find_element("id", "gm-relief-panel").text


def _twelve_shelters(layers) -> tuple[pd.DataFrame, gpd.GeoDataFrame]:
    """300 residents in each of the first 12 registry shelters (one day of water and food is
    12.6 t: at least three 5 t trucks)."""
    shelters = layers.read("shelters").copy()
    shelters["occupancy_persons"] = 0
    shelters.loc[shelters["id"].isin(list(shelters["id"])[:12]), "occupancy_persons"] = 300
    return relief.sheltered_from_registry(shelters), shelters


def test_a_slower_fleet_arrives_proportionally_later(layers, drive) -> None:
    sheltered, shelters = _twelve_shelters(layers)
    depots = layers.read("depots")
    # every road of the drive network allows at least 15 km/h, so at 10 and 5 km/h the fleet's
    # own speed is the limit everywhere: every leg takes exactly twice as long at 5 km/h
    assert (drive.length_m / drive.cost * 3.6).min() >= 10.0
    first: dict[float, pd.DataFrame] = {}
    for speed in (10.0, 5.0):
        p = relief.plan(
            sheltered, shelters, depots, drive, days=1, items=["water", "food"],
            unload_min_per_t=0, fleets=relief.Fleet(count=4, speed_kmh=speed),
            vrp_iterations=300,
        )  # fmt: skip
        assert p.summary["carried_t"] == p.summary["allocated_t"] == 12.6
        stops = p.stops.merge(p.tours[["tour_id", "depart_min"]], on="tour_id")
        out = stops[(stops["seq"] == 1) & (stops["depart_min"] == 0)]
        # straight out of the depot: arrival = the drawn leg's length at the fleet's speed
        np.testing.assert_allclose(out["arrival_min"], out["leg_km"] / speed * 60, atol=0.1)
        first[speed] = out.drop_duplicates(["depot_id", "shelter_id"]).set_index(
            ["depot_id", "shelter_id"]
        )["arrival_min"]
    both = first[10.0].index.intersection(first[5.0].index)
    assert len(both) >= 2
    # twice the time at half the speed (legs are whole seconds: within 2 s)
    np.testing.assert_allclose(first[5.0][both], 2 * first[10.0][both], atol=2 / 60)
    assert first[10.0][both].max() > 10.0  # minutes: real legs, not zero-length ones


def test_a_slower_fleet_needs_more_vehicles_within_its_shift(layers, drive) -> None:
    sheltered, shelters = _twelve_shelters(layers)
    depots = layers.read("depots")

    def run(speed_kmh: float, vehicles: int) -> relief.ReliefPlan:
        fleet = relief.Fleet(count=vehicles, shift_min=180, speed_kmh=speed_kmh)
        return relief.plan(
            sheltered, shelters, depots, drive, days=1, items=["water", "food"],
            unload_min_per_t=0, fleets=fleet, vrp_iterations=300,
        )  # fmt: skip

    fast, slow, more = run(10.0, 2), run(5.0, 2), run(5.0, 4)
    # at 10 km/h two trucks per depot carry all 12.6 t within a 3-hour shift
    assert fast.summary["carried_t"] == 12.6 and len(fast.undelivered) == 0
    assert fast.summary["vehicles_used"] == 3
    # at 5 km/h the same trucks cannot: loads are left for want of shift time (reason fleet)
    assert slow.summary["carried_t"] < 12.6
    assert set(slow.undelivered["reason"]) == {"fleet"}
    assert slow.summary["vehicles_used"] == 4
    # four trucks per depot carry it all again, on more vehicles than the fast fleet needed
    assert more.summary["carried_t"] == 12.6 and len(more.undelivered) == 0
    assert more.summary["vehicles_used"] > fast.summary["vehicles_used"]
    for p in (fast, slow, more):
        assert (p.tours["return_min"] <= 180 + 1e-9).all()


def test_fleet_speed_from_the_parameters_the_depot_layer_and_the_api(layers) -> None:
    from api.routes.relief import ReliefRequest

    depots = layers.read("depots").copy()
    depots["speed_kmh"] = np.nan
    depots.loc[depots["id"] == "DP-02", "speed_kmh"] = 25.0
    fleets = workflows.relief_fleets(depots, workflows.ReliefParams(speed_kmh=40))
    assert {d: f.speed_kmh for d, f in fleets.items()} == {"DP-01": 40, "DP-02": 25, "DP-03": 40}
    assert workflows.ReliefParams().speed_kmh == 100.0  # params.DEFAULT_FLEET_SPEED_KMH
    with pytest.raises(ValueError, match="speed_kmh must be km/h in \\(0, 120\\]"):
        workflows.ReliefParams(speed_kmh=0)
    depots.loc[depots["id"] == "DP-03", "speed_kmh"] = -5.0
    with pytest.raises(ValueError, match="depot 'DP-03': speed_kmh must be km/h"):
        workflows.relief_fleets(depots, workflows.ReliefParams())
    assert ReliefRequest(speed_kmh=30).relief_params().speed_kmh == 30
    args = cli.build_parser().parse_args(["relief", "--speed-kmh", "35"])
    assert args.speed_kmh == 35
