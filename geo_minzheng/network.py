"""Walk and drive networks from an OSM XML file or a road-line layer, with speeds and a cache.

Every network leaves this module as a ``networkx.MultiDiGraph`` in the city's working CRS
(:func:`geo_minzheng.crs.working_crs`): nodes carry ``x``/``y``; edges carry ``length_m``,
``time_s``, ``speed_mps``, ``highway`` and a ``geometry`` LineString oriented from ``u`` to ``v``.
The graph is the exchange format; :mod:`geo_minzheng.engine` turns it into CSR arrays once.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer
from scipy import sparse
from scipy.sparse import csgraph

from geo_minzheng import crs as gm_crs
from geo_minzheng import params
from geo_minzheng._errors import LayerValidationError, NetworkError, Problem

# speeds and profiles are defined once in params (re-exported here, where speeds become costs)
from geo_minzheng.params import DEFAULT_WALK_SPEED_MPS as DEFAULT_WALK_SPEED_MPS
from geo_minzheng.params import ELDERLY_WALK_SPEED_MPS as ELDERLY_WALK_SPEED_MPS
from geo_minzheng.params import Profile

#: Road classes (OSM ``highway`` / Geofabrik ``fclass``) each profile must not use.
WALK_EXCLUDED = frozenset(
    {"motorway", "motorway_link", "trunk", "trunk_link", "construction", "proposed", "raceway"}
)
DRIVE_EXCLUDED = frozenset(
    {
        "footway",
        "path",
        "steps",
        "pedestrian",
        "cycleway",
        "bridleway",
        "corridor",
        "elevator",
        "platform",
        "track",
        "construction",
        "proposed",
        "raceway",
        "bus_guideway",
        "escape",
    }
)
#: Classes that are not roads at all (OSM ``highway`` values of points/areas or Geofabrik extras).
_NOT_ROADS = frozenset({"bus_stop", "crossing", "traffic_signals", "street_lamp", "rest_area"})

#: Default driving speeds by class, km/h, when a road has no ``maxspeed``: mid-range design speeds
#: of CJJ 37-2012 城市道路工程设计规范 §3.2 (快速路 60-100, 主干路 40-60, 次干路 30-50,
#: 支路 20-40), with motorways at the GB 5768 urban expressway limit; links run at ~70 %.
DRIVE_SPEED_KMH: Mapping[str, float] = {
    "motorway": 100.0,
    "motorway_link": 60.0,
    "trunk": 80.0,
    "trunk_link": 50.0,
    "primary": 50.0,
    "primary_link": 35.0,
    "secondary": 40.0,
    "secondary_link": 30.0,
    "tertiary": 30.0,
    "tertiary_link": 25.0,
    "unclassified": 25.0,
    "residential": 20.0,
    "living_street": 10.0,
    "service": 15.0,
    "road": 25.0,
}
_DEFAULT_DRIVE_KMH = 20.0
_CACHE_VERSION = "1"


# --------------------------------------------------------------------------------------------
# profiles and speeds
# --------------------------------------------------------------------------------------------
def _check_profile(profile: str, walk_speed_mps: float) -> None:
    """The profile and walking speed, checked by the rules of :mod:`geo_minzheng.params`."""
    try:
        params.check_profile(profile)
        params.check_walk_speed_mps(walk_speed_mps)
    except ValueError as exc:
        raise NetworkError(str(exc)) from None


def allowed(highway: np.ndarray, profile: Profile) -> np.ndarray:
    """Boolean mask of road classes ``profile`` may use."""
    excluded = WALK_EXCLUDED if profile == "walk" else DRIVE_EXCLUDED
    hw = pd.Series(highway, dtype=object).astype(str)
    return ~hw.isin(excluded | _NOT_ROADS).to_numpy()


def _parse_maxspeed(values: np.ndarray) -> np.ndarray:
    """Speed limits, km/h, from OSM ``maxspeed`` strings or numbers (mph converted); NaN if none."""
    out = np.full(len(values), np.nan)
    for i, raw in enumerate(values):  # one value per road, not per node: a few thousand at most
        value = raw[0] if isinstance(raw, list) and raw else raw
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        match = re.match(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(mph)?", str(value))
        if match:
            kmh = float(match.group(1)) * (1.609344 if match.group(2) else 1.0)
            out[i] = kmh if kmh > 0 else np.nan
    return out


def speeds_mps(
    highway: np.ndarray,
    maxspeed_kmh: np.ndarray,
    *,
    profile: Profile,
    walk_speed_mps: float,
    drive_speeds_kmh: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Speed of each edge: the walking speed, or maxspeed / the class default when driving."""
    if profile == "walk":
        return np.full(len(highway), float(walk_speed_mps))
    table = {**DRIVE_SPEED_KMH, **(drive_speeds_kmh or {})}
    default = pd.Series(highway, dtype=object).astype(str).map(table).astype(float)
    kmh = np.where(np.isfinite(maxspeed_kmh), maxspeed_kmh, default.fillna(_DEFAULT_DRIVE_KMH))
    return kmh / 3.6


