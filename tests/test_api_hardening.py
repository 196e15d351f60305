# ruff: noqa: F811 - pytest fixtures imported from tests.test_api_support and tests.test_store
"""The API under load and offline (issue 15): jobs kept in the store and a bounded queue, several
worker processes, security headers, /docs and /redoc without the internet, and one clear line
when the database cannot be used at start-up."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from geo_minzheng import cli
from geo_minzheng._errors import UnknownIdError
from geo_minzheng.store import open_store
from tests.conftest import ROOT, browser_errors
from tests.test_api_support import (  # noqa: F401 - fixtures
    LiveServer,
    city_dir,
    client,
    free_port,
    fresh_store,
    make_settings,
    seed_store,
)
from tests.test_store import new_database, postgis_server, store, store_url  # noqa: F401

SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "referrer-policy")
#: A cheap coverage job on the test city (no siting).
COVERAGE = {"new_sites": 0}


def _wait_job(client: TestClient, job_id: str, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.get(f"/jobs/{job_id}")
        assert status.status_code == 200, status.text
        if status.json()["status"] in ("succeeded", "failed"):
            return status.json()
        time.sleep(0.1)
    pytest.fail(f"job {job_id} did not finish in {timeout_s} s")


# ------------------------------------------------------------------------------------------------
# Jobs live in the store (both backends)
# ------------------------------------------------------------------------------------------------


def test_store_keeps_jobs_bounded_and_shared(store, store_url: str) -> None:
    a, b, c, d = ("a" * 32, "b" * 32, "c" * 32, "d" * 32)
    assert store.add_job(a, "coverage", max_active=2)
    assert store.add_job(b, "siting", max_active=2)
    assert not store.add_job(c, "coverage", max_active=2)  # two queued: the queue is full
    with pytest.raises(UnknownIdError, match="unknown job"):
        store.job(c)
    store.update_job(a, status="running", progress=0.25, message="计算覆盖")
    running = store.job(a)
    assert (running.status, running.progress, running.message) == ("running", 0.25, "计算覆盖")
    assert running.active and running.finished is None and not running.has_result
    store.update_job(a, status="succeeded", progress=1.0, result='{"type":"FeatureCollection"}')
    assert store.add_job(c, "coverage", max_active=2)  # a finished: room for one more
    # another process opening the same store (a second worker, or after a restart) sees it all
    with open_store(store_url) as other:
        done = other.job(a)
        assert (done.status, done.kind, done.has_result) == ("succeeded", "coverage", True)
        assert done.finished is not None and done.finished >= done.created
        assert other.job_result(a) == '{"type":"FeatureCollection"}'
        assert other.job(b).status == "queued" and other.job_result(b) is None
    # a job silent for longer than the limit lost its process; a finished one is left alone
    time.sleep(0.05)
    lost = {"status": 503, "detail": "interrupted"}
    assert store.fail_stale_jobs(stale_after_s=0.01, error=lost) == 2  # b and c
    assert store.job(b).status == "failed" and store.job(b).error == lost
    assert store.job(a).status == "succeeded"
    store.update_job(b, status="succeeded", result="{}")  # too late: it stays failed
    assert store.job(b).status == "failed" and store.job_result(b) is None
    # only the newest finished jobs are kept, with their results
    assert store.add_job(d, "coverage", keep=1)
    kept = [j for j in (a, b, c) if _known(store, j)]
    assert len(kept) == 1 and store.job(d).status == "queued"


def _known(store, job_id: str) -> bool:
    try:
        store.job(job_id)
    except UnknownIdError:
        return False
    return True


def test_job_manager_bounds_its_queue_and_records_results(tmp_path: Path) -> None:
    from api.errors import ApiProblem
    from api.jobs import JobManager

    store = open_store(tmp_path / "jobs.gpkg")
    release = threading.Event()

    def task(progress) -> dict:
        progress(0.5, "waiting")
        release.wait(30)
        return {"answer": 42, "text": "完成"}

    jobs = JobManager(store, workers=1, max_active=2)
    try:
        first, second = jobs.submit("coverage", task), jobs.submit("coverage", task)
        with pytest.raises(ApiProblem) as refused:
            jobs.submit("coverage", task)
        assert refused.value.status == 429
        assert int(refused.value.headers["Retry-After"]) >= 1
        assert "2 analysis job(s) already queued or running" in refused.value.detail
        release.set()
        for job in (first, second):
            deadline = time.monotonic() + 30
            while jobs.get(job.id).active and time.monotonic() < deadline:
                time.sleep(0.05)
            assert jobs.get(job.id).status == "succeeded"
            assert json.loads(jobs.result_json(job.id) or "null") == {"answer": 42, "text": "完成"}
        assert jobs.submit("coverage", task).status == "queued"  # room again
        broken = jobs.submit("coverage", lambda progress: {"share": float("nan")})
        deadline = time.monotonic() + 30
        while jobs.get(broken.id).active and time.monotonic() < deadline:
            time.sleep(0.05)
        error = jobs.get(broken.id).error or {}
        assert error.get("status") == 500 and "writing the result failed" in error["detail"]
    finally:
        release.set()
        jobs.shutdown()
        store.close()


def test_a_second_worker_and_a_restarted_service_answer_for_a_job(
    city_dir: Path, seed_store: Path, tmp_path: Path
) -> None:
    """Two apps on one store are two worker processes; a third one later is a restart."""
    from api.app import create_app

    settings = make_settings(city_dir, fresh_store(seed_store, tmp_path))
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        submitted = one.post("/analysis/coverage", json=COVERAGE)
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        status = _wait_job(two, job_id)  # polled on the other worker only
        assert status["status"] == "succeeded", status["error"]
        result = two.get(f"/jobs/{job_id}/result")
        assert result.status_code == 200
        assert result.headers["content-type"].startswith("application/geo+json")
        assert result.json() == one.get(f"/jobs/{job_id}/result").json()
        demand = result.json()
        assert len(demand["features"]) == 84 and demand["summary"]  # the test city's demand
    with TestClient(create_app(settings)) as restarted:
        again = restarted.get(f"/jobs/{job_id}")
        assert again.status_code == 200 and again.json()["status"] == "succeeded"
        assert restarted.get(f"/jobs/{job_id}/result").json() == demand


def test_full_job_queue_answers_429_with_retry_after(
    city_dir: Path, seed_store: Path, tmp_path: Path
) -> None:
    from api.app import create_app

    settings = make_settings(city_dir, fresh_store(seed_store, tmp_path), job_queue_limit=1)
    with TestClient(create_app(settings)) as client:
        store = client.app.state.gm.store
        other = "f" * 32  # a job another worker process is running
        assert store.add_job(other, "coverage")
        refused = client.post("/analysis/coverage", json=COVERAGE)
        assert refused.status_code == 429, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["Retry-After"]) >= 1
        assert "1 analysis job(s) already queued or running" in refused.json()["detail"]
        store.update_job(other, status="succeeded", result="{}")
        accepted = client.post("/analysis/coverage", json=COVERAGE)
        assert accepted.status_code == 202, accepted.text
        assert _wait_job(client, accepted.json()["id"])["status"] == "succeeded"


def test_a_job_whose_process_stopped_is_reported_interrupted(client: TestClient) -> None:
    jobs = client.app.state.gm.jobs
    lost = "e" * 32  # queued by a worker process that was killed since
    assert client.app.state.gm.store.add_job(lost, "coverage")
    assert client.get(f"/jobs/{lost}").json()["status"] == "queued"
    jobs.stale_after_s = 0.05
    time.sleep(0.1)
    status = client.get(f"/jobs/{lost}").json()
    assert status["status"] == "failed" and status["error"]["status"] == 503
    assert "interrupted" in status["error"]["detail"]
    result = client.get(f"/jobs/{lost}/result")
    assert result.status_code == 503 and "submit the analysis again" in result.json()["detail"]


# ------------------------------------------------------------------------------------------------
# geo-minzheng serve: worker processes, settings through the environment, no banner
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def private_environ(monkeypatch: pytest.MonkeyPatch) -> dict:
    """``serve`` exports its settings into os.environ; give each test its own copy."""
    env = dict(os.environ)
    monkeypatch.setattr(os, "environ", env)
    return env


def test_serve_runs_one_worker_process_per_cpu_without_a_banner(
    monkeypatch: pytest.MonkeyPatch, capsys, private_environ: dict, tmp_path: Path
) -> None:
    import uvicorn

    from api import app as api_app

    calls: list[tuple[object, dict]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    monkeypatch.setattr(api_app, "prepare_store", lambda settings: None)
    args = ["serve", "--port", "8124", "--walk-speed", "1.2", "--profile", "walk"]
    assert cli.main(args) == 0
    ((app, kwargs),) = calls
    assert app == "api.app:create_app" and kwargs["factory"] is True
    assert kwargs["workers"] == api_app.default_workers() == len(os.sched_getaffinity(0))
    assert kwargs["server_header"] is False
    assert private_environ["GEO_MINZHENG_WALK_SPEED_MPS"] == "1.2"
    assert "127.0.0.1:8124" in capsys.readouterr().out
    assert cli.main(["serve", "--workers", "3"]) == 0 and calls[-1][1]["workers"] == 3
    assert cli.main(["serve", "--workers", "0"]) == cli.EXIT_USAGE
    assert "--workers must be at least 1" in capsys.readouterr().err


def test_settings_reach_the_worker_processes_through_the_environment(
    city_dir: Path, tmp_path: Path, private_environ: dict
) -> None:
    from api.app import settings_environ
    from geo_minzheng.settings import Settings

    given = make_settings(
        city_dir, tmp_path / "s.gpkg", lang="en", walk_speed_mps=1.1, job_queue_limit=3,
        cors_origins=["http://intranet.example"], require_key_for_read=True,
    )  # fmt: skip
    env = settings_environ(given)
    assert env["GEO_MINZHENG_JOB_QUEUE_LIMIT"] == "3"
    assert env["GEO_MINZHENG_REQUIRE_KEY_FOR_READ"] == "true"
    for name in [k for k in private_environ if k.startswith("GEO_MINZHENG_")]:
        del private_environ[name]
    private_environ.update(env)
    assert Settings(_env_file=None) == given  # what a worker process builds its app from


def test_settings_of_the_tile_servers_shape_the_csp(city_dir: Path, tmp_path: Path) -> None:
    from api.app import content_security_policy

    plain = content_security_policy(make_settings(city_dir, tmp_path / "s.gpkg"))
    img = re.search(r"img-src ([^;]+)", plain).group(1).split()
    assert img == ["'self'", "data:", "blob:", "https://tile.openstreetmap.org"]
    assert "frame-ancestors 'self'" in plain and "object-src 'none'" in plain
    assert re.search(r"script-src ([^;]+)", plain).group(1) == "'self' 'unsafe-inline'"
    more = content_security_policy(
        make_settings(
            city_dir,
            tmp_path / "s.gpkg",
            tianditu_token="abc",
            intranet_tile_url="http://tiles.gov.example:8080/{z}/{x}/{y}.png",
        )  # fmt: skip
    )
    img = re.search(r"img-src ([^;]+)", more).group(1).split()
    assert "https://*.tianditu.gov.cn" in img and "http://tiles.gov.example:8080" in img


@pytest.mark.slow
def test_serve_runs_worker_processes_that_share_jobs(city_dir: Path, seed_store: Path,
                                                     tmp_path: Path) -> None:  # fmt: skip
    """The real command: two worker processes, every poll answered, no server banner."""
    import httpx

    port = free_port()
    env = dict(
        os.environ,
        GEO_MINZHENG_STORE_URL=f"gpkg://{fresh_store(seed_store, tmp_path)}",
        GEO_MINZHENG_CATALOG=str(city_dir / "catalog.yml"),
        GEO_MINZHENG_BASEMAP="none",
        GEO_MINZHENG_BUILD_NETWORK_ON_START="false",
    )
    cmd = [sys.executable, "-m", "geo_minzheng.cli", "serve", "--port", str(port),
           "--workers", "2"]  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=out, stderr=out,
                                start_new_session=True)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                first = httpx.get(base + "/api", timeout=5)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
        assert "server" not in first.headers
        assert all(name in first.headers for name in SECURITY_HEADERS)
        children = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "spawn_main"],
                                  capture_output=True, text=True).stdout.split()  # fmt: skip
        assert len(children) == 2, log.read_text()
        submitted = httpx.post(base + "/analysis/coverage", json=COVERAGE, timeout=30)
        assert submitted.status_code == 202, submitted.text
        job = submitted.json()["id"]
        answers = []
        for _ in range(200):  # a new connection each time: the kernel spreads them
            answer = httpx.get(f"{base}/jobs/{job}", headers={"Connection": "close"}, timeout=30)
            answers.append(answer.status_code)
            if answer.status_code != 200 or answer.json()["status"] not in ("queued", "running"):
                break
            time.sleep(0.2)
        assert set(answers) == {200}, answers
        assert answer.json()["status"] == "succeeded", answer.text
        for _ in range(10):
            result = httpx.get(f"{base}/jobs/{job}/result", headers={"Connection": "close"})
            assert result.status_code == 200 and result.json()["type"] == "FeatureCollection"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "Traceback" not in log.read_text()


# ------------------------------------------------------------------------------------------------
# Start-up without a usable database: one line, no traceback
# ------------------------------------------------------------------------------------------------


def _serve_must_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    def refuse(*args: object, **kwargs: object) -> None:
        pytest.fail("uvicorn was started although the store is unusable")

    monkeypatch.setattr(uvicorn, "run", refuse)


def test_unreachable_database_is_one_line_at_start(
    monkeypatch: pytest.MonkeyPatch, capsys, private_environ: dict, city_dir: Path
) -> None:
    pytest.importorskip("psycopg")
    port = free_port()  # nothing listens there
    private_environ["GEO_MINZHENG_STORE_URL"] = f"postgresql://gm@127.0.0.1:{port}/gm_city"
    _serve_must_not_start(monkeypatch)
    assert cli.main(["serve", "--catalog", str(city_dir / "catalog.yml")]) == cli.EXIT_INVALID
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"cannot connect to the PostgreSQL database 'gm_city' at 127.0.0.1:{port}" in err
    assert "Connection refused" in err and "Traceback" not in err


@pytest.mark.postgis
def test_postgresql_without_postgis_is_one_line_at_start(
    monkeypatch: pytest.MonkeyPatch, capsys, private_environ: dict, city_dir: Path,
    postgis_server: str,
) -> None:  # fmt: skip
    """A database the service's (non-superuser) role cannot add PostGIS to."""
    import psycopg

    name = f"gm_plain_{os.getpid()}"
    with psycopg.connect(f"{postgis_server}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN")  # names built here, no input
        conn.execute(f"CREATE DATABASE {name} OWNER {name} TEMPLATE template0")
    url = postgis_server.replace("postgres@", f"{name}@") + f"/{name}"
    private_environ["GEO_MINZHENG_STORE_URL"] = url
    _serve_must_not_start(monkeypatch)
    assert cli.main(["serve", "--catalog", str(city_dir / "catalog.yml")]) == cli.EXIT_INVALID
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"PostGIS is installed on the server but not enabled in the database '{name}'" in err
    assert "CREATE EXTENSION postgis" in err and "Traceback" not in err


