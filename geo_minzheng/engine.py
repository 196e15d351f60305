"""Shortest-path engine over CSR arrays: snapping, nearest facility, bounded trees, OD, routes.

The graph is exported once to arrays (directed edges ``u -> v`` with a cost, a length and a
geometry) and a CSR matrix that :func:`scipy.sparse.csgraph.dijkstra` runs on in compiled code.
This is the only module that maps layer IDs to graph indices.

Points (demand, facilities) are snapped to the nearest *edge*, not node, so a point in the
middle of a long block is reached through the block, in both directions where the street is
two-way; the lookup runs in bulk on a grid hash of the street pieces
(:mod:`geo_minzheng.snapping`). Nearest-facility queries add one start node per source, joined
to its edge's end nodes, and read every target's cost off its own edge's end nodes afterwards
(vectorised); OD matrices, bounded trees and routes split the edges at every point (virtual
nodes).
The access leg from the point to the road is added to every cost: its length times the cost per
metre of the road it joins (for ``time_s`` that is the walking speed on a walk network and the
road's speed on a drive network; for ``length_m`` it is the distance itself). Points farther than
``max_snap_m`` from any road are reported in ``Snapped.too_far``, never silently snapped.

Modules that work on the network's geometry themselves read it through public, typed seams:
:attr:`Engine.arrays` (a read-only :class:`NetworkArrays` view), :meth:`Engine.point_edges`,
:func:`ranges`, :data:`EPS_COST`, and keep what they derive per engine in
:attr:`Engine.derived`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import weakref
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, TypeVar, cast

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import KDTree

from geo_minzheng import params
from geo_minzheng._errors import (
    LayerValidationError,
    NetworkError,
    Problem,
    UnreachableError,
)
from geo_minzheng.crs import point_transform
from geo_minzheng.snapping import SegmentGrid

#: Least edge cost, in the engine's cost unit: costs are clamped to it so that csgraph keeps
#: zero-cost edges (it drops explicit zeros); modules that cut edges into pieces clamp alike.
EPS_COST = 1e-9
#: Cells of the dense (sources x nodes) block one csgraph call may return (~64 MB of float64).
_BLOCK_CELLS = 8_000_000


def _chunk(n_nodes: int) -> int:
    """Sources per csgraph call, so that full per-source trees stay within _BLOCK_CELLS."""
    return max(1, min(256, _BLOCK_CELLS // max(n_nodes, 1)))


# --------------------------------------------------------------------------------------------
# public result types
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Snapped:
    """Points attached to the network: one row per point that is within ``max_snap_m`` of a road.

    Attributes
    ----------
    ids
        The snapped points' IDs (strings), in input order.
    xy
        The points' own coordinates in the engine's CRS.
    snapped_xy
        Where each point meets its road.
    segment
        Index of the street segment (an undirected edge geometry) each point is on.
    offset_m
        Distance of the snapped position along that segment's canonical geometry.
    access_m
        Straight distance from the point to the road.
    access_cost
        Cost of the access leg in the engine's cost unit.
    too_far
        ``DataFrame[id, distance_m]`` of points farther than ``max_snap_m`` from every road (or
        with empty geometry: distance NaN); they are in no query.
    rows
        Each snapped point's row position in the input frame (to join results back by
        position, not by ID).
    """

    ids: np.ndarray
    xy: np.ndarray
    snapped_xy: np.ndarray
    segment: np.ndarray
    offset_m: np.ndarray
    access_m: np.ndarray
    access_cost: np.ndarray
    too_far: pd.DataFrame
    engine_id: int = field(repr=False)
    rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64), repr=False)
    #: The engine's per-point-set arrays (edge pairs, sort order, source graph), kept with the
    #: points so that they live exactly as long as the points do
    _memo: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ids)

    def ids_at(self, position: np.ndarray) -> np.ndarray:
        """IDs of the points at ``position`` (object array; None where the position is -1)."""
        return np.append(self.ids, np.array([None], dtype=object))[position]

    def subset(self, positions: slice | np.ndarray) -> Snapped:
        """The points at ``positions`` (a slice gives views, no copy), still of this engine.

        The per-point-set arrays the engine keeps with the points are not carried over: they
        describe the whole set.
        """
        return dataclasses.replace(self, **{f: getattr(self, f)[positions] for f in _SNAP_ARRAYS})


@dataclass(frozen=True)
class _Column:
    """One (edge, position) pair of every target point, for the one-pass nearest query."""

    start: np.ndarray  # the edge's start node
    edge: np.ndarray
    frac: np.ndarray  # fraction of the edge before the target, in the edge's direction
    along: np.ndarray  # base cost of that part of the edge
    at_end: np.ndarray  # targets exactly at the edge's end node


@dataclass(frozen=True)
class ODMatrix:
    """Sparse origin-destination costs: only pairs within the cutoff are stored."""

    origin_ids: np.ndarray
    destination_ids: np.ndarray
    origin_index: np.ndarray
    destination_index: np.ndarray
    cost: np.ndarray

    def to_dense(self, fill: float = np.inf) -> np.ndarray:
        """``ndarray[n_origins, n_destinations]`` with ``fill`` where no path is within cutoff."""
        out = np.full((len(self.origin_ids), len(self.destination_ids)), fill, dtype=float)
        out[self.origin_index, self.destination_index] = self.cost
        return out

    def to_frame(self) -> pd.DataFrame:
        """Long table ``[origin_id, destination_id, cost]`` of the stored pairs."""
        return pd.DataFrame(
            {
                "origin_id": self.origin_ids[self.origin_index],
                "destination_id": self.destination_ids[self.destination_index],
                "cost": self.cost,
            }
        )


@dataclass(frozen=True)
class Route:
    """A shortest path between two points, access legs included."""

    geometry: shapely.LineString
    cost: float
    length_m: float


@dataclass(frozen=True)
class Reach:
    """Bounded shortest-path trees of several sources over the augmented graph (sparse).

    ``cost[i, j]`` is the cost from source ``i`` (access leg included) to augmented node ``j``;
    only nodes within the cutoff are stored. The usable edges are kept as arrays, not a table
    (a million-edge network would be copied into one on every query): the engine's own edges
    (``edge_u``, ``edge_v``, ``edge_cost``; inf where closed) and the virtual edges that split
    them at the sources (``virtual``); :attr:`edges` lays them all out as one table.
    """

    source_ids: np.ndarray
    cost: sparse.csr_matrix
    edge_u: np.ndarray
    edge_v: np.ndarray
    edge_cost: np.ndarray
    virtual: dict[str, np.ndarray]
    n_real_nodes: int

    @property
    def edges(self) -> pd.DataFrame:
        """Every usable augmented edge: columns ``from``, ``to``, ``cost``, ``parent`` (the
        engine edge it lies on, -1 for none), ``f0``/``f1`` (the part of the parent edge it
        covers, as fractions of its length)."""
        base = _edge_table(self.edge_u, self.edge_v, self.edge_cost)
        return pd.concat([base, pd.DataFrame(self.virtual)], ignore_index=True)


@dataclass(frozen=True)
class NetworkArrays:
    """A read-only view of the engine's edge and street-segment arrays (:attr:`Engine.arrays`).

    For modules that work on the network's geometry themselves (isochrones sample the reached
    parts of edges and rasterise the streets). Every array is a non-writeable view of the
    engine's own, built once per engine: reading them copies nothing. Positions index the
    engine's directed edges (``n_edges``), nodes (``n_nodes``) and street segments (one per pair
    of twin edges, the positions :attr:`Snapped.segment` holds).

    Attributes
    ----------
    u, v
        Start and end node of every edge.
    out_edges
        Edge positions sorted by start node (stable).
    out_ptr
        ``n_nodes + 1`` offsets: node ``k``'s out-edges are
        ``out_edges[out_ptr[k] : out_ptr[k + 1]]``.
    twin
        Every edge's reverse over the same street segment, -1 where there is none (one-way).
    vertex_xy
        ``(n_vertices, 2)`` coordinates of every edge geometry's vertices, edge after edge.
    vertex_ptr
        ``n_edges + 1`` offsets: edge ``e``'s vertices are
        ``vertex_xy[vertex_ptr[e] : vertex_ptr[e + 1]]``.
    vertex_arc_m
        Distance along its own edge's geometry of every vertex (0 at each edge's first vertex).
    segment_geometry
        One line per street segment, in a canonical direction.
    segment_tree
        GEOS index of ``segment_geometry`` (for box and distance queries).
    """

    u: np.ndarray
    v: np.ndarray
    out_edges: np.ndarray
    out_ptr: np.ndarray
    twin: np.ndarray
    vertex_xy: np.ndarray
    vertex_ptr: np.ndarray
    vertex_arc_m: np.ndarray
    segment_geometry: np.ndarray
    segment_tree: shapely.STRtree


class PointEdges(NamedTuple):
    """Every (point, directed edge of the point's street segment) pair, grouped by point
    (:meth:`Engine.point_edges`; read-only arrays)."""

    point: np.ndarray  # the point's position in its Snapped set
    edge: np.ndarray
    fraction: np.ndarray  # of the edge before the point, in the edge's own direction


_T = TypeVar("_T")


class DerivedCache:
    """State that other modules derive from one engine and keep while the engine lives.

    Isochrones keep their road-raster blocks here, so that the blocks live and die with the
    engine (no module-global registry) and two engines never wait on each other. ``lock`` guards
    the entries; it is re-entrant, so a caller that fills an entry in place holds it around
    :meth:`entry` and the filling. Pickling an engine drops the entries (they are rebuilt on
    demand).
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._entries: dict[Hashable, object] = {}

    def entry(self, key: Hashable, factory: Callable[[], _T]) -> _T:
        """The entry under ``key`` (by convention ``("<module>.<name>", ...)``), made by
        ``factory()`` on first use."""
        with self.lock:
            if key not in self._entries:
                self._entries[key] = factory()
            return cast(_T, self._entries[key])

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def __reduce__(self) -> tuple[type[DerivedCache], tuple[()]]:
        # a lock cannot be pickled, and the entries are derived: an empty cache comes back
        return (DerivedCache, ())


# --------------------------------------------------------------------------------------------
# barriers
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Barriers:
    """Points, lines or polygons that close the roads they touch or multiply their cost.

    One object works in every query of every engine: the edges it touches are found (and cached)
    per engine, as those whose geometry comes within ``tolerance_m`` of a barrier geometry.
    """

    geometry: gpd.GeoSeries
    mode: Literal["close", "scale"] = "close"
    factor: float = 1.0
    tolerance_m: float = 1.0
    #: Mask of touched edges per engine, kept with the barriers (and dropped with an engine)
    _touched: weakref.WeakKeyDictionary[Engine, np.ndarray] = field(
        default_factory=weakref.WeakKeyDictionary, init=False, repr=False, compare=False
    )

    @classmethod
    def from_geodataframe(
        cls,
        gdf: gpd.GeoDataFrame | gpd.GeoSeries,
        *,
        mode: Literal["close", "scale"] = "close",
        factor: float | None = None,
        tolerance_m: float = 1.0,
    ) -> Barriers:
        """Barriers from the geometries of ``gdf`` (any CRS).

        Parameters
        ----------
        mode
            ``"close"`` removes touched edges; ``"scale"`` multiplies their cost by ``factor``.
        factor
            Cost multiplier for ``mode="scale"`` (> 0; e.g. 3.0 for a slow flooded street).
        tolerance_m
            How near a road a barrier must come to touch it (a point barrier is rarely exactly
            on the line).
        """
        geoms = gdf.geometry if isinstance(gdf, gpd.GeoDataFrame) else gdf
        if geoms.crs is None:
            msg = "barriers have no CRS: set one (e.g. gdf.set_crs('EPSG:4326'))"
            raise NetworkError(msg)
        if mode not in ("close", "scale"):
            msg = f"barrier mode must be 'close' or 'scale', got {mode!r}"
            raise NetworkError(msg)
        if mode == "scale" and (factor is None or not np.isfinite(factor) or factor <= 0):
            msg = f"barrier mode 'scale' needs factor > 0, got {factor}"
            raise NetworkError(msg)
        if mode == "close" and factor is not None:
            msg = "barrier factor is only used with mode='scale'"
            raise NetworkError(msg)
        if tolerance_m < 0:
            msg = f"barrier tolerance_m must be >= 0, got {tolerance_m}"
            raise NetworkError(msg)
        geoms = geoms[~(geoms.is_empty | geoms.isna())]
        return cls(geoms.reset_index(drop=True), mode, float(factor or 1.0), float(tolerance_m))


BarrierArg = Barriers | Sequence[Barriers] | None


# --------------------------------------------------------------------------------------------
# vectorised line pieces
# --------------------------------------------------------------------------------------------
def line_pieces(lines: np.ndarray, start_m: np.ndarray, end_m: np.ndarray) -> np.ndarray:
    """Sub-lines ``lines[i]`` from ``start_m[i]`` to ``end_m[i]`` (metres along), vectorised.

    The equivalent of ``shapely.ops.substring`` for whole arrays; ``start_m <= end_m``.
    """
    lines = np.asarray(lines, dtype=object)
    n = len(lines)
    if n == 0:
        return np.empty(0, dtype=object)
    start_m = np.asarray(start_m, dtype=float)
    end_m = np.asarray(end_m, dtype=float)
    coords, idx = shapely.get_coordinates(lines, return_index=True)
    counts = np.bincount(idx, minlength=n)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    step = np.zeros(len(coords))
    same = idx[1:] == idx[:-1]
    step[1:] = np.where(same, np.hypot(*(coords[1:] - coords[:-1]).T), 0.0)
    cum = np.cumsum(step)
    cum -= cum[offsets[:-1]][idx]
    inside = (cum > start_m[idx]) & (cum < end_m[idx])
    p0 = shapely.get_coordinates(shapely.line_interpolate_point(lines, start_m))
    p1 = shapely.get_coordinates(shapely.line_interpolate_point(lines, end_m))
    mid_idx = idx[inside]
    all_idx = np.concatenate([np.arange(n), mid_idx, np.arange(n)])
    all_xy = np.concatenate([p0, coords[inside], p1])
    rank = np.concatenate([np.zeros(n), 1 + np.flatnonzero(inside), np.full(n, len(coords) + 1)])
    order = np.lexsort((rank, all_idx))
    return shapely.linestrings(all_xy[order], indices=all_idx[order])


def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])``, vectorised.

    The gather behind every CSR-style lookup over the engine's arrays (a node's out-edges, a
    segment's edges, an edge's vertices): one call instead of a Python loop over the runs.
    """
    total = int(counts.sum())
    return np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(total)


# --------------------------------------------------------------------------------------------
# engine
# --------------------------------------------------------------------------------------------
class Engine:
    """Shortest paths on one network, over arrays.

    Build with :meth:`from_graph` (a graph from :mod:`geo_minzheng.network`) or
    :meth:`from_arrays`. ``weight`` is the edge attribute minimised (``time_s`` or ``length_m``);
    every cost the engine returns is in that attribute's unit.
    """

    def __init__(
        self,
        *,
        node_ids: np.ndarray,
        node_x: np.ndarray,
        node_y: np.ndarray,
        u: np.ndarray,
        v: np.ndarray,
        cost: np.ndarray,
        length_m: np.ndarray,
        geometry: np.ndarray | None,
        crs: object,
        weight: str = "time_s",
        walk_speed_mps: float | None = None,
        profile: str | None = None,
    ) -> None:
        self.node_ids = np.asarray(node_ids)
        self.node_x = np.asarray(node_x, dtype=float)
        self.node_y = np.asarray(node_y, dtype=float)
        self.u = np.asarray(u, dtype=np.int64)
        self.v = np.asarray(v, dtype=np.int64)
        self.cost = np.maximum(np.asarray(cost, dtype=float), EPS_COST)
        self.length_m = np.asarray(length_m, dtype=float)
        if geometry is None:
            xy = np.column_stack([self.node_x, self.node_y])
            geometry = shapely.linestrings(np.stack([xy[self.u], xy[self.v]], axis=1))
        self.geometry = np.asarray(geometry, dtype=object)
        self.crs = CRS.from_user_input(crs)
        self.weight = weight
        self.walk_speed_mps = walk_speed_mps
        self.profile = profile
        self.n_nodes = len(self.node_ids)
        problems = []
        if np.any(~np.isfinite(self.cost)) or np.any(self.cost < 0):
            bad = int(np.flatnonzero(~np.isfinite(self.cost) | (self.cost < 0))[0])
            problems.append(f"edge {bad}: {weight} must be finite and >= 0, got {cost[bad]}")
        if len(self.u) and (
            max(self.u.max(), self.v.max()) >= self.n_nodes or min(self.u.min(), self.v.min()) < 0
        ):
            problems.append("edge endpoints must index the node arrays")
        if problems:
            raise NetworkError("; ".join(problems))
        self._base = self._csr(self.cost)
        self._segments: tuple[Any, ...] | None = None
        self._tree: shapely.STRtree | None = None
        self._seg_rate: np.ndarray | None = None
        self._grid: SegmentGrid | None = None
        self._seg_len: np.ndarray | None = None
        self._vertices: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._node_index: pd.Index | None = None
        self._geom_len: tuple[np.ndarray, bool] | None = None
        self._rate: float | None = None
        self._vptr: tuple[np.ndarray, np.ndarray] | None = None
        self._arrays: NetworkArrays | None = None
        #: What other modules derive from this engine and keep (isochrones' road raster)
        self.derived = DerivedCache()

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_graph(cls, G: nx.MultiDiGraph, *, weight: str = "time_s") -> Engine:
        """Export a network graph once to arrays (edges need ``weight``, ``length_m``, geometry)."""
        if G.number_of_edges() == 0:
            msg = "cannot build an engine from a graph with no edges"
            raise NetworkError(msg)
        if "crs" not in G.graph:
            msg = "graph has no 'crs' in G.graph; build it with geo_minzheng.network"
            raise NetworkError(msg)
        node_ids = np.array(list(G.nodes), dtype=object)
        with contextlib.suppress(TypeError, ValueError):  # OSM ids are ints; keep others as-is
            node_ids = node_ids.astype(np.int64)
        pos = {n: i for i, n in enumerate(G.nodes)}
        xs = np.array([d["x"] for _, d in G.nodes(data=True)], dtype=float)
        ys = np.array([d["y"] for _, d in G.nodes(data=True)], dtype=float)
        rows = list(G.edges(data=True))
        missing = [f"edge ({a}, {b})" for a, b, d in rows if weight not in d][:5]
        if missing:
            msg = f"edges lack weight {weight!r}: {', '.join(missing)}"
            raise NetworkError(msg)
        u = np.fromiter((pos[a] for a, _, _ in rows), dtype=np.int64, count=len(rows))
        v = np.fromiter((pos[b] for _, b, _ in rows), dtype=np.int64, count=len(rows))
        cost = np.fromiter((d[weight] for _, _, d in rows), dtype=float, count=len(rows))
        geoms = np.array([d.get("geometry") for _, _, d in rows], dtype=object)
        no_geom = np.array([g is None for g in geoms])
        if no_geom.any():
            pts = np.column_stack([xs, ys])
            geoms[no_geom] = shapely.linestrings(
                np.stack([pts[u[no_geom]], pts[v[no_geom]]], axis=1)
            )
        length = np.fromiter(
            (d.get("length_m", np.nan) for _, _, d in rows), dtype=float, count=len(rows)
        )
        length = np.where(np.isfinite(length), length, shapely.length(geoms))
        return cls(
            node_ids=node_ids,
            node_x=xs,
            node_y=ys,
            u=u,
            v=v,
            cost=cost,
            length_m=length,
            geometry=geoms,
            crs=G.graph["crs"],
            weight=weight,
            walk_speed_mps=G.graph.get("walk_speed_mps"),
            profile=G.graph.get("profile"),
        )

    def __getstate__(self) -> dict[str, object]:
        # the read-only view would pickle as copies of the arrays it shows: rebuilt on demand
        return {**self.__dict__, "_arrays": None}

    @classmethod
    def from_arrays(cls, **arrays: object) -> Engine:
        """An engine straight from node and edge arrays (the keyword arguments of ``Engine``)."""
        return cls(**arrays)  # type: ignore[arg-type]

    def _csr(self, cost: np.ndarray) -> sparse.csr_matrix:
        """CSR of the finite edges, keeping the cheapest of parallel edges (csgraph would sum)."""
        ok = np.isfinite(cost)
        u, v, c = _cheapest_per_pair(self.u[ok], self.v[ok], cost[ok])
        indptr = np.concatenate([[0], np.cumsum(np.bincount(u, minlength=self.n_nodes))])
        return sparse.csr_matrix((c, v, indptr), shape=(self.n_nodes, self.n_nodes))

    # ---------------------------------------------------------------- segments and snapping
    def _segment_index(self) -> tuple[Any, ...]:
        """Street segments: one canonical geometry per pair of twin edges.

        Twins (``u -> v`` and ``v -> u`` over the same line) are recognised by their canonical
        end nodes, vertex count, length and vertex-coordinate sums (to the millimetre), all
        from one pass over the coordinates: no per-geometry serialisation.
        """
        if self._segments is None:
            geoms = self.geometry
            coords, idx = shapely.get_coordinates(geoms, return_index=True)
            counts = np.bincount(idx, minlength=len(geoms))
            start = np.concatenate([[0], np.cumsum(counts)[:-1]])
            end = start + counts - 1
            first, last = coords[start], coords[end]
            second, penult = coords[np.minimum(start + 1, end)], coords[np.maximum(end - 1, 0)]
            closed = (first == last).all(axis=1)[:, None]
            a, b = np.where(closed, second, first), np.where(closed, penult, last)
            flip = (a[:, 0] > b[:, 0]) | ((a[:, 0] == b[:, 0]) & (a[:, 1] > b[:, 1]))
            sums = np.add.reduceat(coords, start, axis=0) if len(coords) else np.empty((0, 2))
            keys = np.column_stack(
                [
                    np.where(flip, self.v, self.u),
                    np.where(flip, self.u, self.v),
                    counts,
                    np.round(shapely.length(geoms) * 1000),
                    np.round(sums * 1000),
                ]
            ).astype(np.int64)
            _, rep, seg_of_edge = np.unique(keys, axis=0, return_index=True, return_inverse=True)
            seg_of_edge = seg_of_edge.ravel()
            n_seg = len(rep)
            seg_geom = geoms[rep].copy()
            seg_geom[flip[rep]] = shapely.reverse(seg_geom[flip[rep]])
            order = np.argsort(seg_of_edge, kind="stable")
            ptr = np.concatenate([[0], np.cumsum(np.bincount(seg_of_edge, minlength=n_seg))])
            self._segments = (seg_of_edge, flip, seg_geom, order, ptr)
        return self._segments

    def _segment_rate(self) -> np.ndarray:
        """Cost per metre of the cheapest edge on each segment (base costs: access legs)."""
        if self._seg_rate is None:
            seg_of_edge, _, seg_geom, _, _ = self._segment_index()
            self._seg_rate = np.full(len(seg_geom), np.inf)
            np.minimum.at(self._seg_rate, seg_of_edge, self.cost / np.maximum(self.length_m, 1e-9))
        return self._seg_rate

    def _segment_tree(self) -> shapely.STRtree:
        """GEOS index of the segments, for barrier shapes and distances beyond snapping range."""
        if self._tree is None:
            self._tree = shapely.STRtree(self._segment_index()[2])
        return self._tree

    def _segment_grid(self) -> SegmentGrid:
        """Grid hash of the segments' straight pieces, for bulk snapping."""
        if self._grid is None:
            self._grid = SegmentGrid(self._segment_index()[2])
        return self._grid

    def _edge_vertices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """All edge vertices, a key increasing along each edge and across edges, edge bases."""
        if self._vertices is None:
            coords, idx = shapely.get_coordinates(self.geometry, return_index=True)
            step = np.zeros(len(coords))
            same = idx[1:] == idx[:-1]
            step[1:] = np.where(same, np.hypot(*(coords[1:] - coords[:-1]).T), 1.0)
            key = np.cumsum(step)  # +1 between edges keeps keys strictly ordered across edges
            first = np.concatenate([[0], np.flatnonzero(~same) + 1])
            self._vertices = (coords, idx, key, key[first])
        return self._vertices

    def interpolate(self, edge: np.ndarray, along_m: np.ndarray) -> np.ndarray:
        """Coordinates ``along_m`` metres along each ``edge`` geometry (vectorised, clamped).

        GEOS ``line_interpolate_point`` walks the line from its start for every point; this
        looks every point up at once with one binary search over all edges' vertices.
        """
        coords, idx, key, base = self._edge_vertices()
        edge = np.asarray(edge, dtype=np.int64)
        glen = shapely.length(self.geometry[edge]) if len(edge) else np.empty(0)
        t = base[edge] + np.clip(np.asarray(along_m, dtype=float), 0.0, glen)
        j = np.clip(np.searchsorted(key, t, side="right") - 1, 0, len(key) - 2)
        last = idx[np.minimum(j + 1, len(idx) - 1)] != idx[j]
        j = np.where(last, j - 1, j)  # at an edge's very end use its last segment
        seg_len = np.maximum(key[j + 1] - key[j], 1e-12)
        w = np.clip((t - key[j]) / seg_len, 0.0, 1.0)[:, None]
        return coords[j] * (1 - w) + coords[j + 1] * w

    def snap(
        self,
        gdf: gpd.GeoDataFrame,
        *,
        id_field: str = "id",
        max_snap_m: float = params.DEFAULT_MAX_SNAP_M,
        checked_ids: np.ndarray | None = None,
    ) -> Snapped:
        """Attach points to their nearest road edge.

        Parameters
        ----------
        gdf
            Points in any CRS (polygons are represented by an interior point); not modified.
        id_field
            Column with unique IDs (compared as strings).
        max_snap_m
            Points farther than this from every road are reported in ``too_far``, not snapped.
        checked_ids
            The layer's IDs as strings (:func:`id_strings`), already checked unique by the
            caller: skips making and checking them a second time for a large layer.
        """
        if id_field not in gdf.columns:
            msg = f"snap: id_field {id_field!r} not in columns {list(gdf.columns)}"
            raise NetworkError(msg)
        if gdf.crs is None:
            msg = "snap: points have no CRS; set one (e.g. gdf.set_crs('EPSG:4326'))"
            raise NetworkError(msg)
        if checked_ids is not None:
            if len(checked_ids) != len(gdf):
                msg = f"snap: {len(checked_ids)} checked_ids for {len(gdf)} points"
                raise NetworkError(msg)
            ids = checked_ids
        else:
            ids = id_strings(gdf[id_field])
            self._check_unique(ids, id_field, str(gdf.attrs.get("layer", "points")))
        xy = self._projected_points(gdf.geometry)
        return self._snap_points(ids, xy, max_snap_m)

    @staticmethod
    def _check_unique(ids: np.ndarray, id_field: str, layer: str) -> None:
        dup = pd.Series(ids, dtype=object).duplicated(keep=False).to_numpy()
        if dup.any():
            raise LayerValidationError(
                layer,
                [
                    Problem(f"record '{i}'", id_field, "unique", "a duplicate")
                    for i in sorted(set(ids[dup]))
                ],
            )

    def _projected_points(self, geometry: gpd.GeoSeries) -> np.ndarray:
        """Point coordinates in the engine's CRS (an interior point for other shapes; NaN if empty).

        Points, the bulk of every layer, are transformed as coordinate arrays with a cached
        pyproj transformer, which is several times faster than reprojecting geometries.
        """
        geoms = geometry.to_numpy()
        xy = np.full((len(geoms), 2), np.nan)
        # one vertex: a non-empty point (lines have 2+, polygons 4+, empties and None 0)
        n_coords = shapely.get_num_coordinates(geoms)
        empty = n_coords == 0
        point = n_coords == 1
        if point.any():
            every = bool(point.all())
            x, y = _coordinates(geoms if every else geoms[point])
            transform = self._transformer(geometry.crs)
            if transform:
                x, y = transform(x, y)
            if every:
                return np.column_stack([x, y])
            xy[point] = np.column_stack([x, y])
        other = ~empty & ~point
        if other.any():
            shapes = geometry[other].to_crs(self.crs).to_numpy()
            xy[other] = shapely.get_coordinates(shapely.point_on_surface(shapes))
        # a point outside the working CRS's domain (another continent) projects to inf
        return xy

    def _transformer(self, crs: CRS) -> Any:
        """``transform(x, y)`` from ``crs`` to the engine's CRS, or None when they are the same."""
        return None if crs == self.crs else point_transform(crs.srs, self.crs.srs, fast=True)

    def _snap_points(self, ids: np.ndarray, xy: np.ndarray, max_snap_m: float) -> Snapped:
        seg_of_edge, _, seg_geom, _, _ = self._segment_index()
        match = self._segment_grid().nearest(xy, max_distance_m=max_snap_m)
        snapped = np.zeros(len(ids), dtype=bool)
        snapped[match.point] = True
        far = np.flatnonzero(~snapped)
        # empty geometry: NaN; no finite position (or no road at all): inf
        far_dist = np.where(np.isnan(xy[far]).any(axis=1), np.nan, np.inf)
        far_fin = np.flatnonzero(np.isfinite(xy[far]).all(axis=1))
        if len(far_fin) and len(seg_geom):
            pts = shapely.points(xy[far[far_fin]])
            q_in, idx = self._segment_tree().query_nearest(pts, all_matches=False)
            first = np.ones(len(q_in), dtype=bool)
            first[1:] = q_in[1:] != q_in[:-1]
            q_in, idx = q_in[first], idx[first]
            far_dist[far_fin[q_in]] = shapely.distance(pts[q_in], seg_geom[idx])
        seg_rate = self._segment_rate()
        every = len(match.point) == len(ids)  # then match.point is 0..n-1
        return Snapped(
            ids=ids.copy() if every else ids[match.point],  # never the caller's array
            xy=xy if every else xy[match.point],
            snapped_xy=match.snapped_xy,
            segment=match.segment,
            offset_m=match.offset_m,
            access_m=match.distance_m,
            access_cost=match.distance_m * seg_rate[match.segment],
            too_far=_too_far(ids[far], far_dist),
            engine_id=id(self),
            rows=match.point,
        )

    def snap_xy(
        self,
        x: Sequence[float],
        y: Sequence[float],
        *,
        crs: object = None,
        max_snap_m: float = params.DEFAULT_MAX_SNAP_M,
    ) -> Snapped:
        """Snap coordinates (in ``crs``, default the engine's CRS); IDs are '0', '1', ..."""
        gdf = gpd.GeoDataFrame(
            {"id": np.arange(len(x)).astype(str)},
            geometry=gpd.points_from_xy(x, y),
            crs=crs if crs is not None else self.crs,
        )
        return self.snap(gdf, max_snap_m=max_snap_m)

    # ---------------------------------------------------------------- barriers
    def edge_costs(self, barriers: BarrierArg = None) -> np.ndarray:
        """Edge costs after applying ``barriers`` (closed edges get ``inf``)."""
        if barriers is None:
            return self.cost
        items = [barriers] if isinstance(barriers, Barriers) else list(barriers)
        cost = self.cost.copy()
        for b in items:
            cost[self._touched(b)] *= np.inf if b.mode == "close" else b.factor
        return cost

    def _touched(self, barriers: Barriers) -> np.ndarray:
        """Mask of edges a barrier object touches (kept with the object, per engine)."""
        hit = barriers._touched.get(self)
        if hit is not None:
            return hit
        seg_of_edge = self._segment_index()[0]
        geoms = barriers.geometry.to_crs(self.crs).to_numpy()
        _, segs = self._segment_tree().query(
            geoms, predicate="dwithin", distance=max(barriers.tolerance_m, 0.0)
        )
        mask = np.isin(seg_of_edge, np.unique(segs))
        barriers._touched[self] = mask
        return mask

    def touched_edges(self, barriers: Barriers) -> np.ndarray:
        """Indices of the edges ``barriers`` touches."""
        return np.flatnonzero(self._touched(barriers))

    # ---------------------------------------------------------------- augmentation
    def _check(self, *sets: Snapped) -> None:
        for s in sets:
            if not isinstance(s, Snapped):
                msg = f"expected points from engine.snap(), got {type(s).__name__}"
                raise NetworkError(msg)
            if s.engine_id != id(self):
                msg = "points were snapped on another engine; snap them with this one"
                raise NetworkError(msg)

    def _augment(
        self, sets: Sequence[Snapped], cost: np.ndarray
    ) -> tuple[sparse.csr_matrix, list[np.ndarray], list[np.ndarray], dict[str, np.ndarray]]:
        """Graph with one virtual node per snapped point and one access node per point.

        Returns the CSR, each set's point-node indices, each set's access-node indices (an access
        node has one edge, to its point node, costing the access leg), and the virtual edges
        (columns from, to, cost, parent, f0, f1).
        """
        _, flip, _, order, ptr = self._segment_index()
        sizes = [len(s) for s in sets]
        k = int(sum(sizes))
        n = self.n_nodes
        point_nodes, access_nodes = [], []
        start = n
        for size in sizes:
            point_nodes.append(np.arange(start, start + size))
            start += size
        for size in sizes:
            access_nodes.append(np.arange(start, start + size))
            start += size
        m = start
        seg = np.concatenate([s.segment for s in sets]) if k else np.empty(0, dtype=np.int64)
        off = np.concatenate([s.offset_m for s in sets]) if k else np.empty(0)
        acc = np.concatenate([s.access_cost for s in sets]) if k else np.empty(0)
        pnode = np.arange(n, n + k)
        # every (point, directed edge on its segment) pair
        p_rep, e = _expand(seg, ptr, order)
        frac = self._fraction(off[p_rep], seg[p_rep], e, flip)
        srt = np.lexsort((frac, e))
        p_rep, e, frac = p_rep[srt], e[srt], frac[srt]
        head = np.ones(len(e), dtype=bool)
        head[1:] = e[1:] != e[:-1]
        tail = np.ones(len(e), dtype=bool)
        tail[:-1] = e[1:] != e[:-1]
        c = cost[e]
        # u -> first point, point -> next point on the same edge, last point -> v
        f_from = np.concatenate([np.zeros(head.sum()), frac[~tail], frac[tail]])
        f_to = np.concatenate([frac[head], frac[1:][~tail[:-1]], np.ones(tail.sum())])
        parent = np.concatenate([e[head], e[~tail], e[tail]])
        a = np.concatenate([self.u[e[head]], pnode[p_rep[~tail]], pnode[p_rep[tail]]])
        b = np.concatenate([pnode[p_rep[head]], pnode[p_rep[1:][~tail[:-1]]], self.v[e[tail]]])
        c_all = np.concatenate([c[head], c[~tail], c[tail]])
        # closed edges (inf) stay closed even for a zero-length piece (inf * 0 would be nan)
        w = np.multiply(
            c_all, f_to - f_from, out=np.full(len(c_all), np.inf), where=np.isfinite(c_all)
        )
        anode = np.arange(n + k, n + 2 * k)
        cost_all = np.maximum(np.concatenate([w, acc]), EPS_COST)
        usable = np.flatnonzero(np.isfinite(cost_all))
        virt = {
            "from": np.concatenate([a, anode])[usable],
            "to": np.concatenate([b, pnode])[usable],
            "cost": cost_all[usable],
            "parent": np.concatenate([parent, np.full(k, -1)])[usable],
            "f0": np.concatenate([f_from, np.zeros(k)])[usable],
            "f1": np.concatenate([f_to, np.zeros(k)])[usable],
        }
        base = self._base if cost is self.cost else self._csr(cost)
        # the virtual edges never repeat a base pair (each touches a virtual node), but two of
        # them may join the same pair
        graph = _with_edges(base, m, *_cheapest_per_pair(virt["from"], virt["to"], virt["cost"]))
        return graph, point_nodes, access_nodes, virt

    # ---------------------------------------------------------------- one-pass nearest
    def point_edges(self, pts: Snapped) -> PointEdges:
        """Every (point, directed edge of its street segment) pair, grouped by point.

        Returns point index, edge and fraction of the edge before the point (in the edge's own
        direction), as read-only arrays. Kept with the points, so repeated queries with them
        pay for it once.
        """
        self._check(pts)
        hit = pts._memo.get("point_edges")
        if hit is None:
            _, flip, _, order, ptr = self._segment_index()
            seg = pts.segment
            p, e = _expand(seg, ptr, order)
            frac = self._fraction(pts.offset_m[p], seg[p], e, flip)
            for a in (p, e, frac):
                a.flags.writeable = False  # fresh arrays, shared by every later query
            hit = pts._memo["point_edges"] = PointEdges(p, e, frac)
        return cast(PointEdges, hit)

    def _by_segment(self, pts: Snapped) -> tuple[np.ndarray, np.ndarray]:
        """The points' segments sorted, and the sorting order (for same-segment pairs).

        Kept with the points; only sources need it, so demand points never pay the sort.
        """
        if "by_segment" not in pts._memo:
            srt = np.argsort(pts.segment, kind="stable")
            pts._memo["by_segment"] = (pts.segment[srt], srt)
        return pts._memo["by_segment"]

    def _target_columns(self, targets: Snapped) -> list[_Column]:
        """Every target's (edge, position) pairs as columns: column ``j`` holds each target's
        ``j``-th pair, or its last when it has fewer (see :func:`_pair_columns`).

        Kept with the points, as :meth:`point_edges`: a coverage run asks it once per
        facility kind for the same demand points.
        """
        if "target_columns" not in targets._memo:
            p, e, frac = self.point_edges(targets)
            columns = []
            for pair in _pair_columns(p, len(targets)):
                edge, f = e[pair], frac[pair]
                columns.append(
                    _Column(
                        start=self.u[edge],
                        edge=edge,
                        frac=f,
                        along=f * self.cost[edge],
                        at_end=np.flatnonzero(f == 1.0),
                    )
                )
            targets._memo["target_columns"] = columns
        return targets._memo["target_columns"]  # type: ignore[no-any-return]

    def _through(
        self, col: _Column, dist: np.ndarray, src_of: np.ndarray, cost: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cost to each target through one column's edges (from their start nodes, or at their
        end nodes for targets exactly there), and the source it comes from."""
        along = col.along
        if cost is not self.cost:  # barriers: the part of each edge before its target
            with np.errstate(invalid="ignore"):  # 0 * inf on a closed edge: nan, no path
                along = col.frac * cost[col.edge]
            along[np.isnan(along)] = np.inf
        via = dist[col.start] + along
        src = src_of[col.start]
        t = col.at_end
        if len(t):
            end = self.v[col.edge[t]]
            shorter = np.isfinite(cost[col.edge[t]]) & (dist[end] <= via[t])
            via[t[shorter]] = dist[end[shorter]]
            src[t[shorter]] = src_of[end[shorter]]
        return via, src

    def _fraction(
        self, offset_m: np.ndarray, seg: np.ndarray, e: np.ndarray, flip: np.ndarray
    ) -> np.ndarray:
        """Fraction of edge ``e`` before a point ``offset_m`` along segment ``seg``."""
        frac = np.clip(offset_m / np.maximum(self._seg_length()[seg], 1e-12), 0.0, 1.0)
        return np.where(flip[e], 1.0 - frac, frac)

    def _seg_length(self) -> np.ndarray:
        if self._seg_len is None:
            self._seg_len = shapely.length(self._segment_index()[2])
        return self._seg_len

    def _source_graph(
        self, sources: Snapped, barriers: BarrierArg
    ) -> tuple[sparse.csr_matrix, np.ndarray]:
        """The base CSR plus one start node per source, joined to its edge's end nodes.

        A source at fraction ``f`` of edge ``u -> v`` reaches ``v`` at its access leg plus
        ``(1 - f) * cost``; no edge is split (targets are read off their edges' end nodes
        afterwards). The last one built is kept with the sources, for the same barriers.
        """
        items = (
            ()
            if barriers is None
            else ((barriers,) if isinstance(barriers, Barriers) else tuple(barriers))
        )
        hit = sources._memo.get("source_graph")
        if (
            hit is not None
            and len(hit[0]) == len(items)
            and all(a is b for a, b in zip(hit[0], items, strict=True))
        ):
            return hit[1]  # type: ignore[no-any-return]
        cost = self.edge_costs(barriers)
        p, e, frac = self.point_edges(sources)
        c = cost[e]
        ok = np.isfinite(c)
        p, e, frac, c = p[ok], e[ok], frac[ok], c[ok]
        # a source exactly at the edge's start node also starts from that node
        at_u = frac == 0.0
        p = np.concatenate([p, p[at_u]])
        w = np.maximum(
            sources.access_cost[p] + np.concatenate([(1.0 - frac) * c, np.zeros(at_u.sum())]),
            EPS_COST,
        )
        col = np.concatenate([self.v[e], self.u[e[at_u]]])
        p, col, w = _cheapest_per_pair(p, col, w)
        base = self._base if barriers is None else self._csr(cost)
        n = self.n_nodes
        graph = _with_edges(base, n + len(sources), p + n, col, w)
        sources._memo["source_graph"] = (items, (graph, cost))
        return graph, cost

    def _node_costs(
        self, sources: Snapped, cutoff: float | None, barriers: BarrierArg
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cost to every real node from its nearest source, that source's index (-1), edge costs."""
        graph, cost = self._source_graph(sources, barriers)
        n = self.n_nodes
        dist, _, which = csgraph.dijkstra(
            graph,
            indices=np.arange(n, n + len(sources)),
            min_only=True,
            limit=np.inf if cutoff is None else float(cutoff),
            return_predecessors=True,
        )
        which = which[:n]
        return dist[:n], np.where(which >= 0, which - n, -1), cost

    # ---------------------------------------------------------------- queries
    def nearest(
        self,
        sources: Snapped,
        targets: Snapped,
        *,
        cutoff: float | None = None,
        barriers: BarrierArg = None,
    ) -> pd.DataFrame:
        """The nearest source of every target, in one multi-source pass.

        Returns a DataFrame indexed by target ID with ``source_id`` (None if no source is within
        ``cutoff``) and ``cost`` (inf then); costs include both access legs.
        """
        cost_out, which = self.nearest_arrays(sources, targets, cutoff=cutoff, barriers=barriers)
        index = pd.Index(targets.ids, name="id", dtype=object)
        return _result_frame(index, sources.ids_at(which), cost_out)

    def nearest_arrays(
        self,
        sources: Snapped,
        targets: Snapped,
        *,
        cutoff: float | None = None,
        barriers: BarrierArg = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`nearest` as arrays aligned with ``targets``: cost and source position (-1).

        For bulk callers (coverage of 10^5 demand points) that join by position, not by ID.
        """
        self._check(sources, targets)
        limit = np.inf if cutoff is None else float(cutoff)
        best = np.full(len(targets), np.inf)
        which = np.full(len(targets), -1)
        if len(sources) and len(targets):
            dist, src_of, cost = self._node_costs(sources, cutoff, barriers)
            # through the start node of each of the target's edges: the least over the
            # target's pairs, the first of equals (column by column: every target has one or
            # two pairs on a walk network) ...
            columns = self._target_columns(targets)
            best, which = self._through(columns[0], dist, src_of, cost)
            for col in columns[1:]:
                via, src = self._through(col, dist, src_of, cost)
                better = via < best
                best = np.where(better, via, best)
                which = np.where(better, src, which)
            # ... or straight from a source further back on the same edge
            st, ss, sc = self._same_edge(sources, targets, cost)
            np.minimum.at(best, st, sc)
            win = sc == best[st]
            which[st[win]] = ss[win]
            best = best + targets.access_cost
        reached = np.isfinite(best) & (best <= limit)
        return np.where(reached, best, np.inf), np.where(reached, which, -1)

    def _same_edge(
        self, sources: Snapped, targets: Snapped, cost: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Costs of source -> target along one edge, for pairs on the same street segment.

        Returns target index, source index and cost (the source's access leg included, the
        target's not), for every directed edge of the segment where the source lies before
        the target.
        """
        _, flip, _, order, ptr = self._segment_index()
        s_seg, s_order = self._by_segment(sources)
        has_source = np.zeros(len(ptr) - 1, dtype=bool)
        has_source[s_seg] = True
        near = np.flatnonzero(has_source[targets.segment])
        if len(near) == 0:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty, np.empty(0)
        lo = np.searchsorted(s_seg, targets.segment[near], side="left")
        cnt = np.searchsorted(s_seg, targets.segment[near], side="right") - lo
        t = np.repeat(near, cnt)
        s = s_order[ranges(lo, cnt)]
        seg = targets.segment[t]
        pair, e = _expand(seg, ptr, order)
        t, s, seg = t[pair], s[pair], seg[pair]
        ft = self._fraction(targets.offset_m[t], seg, e, flip)
        fs = self._fraction(sources.offset_m[s], seg, e, flip)
        c = cost[e]
        ok = (fs <= ft) & np.isfinite(c)
        w = sources.access_cost[s[ok]] + np.maximum((ft[ok] - fs[ok]) * c[ok], EPS_COST)
        return t[ok], s[ok], w

    def nearest_nodes(
        self, sources: Snapped, *, cutoff: float | None = None, barriers: BarrierArg = None
    ) -> pd.DataFrame:
        """Nearest source and its cost for every network node (index = node ID), one pass."""
        self._check(sources)
        if self._node_index is None:
            self._node_index = pd.Index(self.node_ids, name="node")
        if len(sources) == 0:
            dist, src_of = np.full(self.n_nodes, np.inf), np.full(self.n_nodes, -1)
        else:
            dist, src_of, _ = self._node_costs(sources, cutoff, barriers)
        src = sources.ids_at(src_of)
        return _result_frame(self._node_index, src, dist)

    def _trees(
        self, graph: sparse.csr_matrix, starts: np.ndarray, cutoff: float | None
    ) -> sparse.csr_matrix:
        """Sparse bounded shortest-path trees from ``starts``.

        csgraph returns dense (sources x nodes) rows, which on a city graph is mostly ``inf``.
        So one multi-source pass first finds every node within ``cutoff`` of *any* start; a
        shortest path within the cutoff never leaves that set, so the per-source trees are
        computed exactly on the induced subgraph, in chunks that bound memory.
        """
        n = graph.shape[0]
        limit = np.inf if cutoff is None else float(cutoff)
        if len(starts) == 0:
            return sparse.csr_matrix((0, n))
        keep = np.arange(n)
        sub, pos = graph, np.asarray(starts)
        if np.isfinite(limit):
            d_any = csgraph.dijkstra(graph, indices=starts, min_only=True, limit=limit)
            inside = np.flatnonzero(np.isfinite(d_any))
            if len(inside) < 0.7 * n:
                keep = inside
                sub = graph[keep][:, keep]
                pos = np.searchsorted(keep, starts)
        rows, cols, vals = [], [], []
        chunk = _chunk(len(keep))
        for lo in range(0, len(pos), chunk):
            d = csgraph.dijkstra(sub, indices=pos[lo : lo + chunk], limit=limit)
            r, c = np.nonzero(np.isfinite(d))
            rows.append(r + lo)
            cols.append(keep[c])
            vals.append(d[r, c])
        out = sparse.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(len(starts), n),
        )
        out.eliminate_zeros()  # the access nodes themselves (cost 0); reached nodes cost > 0
        return out

    @property
    def arrays(self) -> NetworkArrays:
        """The read-only view of the edge and segment arrays (:class:`NetworkArrays`; built on
        first use, then the same object)."""
        if self._arrays is None:
            seg_of_edge, flip, seg_geom, by_seg, _ = self._segment_index()
            out_edges = np.argsort(self.u, kind="stable")
            out_ptr = np.concatenate([[0], np.cumsum(np.bincount(self.u, minlength=self.n_nodes))])
            # every edge's twin: the segment's first edge of the other direction
            first = np.full((int(seg_of_edge.max(initial=-1)) + 1, 2), -1, dtype=np.int64)
            o = by_seg[::-1]  # written last = the segment's first edge of that direction
            first[seg_of_edge[o], flip[o].astype(np.int64)] = o
            twin = first[seg_of_edge, 1 - flip.astype(np.int64)]
            coords, vptr, arc = self._vertex_index()
            self._arrays = NetworkArrays(
                u=_read_only(self.u),
                v=_read_only(self.v),
                out_edges=_read_only(out_edges),
                out_ptr=_read_only(out_ptr),
                twin=_read_only(twin),
                vertex_xy=_read_only(coords),
                vertex_ptr=_read_only(vptr),
                vertex_arc_m=_read_only(arc),
                segment_geometry=_read_only(seg_geom),
                segment_tree=self._segment_tree(),
            )
        return self._arrays

    def _vertex_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All edge vertices, each edge's first-vertex position (``n_edges + 1`` offsets) and
        the arc length at each vertex along its own edge (cached: per-query code indexes these
        instead of extracting coordinates from the geometries again)."""
        coords, idx, key, base = self._edge_vertices()
        if self._vptr is None:
            vptr = np.searchsorted(idx, np.arange(len(self.u) + 1))
            arc = key - np.repeat(key[np.minimum(vptr[:-1], len(key) - 1)], np.diff(vptr))
            self._vptr = (vptr, arc)
        return coords, *self._vptr

    def _geometry_lengths(self) -> np.ndarray | None:
        """Length of every edge's geometry, or None where some geometry does not run exactly
        from its start node to its end node (then no distance bound holds; cached)."""
        if self._geom_len is None:
            coords, vptr, arc = self._vertex_index()
            first, last = vptr[:-1], np.maximum(vptr[1:] - 1, 0)
            nodes = np.column_stack([self.node_x, self.node_y])
            gap = max(
                np.abs(coords[first] - nodes[self.u]).max(initial=0.0),
                np.abs(coords[last] - nodes[self.v]).max(initial=0.0),
            )
            self._geom_len = (arc[last], bool(gap <= 1e-6) and bool(np.all(vptr[1:] > first)))
        return self._geom_len[0] if self._geom_len[1] else None

    def _least_rate(self, cost: np.ndarray) -> float:
        """Least cost per metre of geometry of any edge (0 when there is no bound; the base
        costs' rate is cached)."""
        if cost is self.cost and self._rate is not None:
            return self._rate
        glen = self._geometry_lengths()
        rate = 0.0
        if glen is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                per_m = cost / glen  # inf for a zero-length edge (it moves nowhere) or closed
            rate = float(per_m.min()) if len(per_m) else 0.0
            rate = rate if np.isfinite(rate) else 0.0
        if cost is self.cost:
            self._rate = rate
        return rate

    def _disjoint_groups(
        self, sources: Snapped, cost: np.ndarray, cutoff: float
    ) -> list[np.ndarray] | None:
        """The sources in groups whose trees within ``cutoff`` cannot share a node (or None).

        A path costs at least ``rate`` per metre of the straight line between its ends, ``rate``
        being the least cost per metre of geometry of any edge (edge geometries run node to
        node, and virtual edges cost their share of their edge). So source ``i`` reaches
        nothing farther than ``(cutoff - access_cost[i]) / rate`` from its road point, and two
        sources farther apart than the sum of their radii share no node: within a group, one
        multi-source pass gives each source exactly its own tree. Groups come from a greedy
        colouring of the conflict pairs (a KD-tree query); None when they would not save work.
        """
        k = len(sources)
        if k < 2 or not np.isfinite(cutoff):
            return None
        rate = self._least_rate(cost)
        if rate < 1e-6:  # zero-cost edges, or geometries off their nodes: no useful bound
            return None
        radius = np.maximum(cutoff - sources.access_cost, 0.0) / rate + 1.0  # 1 m slack
        xy = sources.snapped_xy
        pairs = KDTree(xy).query_pairs(2.0 * float(radius.max()), output_type="ndarray")
        if len(pairs):
            d = np.hypot(*(xy[pairs[:, 0]] - xy[pairs[:, 1]]).T)
            pairs = pairs[d <= radius[pairs[:, 0]] + radius[pairs[:, 1]]]
        # a pass costs a scan of the whole graph: worth it while groups are few
        max_groups = max(2, k // 8)
        both = np.concatenate([pairs, pairs[:, ::-1]]) if len(pairs) else np.empty((0, 2), int)
        both = both[np.argsort(both[:, 0], kind="stable")]
        ptr = np.concatenate([[0], np.cumsum(np.bincount(both[:, 0], minlength=k))])
        other = both[:, 1].tolist()
        bounds = ptr.tolist()
        colour = [-1] * k
        for i in np.argsort(-np.diff(ptr), kind="stable").tolist():  # most conflicts first
            taken = {colour[j] for j in other[bounds[i] : bounds[i + 1]]}
            c = 0
            while c in taken:
                c += 1
            if c >= max_groups:
                return None
            colour[i] = c
        colour_arr = np.array(colour)
        order = np.argsort(colour_arr, kind="stable")
        return np.split(order, np.flatnonzero(np.diff(colour_arr[order])) + 1)

    def _grouped_trees(
        self, graph: sparse.csr_matrix, starts: np.ndarray, groups: list[np.ndarray], limit: float
    ) -> sparse.csr_matrix:
        """Sparse trees from ``starts``, one multi-source pass per group of disjoint sources."""
        m = graph.shape[0]
        of_start = np.full(m, -1, dtype=np.int64)
        of_start[starts] = np.arange(len(starts))
        rows, cols, vals = [], [], []
        for g in groups:
            d, _, src = csgraph.dijkstra(
                graph, indices=starts[g], min_only=True, limit=limit, return_predecessors=True
            )
            hit = np.flatnonzero(d < np.inf)
            hit = hit[d[hit] > 0]  # not the access nodes themselves (cost 0)
            rows.append(of_start[src[hit]])
            cols.append(hit)
            vals.append(d[hit])
        return sparse.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(len(starts), m),
        )

    def reach(self, sources: Snapped, *, cutoff: float, barriers: BarrierArg = None) -> Reach:
        """Bounded shortest-path trees of every source, kept sparse (for isochrones).

        Sources far enough apart to share no node are run together, one multi-source pass per
        group (see :meth:`_disjoint_groups`); otherwise per-source trees on the reached part
        of the graph (:meth:`_trees`).
        """
        self._check(sources)
        cost = self.edge_costs(barriers)
        graph, pnodes, anodes, virt = self._augment([sources], cost)
        groups = self._disjoint_groups(sources, cost, float(cutoff))
        if groups is None:
            trees = self._trees(graph, anodes[0], cutoff)
        else:
            trees = self._grouped_trees(graph, anodes[0], groups, float(cutoff))
        return Reach(sources.ids, trees, self.u, self.v, cost, virt, self.n_nodes)

    def od_matrix(
        self,
        origins: Snapped,
        destinations: Snapped,
        *,
        cutoff: float | None = None,
        barriers: BarrierArg = None,
    ) -> ODMatrix:
        """Costs between every origin and destination (sparse: only pairs within ``cutoff``)."""
        self._check(origins, destinations)
        graph, pnodes, anodes, _ = self._augment([origins, destinations], self.edge_costs(barriers))
        limit = np.inf if cutoff is None else float(cutoff)
        oi, di, cs = [], [], []
        chunk = _chunk(graph.shape[0])
        for lo in range(0, len(origins), chunk):
            d = csgraph.dijkstra(graph, indices=anodes[0][lo : lo + chunk], limit=limit)
            d = d[:, pnodes[1]] + destinations.access_cost[None, :]
            r, c = np.nonzero(np.isfinite(d) & (d <= limit))
            oi.append(r + lo)
            di.append(c)
            cs.append(d[r, c])
        return ODMatrix(origins.ids, destinations.ids, _cat(oi), _cat(di), _cat(cs).astype(float))

    def route(
        self,
        origin_xy: tuple[float, float],
        destination_xy: tuple[float, float],
        *,
        barriers: BarrierArg = None,
        crs: object = None,
        max_snap_m: float = params.DEFAULT_MAX_SNAP_M,
    ) -> Route:
        """Shortest path between two coordinates (in ``crs``, default the engine's CRS).

        Raises UnreachableError when either point is too far from a road or no path exists.
        """
        pts = self.snap_xy(
            [origin_xy[0], destination_xy[0]],
            [origin_xy[1], destination_xy[1]],
            crs=crs,
            max_snap_m=max_snap_m,
        )
        if len(pts.too_far):
            which = ["origin", "destination"][int(pts.too_far["id"].iloc[0])]
            msg = (
                f"route: {which} is {pts.too_far['distance_m'].iloc[0]:.0f} m from the nearest "
                f"road, more than max_snap_m={max_snap_m}"
            )
            raise UnreachableError(msg)
        o = pts.subset(slice(0, 1))
        d = pts.subset(slice(1, 2))
        cost = self.edge_costs(barriers)
        graph, pnodes, anodes, virt = self._augment([o, d], cost)
        dist, pred = csgraph.dijkstra(graph, indices=int(anodes[0][0]), return_predecessors=True)
        end = int(pnodes[1][0])
        if not np.isfinite(dist[end]):
            msg = "route: no path between origin and destination on this network"
            raise UnreachableError(msg)
        path = [end]
        while pred[path[-1]] >= 0:
            path.append(int(pred[path[-1]]))
        path = path[::-1][1:]  # drop the access node
        pieces = self._path_pieces(np.array(path), cost, virt)
        coords = [o.xy[0], o.snapped_xy[0]]
        for piece in pieces:
            coords.extend(shapely.get_coordinates(piece)[1:])
        coords.extend([d.xy[0]])
        line = shapely.LineString(_dedupe(np.array(coords)))
        total_cost = float(dist[end] + d.access_cost[0])
        length = float(sum(shapely.length(pieces)) + o.access_m[0] + d.access_m[0])
        return Route(line, total_cost, length)

    def _path_pieces(
        self, path: np.ndarray, cost: np.ndarray, virt: dict[str, np.ndarray]
    ) -> np.ndarray:
        """Geometry of each hop of a node path (cheapest edge per hop)."""
        base = _edge_table(self.u, self.v, cost)
        hops = pd.DataFrame({"from": path[:-1], "to": path[1:], "hop": np.arange(len(path) - 1)})
        pieces = pd.DataFrame(virt)
        cand = pd.concat([base, pieces[pieces["parent"] >= 0]], ignore_index=True)
        best = (
            hops.merge(cand, on=["from", "to"]).sort_values(["hop", "cost"]).drop_duplicates("hop")
        )
        parent = best["parent"].to_numpy()
        length = shapely.length(self.geometry[parent])
        return line_pieces(
            self.geometry[parent],
            best["f0"].to_numpy() * length,
            best["f1"].to_numpy() * length,
        )


#: ``Snapped.too_far`` when every point snapped: copied, as a copy costs a fifth of a new frame
_NO_FAR = pd.DataFrame({"id": np.empty(0, dtype=object), "distance_m": np.empty(0)})


def _too_far(ids: np.ndarray, distance_m: np.ndarray) -> pd.DataFrame:
    """``DataFrame[id, distance_m]`` of the points that did not snap (a fresh frame)."""
    if len(ids) == 0:
        return _NO_FAR.copy()
    return pd.DataFrame({"id": ids, "distance_m": distance_m})


def id_strings(ids: pd.Series) -> np.ndarray:
    """IDs as an object array of ``str``, the form every result carries (no copy if they are)."""
    arr = ids.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(arr, skipna=False) == "string":  # a C loop over the values
        return arr
    return ids.astype(str).to_numpy(dtype=object)


_SNAP_ARRAYS = ("ids", "xy", "snapped_xy", "segment", "offset_m", "access_m", "access_cost", "rows")


def _edge_table(u: np.ndarray, v: np.ndarray, cost: np.ndarray) -> pd.DataFrame:
    """The usable (finite-cost) engine edges as a table of whole parent edges: columns from,
    to, cost, parent, f0 (0), f1 (1), laid out like the virtual edges."""
    ok = np.flatnonzero(np.isfinite(cost))
    return pd.DataFrame(
        {"from": u[ok], "to": v[ok], "cost": cost[ok], "parent": ok, "f0": 0.0, "f1": 1.0}
    )


def _cheapest_per_pair(
    rows: np.ndarray, cols: np.ndarray, cost: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges sorted by row then column, the cheapest of each (row, column) pair only (a CSR
    would sum parallel edges)."""
    order = np.lexsort((cost, cols, rows))
    rows, cols, cost = rows[order], cols[order], cost[order]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
    return rows[first], cols[first], cost[first]


def _with_edges(
    base: sparse.csr_matrix, m: int, rows: np.ndarray, cols: np.ndarray, data: np.ndarray
) -> sparse.csr_matrix:
    """``base`` grown to ``m`` nodes, plus edges ``rows -> cols`` (sorted by row, no pair of
    ``base`` among them).

    Each row's new edges go after its own edges and the rows of new nodes after the base's:
    the base arrays are copied once, in the slices between the rows that gain edges, where a
    sparse sum of the padded base and the new edges costs several passes over a million-edge
    network.
    """
    n, nnz = base.shape[0], base.nnz
    real = rows < n
    at = base.indptr[1:][rows[real]]  # the end of each new edge's row
    k = int(real.sum())
    total = nnz + len(rows)
    indices = np.empty(total, dtype=np.int32)
    values = np.empty(total, dtype=np.float64)
    if k <= 4096:  # a slice copy per row that gains edges
        cuts = np.concatenate([[0], at, [nnz]]).tolist()
        for c in range(k + 1):
            a, b = cuts[c], cuts[c + 1]
            indices[a + c : b + c] = base.indices[a:b]
            values[a + c : b + c] = base.data[a:b]
        dest = at + np.arange(k)
        indices[dest] = cols[real]
        values[dest] = data[real]
    else:
        indices[: nnz + k] = np.insert(base.indices, at, cols[real])
        values[: nnz + k] = np.insert(base.data, at, data[real])
    indices[nnz + k :] = cols[~real]
    values[nnz + k :] = data[~real]
    indptr = np.empty(m + 1, dtype=np.int64)
    indptr[: n + 1] = base.indptr
    indptr[1 : n + 1] += np.cumsum(np.bincount(rows[real], minlength=n))
    indptr[n + 1 :] = nnz + k + np.cumsum(np.bincount(rows[~real] - n, minlength=m - n))
    return sparse.csr_matrix((values, indices, indptr.astype(np.int32)), shape=(m, m))


_RESULT_COLUMNS = pd.Index(["source_id", "cost"])


def _result_frame(index: pd.Index, source_id: np.ndarray, cost: np.ndarray) -> pd.DataFrame:
    """``DataFrame[source_id, cost]`` on ``index`` from two ready arrays (object, float).

    For a city-sized result the arrays are handed to pandas as they are: its dict constructor
    checks every column, a fixed cost of a third of a millisecond query's time. That path
    copies the arrays into blocks, though, so a large result (tens of thousands of rows) takes
    the dict constructor, which keeps them without copying.
    """
    build = getattr(pd.DataFrame, "_from_arrays", None)
    if build is not None and len(index) <= 20_000:
        with contextlib.suppress(TypeError, ValueError):  # a future pandas may change it
            return build(
                [source_id, cost], columns=_RESULT_COLUMNS, index=index, verify_integrity=False
            )
    return pd.DataFrame(
        {"source_id": pd.Series(source_id, index=index, dtype=object, copy=False), "cost": cost},
        index=index,
        copy=False,
    )


def _read_only(a: np.ndarray) -> np.ndarray:
    """A non-writeable view of ``a`` (no copy; ``a`` itself stays writeable)."""
    view = a.view()
    view.flags.writeable = False
    return view


def _coordinates(one_vertex: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x and y of geometries with exactly one vertex each (``get_x``/``get_y`` are faster
    than ``get_coordinates`` but read Points only: a one-point MultiPoint gives NaN)."""
    x, y = shapely.get_x(one_vertex), shapely.get_y(one_vertex)
    if np.isnan(x).any():
        x, y = shapely.get_coordinates(one_vertex).T
    return x, y


def _pair_columns(point: np.ndarray, n: int) -> list[np.ndarray]:
    """Positions of every point's pairs (``point`` sorted; every point has one: each street
    segment has at least one directed edge),
    as one array per rank: column ``j`` holds each point's ``j``-th pair, or its last pair when
    it has fewer, so that a least over the columns is a least over each point's own pairs."""
    count = np.bincount(point, minlength=n)
    last = np.cumsum(count) - 1
    first = last - count + 1
    return [np.minimum(first + j, last) for j in range(int(count.max(initial=1)))]


def _expand(seg: np.ndarray, ptr: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (row, directed edge of segment ``seg[row]``) pair: row index and edge index."""
    per = ptr[seg + 1] - ptr[seg]
    return np.repeat(np.arange(len(seg)), per), order[ranges(ptr[seg], per)]


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def _dedupe(coords: np.ndarray) -> np.ndarray:
    keep = np.ones(len(coords), dtype=bool)
    keep[1:] = np.any(coords[1:] != coords[:-1], axis=1)
    return coords[keep]
