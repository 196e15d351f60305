"""The persistent store on both backends: round trips of real Changchun layers, bbox/filter queries
checked against geopandas, versions and conflicts between processes, audit history, and crash
consistency (a writer killed with SIGKILL in the middle of a transaction)."""

from __future__ import annotations

import contextlib
import glob
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from geo_minzheng import crs as gm_crs
from geo_minzheng._errors import (
    ConflictError,
    LayerValidationError,
    StoreError,
    UnknownIdError,
)
from geo_minzheng.kinds import DEMO_SCENARIO_LABEL
from geo_minzheng.store import VERSION_COLUMN, GeoPackageStore, Store, gpkg_blob, open_store
from tests.conftest import CHANGCHUN, DEMO_DATA, need

# ------------------------------------------------------------------------------------------------
# Real Changchun layers, built independently of io.py
# ------------------------------------------------------------------------------------------------


def changchun_roads() -> gpd.GeoDataFrame:
    """The real OSM roads of central Changchun with the road kind's canonical fields."""
    raw = gpd.read_file(CHANGCHUN / "roads_osm.geojson")
    return gpd.GeoDataFrame(
        {
            "id": raw["osm_id"].astype(str),
            "name": raw["name"].where(raw["name"].astype(str).str.len() > 0, None),
            "fclass": raw["fclass"].astype(str),
            "oneway": raw["oneway"].astype(str),
            "maxspeed": raw["maxspeed"].astype(float),
            "bridge": raw["bridge"].astype(str).eq("T"),
            "tunnel": raw["tunnel"].astype(str).eq("T"),
            "source": "OpenStreetMap (ODbL)",
        },
        geometry=raw.geometry.values,
        crs="EPSG:4326",
    )


def changchun_districts() -> gpd.GeoDataFrame:
    """The five central districts, converted from GCJ-02 to WGS84, named from the official codes."""
    names = pd.read_csv(DEMO_DATA / "admin_codes" / "areas_changchun.csv", dtype=str)
    names = dict(zip(names["code"], names["name"], strict=True))
    frames = []
    for path in sorted((CHANGCHUN / "districts_gcj02").glob("2201*.geojson")):
        code = path.stem
        if code == "220100":
            continue
        gdf = gpd.read_file(path)
        frames.append(
            gpd.GeoDataFrame(
                {
                    "adcode": [code],
                    "name": [names[code]],
                    "level": ["district"],
                    "parent_adcode": ["220100"],
                },
                geometry=gdf.geometry.values,
                crs="EPSG:4326",
            )
        )
    gcj = pd.concat(frames, ignore_index=True)
    return gm_crs.to_wgs84(gpd.GeoDataFrame(gcj, crs="EPSG:4326"), "GCJ-02")


def demo_markers(n: int = 12) -> gpd.GeoDataFrame:
    """Boundary markers placed on the real boundary between 南关区 and 朝阳区 (shared vertices)."""
    districts = changchun_districts().set_index("adcode")
    shared = districts.loc["220102", "geometry"].boundary.intersection(
        districts.loc["220104", "geometry"].boundary.buffer(1e-4)
    )
    points = [shared.interpolate(f, normalized=True) for f in np.linspace(0.05, 0.95, n)]
    return gpd.GeoDataFrame(
        {
            "id": [f"JZ-{i:03d}" for i in range(n)],
            "unit_a": "220102",
            "unit_b": "220104",
            "status": ["intact", "damaged", "intact", "missing"] * (n // 4) + ["intact"] * (n % 4),
            "installed_year": [1995 + i for i in range(n)],
            "source": DEMO_SCENARIO_LABEL,
        },
        geometry=points,
        crs="EPSG:4326",
    )


# ------------------------------------------------------------------------------------------------
# A throw-away PostgreSQL + PostGIS cluster (Debian packages), run as the postgres user
# ------------------------------------------------------------------------------------------------


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a server command as the 'postgres' user when we are root (initdb refuses root)."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="session")
def postgis_server() -> Iterator[str]:
    """Start a temporary PostGIS cluster on a free loopback port; yield its base URL."""
    bindir = _pg_bindir()
    need(bindir is not None, "PostgreSQL server binaries not found (apt-get install postgresql)")
    assert bindir is not None
    need(
        bool(glob.glob("/usr/share/postgresql/*/extension/postgis.control")),
        "PostGIS extension not installed (apt-get install postgis)",
    )
    root = Path(tempfile.mkdtemp(prefix="gm-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", _free_port()
    _as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--locale=C", "--no-sync"])  # fmt: skip
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60"
    )
    _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                  str(root / "log"), "-w", "-t", "60", "start"])  # fmt: skip
    base = f"postgresql://postgres@127.0.0.1:{port}"
    try:
        import psycopg

        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE gm_template")
        with psycopg.connect(f"{base}/gm_template", autocommit=True) as conn:
            conn.execute("CREATE EXTENSION postgis")
        yield base
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(root, ignore_errors=True)


