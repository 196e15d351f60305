"""Shared fixtures: paths to the real data in the repository and a headless Chromium."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = ROOT / "tests" / "data"
DEMO_DATA = ROOT / "layers" / "data"
CHANGCHUN = DEMO_DATA / "changchun"
OSM_DIR = TEST_DATA / "osm"

CHROMIUM = os.environ.get("GEO_MINZHENG_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("GEO_MINZHENG_CHROMEDRIVER", "/usr/bin/chromedriver")
#: In CI the browser and PostGIS tests must run, never skip (CI=true is set by the CI runner).
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def need(condition: bool, reason: str) -> None:
    """Skip the test when ``condition`` is false, except in CI where that is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """A headless Chromium driven by Selenium through Debian's chromium-driver.

    The flags keep Chromium off the network (the test machines have none) and make it run as root.
    """
    need(
        Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(),
        f"headless Chromium not installed ({CHROMIUM}, {CHROMEDRIVER}); "
        "apt-get install chromium chromium-driver",
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    user_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"gm-chromium-{os.getpid()}"
    options.add_argument(f"--user-data-dir={user_dir}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(user_dir, ignore_errors=True)


def browser_errors(driver: object) -> list[str]:
    """Severe console messages (JavaScript errors, failed loads) of the current page."""
    logs = driver.get_log("browser")  # type: ignore[attr-defined]
    return [entry["message"] for entry in logs if entry.get("level") == "SEVERE"]