def test_uvicorn_reports_an_unusable_store_in_one_line(city_dir: Path, tmp_path: Path) -> None:
    """Started by uvicorn itself (the app factory), a failed start-up is one line too."""
    pytest.importorskip("psycopg")
    env = dict(
        os.environ,
        GEO_MINZHENG_STORE_URL=f"postgresql://gm@127.0.0.1:{free_port()}/gm_city",
        GEO_MINZHENG_CATALOG=str(city_dir / "catalog.yml"),
    )
    cmd = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--port",
           str(free_port())]  # fmt: skip
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "geo-minzheng cannot start: cannot connect to the PostgreSQL database" in output
    assert "Traceback" not in output, output


# ------------------------------------------------------------------------------------------------
# Security headers and offline API documentation
# ------------------------------------------------------------------------------------------------


def test_every_response_carries_the_security_headers(client: TestClient) -> None:
    answers = {
        "home": client.get("/"),
        "landing": client.get("/api"),
        "items": client.get("/collections/markers/items?limit=2"),
        "openapi": client.get("/openapi.json"),
        "docs": client.get("/docs"),
        "redoc": client.get("/redoc"),
        "static": client.get("/static/vendor/leaflet/leaflet.js"),
        "not found": client.get("/no/such/page"),
        "no key": client.patch("/collections/markers/items/BM-001", json={"properties": {}}),
        "bad query": client.get("/collections/markers/items?limit=0"),
    }
    for name, answer in answers.items():
        missing = [h for h in SECURITY_HEADERS if h not in answer.headers]
        assert missing == [], (name, answer.status_code, missing)
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "strict-origin-when-cross-origin"
        assert "frame-ancestors 'self'" in answer.headers["content-security-policy"], name
        assert "server" not in answer.headers
    assert answers["not found"].status_code == 404 and answers["no key"].status_code == 401


