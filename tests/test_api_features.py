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


# ------------------------------------------------------------------------------------------------
# Issue 15: roles, identifiers, numbers, If-Match, list filters, analysis submission
# ------------------------------------------------------------------------------------------------


def _layer_count(client: TestClient, layer_id: str) -> int:
    return client.get(f"/collections/{layer_id}").json()["numberOfFeatures"]


def test_roles_editor_changes_only_what_the_catalog_allows(client: TestClient) -> None:
    """Editors: editable fields only; geometry, create and delete only where the catalog says."""
    by_id = {c["id"]: c for c in client.get("/collections").json()["collections"]}
    flags = {
        lid: (c["geometryEditable"], c["allowCreate"], c["allowDelete"]) for lid, c in by_id.items()
    }
    assert flags["markers"] == (False, True, True) and flags["shelters"] == (False, False, False)
    url = "/collections/markers/items/JZ-001"
    before = client.get(url).json()
    moved = {"type": "Point", "coordinates": [125.30, 43.80]}
    response = client.patch(url, json={"geometry": moved}, headers={"If-Match": '"1"', **EDITOR})
    assert response.status_code == 403
    assert "may not move or reshape records of layer 'markers'" in response.json()["detail"]
    # the same geometry sent back with a field change is not a move
    same = {"geometry": before["geometry"], "properties": {"status": "damaged"}}
    response = client.patch(url, json=same, headers={"If-Match": '"1"', **EDITOR})
    assert response.status_code == 200 and response.json()["version"] == 2
    assert client.get(url).json()["geometry"] == before["geometry"]
    # shelters: editors may set the status but neither add nor remove a shelter
    shelter = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [125.33, 43.87]},
        "properties": {"id": "S99", "name": "新避难场所", "shelter_class": "emergency",
                       "effective_area_m2": 800.0, "status": "open"},
    }  # fmt: skip
    n_shelters = _layer_count(client, "shelters")
    response = client.post("/collections/shelters/items", json=shelter, headers=EDITOR)
    assert response.status_code == 403
    assert "may not add records to layer 'shelters'" in response.json()["detail"]
    response = client.delete("/collections/shelters/items/S00",
                             headers={"If-Match": '"1"', **EDITOR})  # fmt: skip
    assert response.status_code == 403
    assert "may not delete records of layer 'shelters'" in response.json()["detail"]
    assert _layer_count(client, "shelters") == n_shelters
    # an admin does everything: move a marker, add and remove a shelter
    response = client.patch(url, json={"geometry": moved}, headers={"If-Match": '"2"', **ADMIN})
    assert response.status_code == 200 and response.json()["geometry"]["coordinates"] == [
        125.30,
        43.80,
    ]
    assert (
        client.post("/collections/shelters/items", json=shelter, headers=ADMIN).status_code == 201
    )
    assert _layer_count(client, "shelters") == n_shelters + 1
    gone = client.delete("/collections/shelters/items/S99", headers={"If-Match": '"1"', **ADMIN})
    assert gone.status_code == 204 and _layer_count(client, "shelters") == n_shelters
    # viewers read only
    response = client.patch(url, json={"properties": {"status": "intact"}},
                            headers={"If-Match": '"3"', **VIEWER})  # fmt: skip
    assert response.status_code == 403
    history = client.get(url + "/history", headers=VIEWER).json()
    assert [(h["actor"], h["version_after"]) for h in history] == [
        ("zhang.editor", 2),
        ("wang.admin", 3),
    ]


