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

Speed comes from three choices:

* the facilities' windows are packed as tiles onto shared canvases (gaps keep them apart), so
  each canvas costs one call of each compiled routine (numpy, scipy.ndimage, contourpy's
  marching squares) instead of one per facility;
* the raster of *all* roads (reached or not) is built lazily, in blocks of ``_BLOCK`` cells,
  only where a window needs it, from the engine's segment index, and kept on the engine
  (``engine.derived``): a city-wide raster of a million-edge network is never drawn;
* reached edge parts are sampled segment by segment with plain arithmetic (no per-point search
  over the whole network's vertices); the surface holds uint16 cost steps (1/6000 of the
  largest break) and the break levels lie half-way between steps, so that no cell equals a
  level, contour rings never touch and no GEOS repair pass is needed.

Buffering and merging each facility's edge geometry with GEOS was tried first: 15-60 ms per
facility on Changchun, slower than an ego-graph baseline.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import contourpy
import geopandas as gpd
import numpy as np
import shapely
from scipy import ndimage

from geo_minzheng._errors import NetworkError
from geo_minzheng.engine import (
    EPS_COST,
    BarrierArg,
    Barriers,
    Engine,
    Reach,
    Snapped,
    ranges,
)

#: Surface value of a cell with no road within the buffer (open land, gaps between tiles).
_BIG = np.uint16(65535)
#: Surface value of a cell near a road that is not reached.
_ROAD = np.uint16(60000)
#: Costs are stored as uint16 steps, the largest break being this many (_ROAD is 10 times
#: as far, so that contours between a reached and an unreached cell hug the reached one).
_Q_MAX = 6000
#: Cells of packed facility windows in flight at once (bounds peak memory to ~150 MB): one
#: canvas, or this many shared among the threads that work on facilities in parallel.
_CANVAS_CELLS = 6_000_000
#: Facilities are split over threads once their trees hold this many (facility, node) pairs:
#: below it, a thread's start-up and a second canvas's fixed costs outweigh the split.
_PARALLEL_MIN_REACHED = 5_000
#: At most this many threads work on one request.
_MAX_THREADS = 4
#: Side of a cached road-raster block, cells.
_BLOCK = 64
#: Key of the road-raster blocks in the engine's derived state, with the cell size: a dict of
#: the blocks already drawn, keyed by (block row, block col); kept on the engine, so it is
#: dropped with it.
_ROAD_BLOCKS_KEY = "isochrones.road_blocks"


