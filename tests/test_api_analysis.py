# ruff: noqa: F811 - pytest fixtures imported from tests.test_api_support
"""Analysis endpoints: the isochrone of a clicked point checked against networkx Dijkstra,
coverage and siting as polled jobs checked against the library and a brute-force optimum,
and the limits on request size and inline features."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import networkx as nx
import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient
from pyproj import Transformer

from geo_minzheng import coverage, network, siting
from geo_minzheng.engine import Engine
from tests.test_api_support import (  # noqa: F401 - fixtures
    city_dir,
    city_layers,
    fresh_store,
    make_settings,
    seed_store,
)


@pytest.fixture(scope="module")
def layers() -> dict:
    return city_layers()


@pytest.fixture(scope="module")
def walk_graph(layers: dict) -> nx.MultiDiGraph:
    return network.from_road_layer(layers["roads"], profile="walk")


@pytest.fixture
def client(city_dir: Path, seed_store: Path, tmp_path: Path) -> Iterator[TestClient]:
    from api.app import create_app

    settings = make_settings(
        city_dir, fresh_store(seed_store, tmp_path), build_network_on_start=True,
        max_analysis_features=200, max_request_bytes=200_000,
    )  # fmt: skip
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _wait(client: TestClient, response) -> tuple[dict, list[float]]:
    """Poll a job until it ends; return its final status and the progress values seen."""
    assert response.status_code == 202, response.text
    location = response.headers["Location"]
    seen = []
    for _ in range(600):
        status = client.get(location).json()
        seen.append(status["progress"])
        if status["status"] in ("succeeded", "failed"):
            return status, seen
        time.sleep(0.1)
    pytest.fail("job did not finish in 60 s")


def test_isochrone_of_a_clicked_point_matches_dijkstra(client: TestClient, walk_graph) -> None:
    G = walk_graph
    to_lonlat = Transformer.from_crs(G.graph["crs"], "EPSG:4326", always_xy=True)
    # the crossing (in- plus out-degree >= 6) nearest the centre of the network
    xy = np.array([(G.nodes[n]["x"], G.nodes[n]["y"]) for n in G.nodes])
    centre = xy.mean(axis=0)
    crossings = [n for n in G.nodes if G.degree(n) >= 6]
    node = min(
        crossings, key=lambda n: np.hypot(*(np.array([G.nodes[n]["x"], G.nodes[n]["y"]]) - centre))
    )
    lon, lat = to_lonlat.transform(G.nodes[node]["x"], G.nodes[node]["y"])
    response = client.post("/analysis/isochrone", json={"lon": lon, "lat": lat})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/geo+json")
    body = response.json()
    breaks = [f["properties"]["break_min"] for f in body["features"]]
    assert breaks == [15.0, 10.0, 5.0]  # largest first, drawn below the smaller ones
    polygons = {
        b: shapely.geometry.shape(f["geometry"])
        for b, f in zip(breaks, body["features"], strict=True)
    }
    assert polygons[5.0].contains(shapely.Point(lon, lat))
    assert polygons[5.0].area < polygons[10.0].area < polygons[15.0].area
    # independent: networkx Dijkstra on the same graph (seconds at the elderly walking speed)
    seconds = nx.single_source_dijkstra_path_length(G, node, cutoff=1200, weight="time_s")
    ids = list(seconds)
    x, y = to_lonlat.transform([G.nodes[n]["x"] for n in ids], [G.nodes[n]["y"] for n in ids])
    points = shapely.points(x, y)
    t = np.array([seconds[n] for n in ids])
    for minutes, polygon in polygons.items():
        limit = minutes * 60
        inside = shapely.contains(polygon.buffer(1e-6), points)
        assert inside[t <= limit].all(), f"{minutes} min: reachable nodes outside the polygon"
        beyond = t > 1.15 * limit
        if beyond.any():
            assert inside[beyond].mean() < 0.1, f"{minutes} min polygon reaches too far"


def test_isochrone_errors(client: TestClient) -> None:
    far = client.post("/analysis/isochrone", json={"lon": 125.0, "lat": 43.0})
    assert far.status_code == 422
    assert "from the nearest road of the walk network; the limit is 300 m" in far.json()["detail"]
    bad = client.post("/analysis/isochrone", json={"lon": 200, "lat": 43.0})
    assert bad.status_code == 422 and "lon" in bad.json()["detail"]
    bad = client.post("/analysis/isochrone", json={"lon": 125.3, "lat": 43.9, "breaks_min": [90]})
    assert bad.status_code == 422 and "breaks must be minutes in (0, 60]" in bad.json()["detail"]


def test_coverage_job_matches_the_library(client: TestClient, layers: dict, walk_graph) -> None:
    response = client.post("/analysis/coverage", json={"breaks_min": [5, 10, 15]})
    status, seen = _wait(client, response)
    assert status["status"] == "succeeded", status
    assert seen == sorted(seen) and seen[-1] == 1.0 and all(0 <= p <= 1 for p in seen)
    result = client.get(status["links"][-1]["href"])
    assert result.status_code == 200
    body = result.json()
    # the same analysis run directly on the same layers
    engine = Engine.from_graph(walk_graph)
    facilities = coverage.facility_kinds(
        gdf_eldercare=layers["eldercare"], gdf_service_rooms=layers["service_rooms"],
        categories=None,
    )  # fmt: skip
    direct = coverage.analyze(layers["demand"], facilities, engine, gdf_units=layers["districts"])
    got = {f["properties"]["id"]: f["properties"] for f in body["features"]}
    for kind in facilities:
        want = direct.demand.set_index("id")[f"time_min_{kind}"]
        have = np.array([got[i][f"time_min_{kind}"] for i in want.index], dtype=float)
        np.testing.assert_allclose(np.nan_to_num(have, nan=np.inf), want.to_numpy(), rtol=1e-9)
    # the summary agrees with the per-point times it came from
    aged = np.array([got[i]["aged_60_plus"] for i in got], dtype=float)
    for row in body["summary"]:
        if row["unit"] != "total":
            continue
        times = np.array([got[i][f"time_min_{row['kind']}"] for i in got], dtype=float)
        covered = aged[np.nan_to_num(times, nan=np.inf) <= row["break_min"]].sum()
        assert row["covered_aged_60_plus"] == pytest.approx(covered)
        assert row["share_aged_60_plus"] == pytest.approx(covered / aged.sum())
    assert body["provenance"]["breaks_min"] == [5.0, 10.0, 15.0]


def test_siting_job_finds_the_brute_force_optimum(
    client: TestClient, layers: dict, walk_graph
) -> None:
    roads = layers["roads"]
    picked = roads.iloc[30::150]
    midpoints = shapely.line_interpolate_point(
        np.asarray(picked.geometry.values), 0.5, normalized=True
    )
    candidates = gpd.GeoDataFrame(
        {"id": [f"C{i}" for i in range(len(midpoints))]}, geometry=midpoints, crs="EPSG:4326"
    )
    request = {
        "method": "maximal_covering",
        "k": 2,
        "break_min": 10,
        "candidates": candidates.__geo_interface__,
        "existing_layers": ["eldercare"],
    }
    status, _ = _wait(client, client.post("/analysis/siting", json=request))
    assert status["status"] == "succeeded", status
    body = client.get(status["links"][-1]["href"]).json()
    assert len(body["features"]) == 2
    before, after = body["summary"]
    # brute force over every pair of candidates on the same coverage matrices
    engine = Engine.from_graph(walk_graph)
    demand = layers["demand"]
    cand = siting.coverage_matrix(engine, demand, candidates, cutoff_s=600).toarray()
    existing = siting.coverage_matrix(engine, demand, layers["eldercare"], cutoff_s=600).toarray()
    covered = existing.any(axis=1)
    aged = demand["aged_60_plus"].to_numpy(float)
    best = max(
        aged[~covered & cand[:, list(pair)].any(axis=1)].sum()
        for pair in itertools.combinations(range(len(candidates)), 2)
    )
    assert body["objective"] == pytest.approx(best)
    assert after["covered_aged_60_plus"] - before["covered_aged_60_plus"] == pytest.approx(best)
    assert before["covered_aged_60_plus"] == pytest.approx(aged[covered].sum())


def test_analysis_limits_and_errors(client: TestClient, layers: dict) -> None:
    unknown = client.post("/analysis/coverage", json={"demand_layer": "nope"})
    # issue 15: a wrong layer in a job request is refused at submission with 422 (it was 404)
    assert unknown.status_code == 422 and "unknown layer 'nope'" in unknown.json()["detail"]
    demand = layers["demand"].head(3).copy()
    demand.loc[demand.index[0], "aged_60_plus"] = 10_000
    response = client.post("/analysis/coverage", json={"demand": demand.__geo_interface__})
    assert response.status_code == 422
    problem = response.json()["problems"][0]
    assert (problem["record"], problem["field"]) == ("demand 'D000'", "aged_60_plus")
    many = layers["demand"].iloc[np.arange(300) % len(layers["demand"])].copy()
    many["id"] = [f"X{i}" for i in range(300)]
    response = client.post("/analysis/coverage", json={"demand": many.__geo_interface__})
    assert response.status_code == 413 and "the limit is 200" in response.json()["detail"]
    huge = {"demand": {"type": "FeatureCollection", "features": [{"x": "y" * 300_000}]}}
    response = client.post("/analysis/coverage", json=huge)
    assert response.status_code == 413 and "limit of 200000 bytes" in response.json()["detail"]
    assert client.get("/jobs/" + "0" * 32).status_code == 404
    assert client.get("/jobs/not-a-job").status_code == 400
    no_candidates = client.post("/analysis/siting", json={"k": 2})
    assert no_candidates.status_code == 422 and "candidate" in no_candidates.json()["detail"]