# --------------------------------------------------------------------------------------------
# graph assembly from edge arrays (shared by both sources and the cache)
# --------------------------------------------------------------------------------------------
def _graph_from_arrays(
    *,
    node_ids: np.ndarray,
    node_x: np.ndarray,
    node_y: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    geometry: np.ndarray,
    length_m: np.ndarray,
    speed_mps: np.ndarray,
    highway: np.ndarray,
    way_id: np.ndarray,
    graph_attrs: dict[str, Any],
) -> nx.MultiDiGraph:
    G = nx.MultiDiGraph(**graph_attrs)
    G.add_nodes_from(
        (int(n), {"x": float(x), "y": float(y)})
        for n, x, y in zip(node_ids, node_x, node_y, strict=True)
    )
    time_s = length_m / speed_mps
    G.add_edges_from(
        (
            int(a),
            int(b),
            {
                "length_m": float(le),
                "time_s": float(t),
                "speed_mps": float(s),
                "highway": str(h),
                "way_id": str(w),
                "geometry": g,
            },
        )
        for a, b, le, t, s, h, w, g in zip(
            u, v, length_m, time_s, speed_mps, highway, way_id, geometry, strict=True
        )
    )
    return G


def _largest_component(
    node_count: int, u: np.ndarray, v: np.ndarray, *, strongly: bool
) -> tuple[np.ndarray, int]:
    """Mask of nodes in the largest (strongly or weakly) connected component, and the count."""
    adj = sparse.csr_matrix((np.ones(len(u)), (u, v)), shape=(node_count, node_count))
    n_comp, labels = csgraph.connected_components(
        adj, directed=True, connection="strong" if strongly else "weak"
    )
    sizes = np.bincount(labels, minlength=n_comp)
    return labels == int(np.argmax(sizes)), int(n_comp)


def _finish(
    *,
    node_ids: np.ndarray,
    xy: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    geometry: np.ndarray,
    highway: np.ndarray,
    maxspeed_kmh: np.ndarray,
    way_id: np.ndarray,
    profile: Profile,
    walk_speed_mps: float,
    drive_speeds_kmh: Mapping[str, float] | None,
    work_crs: CRS,
    source: str,
) -> nx.MultiDiGraph:
    """Speeds, largest component, report, graph. ``u``/``v`` index into ``node_ids``/``xy``."""
    length_m = shapely.length(geometry)
    keep_edge = length_m > 0
    u, v, geometry, highway, maxspeed_kmh, way_id, length_m = (
        a[keep_edge] for a in (u, v, geometry, highway, maxspeed_kmh, way_id, length_m)
    )
    if len(u) == 0:
        msg = f"{source}: no road usable by the {profile!r} profile"
        raise NetworkError(msg)
    speed = speeds_mps(
        highway,
        maxspeed_kmh,
        profile=profile,
        walk_speed_mps=walk_speed_mps,
        drive_speeds_kmh=drive_speeds_kmh,
    )
    in_use = np.zeros(len(node_ids), dtype=bool)
    in_use[u] = True
    in_use[v] = True
    keep_node, n_comp = _largest_component(len(node_ids), u, v, strongly=profile == "drive")
    keep_node &= in_use
    keep = keep_node[u] & keep_node[v]
    n_comp_used = n_comp - int((~in_use).sum())
    dropped = {
        "components": max(n_comp_used - 1, 0),
        "nodes": int((in_use & ~keep_node).sum()),
        "edges": int((~keep).sum()),
        "length_m": float(length_m[~keep].sum()),
    }
    attrs = {
        "crs": work_crs,
        "profile": profile,
        "walk_speed_mps": float(walk_speed_mps),
        "source": source,
        "dropped": dropped,
        "name": f"{Path(source).name} ({profile})",
    }
    return _graph_from_arrays(
        node_ids=node_ids[keep_node],
        node_x=xy[keep_node, 0],
        node_y=xy[keep_node, 1],
        u=node_ids[u[keep]],
        v=node_ids[v[keep]],
        geometry=geometry[keep],
        length_m=length_m[keep],
        speed_mps=speed[keep],
        highway=highway[keep],
        way_id=way_id[keep],
        graph_attrs=attrs,
    )