def test_catalog_flags_let_editors_move_records(city_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    """geometry_editable: true lets an editor move a marker; the flags need editable: true."""
    from api.app import create_app
    from geo_minzheng._errors import CatalogError
    from geo_minzheng.catalog import load_catalog
    from tests.test_api_support import CATALOG

    text = CATALOG.replace("source: city.gpkg", f"source: {city_dir / 'city.gpkg'}").replace(
        "    allow_create: true\n", "    geometry_editable: true\n"
    )
    (tmp_path / "catalog.yml").write_text(text, encoding="utf-8")
    settings = make_settings(city_dir, tmp_path / "s.gpkg", catalog=tmp_path / "catalog.yml")
    with TestClient(create_app(settings)) as app_client:
        markers = app_client.get("/collections/markers").json()
        assert (markers["geometryEditable"], markers["allowCreate"]) == (True, False)
        moved = {"type": "Point", "coordinates": [125.31, 43.81]}
        response = app_client.patch("/collections/markers/items/JZ-004", json={"geometry": moved},
                                    headers={"If-Match": '"1"', **EDITOR})  # fmt: skip
        assert response.status_code == 200
        assert response.json()["geometry"]["coordinates"] == [125.31, 43.81]
        props = {"id": "JZ-600", "unit_a": "220102", "unit_b": "220104", "status": "intact"}
        new = {"geometry": moved, "properties": props}
        refused = app_client.post("/collections/markers/items", json=new, headers=EDITOR)
        assert refused.status_code == 403
    bad = text.replace("    editable: true\n    editable_fields: [status]\n",
                       "    geometry_editable: true\n")  # fmt: skip
    (tmp_path / "bad.yml").write_text(bad, encoding="utf-8")
    with pytest.raises(CatalogError, match="geometry_editable is set but editable is false"):
        load_catalog(tmp_path / "bad.yml")


@pytest.mark.parametrize(
    "bad_id",
    ["../../etc", "x" * 10_000, "a\x00b\nc", "a/b", "a\\b", "..", "two words", "\u202eevil"],
)
def test_record_ids_are_checked_before_anything_is_written(client: TestClient, bad_id: str) -> None:
    n_markers = _layer_count(client, "markers")
    audit_before = len(
        client.get("/collections/markers/items/JZ-001/history", headers=VIEWER).json()
    )
    new = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [125.335, 43.862]},
        "properties": {"id": bad_id, "unit_a": "220102", "unit_b": "220104", "status": "intact"},
    }
    response = client.post("/collections/markers/items", json=new, headers=ADMIN)
    assert response.status_code == 422, response.text
    problem = response.json()["problems"][0]
    assert (problem["field"], problem["code"]) == ("id", "bad_id")
    assert "no '/'" in problem["expected"] and "1-200" in problem["expected"]
    assert _layer_count(client, "markers") == n_markers
    history = client.get("/collections/markers/items/JZ-001/history", headers=VIEWER).json()
    assert len(history) == audit_before
    _no_leak(response)


def test_ids_in_any_script_are_reachable_through_their_urls(client: TestClient) -> None:
    """IDs are percent-encoded in Location and links: Chinese IDs, '#', ':' and '+' round-trip."""
    from urllib.parse import unquote

    for fid in ("南关-001", "JZ#7", "a:b(1)+@~", "界桩·12"):
        new = {"geometry": {"type": "Point", "coordinates": [125.335, 43.862]},
               "properties": {"id": fid, "unit_a": "220102", "unit_b": "220104",
                              "status": "intact"}}  # fmt: skip
        response = client.post("/collections/markers/items", json=new, headers=EDITOR)
        assert response.status_code == 201, response.text
        location = response.headers["Location"]
        assert unquote(location.rsplit("/", 1)[1]) == fid and "#" not in location
        got = client.get(location)
        assert got.status_code == 200 and got.json()["id"] == fid
        assert got.json()["links"][0]["href"] == location
        assert client.delete(location, headers={"If-Match": "*", **EDITOR}).status_code == 204
    store_id = "x" * 200  # the longest ID every item route accepts
    new["properties"]["id"] = store_id
    assert client.post("/collections/markers/items", json=new, headers=EDITOR).status_code == 201
    assert client.get(f"/collections/markers/items/{store_id}").status_code == 200


def test_the_store_refuses_bad_ids_on_create_and_import(tmp_path: Path) -> None:
    from geo_minzheng._errors import LayerValidationError
    from geo_minzheng.store import open_store
    from tests.test_store import demo_markers

    markers = demo_markers(4)
    markers.loc[markers.index[1], "id"] = "../x"
    markers.loc[markers.index[3], "id"] = "y" * 201
    with open_store(tmp_path / "s.gpkg") as store:
        with pytest.raises(LayerValidationError) as info:
            store.import_layer("markers", markers, kind="boundary_marker", actor="t")
        assert [p.found for p in info.value.problems] == [
            "'../x'",
            f"{'y' * 40!r}... (201 characters)",
        ]
        assert not store.has_layer("markers") and store.history() == []
        store.import_layer("markers", demo_markers(4), kind="boundary_marker", actor="t")
        with pytest.raises(LayerValidationError, match="no '/'"):
            store.create("markers", {"id": "a/b", "unit_a": "220102", "unit_b": "220104"},
                         shapely.Point(125.3, 43.8), actor="t")  # fmt: skip
        assert len(store.history()) == 1


