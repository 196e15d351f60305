"""Shared fixtures of the API tests (no tests here): a small city built from the real Changchun
roads and districts plus a few facility records, written as a GeoPackage with a layer catalog,
and a configured app on a fresh store."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient

from geo_minzheng import io as gm_io
from geo_minzheng.kinds import DEMO_SCENARIO_LABEL
from geo_minzheng.settings import ApiKey, Settings, hash_api_key
from tests.test_store import changchun_districts, changchun_roads, demo_markers

# Keys in the form `python -m geo_minzheng.settings new-key` makes (gm_<key id>_<secret>), fixed
# so the fixture is reproducible; real keys get random IDs, secrets and salts.
EDITOR_KEY = "gm_0000ed17_editor-secret-0123456789abcdefghijklmnopqrstu"
VIEWER_KEY = "gm_0000f1e3_viewer-secret-0123456789abcdefghijklmnopqrstu"
ADMIN_KEY = "gm_0000ad31_admin-secret-0123456789abcdefghijklmnopqrstuv"
_SALT = bytes(range(16))
API_KEYS = [
    ApiKey(name="zhang.editor", role="editor", hash=hash_api_key(EDITOR_KEY, salt=_SALT)),
    ApiKey(name="li.viewer", role="viewer", hash=hash_api_key(VIEWER_KEY, salt=_SALT)),
    ApiKey(name="wang.admin", role="admin", hash=hash_api_key(ADMIN_KEY, salt=_SALT)),
]

CATALOG = """\
title_zh: 长春市（测试）
title_en: Changchun (test)
layers:
  districts: {kind: admin_unit, title_zh: 行政区划, title_en: Districts, source: city.gpkg}
  roads: {kind: road, title_zh: 道路, title_en: Roads, source: city.gpkg}
  demand:
    {kind: demand, title_zh: 人口需求点, title_en: Demand, source: city.gpkg, scenario: true}
  eldercare:
    kind: eldercare_center
    title_zh: 养老服务设施
    title_en: Eldercare facilities
    source: city.gpkg
    scenario: true
  service_rooms:
    kind: community_service_room
    title_zh: 社区综合服务设施
    title_en: Community service rooms
    source: city.gpkg
    scenario: true
  shelters:
    kind: shelter
    title_zh: 应急避难场所
    title_en: Emergency shelters
    source: city.gpkg
    scenario: true
    editable: true
    editable_fields: [status]
  markers:
    kind: boundary_marker
    title_zh: 界桩
    title_en: Boundary markers
    source: city.gpkg
    scenario: true
    editable: true
    editable_fields: [status, last_inspected]
    allow_create: true
    allow_delete: true
"""


def _road_points(roads: gpd.GeoDataFrame, every: int, start: int) -> gpd.GeoSeries:
    """Midpoints of every ``every``-th road (they lie on the network, so they always snap)."""
    picked = roads.iloc[start::every]
    return gpd.GeoSeries(
        shapely.line_interpolate_point(np.asarray(picked.geometry.values), 0.5, normalized=True),
        crs="EPSG:4326",
    )


def city_layers() -> dict[str, gpd.GeoDataFrame]:
    """The test city's layers, canonical fields, WGS84."""
    roads, districts = changchun_roads(), changchun_districts()
    demand_pts = _road_points(roads, 15, 0)
    n = len(demand_pts)
    population = 200 + (np.arange(n) * 37) % 400
    demand = gpd.GeoDataFrame(
        {
            "id": [f"D{i:03d}" for i in range(n)],
            "population": population,
            "aged_60_plus": population // 4,
            "source": DEMO_SCENARIO_LABEL,
        },
        geometry=demand_pts.values,
        crs="EPSG:4326",
    )
    joined = gpd.sjoin(demand, districts[["adcode", "geometry"]], how="left", predicate="within")
    demand["admin_code"] = joined.groupby(level=0)["adcode"].first().to_numpy()
    care_pts = _road_points(roads, 180, 7)
    categories = ["home_care_center", "day_care_center"]
    eldercare = gpd.GeoDataFrame(
        {
            "id": [f"E{i:02d}" for i in range(len(care_pts))],
            "name": [f"养老服务中心{i}" for i in range(len(care_pts))],
            "category": [categories[i % 2] for i in range(len(care_pts))],
            "status": "open",
            "source": DEMO_SCENARIO_LABEL,
        },
        geometry=care_pts.values,
        crs="EPSG:4326",
    )
    room_pts = _road_points(roads, 300, 50)
    rooms = gpd.GeoDataFrame(
        {
            "id": [f"R{i:02d}" for i in range(len(room_pts))],
            "name": [f"社区服务站{i}" for i in range(len(room_pts))],
            "floor_area_m2": 400.0,
            "status": "open",
            "source": DEMO_SCENARIO_LABEL,
        },
        geometry=room_pts.values,
        crs="EPSG:4326",
    )
    shelter_pts = _road_points(roads, 400, 100)
    shelters = gpd.GeoDataFrame(
        {
            "id": [f"S{i:02d}" for i in range(len(shelter_pts))],
            "name": [f"避难场所{i}" for i in range(len(shelter_pts))],
            "shelter_class": "emergency",
            "effective_area_m2": 5000.0,
            "capacity_persons": 2500,
            "status": "open",
            "source": DEMO_SCENARIO_LABEL,
        },
        geometry=shelter_pts.values,
        crs="EPSG:4326",
    )
    return {
        "districts": districts,
        "roads": roads,
        "demand": demand,
        "eldercare": eldercare,
        "service_rooms": rooms,
        "shelters": shelters,
        "markers": demo_markers(),
    }


@pytest.fixture(scope="session")
def city_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with city.gpkg and catalog.yml."""
    folder = tmp_path_factory.mktemp("city")
    gm_io.write_gpkg(city_layers(), folder / "city.gpkg")
    (folder / "catalog.yml").write_text(CATALOG, encoding="utf-8")
    return folder


def make_settings(city_dir: Path, store_path: Path, **overrides: object) -> Settings:
    """Settings for a test app: the test city, a fresh store, the three keys, no base map."""
    values: dict[str, object] = {
        "store_url": f"gpkg://{store_path}",
        "catalog": city_dir / "catalog.yml",
        "basemap": "none",
        "api_keys": API_KEYS,
        "build_network_on_start": False,
        "max_items_limit": 500,
        # province runs (a job any test may start) go beside the store, not into the checkout
        "province_results": str(store_path.parent / "province-runs"),
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def seed_store(city_dir: Path) -> Path:
    """A store filled from the catalog by the app's first start (copied by each test)."""
    from api.app import create_app

    path = city_dir / "seed-store.gpkg"
    with TestClient(create_app(make_settings(city_dir, path))):
        pass
    return path


def fresh_store(seed_store: Path, tmp_path: Path) -> Path:
    """A private copy of the seeded store (the app checkpoints the WAL on shutdown)."""
    path = tmp_path / "store.gpkg"
    shutil.copyfile(seed_store, path)
    return path


@pytest.fixture
def client(city_dir: Path, seed_store: Path, tmp_path: Path) -> Iterator[TestClient]:
    """A TestClient on an app with a fresh copy of the filled store."""
    from api.app import create_app

    app = create_app(make_settings(city_dir, fresh_store(seed_store, tmp_path)))
    with TestClient(app) as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """uvicorn running an app in a thread on a free loopback port."""

    def __init__(self, app: object) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                msg = "uvicorn did not start"
                raise RuntimeError(msg)
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
