"""Networks from the Changchun road layer and the OSM test files, checked independently."""

from __future__ import annotations

import geopandas as gpd
import networkx as nx
import osmnx as ox
import pytest
import shapely

from geo_minzheng import network
from geo_minzheng._errors import LayerValidationError, NetworkError
from tests.conftest import CHANGCHUN, OSM_DIR

ROADS = CHANGCHUN / "roads_osm.geojson"
#: two of the four peer files (the smallest) keep the run short; all four load the same way
OSM_FILES = [OSM_DIR / "guixi_jiangxi_center.osm", OSM_DIR / "beijing_haidian_cau_east.osm"]


@pytest.fixture(scope="module")
def roads() -> gpd.GeoDataFrame:
    return gpd.read_file(ROADS)


@pytest.fixture(scope="module")
def walk(roads: gpd.GeoDataFrame) -> nx.MultiDiGraph:
    return network.from_road_layer(roads, profile="walk")


@pytest.fixture(scope="module")
def drive(roads: gpd.GeoDataFrame) -> nx.MultiDiGraph:
    return network.from_road_layer(roads, profile="drive")


def _python_noding(roads: gpd.GeoDataFrame, excluded: frozenset[str]) -> nx.Graph:
    """Independent noding: a plain Python loop over vertices, split where a vertex is shared."""
    rows = [
        (i, list(geom.coords))
        for i, (geom, fclass) in enumerate(zip(roads.geometry, roads["fclass"], strict=True))
        if fclass not in excluded
    ]
    count: dict[tuple[float, float], int] = {}
    for _, coords in rows:
        for c in coords:
            count[c] = count.get(c, 0) + 1
    G = nx.MultiGraph()
    for _, coords in rows:
        part = [coords[0]]
        for c in coords[1:]:
            part.append(c)
            if count[c] > 1 or c == coords[-1]:
                G.add_edge(part[0], part[-1], line=shapely.LineString(part))
                part = [c]
    return G


def test_walk_noding_matches_independent_python_noding(roads, walk) -> None:
    ref = _python_noding(roads, network.WALK_EXCLUDED)
    biggest = max(nx.connected_components(ref), key=len)
    ref = ref.subgraph(biggest)
    assert walk.number_of_nodes() == ref.number_of_nodes()
    assert walk.number_of_edges() == 2 * ref.number_of_edges()  # walking: both directions
    ref_len = gpd.GeoSeries(
        [d["line"] for _, _, d in ref.edges(data=True)], crs="EPSG:4326"
    ).to_crs(walk.graph["crs"])
    total = sum(d["length_m"] for _, _, d in walk.edges(data=True)) / 2
    assert total == pytest.approx(ref_len.length.sum(), rel=1e-9)
    # the rest is reported, not silently lost
    dropped = walk.graph["dropped"]
    all_edges = _python_noding(roads, network.WALK_EXCLUDED)
    assert dropped["edges"] == 2 * (all_edges.number_of_edges() - ref.number_of_edges())
    assert dropped["components"] == nx.number_connected_components(all_edges) - 1


def test_graph_contract(walk) -> None:
    assert walk.graph["crs"].to_epsg() == 4551  # CGCS2000 GK CM 126E for Changchun
    assert walk.graph["profile"] == "walk"
    assert walk.graph["walk_speed_mps"] == network.ELDERLY_WALK_SPEED_MPS
    for u, v, d in list(walk.edges(data=True))[:200]:
        g = d["geometry"]
        assert (walk.nodes[u]["x"], walk.nodes[u]["y"]) == pytest.approx(g.coords[0])
        assert (walk.nodes[v]["x"], walk.nodes[v]["y"]) == pytest.approx(g.coords[-1])
        assert d["length_m"] == pytest.approx(g.length)
        assert d["time_s"] == pytest.approx(d["length_m"] / network.ELDERLY_WALK_SPEED_MPS)


def test_profiles_exclude_classes_and_drive_respects_oneway(roads, walk, drive) -> None:
    walk_classes = {d["highway"] for _, _, d in walk.edges(data=True)}
    drive_classes = {d["highway"] for _, _, d in drive.edges(data=True)}
    assert not walk_classes & {"motorway", "trunk", "trunk_link", "motorway_link"}
    assert "footway" in walk_classes
    assert not drive_classes & {"footway", "path", "steps", "pedestrian", "cycleway"}
    assert "trunk" in drive_classes
    oneway_ways = set(roads.loc[roads["oneway"] == "F", "osm_id"].astype(str))
    lines = {(d["way_id"], d["geometry"].wkb) for _, _, d in drive.edges(data=True)}
    n_oneway = 0
    for way, wkb in lines:
        if way in oneway_ways:
            n_oneway += 1
            back = shapely.reverse(shapely.from_wkb(wkb)).wkb
            assert (way, back) not in lines, f"one-way way {way} runs both ways"
    assert n_oneway > 100
    # drive keeps the largest strongly connected component: every node reaches every other
    assert nx.is_strongly_connected(drive)


def test_drive_speeds_from_maxspeed_or_class(roads, drive) -> None:
    limit = dict(zip(roads["osm_id"].astype(str), roads["maxspeed"], strict=True))
    for _, _, d in drive.edges(data=True):
        kmh = limit[d["way_id"]]
        expected = kmh / 3.6 if kmh > 0 else network.DRIVE_SPEED_KMH[d["highway"]] / 3.6
        assert d["speed_mps"] == pytest.approx(expected)
        assert d["time_s"] == pytest.approx(d["length_m"] / expected)