def test_numbers_and_text_a_record_cannot_hold_are_refused(client: TestClient) -> None:
    # filters: an integer beyond 64 bits is a 400; the largest 64-bit one is a valid filter
    response = client.get("/collections/markers/items?installed_year=99999999999999999999999")
    assert response.status_code == 400
    assert "installed_year must be an integer between" in response.json()["detail"]
    response = client.get(f"/collections/markers/items?installed_year={2**63 - 1}")
    assert response.status_code == 200 and response.json()["numberMatched"] == 0
    assert client.get("/collections/roads/items?maxspeed=inf").status_code == 400
    # bodies: NaN, infinities, huge integers and lone surrogates are 422, nothing is stored
    url = "/collections/markers/items/JZ-001"
    for raw, member in (
        ('{"installed_year": NaN}', "NaN and infinities"),
        ('{"installed_year": Infinity}', "NaN and infinities"),
        ('{"installed_year": -Infinity}', "NaN and infinities"),
        ('{"installed_year": 1' + "0" * 39 + "}", "integers must lie between -2^63 and 2^63-1"),
        ('{"status": "intact", "name": "\\ud800"}', "lone surrogate"),
    ):
        response = client.patch(url, content='{"properties": ' + raw + "}",
                                headers={"If-Match": '"1"', "Content-Type": "application/json",
                                         **ADMIN})  # fmt: skip
        assert response.status_code == 422, (raw, response.text)
        assert member in response.json()["detail"] and "properties." in response.json()["detail"]
    body = ('{"type": "Feature", "geometry": {"type": "Point", "coordinates": [125.3, NaN]}, '
            '"properties": {"id": "JZ-700", "unit_a": "220102", "unit_b": "220104"}}')  # fmt: skip
    response = client.post("/collections/markers/items", content=body,
                           headers={"Content-Type": "application/json", **ADMIN})  # fmt: skip
    assert response.status_code == 422 and "geometry.coordinates[1]" in response.json()["detail"]
    # text that reads as an infinity in a number field is refused by the store, not made null
    response = client.patch("/collections/shelters/items/S00",
                            json={"properties": {"effective_area_m2": "inf"}},
                            headers={"If-Match": '"1"', **ADMIN})  # fmt: skip
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == "effective_area_m2"
    assert client.get("/collections/shelters/items/S00").json()["version"] == 1
    record = client.get(url).json()
    assert record["version"] == 1 and record["properties"]["installed_year"] == 1996


def test_if_match_star_and_etag_lists(client: TestClient) -> None:
    url = "/collections/markers/items/JZ-002"
    response = client.patch(url, json={"properties": {"status": "damaged"}},
                            headers={"If-Match": "*", **EDITOR})  # fmt: skip
    assert response.status_code == 200 and response.headers["ETag"] == '"2"'
    response = client.patch(url, json={"properties": {"status": "intact"}},
                            headers={"If-Match": '"7", W/"2"', **EDITOR})  # fmt: skip
    assert response.status_code == 200 and response.headers["ETag"] == '"3"'
    response = client.patch(url, json={"properties": {"status": "moved"}},
                            headers={"If-Match": '"1", "2"', **EDITOR})  # fmt: skip
    assert response.status_code == 409 and "stored version is 3" in response.json()["detail"]
    response = client.patch(url, json={"properties": {}}, headers={"If-Match": "*x", **EDITOR})
    assert response.status_code == 400 and "or *" in response.json()["detail"]
    assert client.delete(url, headers={"If-Match": "*", **EDITOR}).status_code == 204
    assert client.get(url).status_code == 404


