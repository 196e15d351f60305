# ruff: noqa: F811 - pytest fixtures imported from tests.test_api_support
"""Web maps served by the API, opened in headless Chromium as a person would: home page, each
map, toggling a layer, opening a popup, switching to English, drawing an isochrone; plus the
offline checks (every script from /static, no CDN)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.conftest import browser_errors
from tests.test_api_support import (  # noqa: F401 - fixtures
    LiveServer,
    city_dir,
    city_layers,
    client,
    fresh_store,
    make_settings,
    seed_store,
)

# ------------------------------------------------------------------------------------------------
# Without a browser
# ------------------------------------------------------------------------------------------------


def test_home_page_languages_and_links(client: TestClient) -> None:
    zh = client.get("/")
    assert zh.status_code == 200 and '<html lang="zh-CN">' in zh.text
    assert "民政空间数据服务" in zh.text and 'href="/maps/layers?lang=zh"' in zh.text
    assert 'href="/maps/coverage?lang=zh"' in zh.text
    en = client.get("/?lang=en")
    assert '<html lang="en">' in en.text and "Civil-affairs map service" in en.text
    assert client.get("/?lang=fr").status_code == 400


def test_map_page_loads_everything_from_the_server(client: TestClient) -> None:
    page = client.get("/maps/layers")
    assert page.status_code == 200
    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', page.text)
    assert sources, "no script or stylesheet tags"
    assert all(s.startswith("/static/vendor/") for s in sources), sources
    for src in sources:
        assert client.get(src).status_code == 200, src
    assert "cdn.jsdelivr" not in page.text and "unpkg.com" not in page.text
    assert "tile.openstreetmap.org" in page.text  # OSM offered in the layer control
    assert "长春市（测试）" in page.text  # the catalog's title


# ------------------------------------------------------------------------------------------------
# In Chromium
# ------------------------------------------------------------------------------------------------


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


def _overlay_labels(driver) -> dict[str, object]:
    from selenium.webdriver.common.by import By

    labels = driver.find_elements(By.CSS_SELECTOR, ".leaflet-control-layers-overlays label")
    return {label.text.strip(): label.find_element(By.TAG_NAME, "input") for label in labels}


def _paths(driver) -> int:
    return driver.execute_script(
        "return document.querySelectorAll('path.leaflet-interactive').length"
    )


def _open_popup(driver, layer_title: str) -> str:
    """Click the first point of the layer titled ``layer_title``; return the popup's text."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    point = driver.execute_script(
        """
        var title = arguments[0], found = null;
        var map = Object.values(window).find(v => v instanceof L.Map);
        map.eachLayer(function(l) {
          if (!found && l.feature && l.getLatLng && l.feature.properties.__layer === title) {
            found = l;
          }
        });
        if (!found) return null;
        map.setView(found.getLatLng(), 16, {animate: false});
        var p = map.latLngToContainerPoint(found.getLatLng());
        var size = map.getSize();
        return [p.x - size.x / 2, p.y - size.y / 2];
        """,
        layer_title,
    )
    assert point is not None, f"no point of layer {layer_title!r} on the map"
    container = driver.find_element(By.CSS_SELECTOR, ".leaflet-container")
    ActionChains(driver).move_to_element_with_offset(
        container, int(point[0]), int(point[1])
    ).click().perform()

    def popup_text(d) -> str:
        found = d.find_elements(By.CSS_SELECTOR, ".leaflet-popup-content")
        return found[0].text.strip() if found else ""

    return _wait(driver, popup_text, 20)


@pytest.mark.browser
def test_click_through_every_map(chromium, live: str) -> None:
    from selenium.webdriver.common.by import By

    driver = chromium
    driver.get(live + "/")
    assert driver.title == "民政空间数据服务"
    driver.find_element(By.ID, "map-layers").click()
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".leaflet-container"))
    _wait(driver, lambda d: _paths(d) > 1000)
    overlays = _overlay_labels(driver)
    for title in ("行政区划", "道路", "人口需求点", "养老服务设施", "应急避难场所", "界桩"):
        assert title in overlays, overlays.keys()
    # switching the roads off removes exactly one path per road
    before = _paths(driver)
    overlays["道路"].click()
    _wait(driver, lambda d: _paths(d) < before)
    assert before - _paths(driver) == 1253
    overlays["道路"].click()
    _wait(driver, lambda d: _paths(d) == before)
    text = _open_popup(driver, "界桩")
    assert "界桩编号" in text and "JZ-000" in text and "完好" in text  # zh labels and values
    assert browser_errors(driver) == []

    driver.find_element(By.ID, "lang-switch").click()
    _wait(driver, lambda d: "Boundary markers" in _overlay_labels(d))
    assert "Changchun (test)" in driver.page_source
    text = _open_popup(driver, "Boundary markers")
    assert "Marker code" in text and "Intact" in text
    # the isochrone tool: click the button, then a point on the map
    driver.find_element(By.ID, "gm-iso").click()
    driver.execute_script(
        "var map = Object.values(window).find(v => v instanceof L.Map);"
        "map.closePopup(); map.setView([43.8785, 125.3300], 14, {animate: false});"
    )
    from selenium.webdriver.common.action_chains import ActionChains

    container = driver.find_element(By.CSS_SELECTOR, ".leaflet-container")
    ActionChains(driver).move_to_element_with_offset(container, 0, 120).click().perform()
    _wait(
        driver,
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-isochrones") == "3",
    )
    assert browser_errors(driver) == []

    driver.find_element(By.ID, "gm-home").click()
    _wait(driver, lambda d: d.find_elements(By.ID, "map-coverage"))
    assert driver.title == "Civil-affairs map service"
    driver.find_element(By.ID, "map-coverage").click()
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".leaflet-container"), 120)
    labels = _overlay_labels(driver)
    assert any("walk service area" in label for label in labels), labels.keys()
    # the long English title keeps clear of the navigation and the layer control
    assert _title_over_controls(driver) == []
    kinds = driver.find_elements(By.CSS_SELECTOR, "a.gm-kind")
    assert len(kinds) >= 2
    kinds[1].click()
    _wait(driver, lambda d: "kind=" in d.current_url)
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".leaflet-container"), 120)
    assert browser_errors(driver) == []
    scripts = [s.get_attribute("src") for s in driver.find_elements(By.TAG_NAME, "script")]
    assert all(src.startswith(live + "/static/") for src in scripts if src), scripts