def test_geofabrik_T_is_against_digitised_direction() -> None:
    square = [(125.30, 43.88), (125.31, 43.88), (125.31, 43.89), (125.30, 43.89)]
    lines = gpd.GeoDataFrame(
        {"id": list("abcd"), "fclass": ["residential"] * 4, "oneway": ["T"] * 4},
        geometry=[shapely.LineString([square[i], square[(i + 1) % 4]]) for i in range(4)],
        crs="EPSG:4326",
    )
    G = network.from_road_layer(lines, profile="drive")
    assert G.number_of_edges() == 4
    to_work = gpd.GeoSeries(lines.geometry, crs="EPSG:4326").to_crs(G.graph["crs"])
    digitised = dict(zip(lines["id"], to_work, strict=True))
    for _, _, d in G.edges(data=True):
        assert d["geometry"].coords[0] == pytest.approx(digitised[d["way_id"]].coords[-1])
    lines["oneway"] = "F"
    G = network.from_road_layer(lines, profile="drive")
    for _, _, d in G.edges(data=True):
        assert d["geometry"].coords[0] == pytest.approx(digitised[d["way_id"]].coords[0])
    assert network.from_road_layer(lines, profile="walk").number_of_edges() == 8


def test_walk_speed_is_configurable(roads) -> None:
    G = network.from_road_layer(roads.iloc[:200], profile="walk", walk_speed_mps=1.3)
    _, _, d = next(iter(G.edges(data=True)))
    assert d["time_s"] == pytest.approx(d["length_m"] / 1.3)
    assert network.DEFAULT_WALK_SPEED_MPS > network.ELDERLY_WALK_SPEED_MPS


def test_bad_input_is_reported() -> None:
    gdf = gpd.GeoDataFrame(
        {"id": ["r1", "r2"], "fclass": ["residential", "residential"]},
        geometry=[shapely.LineString([(125.3, 43.9), (125.31, 43.9)]), shapely.Point(125.3, 43.9)],
        crs="EPSG:4326",
    )
    with pytest.raises(LayerValidationError, match="road 'r2': geometry must be a LineString"):
        network.from_road_layer(gdf)
    with pytest.raises(NetworkError, match="profile must be 'walk' or 'drive'"):
        network.from_road_layer(gdf.iloc[:1], profile="bike")  # type: ignore[arg-type]
    with pytest.raises(NetworkError, match="walk_speed_mps"):
        network.from_road_layer(gdf.iloc[:1], walk_speed_mps=0)
    with pytest.raises(NetworkError, match="no CRS"):
        network.from_road_layer(gdf.iloc[:1].set_crs(None, allow_override=True))


@pytest.mark.parametrize("path", OSM_FILES, ids=[p.stem for p in OSM_FILES])
def test_osm_files_load_and_match_osmnx(path) -> None:
    G = network.from_osm_xml(path, profile="walk")
    assert G.number_of_nodes() > 100
    assert nx.is_weakly_connected(G)
    # independent: osmnx's own graph of the same ways, its great-circle edge lengths
    ref = ox.graph_from_xml(path, bidirectional=True, simplify=True, retain_all=True)
    ok = [
        (u, v, k)
        for u, v, k, d in ref.edges(keys=True, data=True)
        if (hw := d.get("highway")) is not None
        and not set(hw if isinstance(hw, list) else [hw]) & network.WALK_EXCLUDED
    ]
    ref = ref.edge_subgraph(ok)
    ref = ref.subgraph(max(nx.weakly_connected_components(ref), key=len))
    ours = sum(d["length_m"] for _, _, d in G.edges(data=True))
    theirs = sum(d["length"] for _, _, d in ref.edges(data=True))
    assert ours == pytest.approx(theirs, rel=0.01)


def test_osm_drive_is_one_way_aware() -> None:
    path = OSM_DIR / "guixi_jiangxi_center.osm"
    G = network.from_osm_xml(path, profile="drive")
    assert nx.is_strongly_connected(G)
    classes = {d["highway"] for _, _, d in G.edges(data=True)}
    assert not classes & network.DRIVE_EXCLUDED
    # a drive edge's time uses a class speed, never the walking speed
    speeds = {round(d["speed_mps"], 6) for _, _, d in G.edges(data=True)}
    assert network.ELDERLY_WALK_SPEED_MPS not in speeds


def test_cache_reloads_same_network_without_rebuilding(tmp_path, monkeypatch) -> None:
    # (how much faster a reload is, is measured in docs/network.md, not in a timed test)
    G1 = network.build_network(ROADS, profile="walk", cache_dir=tmp_path)

    def no_rebuild(*args: object, **kwargs: object) -> None:
        msg = "the cached network was built again"
        raise AssertionError(msg)

    with monkeypatch.context() as patch:
        patch.setattr(network, "from_road_layer", no_rebuild)
        G2 = network.build_network(ROADS, profile="walk", cache_dir=tmp_path)
    assert not G1.graph["from_cache"] and G2.graph["from_cache"]
    assert G1.number_of_edges() == G2.number_of_edges()
    e1 = sorted((u, v, round(d["time_s"], 9)) for u, v, d in G1.edges(data=True))
    e2 = sorted((u, v, round(d["time_s"], 9)) for u, v, d in G2.edges(data=True))
    assert e1 == e2
    assert G2.graph["crs"].equals(G1.graph["crs"])
    geoms1 = [d["geometry"] for _, _, d in G1.edges(data=True)]
    geoms2 = [d["geometry"] for _, _, d in G2.edges(data=True)]
    assert all(a.equals_exact(b, 0) for a, b in zip(geoms1, geoms2, strict=True))
    # another profile or speed is another cache entry
    G3 = network.build_network(ROADS, profile="walk", walk_speed_mps=1.2, cache_dir=tmp_path)
    assert not G3.graph["from_cache"]
    assert len(list(tmp_path.glob("*.npz"))) == 2
