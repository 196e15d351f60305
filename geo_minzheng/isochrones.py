"""Service-area polygons (isochrones) from the reachable parts of network edges.

The method is the one Valhalla's isochrone service uses: a cost surface on a fine grid, then
filled contours at each break. For a facility, the reachable part of every edge (cut where the
largest break runs out) is sampled every 3/4 cell with the cost at each sample; a cell takes
the least cost of any reached road within ``buffer_m`` (the strip of land a street serves).
Cells with no road at all within ``buffer_m`` that are enclosed (city blocks) take the *highest*
cost of the roads around them, so a block is inside a break only once every street around it is
reached; cells near a road that is not reached (beyond the break, or closed by a barrier) stay
unreachable, which makes holes where blocks are cut off and keeps polygons off unreachable land.
Contours of one surface are nested by construction (disks), and bands between breaks are
disjoint (rings). Closing polygon barriers are also cut out.

The facilities' windows are packed as tiles onto shared canvases (gaps keep them apart), so
each canvas costs one call of each compiled routine (numpy, scipy.ndimage, contourpy's marching
squares) instead of one per facility: about 2 ms per facility on Changchun, where buffering and
merging each facility's edge geometry with GEOS cost 15-60 ms.
"""

from __future__ import annotations

from collections.abc import Sequence

import contourpy
import geopandas as gpd
import numpy as np
import shapely
from scipy import ndimage

from geo_minzheng._errors import NetworkError
from geo_minzheng.engine import BarrierArg, Barriers, Engine, Reach, Snapped

_BIG = 1e300
#: Cells per canvas of packed facility windows (bounds memory to ~100 MB per canvas).
_CANVAS_CELLS = 6_000_000