# --------------------------------------------------------------------------------------------
# road-line layers
# --------------------------------------------------------------------------------------------
def _road_columns(gdf_road: gpd.GeoDataFrame) -> dict[str, np.ndarray]:
    """The road columns, canonical (kinds.road) or raw Geofabrik names; problems collected."""
    problems: list[Problem] = []
    if "fclass" in gdf_road.columns:
        fclass = gdf_road["fclass"].to_numpy(dtype=object)
    elif "highway" in gdf_road.columns:
        fclass = gdf_road["highway"].to_numpy(dtype=object)
    else:
        problems.append(
            Problem("layer", "fclass", "a road-class column (fclass or highway)", "none")
        )
        fclass = np.array([], dtype=object)
    id_col = next((c for c in ("id", "osm_id") if c in gdf_road.columns), None)
    ids = (
        gdf_road[id_col].astype(str).to_numpy(dtype=object)
        if id_col
        else np.arange(len(gdf_road)).astype(str).astype(object)
    )
    geom = gdf_road.geometry
    bad = ~geom.geom_type.isin(["LineString", "MultiLineString"]).to_numpy()
    for i in np.flatnonzero(bad)[:50]:
        problems.append(
            Problem(f"road '{ids[i]}'", "geometry", "a LineString", str(geom.iloc[i].geom_type))
        )
    if problems:
        raise LayerValidationError(str(gdf_road.attrs.get("layer", "roads")), problems)
    oneway = (
        gdf_road["oneway"].astype(str).str.strip().to_numpy(dtype=object)
        if "oneway" in gdf_road.columns
        else np.full(len(gdf_road), "B", dtype=object)
    )
    maxspeed = (
        _parse_maxspeed(gdf_road["maxspeed"].to_numpy(dtype=object))
        if "maxspeed" in gdf_road.columns
        else np.full(len(gdf_road), np.nan)
    )
    return {"fclass": fclass, "id": ids, "oneway": oneway, "maxspeed": maxspeed}