def test_an_empty_list_filter_is_refused(client: TestClient, layers: dict) -> None:
    for value in (";", "", " ; ;"):
        response = client.get("/collections/eldercare/items", params={"service_types": value})
        assert response.status_code == 400, value
        assert "at least one value" in response.json()["detail"]
    response = client.get("/collections/eldercare/items", params={"service_types": "meals"})
    assert response.status_code == 200 and response.json()["numberMatched"] == 0
    assert len(layers["eldercare"]) > 0  # an empty filter used to match all of these


def test_analysis_jobs_with_a_wrong_layer_or_parameter_are_refused_at_submission(
    client: TestClient,
) -> None:
    cases = [
        ("coverage", {"demand_layer": "nope"}, "demand_layer: unknown layer 'nope'"),
        ("coverage", {"demand_layer": "roads"},
         "demand_layer: layer 'roads' is of kind 'road'; expected demand"),
        ("coverage", {"facility_layers": ["districts"]},
         "facility_layers: layer 'districts' is of kind 'admin_unit'; expected eldercare_center"),
        ("coverage", {"units_layer": "markers"}, "expected admin_unit"),
        ("coverage", {"kind": "nope"}, "kind: unknown facility kind 'nope'; expected one of:"),
        ("siting", {"candidates_layer": "roads"}, "candidates_layer: layer 'roads' is of kind"),
        ("siting", {"candidates_layer": "service_rooms", "existing_layers": ["demand"]},
         "existing_layers: layer 'demand' is of kind 'demand'"),
        ("shelters", {"shelter_layer": "eldercare"}, "expected shelter"),
        ("shelters", {"region": "mars"},
         "region: unknown region 'mars'; expected one of: national, guangdong"),
    ]  # fmt: skip
    for analysis, body, message in cases:
        response = client.post(f"/analysis/{analysis}", json=body)
        assert response.status_code == 422, (body, response.text)
        assert message in response.json()["detail"], (body, response.json()["detail"])
        assert "Location" not in response.headers


def test_failed_jobs_report_their_real_error() -> None:
    """A solver without an optimum is a 422 naming why; an unexpected error names its type."""
    from api.errors import domain_problem, unexpected_problem
    from geo_minzheng._errors import SolverError

    status, body = domain_problem(SolverError("maximal covering: model status Infeasible"))
    assert status == 422 and body["detail"] == "maximal covering: model status Infeasible"
    body = unexpected_problem(IndexError("index 7 is out of bounds for axis 0 with size 3"))
    assert body["status"] == 500
    assert body["detail"] == (
        "the analysis failed: IndexError: index 7 is out of bounds for axis 0 with size 3"
    )
    body = unexpected_problem(OSError("cannot read /srv/gm/cache/walk.pkl: disk full"))
    assert body["detail"] == "the analysis failed: OSError: cannot read <path>: disk full"


# ------------------------------------------------------------------------------------------------
# Issue 15: API keys: fast for wrong keys, rate-limited, old hashes still work
# ------------------------------------------------------------------------------------------------


def test_wrong_keys_cost_microseconds() -> None:
    import secrets
    import time

    from api.auth import KeyRing
    from geo_minzheng.settings import ApiKey, new_api_key

    keys = [new_api_key() for _ in range(50)]
    ring = KeyRing(
        [ApiKey(name=f"k{i}", role="editor", hash=hash_api_key(k)) for i, k in enumerate(keys)]
    )
    wrong = [
        *(new_api_key() for _ in range(700)),  # a key ID nobody has
        *(k[:12] + secrets.token_urlsafe(32) for k in keys * 14),  # a known ID, a wrong secret
        *(secrets.token_urlsafe(24) for _ in range(600)),  # not a key of this service at all
    ]
    start = time.perf_counter()
    assert all(ring.identify(key) is None for key in wrong)
    per_key_us = (time.perf_counter() - start) / len(wrong) * 1e6
    # scrypt, which every wrong key used to cost against every entry, takes ~30 000 µs
    assert per_key_us < 200, f"{per_key_us:.1f} µs per wrong key"
    start = time.perf_counter()
    assert [ring.identify(k).name for k in keys] == [f"k{i}" for i in range(50)]  # type: ignore[union-attr]
    assert (time.perf_counter() - start) / 50 * 1e6 < 200


