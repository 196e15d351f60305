# ruff: noqa: F811 - pytest fixtures imported from tests.test_api_support
"""The shelter analysis through its workflow: demo flood on the real Changchun data, the CLI
verb, the API job (and a status set through the API), and the map page in Chromium."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from fastapi.testclient import TestClient

from geo_minzheng import cli, scenario, workflows
from geo_minzheng.catalog import load_catalog
from tests.conftest import ROOT, browser_errors
from tests.test_api_support import (  # noqa: F401 - fixtures
    ADMIN_KEY,
    LiveServer,
    city_dir,
    city_layers,
    fresh_store,
    make_settings,
    seed_store,
)


@pytest.fixture(scope="module")
def layers() -> workflows.FrameLayers:
    return workflows.FrameLayers(load_catalog(ROOT / "layers" / "catalog.yml").read_all())


@pytest.fixture(scope="module")
def flood_run(layers) -> workflows.ShelterRun:
    engine = workflows.engine_for(workflows.road_network(layers))
    hazards, closed = scenario.demo_flood(layers.read("roads"))
    return workflows.run_shelters(layers, engine, gdf_hazards=hazards, gdf_closed_roads=closed)


def test_demo_flood_is_built_from_the_river_bank_streets(layers) -> None:
    hazards, closed = scenario.demo_flood(layers.read("roads"))
    assert list(hazards.geom_type) in (["Polygon"], ["MultiPolygon"])
    assert (hazards["source"] == "演示情景 / demo scenario").all()
    assert len(closed) >= 1 and set(closed["name"]) == {scenario.FLOOD_CLOSED_BRIDGE}
    area_km2 = float(hazards.to_crs(hazards.estimate_utm_crs()).area.sum()) / 1e6
    assert 1.0 < area_km2 < 30.0  # a river corridor, not the city


def test_flood_run_reports_what_changed(flood_run) -> None:
    run = flood_run
    before, after, change = run.baseline, run.result, run.comparison
    assert before is not None and change is not None
    # the flood takes places away: fewer sheltered, and the difference is who lost a place
    lost = int(change.summary["lost_persons"])
    assert lost > 0
    assert after.summary["sheltered_persons"] <= before.summary["sheltered_persons"]
    assert after.summary["unsheltered_persons"] - before.summary["unsheltered_persons"] <= lost
    # shelters inside the flooded area take nobody, and are reported as disabled by the hazard
    hazard = shapely.union_all(run.gdf_hazards.to_crs(4326).geometry.to_numpy())
    shelters = after.shelters
    inside = shelters.geometry.representative_point().within(hazard).to_numpy()
    assert not (inside & shelters["in_use"].to_numpy(dtype=bool)).any()
    hit = shelters[(shelters["excluded_reason"] == "hazard").to_numpy()]
    assert (hit["assigned_persons"] == 0).all()
    assert int(change.summary["shelters_disabled"]) >= len(hit)
    # capacities and the per-shelter loads agree with the assignment table
    by_shelter = after.assignment.groupby("shelter_id")["persons"].sum()
    loads = shelters["assigned_persons"]
    np.testing.assert_array_equal(loads.reindex(by_shelter.index).to_numpy(), by_shelter.to_numpy())
    assert (loads <= shelters["capacity_persons"]).all()
    # responsibility areas never overlap
    areas = run.areas.to_crs(run.areas.estimate_utm_crs())
    total = float(areas.area.sum())
    union = float(shapely.union_all(areas.geometry.to_numpy()).area)
    assert union == pytest.approx(total, rel=1e-6)


def test_cli_shelters_writes_the_tables_users_file(tmp_path, capsys) -> None:
    out = tmp_path / "sh"
    assert cli.main(["shelters", "--out", str(out), "--demo-flood"]) == cli.EXIT_OK
    printed = capsys.readouterr().out
    assert "shelters_xlsx" in printed and "shelters_map" in printed
    table = pd.read_csv(out / "shelters_table.csv", encoding="utf-8-sig")
    assignment = pd.read_csv(out / "shelters_assignment.csv", encoding="utf-8-sig")
    assert table["assigned_persons"].sum() == assignment["persons"].sum()
    sheets = pd.read_excel(out / "shelters.xlsx", sheet_name=None)
    assert {"table", "assignment", "checks", "changes"} <= set(sheets)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    sh = summary["shelters"]
    assert sh["after_flood"]["sheltered_persons"] == int(table["assigned_persons"].sum())
    assert sh["flood_changes"]["lost_persons"] >= 0
    assert cli.main(["shelters", "--out", str(out), "--adult-speed", "9"]) == cli.EXIT_USAGE


@pytest.fixture
def client(city_dir: Path, seed_store: Path, tmp_path: Path) -> Iterator[TestClient]:
    from api.app import create_app

    settings = make_settings(city_dir, fresh_store(seed_store, tmp_path))
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _result(client: TestClient, response) -> dict:
    assert response.status_code == 202, response.text
    for _ in range(600):
        status = client.get(response.headers["Location"]).json()
        if status["status"] in ("succeeded", "failed"):
            break
    assert status["status"] == "succeeded", status
    return client.get(status["links"][-1]["href"]).json()


def test_api_job_honours_a_shelter_closed_through_the_api(client: TestClient) -> None:
    body = _result(client, client.post("/analysis/shelters", json={}))
    used = [f for f in body["features"] if f["properties"]["assigned_persons"] > 0]
    assert used, "no shelter took anybody"
    busiest = max(used, key=lambda f: f["properties"]["assigned_persons"])
    shelter_id = busiest["properties"]["id"]
    url = f"/collections/shelters/items/{shelter_id}"
    etag = client.get(url).headers["ETag"]
    patched = client.patch(
        url,
        json={"properties": {"status": "closed"}},
        headers={"If-Match": etag, "X-API-Key": ADMIN_KEY},
    )
    assert patched.status_code == 200, patched.text
    again = _result(client, client.post("/analysis/shelters", json={}))
    closed = next(f for f in again["features"] if f["properties"]["id"] == shelter_id)
    assert closed["properties"]["assigned_persons"] == 0
    assert closed["properties"]["excluded_reason"] == "closed"
    assert again["summary"]["sheltered_persons"] <= body["summary"]["sheltered_persons"]
    bad = client.post("/analysis/shelters", json={"adult_walk_speed_mps": 0})
    assert bad.status_code == 422
    point = {"type": "Point", "coordinates": [125.3, 43.9]}
    feature = {"type": "Feature", "properties": {}, "geometry": point}
    not_polygon = {"type": "FeatureCollection", "features": [feature]}
    failed = client.post("/analysis/shelters", json={"hazards": not_polygon})
    if failed.status_code == 202:
        status = {}
        for _ in range(600):
            status = client.get(failed.headers["Location"]).json()
            if status["status"] in ("succeeded", "failed"):
                break
        assert status["status"] == "failed" and status["error"]["status"] == 422
    else:
        assert failed.status_code == 422


@pytest.fixture(scope="module")
def live(
    city_dir: Path, seed_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    from api.app import create_app

    store = fresh_store(seed_store, tmp_path_factory.mktemp("live"))
    settings = make_settings(city_dir, store, build_network_on_start=True)
    with LiveServer(create_app(settings)) as server:
        yield server.url


@pytest.mark.browser
def test_shelter_map_page_in_chromium(chromium, live: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium
    driver.get(live + "/maps/shelters?flood=1")
    WebDriverWait(driver, 120).until(
        lambda d: d.find_elements("css selector", ".leaflet-control-layers-overlays label")
    )
    labels = " ".join(
        e.get_attribute("textContent")
        for e in driver.find_elements("css selector", ".leaflet-control-layers-overlays label")
    )
    for label in ("避难场所责任区", "避难场所：负荷", "灾害影响区（演示情景）", "封闭道路"):
        assert label in labels, (label, labels)
    panel = driver.find_element("id", "gm-shelter-panel").get_attribute("textContent")
    assert "已安置" in panel and "灾害情景" in panel
    body = driver.find_element("css selector", "body").get_attribute("textContent")
    assert "演示情景" in body
    errors = [e for e in browser_errors(driver) if "tile.openstreetmap.org" not in e]
    assert errors == []