def _covered_controls(driver, selectors: list[str]) -> list[str]:
    """The selectors whose element is hidden under something else at its own centre."""
    return driver.execute_script(
        """
        return arguments[0].filter(function(sel) {
          var el = document.querySelector(sel);
          if (!el) return true;
          var r = el.getBoundingClientRect();
          var hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
          return !(hit && (hit === el || el.contains(hit)));
        });
        """,
        selectors,
    )


def _title_over_controls(driver) -> list[str]:
    """Controls (zoom, layers, navigation, tools) that a title-box item overlaps."""
    return driver.execute_script(
        """
        var items = Array.from(document.querySelectorAll(".gm-titlebox > *"));
        return Array.from(document.querySelectorAll(".leaflet-control")).filter(function(c) {
          var p = c.getBoundingClientRect();
          return items.some(function(el) {
            var r = el.getBoundingClientRect();
            return r.left < p.right && p.left < r.right && r.top < p.bottom && p.top < r.bottom;
          });
        }).map(function(c) { return c.id || c.className; });
        """
    )


def _overlapping_title(driver) -> list[str]:
    """Title-box items (title, demo badge) that overlap the open popup."""
    return driver.execute_script(
        """
        var popup = document.querySelector(".leaflet-popup-content-wrapper");
        if (!popup) return ["no popup"];
        var p = popup.getBoundingClientRect();
        return Array.from(document.querySelectorAll(".gm-titlebox > *")).filter(function(el) {
          var r = el.getBoundingClientRect();
          return r.left < p.right && p.left < r.right && r.top < p.bottom && p.top < r.bottom;
        }).map(function(el) { return el.className; });
        """
    )


@pytest.mark.browser
def test_layers_map_fits_the_data_and_hides_nothing(chromium, live: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    driver = chromium
    driver.get(live + "/maps/layers")
    _wait(driver, lambda d: _paths(d) > 1000)
    # every control can be clicked: the zoom buttons are not under the links or the tool
    controls = [
        ".leaflet-control-zoom-in",
        ".leaflet-control-zoom-out",
        "#gm-home",
        "#lang-switch",
        "#gm-iso",
        ".leaflet-control-layers",
    ]
    assert _covered_controls(driver, controls) == []
    # the map opens on the data (facilities, roads, residents), not on the whole districts
    layers = city_layers()
    data = np.array([g.total_bounds for k, g in layers.items() if k != "districts"])
    lon0, lat0 = data[:, :2].min(axis=0)
    lon1, lat1 = data[:, 2:].max(axis=0)
    view = driver.execute_script(
        "var b = Object.values(window).find(v => v instanceof L.Map).getBounds();"
        "return [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()];"
    )
    assert view[0] <= lon0 and view[1] <= lat0 and view[2] >= lon1 and view[3] >= lat1, view
    # one zoom step more would cut data off: the data spans over half the view on one axis
    assert max((lon1 - lon0) / (view[2] - view[0]), (lat1 - lat0) / (view[3] - view[1])) > 0.5
    # the legend lists each layer once
    legend = [
        row.text for row in driver.find_elements(By.CSS_SELECTOR, ".gm-legend div") if row.text
    ]
    assert len(legend) == len(set(legend)), legend

    # a marker's popup: its two sides by name, the year as a year
    text = _open_popup(driver, "界桩")
    assert "南关区（220102）" in text and "朝阳区（220104）" in text, text
    assert "1995" in text and "1,995" not in text, text

    # a popup opened just under the title box is panned clear of the title and the badge
    point = driver.execute_script(
        """
        var map = Object.values(window).find(v => v instanceof L.Map);
        map.closePopup();
        var found = null;
        map.eachLayer(function(l) {
          if (!found && l.feature && l.getLatLng && l.feature.properties.__layer === "界桩") {
            found = l;
          }
        });
        map.setView(found.getLatLng(), 16, {animate: false});
        map.panBy([0, map.getSize().y / 2 - 100], {animate: false});
        var p = map.latLngToContainerPoint(found.getLatLng()), size = map.getSize();
        return [p.x - size.x / 2, p.y - size.y / 2];
        """
    )
    container = driver.find_element(By.CSS_SELECTOR, ".leaflet-container")
    ActionChains(driver).move_to_element_with_offset(
        container, int(point[0]), int(point[1])
    ).click().perform()
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".leaflet-popup"))
    _wait(driver, lambda d: _overlapping_title(d) == [], 5)

    # with the isochrone tool on, a click draws the isochrone and opens no district popup
    driver.execute_script(
        "var map = Object.values(window).find(v => v instanceof L.Map);"
        "map.closePopup(); map.setView([43.8785, 125.3300], 14, {animate: false});"
    )
    driver.find_element(By.ID, "gm-iso").click()
    container = driver.find_element(By.CSS_SELECTOR, ".leaflet-container")
    ActionChains(driver).move_to_element_with_offset(container, 0, 120).click().perform()
    _wait(
        driver,
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-isochrones") == "3",
    )
    assert driver.find_elements(By.CSS_SELECTOR, ".leaflet-popup") == []
    assert browser_errors(driver) == []