def _node_lines(
    lines: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split lines at every vertex they share (and at their ends), vectorised.

    Returns the distinct node coordinates, each edge's start/end node index, each edge's source
    line index, and the edges' LineStrings (in the input coordinates). Ways that cross without a
    shared vertex (bridges, tunnels) stay unconnected, which is what OSM layers mean.
    """
    coords, line_of = shapely.get_coordinates(lines, return_index=True)
    _, vertex_key, counts = np.unique(coords, axis=0, return_inverse=True, return_counts=True)
    vertex_key = vertex_key.ravel()
    n = len(coords)
    first = np.ones(n, dtype=bool)
    first[1:] = line_of[1:] != line_of[:-1]
    last = np.ones(n, dtype=bool)
    last[:-1] = line_of[1:] != line_of[:-1]
    is_node = first | last | (counts[vertex_key] > 1)
    # segment i runs from vertex i to i+1 within a line; it opens a new edge when vertex i is a node
    seg = np.flatnonzero(~last)
    edge_of_seg = np.cumsum(is_node[seg]) - 1
    n_edges = int(edge_of_seg[-1]) + 1 if len(seg) else 0
    # vertices of each edge: every segment's start, plus the end of each edge's last segment
    ends = seg[is_node[seg + 1]] + 1
    vert = np.concatenate([seg, ends])
    edge = np.concatenate([edge_of_seg, edge_of_seg[is_node[seg + 1]]])
    order = np.lexsort((vert, edge))
    vert, edge = vert[order], edge[order]
    geoms = shapely.linestrings(coords[vert], indices=edge)
    start = np.full(n_edges, -1)
    stop = np.full(n_edges, -1)
    start[edge[::-1]] = vert[::-1]  # first vertex of each edge wins
    stop[edge] = vert  # last vertex wins
    node_xy_key, node_index = np.unique(
        vertex_key[np.concatenate([start, stop])], return_inverse=True
    )
    # node coordinates: the coordinate of any vertex carrying that key
    key_to_vertex = np.empty(int(vertex_key.max()) + 1 if n else 0, dtype=np.int64)
    key_to_vertex[vertex_key] = np.arange(n)
    node_coords = coords[key_to_vertex[node_xy_key]]
    return (
        node_coords,
        node_index[:n_edges],
        node_index[n_edges:],
        line_of[start],
        geoms,
    )


def from_road_layer(
    gdf_road: gpd.GeoDataFrame,
    *,
    profile: Profile = "walk",
    walk_speed_mps: float = ELDERLY_WALK_SPEED_MPS,
    drive_speeds_kmh: Mapping[str, float] | None = None,
) -> nx.MultiDiGraph:
    """Build a walk or drive network from a road-line layer (whole ways meeting at shared vertices).

    Lines are noded at every vertex two lines (or one line twice) share, the way OSM ways meet;
    crossings without a shared vertex (bridges, tunnels, different ``layer``) do not connect.
    Driving follows Geofabrik ``oneway`` codes: ``F`` = along the digitised direction only,
    ``T`` = against it only, ``B`` = both (OSM ``yes``/``-1``/``no`` are accepted too); walking
    ignores one-way. Only the largest connected component (strongly connected for driving) is
    kept; ``G.graph["dropped"]`` reports the rest.

    Parameters
    ----------
    gdf_road
        Road lines in any CRS, with ``fclass`` (or ``highway``), optional ``oneway``, ``maxspeed``
        (km/h; 0 means unknown) and ``id``/``osm_id``. Not modified.
    profile
        ``"walk"`` (no motorway/trunk) or ``"drive"`` (no footway/path/steps/pedestrian/cycleway).
    walk_speed_mps
        Walking speed; defaults to the elderly speed because eldercare circles are timed for it.
    drive_speeds_kmh
        Overrides of :data:`DRIVE_SPEED_KMH` per class.
    """
    _check_profile(profile, walk_speed_mps)
    if gdf_road.crs is None:
        msg = "road layer has no CRS: set one (e.g. gdf.set_crs('EPSG:4326')) before building"
        raise NetworkError(msg)
    cols = _road_columns(gdf_road)
    exploded = gpd.GeoDataFrame(cols, geometry=gdf_road.geometry.values, crs=gdf_road.crs)
    exploded = exploded[allowed(exploded["fclass"].to_numpy(), profile)]
    exploded = exploded[~exploded.geometry.is_empty].explode(index_parts=False)
    if exploded.empty:
        msg = f"road layer has no road usable by the {profile!r} profile"
        raise NetworkError(msg)
    wgs = exploded.to_crs(gm_crs.WGS84)
    lon0, lat0 = (np.asarray(wgs.total_bounds[:2]) + np.asarray(wgs.total_bounds[2:])) / 2
    work_crs = gm_crs.working_crs(float(lon0), float(lat0))
    # node in the source coordinates, where shared vertices are bit-identical
    node_xy, u, v, line, geoms = _node_lines(np.asarray(exploded.geometry.values))
    to_work = Transformer.from_crs(exploded.crs, work_crs, always_xy=True)
    node_xy = np.column_stack(to_work.transform(node_xy[:, 0], node_xy[:, 1]))
    geoms = shapely.transform(geoms, lambda xy: np.column_stack(to_work.transform(*xy.T)))
    fclass = exploded["fclass"].to_numpy()[line]
    way = exploded["id"].to_numpy()[line]
    speed = exploded["maxspeed"].to_numpy()[line]
    node_ids = np.arange(len(node_xy))
    if profile == "walk":
        oneway = np.full(len(u), "B", dtype=object)
    else:
        oneway = pd.Series(exploded["oneway"].to_numpy()[line]).str.upper()
        oneway = oneway.replace({"YES": "F", "1": "F", "TRUE": "F", "-1": "T", "NO": "B"})
        oneway = oneway.where(oneway.isin(["F", "T"]), "B").to_numpy()
    fwd = oneway != "T"
    bwd = oneway != "F"
    return _finish(
        node_ids=node_ids,
        xy=node_xy,
        u=np.concatenate([u[fwd], v[bwd]]),
        v=np.concatenate([v[fwd], u[bwd]]),
        geometry=np.concatenate([geoms[fwd], shapely.reverse(geoms[bwd])]),
        highway=np.concatenate([fclass[fwd], fclass[bwd]]),
        maxspeed_kmh=np.concatenate([speed[fwd], speed[bwd]]),
        way_id=np.concatenate([way[fwd], way[bwd]]),
        profile=profile,
        walk_speed_mps=walk_speed_mps,
        drive_speeds_kmh=drive_speeds_kmh,
        work_crs=work_crs,
        source=str(gdf_road.attrs.get("layer", "road layer")),
    )


# --------------------------------------------------------------------------------------------
# OSM XML
# --------------------------------------------------------------------------------------------
def _first(value: object) -> object:
    return value[0] if isinstance(value, list) and value else value


def from_osm_xml(
    path: str | Path,
    *,
    profile: Profile = "walk",
    walk_speed_mps: float = ELDERLY_WALK_SPEED_MPS,
    drive_speeds_kmh: Mapping[str, float] | None = None,
) -> nx.MultiDiGraph:
    """Build a walk or drive network from an OSM XML file with osmnx, offline.

    Ways without a ``highway`` tag (buildings, land use) and classes the profile excludes are
    dropped *before* osmnx simplifies the topology; driving keeps one-way streets one-way
    (osmnx reads ``oneway``/``junction=roundabout``), walking makes every way two-way; ways
    tagged ``access=private|no`` are left out of driving. The graph is projected to the working
    CRS and given the same edge attributes as :func:`from_road_layer`.
    """
    import osmnx as ox

    _check_profile(profile, walk_speed_mps)
    path = Path(path)
    if not path.is_file():
        msg = f"OSM file not found: {path}"
        raise NetworkError(msg)
    G0 = ox.graph_from_xml(path, bidirectional=profile == "walk", simplify=False, retain_all=True)
    bad = []
    for a, b, k, d in G0.edges(keys=True, data=True):
        hw = _first(d.get("highway"))
        access = _first(d.get("access"))
        if (
            hw is None
            or not allowed(np.array([hw]), profile)[0]
            or d.get("area") == "yes"
            or (profile == "drive" and access in ("private", "no"))
        ):
            bad.append((a, b, k))
    G0.remove_edges_from(bad)
    G0.remove_nodes_from([n for n, deg in dict(G0.degree()).items() if deg == 0])
    if G0.number_of_edges() == 0:
        msg = f"{path.name}: no highway usable by the {profile!r} profile"
        raise NetworkError(msg)
    G0 = ox.simplification.simplify_graph(G0)
    nodes, edges = ox.convert.graph_to_gdfs(G0, nodes=True, edges=True, fill_edge_geometry=True)
    lon0, lat0 = nodes["x"].mean(), nodes["y"].mean()
    work_crs = gm_crs.working_crs(float(lon0), float(lat0))
    nodes_w = nodes.to_crs(work_crs)
    edges_w = edges.to_crs(work_crs)
    node_ids = nodes_w.index.to_numpy()
    pos = pd.Series(np.arange(len(node_ids)), index=node_ids)
    u = pos.loc[edges_w.index.get_level_values(0)].to_numpy()
    v = pos.loc[edges_w.index.get_level_values(1)].to_numpy()
    highway = np.array([str(_first(h)) for h in edges_w["highway"]], dtype=object)
    maxspeed = (
        _parse_maxspeed(edges_w["maxspeed"].to_numpy(dtype=object))
        if "maxspeed" in edges_w.columns
        else np.full(len(edges_w), np.nan)
    )
    way_id = np.array([str(_first(o)) for o in edges_w["osmid"]], dtype=object)
    xy = np.column_stack([nodes_w.geometry.x.to_numpy(), nodes_w.geometry.y.to_numpy()])
    return _finish(
        node_ids=node_ids,
        xy=xy,
        u=u,
        v=v,
        geometry=np.asarray(edges_w.geometry.values),
        highway=highway,
        maxspeed_kmh=maxspeed,
        way_id=way_id,
        profile=profile,
        walk_speed_mps=walk_speed_mps,
        drive_speeds_kmh=drive_speeds_kmh,
        work_crs=work_crs,
        source=str(path),
    )


# --------------------------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------------------------
def save_network(G: nx.MultiDiGraph, path: str | Path) -> Path:
    """Save a network built here to one ``.npz`` file (arrays and flat coordinates; no pickle)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    node_ids = np.fromiter(G.nodes, dtype=np.int64, count=G.number_of_nodes())
    node_x = np.array([d["x"] for _, d in G.nodes(data=True)])
    node_y = np.array([d["y"] for _, d in G.nodes(data=True)])
    rows = list(G.edges(data=True))
    geoms = np.array([d["geometry"] for _, _, d in rows], dtype=object)
    coords, index = shapely.get_coordinates(geoms, return_index=True)
    attrs = {k: v for k, v in G.graph.items() if k != "crs"}
    attrs["crs"] = CRS(G.graph["crs"]).to_wkt()
    np.savez(
        path,
        node_ids=node_ids,
        node_x=node_x,
        node_y=node_y,
        u=np.array([a for a, _, _ in rows], dtype=np.int64),
        v=np.array([b for _, b, _ in rows], dtype=np.int64),
        length_m=np.array([d["length_m"] for _, _, d in rows]),
        speed_mps=np.array([d["speed_mps"] for _, _, d in rows]),
        highway=np.array([d["highway"] for _, _, d in rows], dtype=str),
        way_id=np.array([d["way_id"] for _, _, d in rows], dtype=str),
        coords=coords,
        coord_index=index,
        graph=np.array(json.dumps(attrs)),
    )
    return path


def load_network(path: str | Path) -> nx.MultiDiGraph:
    """Load a network saved by :func:`save_network`."""
    with np.load(Path(path), allow_pickle=False) as z:
        attrs = json.loads(str(z["graph"]))
        attrs["crs"] = CRS.from_wkt(attrs["crs"])
        return _graph_from_arrays(
            node_ids=z["node_ids"],
            node_x=z["node_x"],
            node_y=z["node_y"],
            u=z["u"],
            v=z["v"],
            geometry=shapely.linestrings(z["coords"], indices=z["coord_index"]),
            length_m=z["length_m"],
            speed_mps=z["speed_mps"],
            highway=z["highway"].astype(object),
            way_id=z["way_id"].astype(object),
            graph_attrs=attrs,
        )


def cache_key(source: str | Path, *, profile: str, walk_speed_mps: float, extra: str = "") -> str:
    """Hash of the input file's bytes, the profile, the speed and the cache format version."""
    h = hashlib.sha256()
    with open(source, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    h.update(f"|{profile}|{walk_speed_mps!r}|{extra}|v{_CACHE_VERSION}".encode())
    return h.hexdigest()[:24]


def build_network(
    source: str | Path,
    *,
    profile: Profile = "walk",
    walk_speed_mps: float = ELDERLY_WALK_SPEED_MPS,
    cache_dir: str | Path | None = None,
    layer: str | None = None,
) -> nx.MultiDiGraph:
    """Build a network from a file (``.osm`` XML, or a road layer readable by pyogrio), cached.

    With ``cache_dir`` the network is saved under a key hashed from the file's bytes, the profile
    and the speed, and later calls with the same inputs reload it instead of rebuilding.
    ``G.graph["from_cache"]`` says which happened.
    """
    source = Path(source)
    if not source.is_file():
        msg = f"network source not found: {source}"
        raise NetworkError(msg)
    cached = None
    if cache_dir is not None:
        key = cache_key(source, profile=profile, walk_speed_mps=walk_speed_mps, extra=layer or "")
        cached = Path(cache_dir) / f"{source.stem}-{profile}-{key}.npz"
        if cached.is_file():
            G = load_network(cached)
            G.graph["from_cache"] = True
            return G
    if source.suffix.lower() in (".osm", ".xml"):
        G = from_osm_xml(source, profile=profile, walk_speed_mps=walk_speed_mps)
    else:
        gdf = gpd.read_file(source, layer=layer) if layer else gpd.read_file(source)
        gdf.attrs["layer"] = source.name
        G = from_road_layer(gdf, profile=profile, walk_speed_mps=walk_speed_mps)
    if cached is not None:
        save_network(G, cached)
    G.graph["from_cache"] = False
    return G