def test_docs_and_redoc_load_only_assets_of_this_server(client: TestClient) -> None:
    for page, expected in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = client.get(page)
        assert html.status_code == 200
        sources = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assert any(s.endswith(expected) for s in sources), sources
        assert all(s.startswith("/static/vendor/") for s in sources), sources
        assert "cdn.jsdelivr" not in html.text and "googleapis" not in html.text
        for source in sources:
            asset = client.get(source)
            assert asset.status_code == 200 and len(asset.content) > 500, source
            if source.endswith(".js"):
                assert asset.headers["content-type"].startswith("text/javascript")
    assert '"validatorUrl": null' in client.get("/docs").text  # no public validator badge
    assert client.get("/docs/oauth2-redirect").status_code == 200


@pytest.fixture(scope="module")
def live(
    city_dir: Path, seed_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    from api.app import create_app

    store = fresh_store(seed_store, tmp_path_factory.mktemp("live"))
    settings = make_settings(city_dir, store, build_network_on_start=True)
    with LiveServer(create_app(settings)) as server:
        yield server.url


def _wait(driver, condition, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _csp_errors(driver) -> list[str]:
    return [m for m in browser_errors(driver) if "Content Security Policy" in m]


@pytest.mark.browser
def test_docs_and_redoc_work_offline_in_chromium(chromium, live: str) -> None:
    """The test machine has no internet: the pages render only from the vendored assets."""
    from selenium.webdriver.common.by import By

    driver = chromium
    driver.get(live + "/docs")
    title = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .info .title"))
    assert "geo-minzheng" in title[0].text
    _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) > 10)
    assert browser_errors(driver) == []
    driver.get(live + "/redoc")
    heading = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".api-info h1"))
    assert "geo-minzheng" in heading[0].text
    _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-section-id]")) > 10)
    # ReDoc's sidebar asks its CDN for a logo (it hides the image when that fails): the CSP
    # blocks the request, so nothing leaves the intranet; that is the only message allowed
    errors = browser_errors(driver)
    assert all("cdn.redoc.ly/redoc/logo-mini.svg" in e and "blocked" in e for e in errors), errors