def test_new_key_command_makes_a_key_the_service_accepts(
    capsys: pytest.CaptureFixture[str],
    city_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    import json

    from api.app import create_app
    from geo_minzheng.settings import _main as settings_main

    assert settings_main(["new-key", "--name", "zhao.inspector", "--role", "editor"]) == 0
    lines = capsys.readouterr().out.splitlines()
    key, entry = lines[1], json.loads(lines[3])
    assert key.startswith("gm_") and len(key) >= 55 and key not in lines[3]
    assert entry["hash"].startswith("hmac-sha256$" + key[3:11] + "$")
    assert verify_api_key(key, entry["hash"]) and not verify_api_key(key[:-1] + "x", entry["hash"])
    settings = make_settings(city_dir, tmp_path / "s.gpkg", api_keys=[entry])
    with TestClient(create_app(settings)) as app_client:
        response = app_client.patch("/collections/markers/items/JZ-005",
                                    json={"properties": {"status": "moved"}},
                                    headers={"If-Match": '"1"', "X-API-Key": key})  # fmt: skip
        assert response.status_code == 200
        history = app_client.get("/collections/markers/items/JZ-005/history",
                                 headers={"X-API-Key": key}).json()  # fmt: skip
        assert history[-1]["actor"] == "zhao.inspector"
    with pytest.raises(ValueError, match="same key ID"):
        Settings(api_keys=[entry, dict(entry, name="copy")])


def test_keys_hashed_with_the_old_command_still_work(city_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    """The scrypt hash printed in docs/api.md by the old hash-key command still verifies."""
    from api.app import create_app

    old_hash = (
        "scrypt$2e7a6d9edda4e20df1aa9506b4937c92$08841720d0cecd6a956486847939392f01a1062fdff3e0a3"
        "ee4c6fcf7523664d0d4a785a3cce3a443ae33ea22cf1cacee6b1be0e992d5186d1c011d67deee64f"
    )
    assert verify_api_key("my-editor-key-change-me-0123", old_hash)
    entry = {"name": "zhang.san", "role": "editor", "hash": old_hash}
    settings = make_settings(city_dir, tmp_path / "s.gpkg", api_keys=[entry])
    with TestClient(create_app(settings)) as app_client:
        url = "/collections/markers/items/JZ-006"
        ok = app_client.patch(url, json={"properties": {"status": "moved"}},
                              headers={"If-Match": '"1"',
                                       "X-API-Key": "my-editor-key-change-me-0123"})  # fmt: skip
        assert ok.status_code == 200 and ok.json()["version"] == 2
        wrong = app_client.patch(url, json={"properties": {"status": "intact"}},
                                 headers={"If-Match": '"2"',
                                          "X-API-Key": "my-editor-key-change-me-0124"})  # fmt: skip
        assert wrong.status_code == 401


def test_wrong_keys_are_rate_limited_per_address(city_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    import time

    from api.app import create_app

    settings = make_settings(city_dir, tmp_path / "s.gpkg", max_key_failures=3,
                             key_failure_window_s=1.5)  # fmt: skip
    url = "/collections/markers/items/JZ-007"
    patch = {"properties": {"status": "moved"}}
    with TestClient(create_app(settings)) as app_client:
        wrong = {"If-Match": '"1"', "X-API-Key": "gm_0000ed17_" + "w" * 43}
        statuses = [app_client.patch(url, json=patch, headers=wrong).status_code for _ in range(5)]
        assert statuses == [401, 401, 401, 429, 429]
        refused = app_client.patch(url, json=patch, headers=wrong)
        assert 1 <= int(refused.headers["Retry-After"]) <= 2
        assert "too many wrong API keys from this address" in refused.json()["detail"]
        # reads without a key go on; keyed requests from the address wait for the window
        assert app_client.get("/collections/markers/items?limit=1").status_code == 200
        blocked = app_client.patch(url, json=patch, headers={"If-Match": '"1"', **EDITOR})
        assert blocked.status_code == 429
        time.sleep(1.6)
        ok = app_client.patch(url, json=patch, headers={"If-Match": '"1"', **EDITOR})
        assert ok.status_code == 200