# --------------------------------------------------------------------------------------------
# sampling the reached edge parts
# --------------------------------------------------------------------------------------------
def _reached_parts(
    engine: Engine, reach: Reach, facilities: Snapped, first: int, cutoff: float
) -> dict[str, np.ndarray]:
    """Every (facility, reached edge part) with its start cost, parent edge and fractions.

    ``facilities`` are ``reach``'s sources, the ``first``-th of the request onwards. Only edges
    leaving a node that some facility reaches are looked at (through the engine's edges sorted
    by start node), so a call costs in proportion to what is reached, not to the network's
    size. A street reached from both ends is cut where the two costs meet (each direction
    keeps only the part it reaches first), and parts that reach nothing beyond their start
    node are dropped: that node is the end of the part it was reached by.

    A facility's own street is split at its point (the pieces to and from it); the points of
    the request's other facilities, which split the streets they lie on in the search graph,
    are not looked at, so a facility's parts are those it has when asked for alone.
    """
    csr = reach.cost
    n_aug = csr.shape[1]
    coo = csr.tocoo()
    fac, node, dist = coo.row, coo.col, coo.data
    fkey, by_key = fac.astype(np.int64) * n_aug + node, dist
    if np.any(fkey[1:] < fkey[:-1]):
        fo = np.argsort(fkey, kind="stable")
        fkey, by_key = fkey[fo], dist[fo]

    def cost_at(f: np.ndarray, at: np.ndarray) -> np.ndarray:
        """Cost of facility ``f`` at augmented node ``at`` (inf if not reached)."""
        want = f.astype(np.int64) * n_aug + at
        k = np.minimum(np.searchsorted(fkey, want), max(len(fkey) - 1, 0))
        return (
            np.where(fkey[k] == want, by_key[k], np.inf) if len(fkey) else np.full(len(f), np.inf)
        )

    # the engine's own out-edges of each (facility, node) pair, usable ones only; the cost of
    # each edge's twin (the reverse over the same street segment) comes from the engine
    net = engine.arrays
    order, out_ptr, twins = net.out_edges, net.out_ptr, net.twin
    pb = np.flatnonzero(node < reach.n_real_nodes)
    deg = out_ptr[node[pb] + 1] - out_ptr[node[pb]]
    rep = np.repeat(pb, deg)
    eb = order[ranges(out_ptr[node[pb]], deg)]
    ok = np.flatnonzero(np.isfinite(reach.edge_cost[eb]))
    rep, eb = rep[ok], eb[ok]
    twin = twins[eb]
    rc_b = np.where(twin >= 0, reach.edge_cost[np.maximum(twin, 0)], np.inf)
    # each facility's own pieces of each directed edge of its street: from its point to the
    # edge's end, and from the edge's start to its point (the twin piece of each is the reverse
    # over the same stretch)
    i, e, f = engine.point_edges(facilities)
    c, tw = reach.edge_cost[e], twins[e]
    c_tw = np.where(tw >= 0, reach.edge_cost[np.maximum(tw, 0)], np.inf)
    point = reach.n_real_nodes + first + i
    with np.errstate(invalid="ignore"):  # 0 * inf on a closed edge: nan, dropped below
        out_c, in_c = c * (1.0 - f), c * f
        out_rc, in_rc = c_tw * (1.0 - f), c_tw * f
    own = {
        "fac": np.concatenate([i, i]),
        "from": np.concatenate([point, net.u[e]]),
        "to": np.concatenate([net.v[e], point]),
        "cost": np.maximum(np.concatenate([out_c, in_c]), EPS_COST),
        "rc": np.maximum(np.concatenate([out_rc, in_rc]), EPS_COST),
        "parent": np.concatenate([e, e]),
        "f0": np.concatenate([f, np.zeros(len(f))]),
        "f1": np.concatenate([np.ones(len(f)), f]),
    }
    own["d"] = cost_at(own["fac"], own["from"])
    own["rc"][np.isnan(own["rc"])] = np.inf
    keep_own = np.flatnonzero(np.isfinite(own["d"]) & np.isfinite(own["cost"]))
    own = {k: v[keep_own] for k, v in own.items()}
    # all parts: (facility, start cost, edge cost, end node, parent, fractions, twin cost)
    f_all = np.concatenate([fac[rep], own["fac"]])
    d = np.concatenate([dist[rep], own["d"]])
    c = np.concatenate([reach.edge_cost[eb], own["cost"]])
    to = np.concatenate([reach.edge_v[eb], own["to"]])
    par = np.concatenate([eb, own["parent"]])
    f0 = np.concatenate([np.zeros(len(eb)), own["f0"]])
    f1 = np.concatenate([np.ones(len(eb)), own["f1"]])
    rc = np.concatenate([rc_b, own["rc"]])
    d_end = cost_at(f_all, to)
    with np.errstate(invalid="ignore"):
        meet = np.where(np.isfinite(d_end) & np.isfinite(rc), (d_end + rc - d) / (c + rc), 1.0)
    r = np.clip(np.minimum((cutoff - d) / c, meet), 0.0, 1.0)
    # (positions, not a mask: numpy gathers by index several times faster than by a mask)
    keep = np.flatnonzero(r > 0)
    return {
        "fac": f_all[keep],
        "d": d[keep],
        "cost": c[keep],
        "parent": par[keep],
        "f0": f0[keep],
        "df": f1[keep] - f0[keep],
        "r": r[keep],
    }