_DB_COUNTER = iter(range(10**6))


def new_database(base: str) -> str:
    """A fresh database with PostGIS (from the template) on the test cluster; its URL."""
    import psycopg

    name = f"gm_t{os.getpid()}_{next(_DB_COUNTER)}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE gm_template")  # name built above, no input
    return f"{base}/{name}"


@pytest.fixture(params=["gpkg", "postgis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store URL on each backend."""
    if request.param == "gpkg":
        return f"gpkg://{tmp_path / 'store.gpkg'}"
    return new_database(request.getfixturevalue("postgis_server"))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with open_store(store_url) as opened:
        yield opened


def _area(gdf: gpd.GeoDataFrame) -> float:
    """Summed area in square degrees: only used to compare identical geometries."""
    return float(shapely.area(np.asarray(gdf.geometry.values)).sum())


# ------------------------------------------------------------------------------------------------
# Round trips and queries
# ------------------------------------------------------------------------------------------------


def test_roads_round_trip_exactly(store: Store) -> None:
    roads = changchun_roads()
    info = store.import_layer("roads", roads, kind="road", actor="loader")
    assert info.count == len(roads) == 1253
    np.testing.assert_allclose(info.bbox, roads.total_bounds, atol=1e-9)
    back, total = store.features("roads", limit=None)
    assert total == 1253
    assert back["id"].tolist() == roads["id"].tolist()  # insertion order kept
    assert shapely.equals_exact(back.geometry.values, roads.geometry.values, tolerance=0).all()
    for column in ("fclass", "oneway", "maxspeed", "bridge", "tunnel"):
        assert back[column].tolist() == roads[column].tolist(), column
    assert (back[VERSION_COLUMN] == 1).all()
    assert back.crs.to_epsg() == 4326 and back.attrs == {"kind": "road", "layer": "roads"}
    # the input frame is untouched
    assert list(roads.columns) == list(changchun_roads().columns)


def test_districts_polygons_and_bbox_match_geopandas(store: Store) -> None:
    districts = changchun_districts()
    store.import_layer("districts", districts, kind="admin_unit", actor="loader")
    back, total = store.features("districts", limit=None)
    assert total == 5 and back["adcode"].tolist() == districts["adcode"].tolist()
    assert _area(back) == pytest.approx(_area(districts), rel=1e-12)
    # bbox queries agree with an independent geopandas intersects on the original frame
    for bbox in [
        (125.30, 43.85, 125.32, 43.87),
        (125.36, 43.90, 125.37, 43.91),
        (125.0, 43.0, 125.1, 43.1),
    ]:
        expected = districts.loc[districts.intersects(shapely.box(*bbox)), "adcode"].tolist()
        got, n = store.features("districts", bbox=bbox, limit=None)
        assert got["adcode"].tolist() == expected and n == len(expected), bbox


def test_paging_bbox_and_filters_agree_with_pandas(store: Store) -> None:
    roads = changchun_roads()
    store.import_layer("roads", roads, kind="road", actor="loader")
    bbox = (125.31, 43.86, 125.35, 43.90)
    in_box = roads.intersects(shapely.box(*bbox))
    mask = in_box & roads["fclass"].eq("residential")
    expected = roads.loc[mask, "id"].tolist()
    assert 10 < len(expected) < mask.size  # a real, non-trivial selection
    pages, offset = [], 0
    while True:
        page, total = store.features(
            "roads", bbox=bbox, filters={"fclass": "residential"}, limit=7, offset=offset
        )
        assert total == len(expected)
        if page.empty:
            break
        pages.extend(page["id"].tolist())
        offset += 7
    assert pages == expected
    # a numeric filter given as URL text is converted to the field's type
    got, n = store.features("roads", filters={"maxspeed": "60"}, limit=None)
    assert n == int((roads["maxspeed"] == 60).sum()) and set(got["maxspeed"]) == {60.0}
    got, n = store.features("roads", filters={"bridge": "true"}, limit=None)
    assert n == int(roads["bridge"].sum()) > 0
    with pytest.raises(LayerValidationError, match="maxspeed must be a float, got 'fast'"):
        store.features("roads", filters={"maxspeed": "fast"})


def test_list_field_filter_matches_membership(store: Store) -> None:
    points = shapely.points([[125.32, 43.88], [125.33, 43.89], [125.34, 43.90]])
    centres = gpd.GeoDataFrame(
        {
            "id": ["E1", "E2", "E3"],
            "name": ["甲", "乙", "丙"],
            "category": ["day_care_center", "meal_point", "nursing_home"],
            "service_types": ["meals;day_care", "meals", "medical;rehabilitation"],
        },
        geometry=points,
        crs="EPSG:4326",
    )
    store.import_layer("eldercare", centres, kind="eldercare_center", actor="loader")
    got, _ = store.features("eldercare", filters={"service_types": "meals"}, limit=None)
    assert got["id"].tolist() == ["E1", "E2"]
    got, _ = store.features("eldercare", filters={"service_types": "助餐"}, limit=None)  # zh label
    assert got["id"].tolist() == ["E1", "E2"]
    got, _ = store.features("eldercare", filters={"service_types": "day_care"}, limit=None)
    assert got["id"].tolist() == ["E1"]


def test_geopackage_opens_in_gdal(tmp_path: Path) -> None:
    """The .gpkg is a real GeoPackage: GDAL lists the layers and reads the same geometries."""
    path = tmp_path / "store.gpkg"
    roads, districts = changchun_roads(), changchun_districts()
    with open_store(f"gpkg://{path}") as store:
        store.import_layer("roads", roads, kind="road", actor="loader")
        store.import_layer("districts", districts, kind="admin_unit", actor="loader")
    layers = dict(pyogrio.list_layers(path))
    assert layers["roads"] == "Unknown" or layers["roads"].endswith("LineString") or layers["roads"]
    gdal_roads = pyogrio.read_dataframe(path, layer="roads")
    assert gdal_roads.crs.to_epsg() == 4326
    assert gdal_roads["feature_id"].tolist() == roads["id"].tolist()
    assert shapely.equals_exact(gdal_roads.geometry.values, roads.geometry.values, 0).all()
    gdal_districts = pyogrio.read_dataframe(path, layer="districts")
    assert _area(gdal_districts) == pytest.approx(_area(districts), rel=1e-12)
    info = pyogrio.read_info(path, layer="districts")
    np.testing.assert_allclose(info["total_bounds"], districts.total_bounds, atol=1e-9)
    # the GeoPackage header: magic, little endian with an envelope, srs 4326
    blob = gpkg_blob(shapely.to_wkb(shapely.Point(125.3, 43.9)))
    assert blob[:2] == b"GP" and blob[3] == 0b11 and int.from_bytes(blob[4:8], "little") == 4326


# ------------------------------------------------------------------------------------------------
# Writes, versions, audit
# ------------------------------------------------------------------------------------------------


def test_edit_cycle_with_versions_and_audit(store: Store) -> None:
    markers = demo_markers()
    store.import_layer(
        "markers", markers, kind="boundary_marker", actor="loader",
        editable=True, editable_fields=["status", "last_inspected"],
    )  # fmt: skip
    before = store.get("markers", "JZ-001")
    assert before.version == 1 and before.properties["status"] == "damaged"
    after = store.update(
        "markers", "JZ-001", properties={"status": "完好", "last_inspected": "2024/5/1"},
        expected_version=1, actor="alice",
    )  # fmt: skip
    # values are stored in canonical form: zh label -> code, date -> ISO
    assert after.version == 2
    assert after.properties["status"] == "intact"
    assert after.properties["last_inspected"] == "2024-05-01"
    assert store.get("markers", "JZ-001") == after
    with pytest.raises(ConflictError, match="you edited version 1 but the stored version is 2"):
        store.update("markers", "JZ-001", properties={"status": "moved"}, expected_version=1,
                     actor="bob")  # fmt: skip
    moved = shapely.Point(125.345, 43.862)
    store.update("markers", "JZ-001", geometry=moved, expected_version=2, actor="bob")
    new = store.create(
        "markers",
        {"id": "JZ-900", "unit_a": "220102", "unit_b": "220104", "status": "intact"},
        shapely.Point(125.33, 43.86),
        actor="alice",
    )
    assert new.version == 1
    with pytest.raises(ConflictError, match="already has a feature 'JZ-900'"):
        store.create("markers", {"id": "JZ-900", "unit_a": "1", "unit_b": "2", "status": "intact"},
                     shapely.Point(125.33, 43.86), actor="alice")  # fmt: skip
    store.delete("markers", "JZ-900", expected_version=1, actor="admin")
    with pytest.raises(UnknownIdError, match="layer 'markers' has no feature 'JZ-900'"):
        store.get("markers", "JZ-900")

    history = store.history("markers", "JZ-001")
    assert [(h.action, h.actor, h.version_before, h.version_after) for h in history] == [
        ("update", "alice", 1, 2),
        ("update", "bob", 2, 3),
    ]
    assert history[0].before["properties"]["status"] == "damaged"
    assert history[0].after["properties"]["status"] == "intact"
    assert history[1].after["geometry"] == {"type": "Point", "coordinates": [125.345, 43.862]}
    actions = [h.action for h in store.history("markers")]
    assert actions == ["import", "update", "update", "create", "delete"]
    deleted = store.history("markers", "JZ-900")[-1]
    assert deleted.before["properties"]["status"] == "intact" and deleted.after is None
    assert all(h.at.endswith("+00:00") for h in store.history())


def test_invalid_writes_list_every_problem(store: Store) -> None:
    store.import_layer("markers", demo_markers(), kind="boundary_marker", actor="loader")
    with pytest.raises(LayerValidationError) as info:
        store.update(
            "markers", "JZ-002", properties={"status": "lost", "installed_year": 1800},
            expected_version=1, actor="alice",
        )  # fmt: skip
    text = str(info.value)
    assert len(info.value.problems) == 2
    assert (
        "boundary_marker 'JZ-002': status must be one of: intact, damaged, missing, moved" in text
    )
    assert "installed_year must be >= 1949, got 1800" in text
    assert store.get("markers", "JZ-002").version == 1  # nothing written
    with pytest.raises(LayerValidationError, match="wrong_geometry_type|Point"):
        store.create("markers", {"id": "X", "unit_a": "1", "unit_b": "2", "status": "intact"},
                     shapely.box(125.3, 43.8, 125.31, 43.81), actor="a")  # fmt: skip
    with pytest.raises(LayerValidationError, match="IDs cannot be edited"):
        store.update("markers", "JZ-002", properties={"id": "JZ-777"}, expected_version=1,
                     actor="a")  # fmt: skip
    assert [h.action for h in store.history("markers")] == ["import"]


def test_unknown_ids_and_bad_urls(store: Store, tmp_path: Path) -> None:
    store.import_layer("markers", demo_markers(), kind="boundary_marker", actor="loader")
    with pytest.raises(
        UnknownIdError, match="unknown layer 'shelters'; layers in the store: markers"
    ):
        store.features("shelters")
    with pytest.raises(UnknownIdError, match="has no feature 'nope'"):
        store.update("markers", "nope", properties={}, expected_version=1, actor="a")
    with pytest.raises(ConflictError, match="already exists"):
        store.import_layer("markers", demo_markers(), kind="boundary_marker", actor="loader")
    info = store.import_layer("markers", demo_markers(3), kind="boundary_marker", actor="l",
                              replace=True)  # fmt: skip
    assert info.count == 3
    with pytest.raises(ValueError, match="layer id must match"):
        store.import_layer("Bad-Name;", demo_markers(), kind="boundary_marker", actor="l")
    with pytest.raises(ValueError, match="bbox must be"):
        store.features("markers", bbox=(125.4, 43.8, 125.3, 43.9))
    with pytest.raises(StoreError, match="store URL must start with"):
        open_store("mysql://x")
    with pytest.raises(StoreError, match="folder of the GeoPackage store does not exist"):
        open_store(f"gpkg://{tmp_path}/missing/store.gpkg")


def test_one_module_per_backend_and_psycopg_only_when_used(tmp_path: Path) -> None:
    """store/ keeps the common base, GeoPackage and PostGIS apart; open_store picks by URL."""
    from geo_minzheng.store import base, gpkg, postgis

    assert issubclass(gpkg.GeoPackageStore, base.Store)
    assert issubclass(postgis.PostGISStore, base.Store)
    assert GeoPackageStore is gpkg.GeoPackageStore and Store is base.Store
    with open_store(tmp_path / "plain.gpkg") as opened:
        assert type(opened) is gpkg.GeoPackageStore
    # PostGIS is optional: importing the store (and its PostGIS module) never loads psycopg
    code = (
        "import sys, geo_minzheng.store, geo_minzheng.store.postgis; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'psycopg_pool')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------------------------------------
# Concurrency and crashes, across processes
# ------------------------------------------------------------------------------------------------


def _racing_writer(url: str, status: str, barrier, results) -> None:  # pragma: no cover - child
    with open_store(url) as store:
        barrier.wait(timeout=60)
        try:
            store.update("markers", "JZ-000", properties={"status": status}, expected_version=1,
                         actor=f"writer-{status}")  # fmt: skip
            results.put(("ok", status))
        except ConflictError:
            results.put(("conflict", status))


def test_concurrent_writers_exactly_one_wins(store: Store, store_url: str) -> None:
    store.import_layer("markers", demo_markers(), kind="boundary_marker", actor="loader")
    ctx = mp.get_context("spawn")
    statuses = ["damaged", "missing", "moved", "intact"]
    barrier, results = ctx.Barrier(len(statuses)), ctx.Queue()
    procs = [ctx.Process(target=_racing_writer, args=(store_url, s, barrier, results))
             for s in statuses]  # fmt: skip
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    winners = [s for outcome, s in outcomes if outcome == "ok"]
    assert len(winners) == 1 and sum(o == "conflict" for o, _ in outcomes) == len(statuses) - 1
    record = store.get("markers", "JZ-000")
    assert record.version == 2 and record.properties["status"] == winners[0]
    updates = [h for h in store.history("markers", "JZ-000") if h.action == "update"]
    assert [(h.actor, h.after["properties"]["status"]) for h in updates] == [
        (f"writer-{winners[0]}", winners[0])
    ]


def _stalled_writer(url: str, ready) -> None:  # pragma: no cover - runs in the child
    """Update a record and stall inside the transaction, after the row write, before commit."""
    with open_store(url) as store:
        original = type(store)._audit

        def audit_then_stall(self, tx, entry):
            original(self, tx, entry)
            ready.set()
            time.sleep(600)

        type(store)._audit = audit_then_stall
        store.update("markers", "JZ-003", properties={"status": "moved"}, expected_version=1,
                     actor="doomed")  # fmt: skip


def _looping_writer(url: str, started) -> None:  # pragma: no cover - runs in the child
    with open_store(url) as store:
        started.set()
        while True:
            for fid in ("JZ-004", "JZ-005"):
                record = store.get("markers", fid)
                status = "damaged" if record.properties["status"] != "damaged" else "intact"
                store.update("markers", fid, properties={"status": status},
                             expected_version=record.version, actor="looper")  # fmt: skip


def test_writer_killed_mid_transaction_leaves_store_consistent(
    store: Store, store_url: str
) -> None:
    store.import_layer("markers", demo_markers(), kind="boundary_marker", actor="loader")
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_stalled_writer, args=(store_url, ready))
    proc.start()
    assert ready.wait(timeout=120), "child never reached the middle of its transaction"
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout=30)
    assert proc.exitcode == -signal.SIGKILL
    # the half-done write vanished: old version, old value, no audit entry, lock released
    with open_store(store_url) as fresh:
        record = fresh.get("markers", "JZ-003")
        assert record.version == 1 and record.properties["status"] == "missing"
        assert [h.action for h in fresh.history("markers")] == ["import"]
        fresh.update("markers", "JZ-003", properties={"status": "moved"}, expected_version=1,
                     actor="survivor")  # fmt: skip

    # kill a busy writer at several random moments; after each, versions and audit must agree
    rng = np.random.default_rng(5)
    for _ in range(3):
        started = ctx.Event()
        proc = ctx.Process(target=_looping_writer, args=(store_url, started))
        proc.start()
        assert started.wait(timeout=120)
        time.sleep(float(rng.uniform(0.2, 0.8)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=30)
    with open_store(store_url) as fresh:
        for fid in ("JZ-004", "JZ-005"):
            record = fresh.get("markers", fid)
            updates = [h for h in fresh.history("markers", fid) if h.action == "update"]
            assert len(updates) > 0
            assert record.version == 1 + len(updates)
            assert [h.version_after for h in updates] == list(range(2, record.version + 1))
            assert updates[-1].after["properties"] == record.properties


def test_geopackage_store_rejects_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.gpkg"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="'notes.gpkg' is not a usable GeoPackage/SQLite file"):
        GeoPackageStore(path)
