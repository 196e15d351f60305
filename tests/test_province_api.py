# ruff: noqa: F811 - pytest fixtures imported from tests.test_api_support
"""The province job and its maps (api/routes/province.py, maps/province_map.py).

A small province of two synthetic grid cities (demo scenario) runs as a job on a local Dask
cluster of 2 worker processes; its county shares must equal the single-process city runs, the
map page must list every county with a link to the county's map, the county map must show the
county's demand points, and the county table must download as CSV and XLSX. In Chromium, the
page before any run starts the job with its button and shows the map when it is done.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from geo_minzheng import province as pv
from tests.conftest import browser_errors
from tests.test_api_support import (  # noqa: F401 - fixtures
    LiveServer,
    city_dir,
    fresh_store,
    make_settings,
    seed_store,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_province(tmp_path_factory: pytest.TempPathFactory) -> pv.ProvinceFile:
    path = tmp_path_factory.mktemp("prov") / "province.gpkg"
    return pv.build_test_province(
        path, real=False, synthetic_cities=2, grid_n=16, demand_per_city=400
    )


@pytest.fixture
def province_client(
    city_dir: Path, seed_store: Path, tmp_path: Path, small_province: pv.ProvinceFile
) -> Iterator[TestClient]:
    from api.app import create_app

    settings = make_settings(
        city_dir,
        fresh_store(seed_store, tmp_path),
        province_file=small_province.path,
        province_results=str(tmp_path / "runs"),
        dask_workers=2,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def _finish(client: TestClient, job: dict, timeout_s: float = 400) -> tuple[dict, list[float]]:
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.get(f"/jobs/{job['id']}").json()
        seen.append(status["progress"])
        if status["status"] in ("succeeded", "failed"):
            return status, seen
        time.sleep(0.5)
    msg = "province job did not finish"
    raise AssertionError(msg)


def test_province_job_map_drill_down_and_downloads(
    province_client: TestClient, small_province: pv.ProvinceFile
) -> None:
    client = province_client
    start = client.get("/maps/province")
    assert start.status_code == 200 and 'id="gm-start"' in start.text  # no run yet
    assert client.post("/analysis/province", json={"breaks_min": [0]}).status_code == 422
    assert client.post("/analysis/province", json={"run_id": "Bad-Id"}).status_code == 422
    response = client.post("/analysis/province", json={"run_id": "api1"})
    assert response.status_code == 202
    busy = client.post("/analysis/province", json={})  # one province run at a time
    assert busy.status_code == 409 and response.json()["id"] in busy.json()["detail"]
    status, seen = _finish(client, response.json())
    assert status["status"] == "succeeded", status
    assert seen == sorted(seen)
    result = client.get(f"/jobs/{status['id']}/result").json()
    assert result["run_id"] == "api1" and result["report"]["complete"]
    assert len(result["features"]) == 8  # 2 cities x 4 districts
    # each county's share equals the single-process run of its city
    feature = result["features"][0]["properties"]
    single = pv.single_process(small_province, feature["city"]).result.table
    row = single[(single["unit"] == feature["adcode"]) & (single["break_min"] == 15.0)]
    row = row[row["kind"] == "home_care_center"]
    assert feature["share_aged_60_plus_home_care_center"] == float(
        row["share_aged_60_plus"].iloc[0]
    )
    assert feature["population"] == int(row["population"].iloc[0])

    page = client.get("/maps/province")
    assert page.status_code == 200
    assert page.text.count('<tr data-unit="') == 8
    links = re.findall(r'class="gm-drill" href="([^"]+)"', page.text)
    assert len(links) >= 8
    county = client.get(links[0].replace("&amp;", "&"))
    assert county.status_code == 200
    assert "<title>演示市" in county.text and "居家养老服务中心</title>" in county.text
    assert county.text.count('"Point"') > 50  # the county's demand points and facilities
    assert 'id="gm-back"' in county.text
    assert client.get("/maps/province?kind=nope").status_code == 404
    assert client.get("/maps/province/nope/990100/990101").status_code == 404
    assert client.get("/maps/province/api1/990100/000000").status_code == 404
    en = client.get("/maps/province?lang=en&break_min=10")
    assert en.status_code == 200 and "Coverage per county" in en.text

    csv = client.get("/province/runs/api1/units.csv?kind=day_care_center")
    assert csv.status_code == 200 and csv.text.startswith("\ufeff")
    table = pd.read_csv(io.StringIO(csv.text.lstrip("\ufeff")))
    assert len(table) == 8 and "15分钟老年人覆盖率" in table.columns
    xlsx = client.get("/province/runs/api1/units.xlsx?lang=en")
    assert xlsx.status_code == 200
    assert len(pd.read_excel(io.BytesIO(xlsx.content))) == 8


@pytest.fixture(scope="module")
def live_province(
    city_dir: Path,
    seed_store: Path,
    small_province: pv.ProvinceFile,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    from api.app import create_app

    folder = tmp_path_factory.mktemp("live-province")
    settings = make_settings(
        city_dir,
        fresh_store(seed_store, folder),
        province_file=small_province.path,
        province_results=str(folder / "runs"),
        dask_workers=2,
    )
    with LiveServer(create_app(settings)) as server:
        yield server.url


@pytest.mark.browser
def test_start_the_province_run_and_drill_down_in_chromium(chromium, live_province: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium
    driver.get(live_province + "/")
    driver.find_element(By.ID, "map-province").click()
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "gm-start"))
    driver.find_element(By.ID, "gm-start").click()
    # the page shows the job's progress, then reloads into the map
    WebDriverWait(driver, 400).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".gm-drill"))
    rows = driver.find_elements(By.CSS_SELECTOR, "#gm-province-panel tr[data-unit]")
    assert len(rows) == 8
    paths = driver.execute_script(
        "return document.querySelectorAll('path.leaflet-interactive').length"
    )
    assert paths == 8
    assert not browser_errors(driver)
    driver.find_elements(By.CSS_SELECTOR, "#gm-province-panel .gm-drill")[0].click()
    WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.ID, "gm-back"))
    points = driver.execute_script(
        "return document.querySelectorAll('path.leaflet-interactive').length"
    )
    assert points > 50  # the county's demand points (and its boundary)
    assert not browser_errors(driver)