def _line_vertices(lines: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices of ``lines``, each line's first-vertex index (n+1 offsets), arc length at each."""
    coords, idx = shapely.get_coordinates(lines, return_index=True)
    vptr = np.concatenate([[0], np.cumsum(np.bincount(idx, minlength=len(lines)))])
    step = np.zeros(len(coords))
    if len(coords) > 1:
        same = idx[1:] == idx[:-1]
        step[1:] = np.where(same, np.hypot(*(coords[1:] - coords[:-1]).T), 0.0)
    arc = np.cumsum(step)
    if len(coords):
        arc -= arc[vptr[:-1]][idx]
    return coords, vptr, arc


def _reached_samples(
    engine: Engine,
    reach: Reach,
    facilities: Snapped,
    first: int,
    cutoff: float,
    step_m: float,
    cell: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cells of points at most ``step_m`` apart along every reached edge part.

    Returns the cells' column and row (cell (i, j) is centred on (i * cell, j * cell)) and the
    cost there (float32), grouped by facility, and the number of samples of each facility.
    Each part is expanded to the segments (consecutive vertices) of its edge that it overlaps;
    each overlap is sampled with both ends included, by a start point plus a step vector (no
    per-point search).
    """
    p = _reached_parts(engine, reach, facilities, first, cutoff)
    if np.any(p["fac"][1:] < p["fac"][:-1]):  # parts come grouped by facility: keep it so
        o = np.argsort(p["fac"], kind="stable")
        p = {k: v[o] for k, v in p.items()}
    line = p["parent"]
    net = engine.arrays
    coords, vptr, arc = net.vertex_xy, net.vertex_ptr, net.vertex_arc_m
    glen = arc[np.maximum(vptr[line + 1] - 1, 0)]
    a = p["f0"] * glen
    b = a + p["r"] * p["df"] * glen
    rate = p["cost"] / np.maximum(p["df"] * glen, 1e-12)  # cost per metre along this part
    n_seg = np.maximum(vptr[line + 1] - vptr[line] - 1, 0)
    rep = np.repeat(np.arange(len(line)), n_seg)
    v0 = ranges(vptr[line], n_seg)
    s0, s1 = arc[v0], arc[v0 + 1]
    lo = np.maximum(a[rep], s0)
    hi = np.minimum(b[rep], s1)
    ok = np.flatnonzero(hi >= lo)
    rep, v0, s0, lo, hi = rep[ok], v0[ok], s0[ok], lo[ok], hi[ok]
    seg_len = np.maximum(s1[ok] - s0, 1e-12)
    # in cell units from here on, x and y apart (1-D inserts are the cheap ones)
    x0, y0 = coords[v0, 0] / cell, coords[v0, 1] / cell
    ux = (coords[v0 + 1, 0] / cell - x0) / seg_len  # cells per metre
    uy = (coords[v0 + 1, 1] / cell - y0) / seg_len
    sx = x0 + ux * (lo - s0)
    sy = y0 + uy * (lo - s0)
    n_pt = np.ceil((hi - lo) / step_m).astype(np.int64) + 1
    stride = (hi - lo) / np.maximum(n_pt - 1, 1)
    c_lo = p["d"][rep] + (lo - a[rep]) * rate[rep]
    c_step = stride * rate[rep]
    vx, vy = ux * stride, uy * stride
    owner = p["fac"][rep].astype(np.int64)
    # the facility itself and its access leg: one-sample pieces (no step), merged into the
    # pieces in facility order before the pieces are expanded to samples
    n = len(facilities)
    extra_xy = np.concatenate([facilities.xy, facilities.snapped_xy]) / cell
    extra_c = np.concatenate([np.zeros(n), facilities.access_cost])
    extra_f = np.tile(np.arange(n), 2)
    keep = extra_c <= cutoff  # e.g. an access leg longer than the largest break
    o = np.argsort(extra_f[keep], kind="stable")
    extra_f = extra_f[keep][o]
    at = np.searchsorted(owner, extra_f, side="right")
    sx = np.insert(sx, at, extra_xy[keep][o, 0])
    sy = np.insert(sy, at, extra_xy[keep][o, 1])
    vx = np.insert(vx, at, 0.0)
    vy = np.insert(vy, at, 0.0)
    c_lo = np.insert(c_lo, at, extra_c[keep][o])
    c_step = np.insert(c_step, at, 0.0)
    n_pt = np.insert(n_pt, at, 1)
    owner = np.insert(owner, at, extra_f)
    # per sample: np.repeat of each piece's values (a contiguous copy, cheaper than a
    # fancy-index gather), then the same arithmetic
    total = int(n_pt.sum())
    j = np.arange(total, dtype=float)  # the sample's rank within its piece
    j -= np.repeat((np.cumsum(n_pt) - n_pt).astype(float), n_pt)

    def along(first: np.ndarray, step: np.ndarray) -> np.ndarray:
        out = np.repeat(np.ascontiguousarray(step), n_pt)
        out *= j
        out += np.repeat(np.ascontiguousarray(first), n_pt)
        return out

    ci = np.rint(along(sx, vx)).astype(np.int64)
    cj = np.rint(along(sy, vy)).astype(np.int64)
    c = along(c_lo, c_step).astype(np.float32)
    return ci, cj, c, np.bincount(owner, weights=n_pt, minlength=n).astype(np.int64)


# --------------------------------------------------------------------------------------------
# the road raster, drawn lazily in blocks
# --------------------------------------------------------------------------------------------
def _clip_to_boxes(
    p0: np.ndarray, p1: np.ndarray, box: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Liang-Barsky: the parameter range [t0, t1] of each segment p0->p1 inside its box."""
    d = p1 - p0
    t0 = np.zeros(len(p0))
    t1 = np.ones(len(p0))
    with np.errstate(divide="ignore", invalid="ignore"):
        for ax in (0, 1):
            ta = (box[:, ax] - p0[:, ax]) / d[:, ax]
            tb = (box[:, ax + 2] - p0[:, ax]) / d[:, ax]
            flat = d[:, ax] == 0
            inside = (p0[:, ax] >= box[:, ax]) & (p0[:, ax] <= box[:, ax + 2])
            t0 = np.where(flat, np.where(inside, t0, 1.0), np.maximum(t0, np.minimum(ta, tb)))
            t1 = np.where(flat, np.where(inside, t1, 0.0), np.minimum(t1, np.maximum(ta, tb)))
    return t0, t1


def _draw_blocks(engine: Engine, cell: float, keys: np.ndarray) -> np.ndarray:
    """Road cells of the blocks ``keys`` (rows of block row, block col): (n, _BLOCK, _BLOCK)."""
    net = engine.arrays
    seg_geom, tree = net.segment_geometry, net.segment_tree
    n = len(keys)
    out = np.zeros((n, _BLOCK, _BLOCK), dtype=bool)
    size = _BLOCK * cell
    # cell (i, j) is centred on (i * cell, j * cell); a block covers cells [k * B, k * B + B)
    box = np.column_stack(
        [
            keys[:, 1] * size - 0.5 * cell,
            keys[:, 0] * size - 0.5 * cell,
            (keys[:, 1] + 1) * size - 0.5 * cell,
            (keys[:, 0] + 1) * size - 0.5 * cell,
        ]
    )
    blk, seg = tree.query(shapely.box(*(box + [-cell, -cell, cell, cell]).T))
    if len(seg) == 0:
        return out
    useg, inv = np.unique(seg, return_inverse=True)
    coords, vptr, _ = _line_vertices(seg_geom[useg])
    n_sub = np.maximum(vptr[inv + 1] - vptr[inv] - 1, 0)
    rep = np.repeat(np.arange(len(inv)), n_sub)
    v0 = ranges(vptr[inv], n_sub)
    p0, p1 = coords[v0], coords[v0 + 1]
    wbox = box[blk[rep]] + [-cell, -cell, cell, cell]
    t0, t1 = _clip_to_boxes(p0, p1, wbox)
    ok = t1 >= t0
    p0, p1, t0, t1, owner = p0[ok], p1[ok], t0[ok], t1[ok], blk[rep][ok]
    # in cells, relative to each block's first cell, every half cell (every cell a road
    # passes through, but for corners it just cuts)
    origin = keys[owner][:, ::-1] * _BLOCK
    d = (p1 - p0) / cell
    start = p0 / cell - origin + d * t0[:, None]
    span = d * (t1 - t0)[:, None]
    n_pt = np.ceil(2.0 * np.hypot(*span.T)).astype(np.int64) + 1
    vec = span / np.maximum(n_pt - 1, 1)[:, None]
    s = np.repeat(np.arange(len(p0)), n_pt)
    j = (np.arange(len(s)) - np.repeat(np.cumsum(n_pt) - n_pt, n_pt)).astype(float)
    ci = np.rint(start[s, 0] + vec[s, 0] * j).astype(np.int64)
    cj = np.rint(start[s, 1] + vec[s, 1] * j).astype(np.int64)
    inb = (ci >= 0) & (ci < _BLOCK) & (cj >= 0) & (cj < _BLOCK)
    out.ravel()[(owner[s[inb]] * _BLOCK + cj[inb]) * _BLOCK + ci[inb]] = True
    return out


def _road_blocks(
    engine: Engine, cell: float, j0: np.ndarray, j1: np.ndarray, i0: np.ndarray, i1: np.ndarray
) -> dict[tuple[int, int], np.ndarray]:
    """The cached road blocks (drawing the missing ones) covering cell windows [j0:j1, i0:i1].

    The blocks are kept on the engine (:attr:`Engine.derived`), per cell size; threads drawing
    them take turns under its lock, so each block is drawn once.
    """
    derived = engine.derived
    with derived.lock:
        cache: dict[tuple[int, int], np.ndarray] = derived.entry((_ROAD_BLOCKS_KEY, cell), dict)
        _draw_missing(engine, cell, cache, j0, j1, i0, i1)
    return cache


def _draw_missing(
    engine: Engine,
    cell: float,
    cache: dict[tuple[int, int], np.ndarray],
    j0: np.ndarray,
    j1: np.ndarray,
    i0: np.ndarray,
    i1: np.ndarray,
) -> None:
    """Draw the road blocks covering cell windows [j0:j1, i0:i1] that ``cache`` lacks."""
    bj0, bj1 = j0 // _BLOCK, (j1 - 1) // _BLOCK
    bi0, bi1 = i0 // _BLOCK, (i1 - 1) // _BLOCK
    nj, ni = bj1 - bj0 + 1, bi1 - bi0 + 1
    per = nj * ni
    w = np.repeat(np.arange(len(j0)), per)
    k = np.arange(len(w)) - np.repeat(np.cumsum(per) - per, per)
    keys = np.unique(np.column_stack([bj0[w] + k // ni[w], bi0[w] + k % ni[w]]), axis=0)
    missing = np.array([(a, b) not in cache for a, b in keys.tolist()], dtype=bool)
    if missing.any():
        drawn = _draw_blocks(engine, cell, keys[missing])
        surface = np.where(drawn, _ROAD, _BIG).astype(np.uint16)  # as the canvas holds them
        for (a, b), arr in zip(keys[missing].tolist(), surface, strict=True):
            cache[(a, b)] = arr


# --------------------------------------------------------------------------------------------
# the cost surface and its contours
# --------------------------------------------------------------------------------------------
def _disk_rectangles(radius: int) -> list[tuple[int, int]]:
    """Half-sizes (dy, dx) of rectangles whose union is the disk of ``radius`` cells."""
    rects = [(dy, int(np.floor(np.sqrt(radius**2 - dy**2)))) for dy in range(radius + 1)]
    # keep only rectangles not contained in a taller one of the same width
    return [r for i, r in enumerate(rects) if i == len(rects) - 1 or rects[i + 1][1] < r[1]]


def _min3(a: np.ndarray, axis: int, fn: np.ufunc) -> np.ndarray:
    """``fn`` (np.minimum, np.maximum or np.add) of each cell and its two neighbours along ``axis``.

    Cells beyond the border count as absent. Shifted-slice passes over the whole canvas:
    several times faster than scipy.ndimage's generic 1-D filter for these 3-cell windows.
    """
    pre = (slice(None),) * axis
    if a.shape[axis] < 3:
        out = a.copy()
        fn(
            out[pre + (slice(1, None),)],
            a[pre + (slice(None, -1),)],
            out=out[pre + (slice(1, None),)],
        )
        fn(
            out[pre + (slice(None, -1),)],
            a[pre + (slice(1, None),)],
            out=out[pre + (slice(None, -1),)],
        )
        return out
    out = np.empty_like(a)
    mid = out[pre + (slice(1, -1),)]
    fn(a[pre + (slice(None, -2),)], a[pre + (slice(2, None),)], out=mid)
    fn(mid, a[pre + (slice(1, -1),)], out=mid)
    fn(a[pre + (0,)], a[pre + (1,)], out=out[pre + (0,)])
    fn(a[pre + (-1,)], a[pre + (-2,)], out=out[pre + (-1,)])
    return out


def _neighbourhood(a: np.ndarray, cells: np.ndarray, fn: np.ufunc) -> np.ndarray:
    """``fn`` (np.minimum or np.maximum) over the 3 x 3 cells around each of ``cells`` (flat
    indices): a gather where only a few cells need it, not a whole pass over the canvas.

    A canvas's outermost cells are gap (no tile reaches them), so the cells asked about are
    inside it and their neighbours are plain flat offsets; borders are clipped otherwise.
    """
    ny, nx_ = a.shape
    flat = a.ravel()
    out = flat[cells]
    col = cells % nx_
    if len(cells) and (
        cells.min() < nx_ or cells.max() >= (ny - 1) * nx_ or col.min() == 0 or col.max() == nx_ - 1
    ):
        r = cells // nx_
        for dr in (-1, 0, 1):
            rr = np.clip(r + dr, 0, ny - 1) * nx_
            for dc in (-1, 0, 1):
                if dr or dc:
                    fn(out, np.take(flat, rr + np.clip(col + dc, 0, nx_ - 1)), out=out)
        return out
    for off in (-nx_ - 1, -nx_, -nx_ + 1, -1, 1, nx_ - 1, nx_, nx_ + 1):
        fn(out, np.take(flat, cells + off), out=out)
    return out


def _erode(grid: np.ndarray, radius: int) -> np.ndarray:
    """Least value within a disk of ``radius`` cells: the union of a few rectangles, each a
    separable run of 3-cell passes."""
    if radius == 2:  # the default (buffer_m = 2 cells): a 3 x 3 square and four tips, 8 passes
        square = _min3(_min3(grid, 1, np.minimum), 0, np.minimum)
        for far, near in ((np.s_[:, 2:], np.s_[:, :-2]), (np.s_[2:], np.s_[:-2])):
            np.minimum(square[far], grid[near], out=square[far])
            np.minimum(square[near], grid[far], out=square[near])
        return square
    across = [grid]  # across[k]: least value within k cells along x
    out = None
    for dy, dx in _disk_rectangles(radius):
        while len(across) <= dx:
            across.append(_min3(across[-1], 1, np.minimum))
        f = across[dx]
        for _ in range(dy):
            f = _min3(f, 0, np.minimum)
        if out is None:  # the widest rectangle comes first and is never read again
            out = f.copy() if f is grid else f
        else:
            np.minimum(out, f, out=out)
    assert out is not None
    return out


def _surface(grid: np.ndarray, radius: int) -> np.ndarray:
    """Cost surface from sampled costs (``grid``: cost at reached road cells, _ROAD at other
    road cells, _BIG elsewhere).

    Every cell takes the least value within ``radius`` cells (``buffer_m``); road-free areas
    enclosed by roads (blocks) take the highest value of the cells around them; road-free areas
    that reach the canvas border (open land, the gaps between tiles) stay _BIG. ``grid`` (the
    caller's canvas) is overwritten.
    """
    # the reached samples and the road raster are drawn separately, so the raster may mark a
    # cell beside a reached street (where the street cuts a cell corner) that no sample hit;
    # left as an unreached road, it would keep every block along a street that is not
    # axis-aligned from being filled. Such a cell lies between two reached cells, so a road
    # cell with at least two reached neighbours takes their least cost; the cell just past
    # the end of a reached part has one, and stays unreached
    reached = (grid < _ROAD).astype(np.uint8)
    n_reached = _min3(_min3(reached, 0, np.add), 1, np.add) - reached
    # (few cells qualify: their 3 x 3 least value is gathered, not computed everywhere)
    fix = np.flatnonzero(((grid == _ROAD) & (n_reached >= 2)).ravel())
    if len(fix):
        grid.ravel()[fix] = _neighbourhood(grid, fix, np.minimum)
    grid = _erode(grid, radius)
    free = grid == _BIG  # no road within the buffer
    labels, n_lab = ndimage.label(free)
    if n_lab:
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        # only enclosed areas (not touching the border) can take a value: their cells
        enclosed = np.ones(n_lab + 1, dtype=bool)
        enclosed[border] = False
        enclosed[0] = False  # not a road-free area
        # the canvas's frame is gap, so all land reaching the border is usually the one area
        # labelled first (1): then the enclosed cells are simply those labelled above it
        inner = labels > 1 if border.tolist() == [1] else np.take(enclosed, labels)
        # the ring: cells that are not free but touch an enclosed area, and the (highest)
        # label of the areas they touch (an area whose cells all go to a higher neighbour
        # gets none and stays _BIG)
        near = _min3(_min3(inner, 0, np.logical_or), 1, np.logical_or)
        on_ring = np.flatnonzero((near > free).ravel())  # near, and not free
        ring = _neighbourhood(labels, on_ring, np.maximum)
        fill = np.full(n_lab + 1, -1, dtype=np.int32)
        # matching dtypes and intp indices: numpy's fast path for ufunc.at (50x faster)
        np.maximum.at(fill, ring.astype(np.intp), grid.ravel()[on_ring].astype(np.int32))
        fill[fill < 0] = _BIG
        fill[~enclosed] = _BIG
        cells = np.flatnonzero(inner.ravel())
        flat = grid.ravel()
        flat[cells] = np.minimum(flat[cells], fill.astype(np.uint16)[labels.ravel()[cells]])
    return grid


def _tile_at(tiles: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Index of the tile (rows of x, y, width, height, in shelf order) containing each canvas
    cell (x, y), -1 for none: shelves by y, then tiles by x within the shelf."""
    ox, oy, w, h = tiles.T
    shelf_y, shelf = np.unique(oy, return_inverse=True)
    span = int(ox.max(initial=0) + w.max(initial=0)) + 1
    key = shelf * span + ox  # increasing: tiles are packed shelf by shelf, left to right
    s = np.searchsorted(shelf_y, y, side="right") - 1
    k = np.searchsorted(key, s * span + np.minimum(x, span - 1), side="right") - 1
    kk = np.maximum(k, 0)
    inside = (k >= 0) & (x >= ox[kk]) & (x < ox[kk] + w[kk]) & (y >= oy[kk]) & (y < oy[kk] + h[kk])
    return np.where(inside, k, -1)


def _canvas_polygons(
    grid: np.ndarray,
    tiles: np.ndarray,
    shift: np.ndarray,
    cell: float,
    breaks: np.ndarray,
    rings: bool,
) -> np.ndarray:
    """Filled contours of a canvas of tiles, as ``(n_tiles, n_breaks)`` MultiPolygons.

    Contours are traced in cell units; each polygon belongs to the tile under its first
    vertex and is moved to world coordinates by that tile's ``shift`` (world = cell * canvas
    + shift); ``tiles`` holds each tile's canvas x, y, width and height.
    """
    ny, nx_ = grid.shape
    n_tiles = len(tiles)
    # levels half-way between two integer steps: no cell equals one, so rings never touch
    levels = np.rint(breaks * (_Q_MAX / breaks[-1])) + 0.5
    # the generator class itself, with x and y made contiguous by numpy (the generator's own
    # conversion of broadcast arrays is several times slower) and an explicit all-False mask
    # (without one it scans z for NaN to build a mask; there are none, same contours). The
    # threaded class on one thread and one chunk gives the serial one's contours, byte for
    # byte, but releases the GIL while it traces: the other canvases' threads run meanwhile
    gen = contourpy.ThreadedContourGenerator(
        np.ascontiguousarray(np.broadcast_to(np.arange(nx_, dtype=np.float64), (ny, nx_))),
        np.ascontiguousarray(np.broadcast_to(np.arange(ny, dtype=np.float64)[:, None], (ny, nx_))),
        grid.astype(np.float64),
        np.zeros((ny, nx_), dtype=bool),
        corner_mask=False,  # (no cell is masked: the same contours, a cheaper set-up)
        line_type=contourpy.LineType.Separate,
        fill_type=contourpy.FillType.ChunkCombinedOffsetOffset,
        quad_as_tri=False,
        z_interp=contourpy.ZInterp.Linear,
        x_chunk_size=0,
        y_chunk_size=0,
        thread_count=1,
    )
    out = np.empty((n_tiles, len(breaks)), dtype=object)
    out[:] = shapely.MultiPolygon()
    lower = -1.0
    for bi in range(len(breaks)):
        upper = float(levels[bi])
        filled: Any = gen.filled(lower if rings else -1.0, upper)
        lower = upper
        # ChunkCombinedOffsetOffset (one chunk): all points, ring offsets into the points,
        # polygon offsets into the rings; arrays, no per-polygon Python objects
        if filled[0][0] is None or len(filled[2][0]) < 2:
            continue
        points = np.asarray(filled[0][0], dtype=np.float64)
        offsets = np.asarray(filled[1][0], dtype=np.int64)
        outer = np.asarray(filled[2][0], dtype=np.int64)
        ring_of_pt = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
        poly_of_ring = np.repeat(np.arange(len(outer) - 1), np.diff(outer))
        first = points[offsets[outer[:-1]]]
        tile = _tile_at(
            tiles,
            np.clip(np.round(first[:, 0]).astype(np.int64), 0, nx_ - 1),
            np.clip(np.round(first[:, 1]).astype(np.int64), 0, ny - 1),
        )
        xy = points * cell
        xy += np.repeat(shift[tile[poly_of_ring]], np.diff(offsets), axis=0)
        ring_geoms = shapely.linearrings(xy, indices=ring_of_pt)
        polys = shapely.polygons(ring_geoms, indices=poly_of_ring)
        ok = tile >= 0
        order = np.argsort(tile[ok], kind="stable")
        t_sorted = tile[ok][order]
        present = np.unique(t_sorted)
        multi = shapely.multipolygons(polys[ok][order], indices=np.searchsorted(present, t_sorted))
        out[present, bi] = multi
    return out


# --------------------------------------------------------------------------------------------
# public
# --------------------------------------------------------------------------------------------
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
    cell = float(cell_m) if cell_m else buffer_m / 2.0
    reach = engine.reach(facilities, cutoff=float(brk[-1]), barriers=barriers)
    _ = engine.arrays  # the engine's view, built here once (not by several threads at once)
    threads = 1 if dissolve else _threads(reach.cost.nnz)
    job = _Job(engine, brk, rings, dissolve, cell, max(1, int(round(buffer_m / cell))), threads)
    runs = _facility_runs(reach, threads)
    if len(runs) == 1:
        polys = job.polygons(reach, facilities, runs[0])
    else:  # numpy, scipy.ndimage and shapely release the GIL on whole arrays
        with ThreadPoolExecutor(max_workers=len(runs)) as pool:
            parts = list(pool.map(lambda rows: job.polygons(reach, facilities, rows), runs))
        polys = np.concatenate(parts)
    cut = _closing_polygons(engine, barriers)
    if cut is not None:
        polys = shapely.difference(polys, cut)
    fac_ids = (
        np.full(len(brk), None, dtype=object)
        if dissolve
        else np.repeat(facilities.ids, len(brk)).astype(object)
    )
    return gpd.GeoDataFrame(
        {"facility_id": fac_ids, "break": np.tile(brk, len(polys))},
        geometry=polys.ravel(),
        crs=engine.crs,
    )


def _threads(reached: int) -> int:
    """Threads for trees of ``reached`` (facility, node) pairs: one per CPU this process may
    use (at most _MAX_THREADS), one for small requests."""
    if reached < _PARALLEL_MIN_REACHED:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(_MAX_THREADS, cpus or 1))


def _facility_runs(reach: Reach, threads: int) -> list[slice]:
    """Runs of consecutive facilities, one per thread, balanced by the nodes they reach."""
    ptr, n = reach.cost.indptr, reach.cost.shape[0]
    cuts = np.searchsorted(ptr, ptr[-1] * np.arange(1, threads) / threads, side="left")
    bounds = np.unique(np.concatenate([[0], np.clip(cuts, 0, n), [n]])).tolist()
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


@dataclasses.dataclass(frozen=True)
class _Job:
    """One request's settings: polygons for any run of its facilities (one thread each)."""

    engine: Engine
    brk: np.ndarray
    rings: bool
    dissolve: bool
    cell: float
    radius: int  # buffer_m in cells
    threads: int

    def polygons(self, reach: Reach, facilities: Snapped, rows: slice) -> np.ndarray:
        """``(n_groups, n_breaks)`` MultiPolygons of the facilities ``rows`` (one group if
        dissolved): their samples, packed on canvases of at most _CANVAS_CELLS / threads."""
        first = rows.start
        if rows != slice(0, len(facilities)):  # their trees (the edges stay shared)
            reach = dataclasses.replace(
                reach, source_ids=reach.source_ids[rows], cost=reach.cost[rows]
            )
            facilities = facilities.subset(rows)
        brk, cell, radius = self.brk, self.cell, self.radius
        ci, cj, cost, per_facility = _reached_samples(
            self.engine, reach, facilities, first, float(brk[-1]), 0.75 * cell, cell
        )
        cost = np.rint(cost * (_Q_MAX / brk[-1])).astype(np.uint16)  # uint16 steps
        n_groups = 1 if self.dissolve else len(facilities)
        counts = per_facility.sum(keepdims=True) if self.dissolve else per_facility
        ptr = np.concatenate([[0], np.cumsum(counts)])
        todo = np.flatnonzero(ptr[1:] > ptr[:-1])
        polys = np.empty((n_groups, len(brk)), dtype=object)
        polys[:] = shapely.MultiPolygon()
        if len(todo) == 0:
            return polys
        margin = radius + 1  # the buffer, then one unreachable cell for the contour to close
        heads = ptr[todo]
        i0 = np.minimum.reduceat(ci, heads) - margin
        j0 = np.minimum.reduceat(cj, heads) - margin
        i1 = np.maximum.reduceat(ci, heads) + margin + 1
        j1 = np.maximum.reduceat(cj, heads) + margin + 1
        blocks = _road_blocks(self.engine, cell, j0, j1, i0, i1)
        counts = np.diff(ptr)[todo]
        # tiles 2 * radius + 1 cells apart: a tile's roads, eroded, reach ``radius`` cells
        # into a gap, so the middle of every gap stays road-free and links the land at each
        # tile's edge to the canvas frame. Then whether an area is enclosed (a block) depends
        # on the tile alone, not on the tiles packed beside it (narrower gaps could close)
        gap = 2 * radius + 1
        area = np.cumsum((i1 - i0 + gap) * (j1 - j0 + gap))
        cap = -(-_CANVAS_CELLS // self.threads)
        start = 0
        while start < len(todo):
            # as many windows as fit in the canvas (at least one)
            stop = max(start + 1, int(np.searchsorted(area, area[start] + cap)))
            s0, s1 = ptr[todo[start]], ptr[todo[stop - 1] + 1]
            polys[todo[start:stop]] = _run_canvas(
                start, stop, i0, j0, i1, j1, gap, blocks, cell,
                ci[s0:s1], cj[s0:s1], cost[s0:s1], counts[start:stop], radius, brk, self.rings,
            )  # fmt: skip
            start = stop
        return polys


def _pack(w: np.ndarray, h: np.ndarray, gap: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Shelf packing of w x h tiles, ``gap`` cells apart: offsets and the canvas size."""
    width = int(max(w.max(), np.sqrt(float(((w + gap) * (h + gap)).sum())))) + 2 * gap
    ox = np.empty(len(w), dtype=np.int64)
    oy = np.empty(len(w), dtype=np.int64)
    x, y, shelf = gap, gap, 0
    for k in range(len(w)):  # a few hundred tiles, plain arithmetic
        if x + w[k] + gap > width:
            x, y, shelf = gap, y + shelf + gap, 0
        ox[k], oy[k] = x, y
        x += int(w[k]) + gap
        shelf = max(shelf, int(h[k]))
    return ox, oy, width, int(y + shelf + gap)


def _run_canvas(
    start: int,
    stop: int,
    i0: np.ndarray,
    j0: np.ndarray,
    i1: np.ndarray,
    j1: np.ndarray,
    gap: int,
    blocks: dict[tuple[int, int], np.ndarray],
    cell: float,
    ci: np.ndarray,
    cj: np.ndarray,
    cost: np.ndarray,
    counts: np.ndarray,
    radius: int,
    brk: np.ndarray,
    rings: bool,
) -> np.ndarray:
    """Pack windows ``start:stop`` on one canvas, build its cost surface and contour it.

    ``ci``, ``cj`` and ``cost`` are the windows' samples, grouped by window (``counts`` each).
    """
    ti0, tj0, ti1, tj1 = i0[start:stop], j0[start:stop], i1[start:stop], j1[start:stop]
    w, h = ti1 - ti0, tj1 - tj0
    ox, oy, width, height = _pack(w, h, gap)
    grid = np.full((height, width), _BIG, dtype=np.uint16)
    # per tile: copy its part of each road block it overlaps. The (tile, block) pieces and
    # their slices are worked out as arrays; the loop only copies (plain ints, as numpy
    # scalars make it several times slower)
    bj0, bi0 = tj0 // _BLOCK, ti0 // _BLOCK
    nj, ni = (tj1 - 1) // _BLOCK - bj0 + 1, (ti1 - 1) // _BLOCK - bi0 + 1
    per = nj * ni
    k = np.repeat(np.arange(len(per)), per)
    q = np.arange(len(k)) - np.repeat(np.cumsum(per) - per, per)
    bj, bi = bj0[k] + q // ni[k], bi0[k] + q % ni[k]
    r0, r1 = np.maximum(tj0[k], bj * _BLOCK), np.minimum(tj1[k], (bj + 1) * _BLOCK)
    c0, c1 = np.maximum(ti0[k], bi * _BLOCK), np.minimum(ti1[k], (bi + 1) * _BLOCK)
    y0, x0 = oy[k] + r0 - tj0[k], ox[k] + c0 - ti0[k]
    pieces = zip(
        *(
            v.tolist()
            for v in (y0, y0 + r1 - r0, x0, x0 + c1 - c0, bj, bi)
            + (r0 - bj * _BLOCK, r1 - bj * _BLOCK, c0 - bi * _BLOCK, c1 - bi * _BLOCK)
        ),
        strict=True,
    )
    for ya, yb, xa, xb, kj, ki, sa, sb, ta, tb in pieces:
        grid[ya:yb, xa:xb] = blocks[(kj, ki)][sa:sb, ta:tb]
    # canvas cell of every sample: its window's offset, repeated over the window's samples
    flat = cj * width
    flat += ci
    flat += np.repeat((oy - tj0) * width + (ox - ti0), counts)
    np.minimum.at(grid.ravel(), flat, cost)  # least cost (uint16 steps) per cell
    grid = _surface(grid, radius)
    shift = np.column_stack([(ti0 - ox) * cell, (tj0 - oy) * cell])
    tiles = np.column_stack([ox, oy, w, h])
    return _canvas_polygons(grid, tiles, shift, cell, brk, rings)


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
