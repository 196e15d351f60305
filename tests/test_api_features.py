# ruff: noqa: F811 - pytest fixtures imported from tests.test_api_support
"""OGC API – Features over the store: collections, paging with next links, bbox and property
filters checked against geopandas, clear 400/404 messages, and the write path with keys, roles,
versions (ETag/If-Match, 409 on stale), validation (422) and the audit history."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient

from geo_minzheng.settings import Settings, hash_api_key, verify_api_key
from tests.test_api_support import (  # noqa: F401 - fixtures
    ADMIN_KEY,
    EDITOR_KEY,
    VIEWER_KEY,
    city_dir,
    city_layers,
    client,
    make_settings,
    seed_store,
)
from tests.test_store import new_database, postgis_server  # noqa: F401 - fixture

EDITOR = {"X-API-Key": EDITOR_KEY}
VIEWER = {"X-API-Key": VIEWER_KEY}
ADMIN = {"X-API-Key": ADMIN_KEY}


@pytest.fixture(scope="module")
def layers() -> dict:
    return city_layers()


def _no_leak(response) -> None:
    text = response.text
    assert "Traceback" not in text and "/work/" not in text and ".py" not in text, text


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------


def test_landing_conformance_and_collections(client: TestClient, layers: dict) -> None:
    landing = client.get("/api").json()
    rels = {link["rel"] for link in landing["links"]}
    assert {"self", "service-desc", "conformance", "data"} <= rels
    conf = client.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in conf
    body = client.get("/collections").json()
    by_id = {c["id"]: c for c in body["collections"]}
    assert list(by_id) == list(layers)
    for layer_id, gdf in layers.items():
        meta = by_id[layer_id]
        assert meta["numberOfFeatures"] == len(gdf)
        np.testing.assert_allclose(
            meta["extent"]["spatial"]["bbox"][0], gdf.total_bounds, atol=1e-9
        )
        assert any(link["rel"] == "items" for link in meta["links"])
    assert by_id["markers"]["editable"] and by_id["markers"]["editableFields"] == [
        "status",
        "last_inspected",
    ]
    assert not by_id["roads"]["editable"]
    assert (
        by_id["markers"]["title"] == "界桩"
        and "Boundary markers" in by_id["markers"]["description"]
    )


def test_paging_follows_next_links_to_the_pandas_selection(
    client: TestClient, layers: dict
) -> None:
    roads = layers["roads"]
    expected = roads.loc[roads["fclass"].eq("residential"), "id"].tolist()
    url, seen, pages = "/collections/roads/items?fclass=residential&limit=40", [], 0
    while url:
        response = client.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/geo+json")
        page = response.json()
        assert page["numberMatched"] == len(expected)
        assert page["numberReturned"] == len(page["features"]) <= 40
        seen += [f["id"] for f in page["features"]]
        links = {link["rel"]: link["href"] for link in page["links"]}
        if pages > 0:
            assert "prev" in links
        url = links.get("next")
        pages += 1
    assert seen == expected and pages == -(-len(expected) // 40)


def test_bbox_and_typed_filters_match_geopandas(client: TestClient, layers: dict) -> None:
    roads = layers["roads"]
    bbox = (125.32, 43.87, 125.34, 43.89)
    expected = roads.loc[roads.intersects(shapely.box(*bbox)), "id"].tolist()
    body = client.get(
        "/collections/roads/items", params={"bbox": ",".join(map(str, bbox)), "limit": 500}
    ).json()
    assert [f["id"] for f in body["features"]] == expected and body["numberMatched"] == len(
        expected
    )
    body = client.get("/collections/roads/items", params={"maxspeed": "60", "limit": 500}).json()
    assert body["numberMatched"] == int((roads["maxspeed"] == 60).sum()) > 0
    assert {f["properties"]["maxspeed"] for f in body["features"]} == {60.0}
    demand = layers["demand"]
    body = client.get("/collections/demand/items", params={"admin_code": "220105"}).json()
    assert body["numberMatched"] == int((demand["admin_code"] == "220105").sum())
    # a feature's geometry and properties round-trip exactly
    feature = client.get("/collections/eldercare/items/E03").json()
    row = layers["eldercare"].set_index("id").loc["E03"]
    assert shapely.geometry.shape(feature["geometry"]).equals_exact(row.geometry, 0)
    assert feature["properties"]["category"] == row["category"] and feature["version"] == 1


def test_limit_is_clamped_and_offset_past_the_end_is_empty(client: TestClient) -> None:
    body = client.get("/collections/roads/items?limit=100000").json()
    assert body["numberReturned"] == 500 and body["numberMatched"] == 1253
    body = client.get("/collections/roads/items?offset=5000").json()
    assert body["features"] == [] and body["numberMatched"] == 1253
    assert not any(link["rel"] == "next" for link in body["links"])


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("/collections/nope/items", 404, "unknown layer 'nope'; layers in the store: districts"),
        ("/collections/nope", 404, "unknown layer 'nope'"),
        ("/collections/markers/items/JZ-999", 404, "layer 'markers' has no feature 'JZ-999'"),
        ("/collections/markers/items?bbox=1,2,3", 400, "bbox must be four finite numbers"),
        ("/collections/markers/items?bbox=a,b,c,d", 400, "bbox must be four numbers"),
        ("/collections/markers/items?bbox=125.4,43,125.3,44", 400, "min <= max"),
        ("/collections/markers/items?bbox=125,95,126,96", 400, "lat -90..90"),
        ("/collections/markers/items?limit=0", 400, "limit"),
        ("/collections/markers/items?offset=-1", 400, "offset"),
        ("/collections/markers/items?colour=red", 400, "unknown query parameter(s) 'colour'"),
        ("/collections/roads/items?maxspeed=fast", 400, "maxspeed must be a float, got 'fast'"),
        ("/collections/markers/items?status=lost", 400, "status must be one of: intact"),
        ("/no/such/page", 404, "no such resource: /no/such/page"),
    ],
)
def test_errors_are_clear_problem_documents(
    client: TestClient, url: str, status: int, message: str
) -> None:
    response = client.get(url)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and message in body["detail"], body
    _no_leak(response)


# ------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------


def test_writes_need_a_key_with_the_right_role(client: TestClient) -> None:
    patch = {"properties": {"status": "moved"}}
    url = "/collections/markers/items/JZ-001"
    response = client.patch(url, json=patch, headers={"If-Match": '"1"'})
    assert response.status_code == 401 and "X-API-Key" in response.json()["detail"]
    assert response.headers["WWW-Authenticate"].startswith("ApiKey")
    response = client.patch(url, json=patch, headers={"If-Match": '"1"', "X-API-Key": "x" * 20})
    assert response.status_code == 401 and "not valid" in response.json()["detail"]
    response = client.patch(url, json=patch, headers={"If-Match": '"1"', **VIEWER})
    assert response.status_code == 403
    assert "has role 'viewer'; this needs 'editor'" in response.json()["detail"]
    # editors edit only editable layers and fields; admins may do more
    response = client.patch(
        "/collections/roads/items/41130037", json={"properties": {"name": "x"}},
        headers={"If-Match": '"1"', **EDITOR},
    )  # fmt: skip
    assert response.status_code == 403 and "layer 'roads' is read-only" in response.json()["detail"]
    response = client.patch(url, json={"properties": {"unit_a": "220199"}},
                            headers={"If-Match": '"1"', **EDITOR})  # fmt: skip
    assert response.status_code == 403
    assert "may change only last_inspected, status" in response.json()["detail"]
    response = client.patch(url, json={"properties": {"unit_a": "220103"}},
                            headers={"If-Match": '"1"', **ADMIN})  # fmt: skip
    assert response.status_code == 200 and response.json()["properties"]["unit_a"] == "220103"
    assert client.get(url).json()["version"] == 2  # the refused writes changed nothing


def test_inspection_edit_cycle_with_etags_conflicts_and_history(client: TestClient) -> None:
    url = "/collections/markers/items/JZ-002"
    first = client.get(url)
    etag = first.headers["ETag"]
    assert etag == '"1"' and first.json()["properties"]["status"] == "intact"
    inspection = {"properties": {"status": "damaged", "last_inspected": "2024-06-01"}}
    response = client.patch(url, json=inspection, headers={"If-Match": etag, **EDITOR})
    assert response.status_code == 200 and response.headers["ETag"] == '"2"'
    assert response.json()["properties"]["last_inspected"] == "2024-06-01"
    # a second inspector who read version 1 is refused, nothing is lost
    stale = client.patch(url, json={"properties": {"status": "intact"}},
                         headers={"If-Match": etag, **EDITOR})  # fmt: skip
    assert stale.status_code == 409
    assert "you edited version 1 but the stored version is 2" in stale.json()["detail"]
    assert client.get(url).json()["properties"]["status"] == "damaged"
    missing = client.patch(url, json={"properties": {"status": "intact"}}, headers=EDITOR)
    assert missing.status_code == 428 and "If-Match" in missing.json()["detail"]
    by_body = client.patch(url, json={"properties": {"status": "intact"}, "version": 2},
                           headers=EDITOR)  # fmt: skip
    assert by_body.status_code == 200 and by_body.json()["version"] == 3
    bad_tag = client.patch(url, json={"properties": {}}, headers={"If-Match": "abc", **EDITOR})
    assert bad_tag.status_code == 400
    # the audit history needs a key (any role) and names the editor
    assert client.get(url + "/history").status_code == 401
    history = client.get(url + "/history", headers=VIEWER).json()
    assert [(h["action"], h["actor"], h["version_after"]) for h in history] == [
        ("update", "zhang.editor", 2),
        ("update", "zhang.editor", 3),
    ]
    assert history[0]["before"]["properties"]["status"] == "intact"
    assert history[0]["after"]["properties"]["status"] == "damaged"
    assert (
        client.get("/collections/markers/items/JZ-404/history", headers=VIEWER).status_code == 404
    )


def test_create_validate_and_delete(client: TestClient) -> None:
    new = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [125.335, 43.862]},
        "properties": {"id": "JZ-500", "unit_a": "220102", "unit_b": "220104", "status": "完好"},
    }
    response = client.post("/collections/markers/items", json=new, headers=EDITOR)
    assert response.status_code == 201
    assert response.headers["Location"].endswith("/collections/markers/items/JZ-500")
    assert response.json()["properties"]["status"] == "intact"  # zh label stored as its code
    again = client.post("/collections/markers/items", json=new, headers=EDITOR)
    assert again.status_code == 409 and "already has a feature 'JZ-500'" in again.json()["detail"]
    broken = {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": [[125.3, 43.8], [125.4, 43.9]]},
        "properties": {
            "id": "JZ-501",
            "unit_a": "220102",
            "status": "lost",
            "installed_year": 1800,
        },
    }
    response = client.post("/collections/markers/items", json=broken, headers=EDITOR)
    assert response.status_code == 422
    problems = {(p["field"], p["code"]) for p in response.json()["problems"]}
    assert {
        ("unit_b", "missing_field"),
        ("status", "unknown_value"),
        ("installed_year", "out_of_range"),
        ("geometry", "wrong_geometry_type"),
    } <= problems
    bad_geometry = dict(new, geometry={"type": "Point", "coordinates": "x"})
    response = client.post("/collections/markers/items", json=bad_geometry, headers=EDITOR)
    assert response.status_code == 422 and "not valid GeoJSON" in response.json()["detail"]
    response = client.delete("/collections/markers/items/JZ-500", headers=EDITOR)
    assert response.status_code == 428
    response = client.delete("/collections/markers/items/JZ-500",
                             headers={"If-Match": '"1"', **EDITOR})  # fmt: skip
    assert response.status_code == 204
    assert client.get("/collections/markers/items/JZ-500").status_code == 404
    shelters = client.put(
        "/collections/shelters/items/S00",
        json={"geometry": client.get("/collections/shelters/items/S00").json()["geometry"],
              "properties": {"status": "full"}, "version": 1},
        headers=EDITOR,
    )  # fmt: skip
    # a replace that drops the required fields is refused: editors may change only 'status'
    assert shelters.status_code == 403 and "effective_area_m2" in shelters.json()["detail"]


# ------------------------------------------------------------------------------------------------
# Service limits and configuration
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def small_client(city_dir: Path, tmp_path: Path) -> Iterator[TestClient]:  # noqa: F811
    from api.app import create_app

    settings = make_settings(
        city_dir, tmp_path / "s.gpkg", max_request_bytes=2000,
        cors_origins=["http://intranet.example"], require_key_for_read=True,
    )  # fmt: skip
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_size_limit_cors_and_closed_reads(small_client: TestClient) -> None:
    big = {"properties": {"status": "intact", "name": "x" * 5000}}
    response = small_client.patch("/collections/markers/items/JZ-001", json=big,
                                  headers={"If-Match": '"1"', **EDITOR})  # fmt: skip
    assert response.status_code == 413 and "limit of 2000 bytes" in response.json()["detail"]
    # reads need a key when configured so
    assert small_client.get("/collections").status_code == 401
    assert small_client.get("/collections", headers=VIEWER).status_code == 200
    preflight = small_client.options(
        "/collections",
        headers={"Origin": "http://intranet.example", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.headers["access-control-allow-origin"] == "http://intranet.example"
    other = small_client.get("/api", headers={"Origin": "http://evil.example", **VIEWER})
    assert "access-control-allow-origin" not in other.headers


def test_keys_are_stored_only_as_salted_hashes() -> None:
    stored = hash_api_key("a-long-enough-secret-key")
    assert stored.startswith("scrypt$") and "a-long-enough-secret-key" not in stored
    assert stored != hash_api_key("a-long-enough-secret-key")  # a new salt every time
    assert verify_api_key("a-long-enough-secret-key", stored)
    assert not verify_api_key("a-long-enough-secret-kex", stored)
    with pytest.raises(ValueError, match="at least 16 characters"):
        hash_api_key("short")
    with pytest.raises(ValueError, match="scrypt"):
        Settings(api_keys=[{"name": "x", "role": "editor", "hash": "plaintext-key"}])


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEO_MINZHENG_STORE_URL", "postgresql://gm@db/minzheng")
    monkeypatch.setenv("GEO_MINZHENG_LANG", "en")
    monkeypatch.setenv("GEO_MINZHENG_CORS_ORIGINS", '["http://a.example"]')
    monkeypatch.setenv(
        "GEO_MINZHENG_API_KEYS",
        '[{"name": "ops", "role": "admin", "hash": "' + hash_api_key("k" * 20) + '"}]',
    )
    settings = Settings()
    assert settings.store_url == "postgresql://gm@db/minzheng" and settings.lang == "en"
    assert settings.cors_origins == ["http://a.example"]
    assert settings.api_keys[0].role == "admin"


def test_the_api_on_a_postgis_store(city_dir: Path, postgis_server: str, layers: dict) -> None:  # noqa: F811
    """The same service on PostGIS: the catalog is imported, reads page, writes are versioned."""
    from api.app import create_app

    settings = make_settings(city_dir, Path("unused.gpkg"))
    settings = settings.model_copy(update={"store_url": new_database(postgis_server)})
    with TestClient(create_app(settings)) as pg:
        counts = {
            c["id"]: c["numberOfFeatures"] for c in pg.get("/collections").json()["collections"]
        }
        assert counts == {layer_id: len(gdf) for layer_id, gdf in layers.items()}
        roads = layers["roads"]
        bbox = (125.32, 43.87, 125.34, 43.89)
        expected = roads.loc[roads.intersects(shapely.box(*bbox)), "id"].tolist()
        body = pg.get("/collections/roads/items",
                      params={"bbox": ",".join(map(str, bbox)), "limit": 500}).json()  # fmt: skip
        assert [f["id"] for f in body["features"]] == expected
        url = "/collections/markers/items/JZ-003"
        ok = pg.patch(url, json={"properties": {"status": "intact"}},
                      headers={"If-Match": '"1"', **EDITOR})  # fmt: skip
        assert ok.status_code == 200 and ok.headers["ETag"] == '"2"'
        stale = pg.patch(url, json={"properties": {"status": "moved"}},
                         headers={"If-Match": '"1"', **EDITOR})  # fmt: skip
        assert stale.status_code == 409
        history = pg.get(url + "/history", headers=VIEWER).json()
        assert [(h["actor"], h["after"]["properties"]["status"]) for h in history] == [
            ("zhang.editor", "intact")
        ]
