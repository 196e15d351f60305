# ruff: noqa: F811 - pytest fixtures imported from tests.test_api_support
"""The boundary analysis through its adapters: the CLI verb and its 两图一责 files (PDF printed
by Chromium), the demo steps, the API job against the workflow, recording inspections through
the API (keys, bad input, history newest first), and the staff's map in Chromium, recording an
inspection from a marker's popup."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from fastapi.testclient import TestClient

from geo_minzheng import boundaries, cli, demo, workflows
from geo_minzheng.catalog import load_catalog
from tests.conftest import ROOT, browser_errors
from tests.test_api_support import (  # noqa: F401 - fixtures
    EDITOR_KEY,
    VIEWER_KEY,
    LiveServer,
    city_dir,
    city_layers,
    client,
    fresh_store,
    make_settings,
    seed_store,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def layers() -> workflows.FrameLayers:
    return workflows.FrameLayers(load_catalog(ROOT / "layers" / "catalog.yml").read_all())


# ------------------------------------------------------------------------------------------------
# CLI and demo
# ------------------------------------------------------------------------------------------------


def test_cli_writes_tables_maps_and_printed_diagrams(tmp_path: Path, layers) -> None:
    out = tmp_path / "bd"
    code = cli.main(["boundaries", "--out", str(out), "--as-of", "2026-12-03", "--paper", "A3"])
    assert code == 0
    table = pd.read_csv(out / "boundaries_responsibility.csv", dtype=str)
    run = workflows.run_boundaries(layers, None, workflows.BoundaryParams(as_of="2026-12-03"))
    expected = boundaries.responsibility_table(run.result)
    assert table["界线编号"].tolist() == expected["界线编号"].tolist()
    assert table["界桩数"].astype(int).tolist() == expected["界桩数"].tolist()
    assert set(table["甲方"]) <= {"南关区", "宽城区", "朝阳区", "二道区", "绿园区"}
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))["boundaries"]
    assert summary["lines"] == len(expected) and summary["route"]["line_id"] == "220102-220105"
    route = pd.read_csv(out / "boundaries_route.csv")
    assert len(route) == summary["route"]["stops"] == 16
    assert (out / "boundaries_map.html").stat().st_size > 50_000
    assert "cdn.jsdelivr" not in (out / "boundaries_map.html").read_text(encoding="utf-8")
    diagram = (out / "boundaries_diagram_220102-220105.html").read_text(encoding="utf-8")
    for part in ('id="gm-north"', 'id="gm-scale"', 'id="gm-titleblock"', "南关区—二道区"):
        assert part in diagram
    assert "size: A3 landscape" in diagram
    network = (out / "boundaries_network.svg").read_text(encoding="utf-8")
    assert network.count('class="gm-edge"') == len(expected)
    assert network.count('class="gm-node"') == 5
    from maps.boundaries_map import find_chromium

    if find_chromium() is not None:
        pdf = (out / "boundaries_diagram_220102-220105.pdf").read_bytes()
        assert pdf.startswith(b"%PDF")
        box = re.search(rb"/MediaBox\s*\[0 0 ([0-9.]+) ([0-9.]+)\]", pdf)
        assert box is not None  # A3 landscape is 420 x 297 mm = 1190.6 x 841.9 pt, one page
        assert float(box[1]) == pytest.approx(420 / 25.4 * 72, abs=1.0)
        assert float(box[2]) == pytest.approx(297 / 25.4 * 72, abs=1.0)
        assert len(re.findall(rb"/Type\s*/Page[^s]", pdf)) == 1
    layers_gpkg = gpd.list_layers(out / "boundaries.gpkg")["name"].tolist()
    assert {"lines", "outer", "markers", "route"} <= set(layers_gpkg)


def test_cli_refuses_bad_options_and_a_register_off_the_lines(tmp_path: Path, layers, capsys):
    assert cli.main(["boundaries", "--out", str(tmp_path), "--cycle-years", "0"]) == 2
    assert "--cycle-years" in capsys.readouterr().err
    markers = layers.read("markers").copy()
    work = markers.to_crs(32651)
    work.loc[3, "geometry"] = shapely.affinity.translate(work.loc[3, "geometry"], 900.0, 0.0)
    path = tmp_path / "register.geojson"
    work.to_crs(4326).to_file(path)
    out = tmp_path / "refused"
    code = cli.main(["boundaries", "--out", str(out), "--markers", str(path), "--no-pdf"])
    err = capsys.readouterr().err
    assert code == 1 and "boundary_marker 'BM-004'" in err and "geometry" in err
    assert not (out / "boundaries_responsibility.csv").exists()


def test_demo_runs_the_boundary_step_before_the_summary() -> None:
    names = [s.name for s in demo.DEMO_STEPS]
    assert names.index("boundaries") == len(names) - 2 and names[-1] == "summary"
    from maps import demo_steps

    assert "boundaries_map" in [s.name for s in demo_steps.MAP_STEPS]


# ------------------------------------------------------------------------------------------------
# API
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def api(city_dir: Path, seed_store: Path, tmp_path: Path) -> Iterator[TestClient]:
    from api.app import create_app

    settings = make_settings(city_dir, fresh_store(seed_store, tmp_path))
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _result(api: TestClient, response) -> dict:
    assert response.status_code == 202, response.text
    location = response.headers["Location"]
    for _ in range(600):
        status = api.get(location).json()
        if status["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.1)
    assert status["status"] == "succeeded", status
    return api.get(location + "/result").json()


def test_api_job_matches_the_workflow(api: TestClient) -> None:
    body = _result(api, api.post("/analysis/boundaries", json={"as_of": "2026-12-03"}))
    frames = city_layers()  # the layers the store was filled with
    frames["districts"].attrs["kind"] = "admin_unit"
    frames["markers"].attrs["kind"] = "boundary_marker"
    layers = workflows.FrameLayers({k: frames[k] for k in ("districts", "markers")})
    run = workflows.run_boundaries(layers, None, workflows.BoundaryParams(as_of="2026-12-03"))
    lines = {f["properties"]["line_id"]: f["properties"] for f in body["features"]}
    assert set(lines) == set(run.result.lines["line_id"])
    for row in run.result.lines.itertuples():
        assert lines[row.line_id]["length_m"] == pytest.approx(row.length_m, rel=1e-9)
        assert lines[row.line_id]["name_a"] == row.name_a
    assert body["summary"]["markers"] == 12 and len(body["responsibility"]) == len(lines)
    bad = api.post("/analysis/boundaries", json={"sliver_width_m": -1})
    assert bad.status_code == 422
    assert api.post("/analysis/boundaries", json={"units_layer": "roads"}).status_code == 422
    assert api.post("/analysis/boundaries", json={"units_layer": "nope"}).status_code == 404


def test_inspections_need_an_editor_and_bad_input_stores_nothing(api: TestClient) -> None:
    body = {
        "inspected_on": "2026-11-20",
        "team": "南关—朝阳联检组",
        "items": [
            {"marker_id": "JZ-001", "status": "移位", "moved_m": 2.5,
             "photo_base64": base64.b64encode(PNG).decode()},
            {"marker_id": "JZ-002", "status": "intact"},
        ],
    }  # fmt: skip
    assert api.post("/boundaries/inspections", json=body).status_code == 401
    viewer = api.post("/boundaries/inspections", json=body, headers={"X-API-Key": VIEWER_KEY})
    assert viewer.status_code == 403
    editor = {"X-API-Key": EDITOR_KEY}
    bad_items = [
        {"marker_id": "JZ-999", "status": "intact"},
        {"marker_id": "JZ-003", "status": "moved"},
        {"marker_id": "JZ-004", "status": "damaged", "photo_base64": _b64(b"%PDF-1.4")},
        {"marker_id": "JZ-005", "status": "damaged", "photo_base64": "not base64!"},
    ]  # fmt: skip
    for item, field in zip(
        bad_items, ["marker_id", "moved_m", "photo", "photo_base64"], strict=True
    ):
        response = api.post(
            "/boundaries/inspections", json={**body, "items": [item]}, headers=editor
        )
        assert response.status_code == 422, response.text
        assert field in response.json()["detail"] and item["marker_id"] in response.json()["detail"]
    future = api.post(
        "/boundaries/inspections", json={**body, "inspected_on": "2999-01-01"}, headers=editor
    )
    assert future.status_code == 422 and future.json()["problems"][0]["field"] == "inspected_on"
    big = {"marker_id": "JZ-006", "status": "intact",
           "photo_base64": base64.b64encode(PNG + b"0" * 1_000_000).decode()}  # fmt: skip
    assert api.post(
        "/boundaries/inspections", json={**body, "items": [big]}, headers=editor
    ).status_code in (413, 422)
    assert api.get("/boundaries/inspections").json()["count"] == 0  # nothing stored
    stored = api.post("/boundaries/inspections", json=body, headers=editor)
    assert stored.status_code == 201, stored.text
    records = stored.json()["records"]
    assert [r["status"] for r in records] == ["moved", "intact"]
    assert records[0]["actor"] == "zhang.editor" and records[0]["has_photo"]
    photo = api.get(f"/boundaries/inspections/{records[0]['seq']}/photo")
    assert photo.content == PNG and photo.headers["content-type"] == "image/png"
    later = {**body, "inspected_on": "2026-12-01", "kind": "routine",
             "items": [{"marker_id": "JZ-001", "status": "intact", "note": "已复位"}]}  # fmt: skip
    assert api.post("/boundaries/inspections", json=later, headers=editor).status_code == 201
    history = api.get("/boundaries/inspections", params={"marker_id": "JZ-001"}).json()
    assert [r["inspected_on"] for r in history["records"]] == ["2026-12-01", "2026-11-20"]
    assert history["records"][0]["actor"] is None  # anonymous readers do not see who stored it
    keyed = api.get("/boundaries/inspections", headers={"X-API-Key": VIEWER_KEY}).json()
    assert keyed["count"] == 3 and keyed["records"][0]["actor"] == "zhang.editor"
    # the inspections feed the analysis: latest state and the joint inspection of the line
    result = _result(api, api.post("/analysis/boundaries", json={"as_of": "2026-12-03"}))
    line = next(f for f in result["features"] if f["properties"]["line_id"] == "220102-220104")
    assert line["properties"]["last_joint_inspection"] == "2026-11-20"
    assert line["properties"]["last_source"] == "inspection" and not line["properties"]["due"]
    marker = next(f for f in result["markers"]["features"] if f["properties"]["id"] == "JZ-001")
    assert marker["properties"]["latest_status"] == "intact"
    # downloads
    csv = api.get("/boundaries/responsibility.csv")
    assert csv.status_code == 200 and "界线编号" in csv.text and "2026-11-20" in csv.text
    xlsx = api.get("/boundaries/responsibility.xlsx")
    assert xlsx.content[:2] == b"PK"
    assert api.get("/boundaries/lines/220102-220104/diagram").status_code == 200
    assert api.get("/boundaries/lines/220102-220199/diagram").status_code == 404
    assert "gm-edge" in api.get("/boundaries/network").text


# ------------------------------------------------------------------------------------------------
# The staff's map in Chromium
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(
    city_dir: Path, seed_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    from api.app import create_app

    store = fresh_store(seed_store, tmp_path_factory.mktemp("bd-live"))
    settings = make_settings(city_dir, store)
    with LiveServer(create_app(settings)) as server:
        yield server.url


def _wait(driver, condition, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


@pytest.mark.browser
def test_staff_record_an_inspection_in_the_marker_popup(chromium, live: str) -> None:
    import urllib.request

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = chromium
    driver.get(live + "/")
    driver.find_element(By.ID, "map-boundaries").click()
    _wait(
        driver,
        lambda d: d.execute_script("return window.gmMarkers && Object.keys(gmMarkers).length"),
    )
    assert driver.execute_script("return Object.keys(gmMarkers).length") == 12
    labels = [
        e.text
        for e in driver.find_elements(By.CSS_SELECTOR, ".leaflet-control-layers-overlays label")
    ]
    assert any("界线" in t for t in labels) and any("界桩" in t for t in labels)
    assert "gm-boundary-panel" in driver.page_source and "演示情景" in driver.page_source
    # click the marker on the map, as a person would
    offset = driver.execute_script(
        """var l = gmMarkers['JZ-002'], map = l._map;
        map.setView(l.getLatLng(), 16, {animate: false});
        var p = map.latLngToContainerPoint(l.getLatLng()), s = map.getSize();
        return [p.x - s.x / 2, p.y - s.y / 2];"""
    )
    container = driver.find_element(By.CSS_SELECTOR, ".leaflet-container")
    ActionChains(driver).move_to_element_with_offset(
        container, int(offset[0]), int(offset[1])
    ).click().perform()
    form = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "form.gm-insp-form"), 20)[0]
    assert "JZ-002" in driver.find_element(By.CSS_SELECTOR, ".leaflet-popup-content").text
    form.find_element(By.NAME, "team").send_keys("南关—朝阳联检组")
    Select(form.find_element(By.NAME, "status")).select_by_value("moved")
    form.find_element(By.NAME, "moved_m").send_keys("3.5")
    form.find_element(By.NAME, "note").send_keys("界桩被施工移动")
    form.find_element(By.NAME, "key").send_keys(EDITOR_KEY)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait(
        driver,
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-inspections") == "1",
    )
    colour = driver.execute_script("return gmMarkers['JZ-002'].options.fillColor")
    assert colour == "#7b3294"  # moved
    with urllib.request.urlopen(live + "/boundaries/inspections?marker_id=JZ-002") as answer:
        records = json.loads(answer.read())["records"]
    assert len(records) == 1 and records[0]["status"] == "moved"
    assert records[0]["moved_m"] == 3.5 and records[0]["note"] == "界桩被施工移动"
    # the history button lists it, newest first
    form.find_element(By.CSS_SELECTOR, "button.gm-history").click()
    _wait(
        driver,
        lambda d: "南关—朝阳联检组" in d.find_element(By.CSS_SELECTOR, ".gm-history-list").text,
    )
    assert browser_errors(driver) == []
    # a bad submission (moved without the distance) says why and stores nothing
    Select(form.find_element(By.NAME, "status")).select_by_value("moved")
    form.find_element(By.NAME, "moved_m").clear()
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait(driver, lambda d: "moved_m" in d.find_element(By.CSS_SELECTOR, ".gm-result").text)
    with urllib.request.urlopen(live + "/boundaries/inspections") as answer:
        assert json.loads(answer.read())["count"] == 1
    refused = browser_errors(driver)  # the browser logs the refused POST, and only that
    assert len(refused) == 1 and "/boundaries/inspections" in refused[0] and "422" in refused[0]
    # reloaded, the map shows the new state; English on request
    driver.get(live + "/maps/boundaries?lang=en")
    _wait(driver, lambda d: d.execute_script("return !!(window.gmMarkers && gmMarkers['JZ-002'])"))
    assert driver.execute_script("return gmMarkers['JZ-002'].feature.properties.status") == "moved"
    assert "Boundary lines" in driver.page_source
    assert browser_errors(driver) == []