def _reached_samples(
    engine: Engine, reach: Reach, facilities: Snapped, cutoff: float, step_m: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points every ``step_m`` along every reached edge part, with their cost and facility."""
    edges = reach.edges
    e_from = edges["from"].to_numpy()
    order = np.argsort(e_from, kind="stable")
    n_aug = reach.cost.shape[1]
    out_ptr = np.concatenate([[0], np.cumsum(np.bincount(e_from, minlength=n_aug))])
    coo = reach.cost.tocoo()
    fac, node, dist = coo.row, coo.col, coo.data
    deg = out_ptr[node + 1] - out_ptr[node]
    rep = np.repeat(np.arange(len(node)), deg)
    within = np.arange(deg.sum()) - np.repeat(np.cumsum(deg) - deg, deg)
    eidx = order[np.repeat(out_ptr[node], deg) + within]
    parent = edges["parent"].to_numpy()[eidx]
    real = parent >= 0
    f_rep, d_rep, eidx, parent = fac[rep][real], dist[rep][real], eidx[real], parent[real]
    cost = edges["cost"].to_numpy()[eidx]
    f0 = edges["f0"].to_numpy()[eidx]
    f1 = edges["f1"].to_numpy()[eidx]
    r = np.clip((cutoff - d_rep) / cost, 0.0, 1.0)
    geom_len = shapely.length(engine.geometry[parent])
    start = f0 * geom_len
    span = r * (f1 - f0) * geom_len
    rate = cost / np.maximum((f1 - f0) * geom_len, 1e-12)  # cost per metre along this part
    n_s = np.ceil(span / step_m).astype(np.int64) + 1
    piece = np.repeat(np.arange(len(parent)), n_s)
    k = np.arange(n_s.sum()) - np.repeat(np.cumsum(n_s) - n_s, n_s)
    along = np.minimum(k * step_m, span[piece])
    xy = engine.interpolate(parent[piece], start[piece] + along)
    c = d_rep[piece] + along * rate[piece]
    # the facility itself and its access leg
    xy = np.concatenate([xy, facilities.xy, facilities.snapped_xy])
    c = np.concatenate([c, np.zeros(len(facilities)), facilities.access_cost])
    owner = np.concatenate([f_rep[piece], np.arange(len(facilities)), np.arange(len(facilities))])
    keep = c <= cutoff  # e.g. an access leg longer than the largest break
    return xy[keep], c[keep], owner[keep]


def _disk(radius_cells: int) -> np.ndarray:
    r = np.arange(-radius_cells, radius_cells + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius_cells**2


def _surface(grid: np.ndarray, road: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Cost surface from sampled costs (``grid``, _BIG elsewhere) and the road cells.

    Every cell takes the least cost within the footprint (``buffer_m``); road-free areas
    enclosed by roads (blocks) take the highest cost of the cells around them; road-free areas
    that reach the canvas border (open land, the gaps between tiles) stay _BIG.
    """
    grid = ndimage.grey_erosion(grid, footprint=footprint, mode="constant", cval=_BIG)
    near_road = ndimage.binary_dilation(road, structure=footprint)
    labels, n_lab = ndimage.label(~near_road)
    if n_lab:
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        ring = ndimage.grey_dilation(labels, size=(3, 3)) * near_road
        on_ring = ring > 0
        fill = np.full(n_lab + 1, -np.inf)
        np.maximum.at(fill, ring[on_ring], grid[on_ring])
        fill[np.isneginf(fill)] = _BIG  # an area whose ring was all claimed by a neighbour
        fill[border] = _BIG  # label 0 (not a road-free area) is never looked up
        lab_cells = labels > 0
        grid[lab_cells] = fill[labels[lab_cells]]
    return grid


def _canvas_polygons(
    grid: np.ndarray,
    tile_id: np.ndarray,
    shift: np.ndarray,
    cell: float,
    breaks: np.ndarray,
    rings: bool,
    n_tiles: int,
) -> np.ndarray:
    """Filled contours of a canvas of tiles, as ``(n_tiles, n_breaks)`` MultiPolygons.

    Contours are traced in cell units; each polygon belongs to the tile under its first
    vertex and is moved to world coordinates by that tile's ``shift`` (world = cell * canvas
    + shift).
    """
    ny, nx_ = grid.shape
    gen = contourpy.contour_generator(
        np.arange(nx_, dtype=float),
        np.arange(ny, dtype=float),
        np.minimum(grid, 1e30),
        fill_type="OuterOffset",
        name="serial",
    )
    out = np.empty((n_tiles, len(breaks)), dtype=object)
    out[:] = shapely.MultiPolygon()
    lower = -1.0
    for bi, b in enumerate(breaks):
        filled = gen.filled(lower if rings else -1.0, float(b))
        lower = float(b)
        # OuterOffset: per polygon, its points and ring offsets (never None for this fill type)
        points: list[np.ndarray] = list(filled[0])  # type: ignore[arg-type]
        offsets: list[np.ndarray] = list(filled[1])  # type: ignore[arg-type]
        if not points:
            continue
        n_rings = np.array([len(o) - 1 for o in offsets])
        n_pts = np.array([len(p) for p in points])
        xy = np.concatenate(points)
        first = np.array([p[0] for p in points])
        tile = tile_id[
            np.clip(np.round(first[:, 1]).astype(np.int64), 0, ny - 1),
            np.clip(np.round(first[:, 0]).astype(np.int64), 0, nx_ - 1),
        ]
        poly_of_pt = np.repeat(np.arange(len(points)), n_pts)
        xy = xy * cell + shift[tile[poly_of_pt]]
        ring_starts = np.concatenate(
            [o[:-1] + base for o, base in zip(offsets, np.cumsum(n_pts) - n_pts, strict=True)]
        )
        ring_of_pt = np.searchsorted(ring_starts, np.arange(len(xy)), side="right") - 1
        ring_geoms = shapely.linearrings(xy, indices=ring_of_pt)
        polys = shapely.polygons(ring_geoms, indices=np.repeat(np.arange(len(points)), n_rings))
        ok = tile >= 0
        order = np.argsort(tile[ok], kind="stable")
        t_sorted = tile[ok][order]
        present = np.unique(t_sorted)
        multi = shapely.multipolygons(polys[ok][order], indices=np.searchsorted(present, t_sorted))
        out[present, bi] = multi
    return out


def service_areas(
    engine: Engine,
    facilities: Snapped,
    *,
    breaks: Sequence[float] = (300, 600, 900),
    rings: bool = False,
    dissolve: bool = False,
    barriers: BarrierArg = None,
    buffer_m: float = 40.0,
    cell_m: float | None = None,
) -> gpd.GeoDataFrame:
    """Service-area polygons of each facility for several breaks.

    Parameters
    ----------
    engine
        The network engine; ``breaks`` are in its cost unit (seconds for ``time_s``).
    facilities
        Snapped facility points (``engine.snap``).
    breaks
        Increasing cost limits, e.g. ``(300, 600, 900)`` for 5/10/15 minutes.
    rings
        False: one disk per break (everything within it; disks are nested); True: the band
        between consecutive breaks (bands are disjoint).
    dissolve
        One surface for all facilities per break (``facility_id`` is then None).
    barriers
        Barriers applied to the travel; closing polygon barriers are also cut out.
    buffer_m
        Half-width of the strip each reachable street serves, metres.
    cell_m
        Grid cell, metres; default ``buffer_m / 2``.

    Returns
    -------
    GeoDataFrame[facility_id, break, geometry] in the engine's CRS, one row per facility and
    break (per break when dissolved); a facility that reaches nothing has an empty polygon.
    """
    brk = np.asarray(list(breaks), dtype=float)
    if len(brk) == 0 or np.any(~np.isfinite(brk)) or np.any(brk <= 0) or np.any(np.diff(brk) <= 0):
        msg = f"breaks must be positive, finite and increasing, got {list(breaks)}"
        raise NetworkError(msg)
    if buffer_m <= 0:
        msg = f"buffer_m must be > 0, got {buffer_m}"
        raise NetworkError(msg)
    n_fac = len(facilities)
    base_cell = float(cell_m) if cell_m else buffer_m / 2.0
    reach = engine.reach(facilities, cutoff=float(brk[-1]), barriers=barriers)
    xy, cost, owner = _reached_samples(engine, reach, facilities, float(brk[-1]), 0.75 * base_cell)
    groups = np.zeros(len(owner), dtype=np.int64) if dissolve else owner
    n_groups = 1 if dissolve else n_fac
    order = np.argsort(groups, kind="stable")  # samples come nearly grouped: a fast merge sort
    ptr = np.concatenate([[0], np.cumsum(np.bincount(groups, minlength=n_groups))])
    lo = np.full((n_groups, 2), np.inf)
    hi = np.full((n_groups, 2), -np.inf)
    present = np.flatnonzero(ptr[1:] > ptr[:-1])
    if len(present):
        xy_sorted = xy[order]
        lo[present] = np.minimum.reduceat(xy_sorted, ptr[present], axis=0)
        hi[present] = np.maximum.reduceat(xy_sorted, ptr[present], axis=0)
    margin = 2 * buffer_m
    lo -= margin
    hi += margin
    has = np.isfinite(lo[:, 0])
    cell = base_cell
    gx0, gy0, roads = engine.road_raster(cell)
    radius = max(1, int(round(buffer_m / cell)))
    footprint = _disk(radius)
    polys = np.empty((n_groups, len(brk)), dtype=object)
    polys[:] = shapely.MultiPolygon()
    # windows aligned on the network's road raster, packed as tiles on shared canvases so that
    # each canvas costs one call of each compiled routine instead of one per facility
    todo = np.flatnonzero(has)
    i0 = np.floor((lo[todo, 0] - gx0) / cell).astype(np.int64)
    j0 = np.floor((lo[todo, 1] - gy0) / cell).astype(np.int64)
    i1 = np.ceil((hi[todo, 0] - gx0) / cell).astype(np.int64) + 1
    j1 = np.ceil((hi[todo, 1] - gy0) / cell).astype(np.int64) + 1
    gap = radius + 2
    start = 0
    while start < len(todo):
        stop, cells = start, 0
        while stop < len(todo) and (stop == start or cells < _CANVAS_CELLS):
            cells += (i1[stop] - i0[stop] + gap) * (j1[stop] - j0[stop] + gap)
            stop += 1
        tiles = np.arange(start, stop)
        polys[todo[tiles]] = _run_canvas(
            tiles,
            i0,
            j0,
            i1,
            j1,
            gap,
            roads,
            gx0,
            gy0,
            cell,
            xy,
            cost,
            groups,
            todo,
            footprint,
            brk,
            rings,
        )
        start = stop
    # contour parts may touch at a saddle point; repair only those (rare)
    invalid = ~shapely.is_valid(polys)
    if invalid.any():
        polys[invalid] = shapely.make_valid(
            polys[invalid], method="structure", keep_collapsed=False
        )
    cut = _closing_polygons(engine, barriers)
    if cut is not None:
        polys = shapely.difference(polys, cut)
    fac_ids = (
        np.full(len(brk), None, dtype=object)
        if dissolve
        else np.repeat(facilities.ids, len(brk)).astype(object)
    )
    return gpd.GeoDataFrame(
        {"facility_id": fac_ids, "break": np.tile(brk, n_groups)},
        geometry=polys.ravel(),
        crs=engine.crs,
    )


def _run_canvas(
    tiles: np.ndarray,
    i0: np.ndarray,
    j0: np.ndarray,
    i1: np.ndarray,
    j1: np.ndarray,
    gap: int,
    roads: np.ndarray,
    gx0: float,
    gy0: float,
    cell: float,
    xy: np.ndarray,
    cost: np.ndarray,
    groups: np.ndarray,
    todo: np.ndarray,
    footprint: np.ndarray,
    brk: np.ndarray,
    rings: bool,
) -> np.ndarray:
    """Pack some facility windows on one canvas (shelves, ``gap`` cells apart) and contour it."""
    w = i1[tiles] - i0[tiles]
    h = j1[tiles] - j0[tiles]
    width = int(max(w.max(), np.sqrt(float(((w + gap) * (h + gap)).sum())))) + 2 * gap
    ox = np.empty(len(tiles), dtype=np.int64)
    oy = np.empty(len(tiles), dtype=np.int64)
    x, y, shelf = gap, gap, 0
    for k in range(len(tiles)):  # shelf packing: a few hundred tiles, plain arithmetic
        if x + w[k] + gap > width:
            x, y, shelf = gap, y + shelf + gap, 0
        ox[k], oy[k] = x, y
        x += w[k] + gap
        shelf = max(shelf, int(h[k]))
    height = int(y + shelf + gap)
    grid = np.full((height, width), _BIG)
    road = np.zeros((height, width), dtype=bool)
    tile_id = np.full((height, width), -1, dtype=np.int64)
    local = np.full(len(todo), -1, dtype=np.int64)
    local[tiles] = np.arange(len(tiles))
    for k, t in enumerate(tiles):
        rj0, ri0 = max(j0[t], 0), max(i0[t], 0)
        rj1, ri1 = min(j1[t], roads.shape[0]), min(i1[t], roads.shape[1])
        if rj1 > rj0 and ri1 > ri0:
            road[
                oy[k] + rj0 - j0[t] : oy[k] + rj1 - j0[t], ox[k] + ri0 - i0[t] : ox[k] + ri1 - i0[t]
            ] = roads[rj0:rj1, ri0:ri1]
        tile_id[oy[k] : oy[k] + h[k], ox[k] : ox[k] + w[k]] = k
    # samples of these tiles (groups -> position in todo -> tile)
    pos_of_group = np.full(int(groups.max()) + 1 if len(groups) else 0, -1, dtype=np.int64)
    pos_of_group[todo] = np.arange(len(todo))
    k_of = local[pos_of_group[groups]]
    sel = np.flatnonzero(k_of >= 0)
    k = k_of[sel]
    t = tiles[k]
    cx = np.clip(np.round((xy[sel, 0] - gx0) / cell).astype(np.int64) - i0[t], 0, w[k] - 1) + ox[k]
    cy = np.clip(np.round((xy[sel, 1] - gy0) / cell).astype(np.int64) - j0[t], 0, h[k] - 1) + oy[k]
    np.minimum.at(grid.ravel(), cy * width + cx, cost[sel])  # least cost per cell
    road[cy, cx] = True
    grid = _surface(grid, road, footprint)
    shift = np.column_stack([gx0 + (i0[tiles] - ox) * cell, gy0 + (j0[tiles] - oy) * cell])
    return _canvas_polygons(grid, tile_id, shift, cell, brk, rings, len(tiles))


def _closing_polygons(engine: Engine, barriers: BarrierArg) -> shapely.Geometry | None:
    """Union of the polygon barriers that close roads (areas nobody can be served in)."""
    if barriers is None:
        return None
    items = [barriers] if isinstance(barriers, Barriers) else list(barriers)
    geoms = [
        g
        for b in items
        if b.mode == "close"
        for g in b.geometry.to_crs(engine.crs).to_numpy()
        if shapely.get_type_id(g) in (3, 6)
    ]
    return shapely.union_all(geoms) if geoms else None