@pytest.mark.browser
def test_map_pages_work_under_the_content_security_policy(chromium, live: str) -> None:
    """Inline scripts and styles, vendored Leaflet and the isochrone fetch are all allowed."""
    driver = chromium
    for page in ("/", "/maps/layers", "/maps/coverage", "/maps/shelters", "/maps/layers?lang=en"):
        driver.get(live + page)
        if page != "/":
            _wait(driver, lambda d: _drawn(d) > 10)
        assert _csp_errors(driver) == [], page
    answer = driver.execute_async_script(
        """
        var done = arguments[arguments.length - 1];
        fetch('/analysis/isochrone', {method: 'POST', headers: {'Content-Type': 'application/json'},
              body: JSON.stringify({lon: arguments[0], lat: arguments[1]})})
          .then(r => done(r.status), e => done(String(e)));
        """,
        *_a_point_on_a_road(live),
    )
    assert answer == 200
    assert _csp_errors(driver) == []


def _drawn(driver) -> int:
    return driver.execute_script(
        "return document.querySelectorAll('path.leaflet-interactive').length"
    )


def _a_point_on_a_road(live: str) -> tuple[float, float]:
    import httpx

    road = httpx.get(live + "/collections/roads/items?limit=1").json()["features"][0]
    lon, lat = road["geometry"]["coordinates"][0][:2]
    return lon, lat
