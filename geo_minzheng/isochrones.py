"""Service-area polygons (isochrones) built from the reachable parts of network edges.

For each facility and break, every edge reached within the break contributes the part of it
that can be travelled (a partial edge is cut where the break runs out). The pieces are buffered
by ``buffer_m`` (the "search tolerance" of a service area: the strip of land a street serves)
and merged in one GEOS call per polygon. A hole of that polygon is filled when no road crosses
it (a city block whose surrounding streets are all reachable is reachable) and kept when an
unreachable road runs through it (the block holds streets beyond the break, or closed by a
barrier). Closing polygon barriers are cut out. The result therefore never spreads over
unreachable areas the way a convex hull of reached nodes does.
"""

from __future__ import annotations

from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import shapely

from geo_minzheng._errors import NetworkError
from geo_minzheng.engine import BarrierArg, Barriers, Engine, Reach, Snapped, line_pieces


def _reached_pieces(
    engine: Engine, reach: Reach, facilities: Snapped, breaks: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Reachable line pieces and the (facility, break) group index of each, vectorised."""
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
    f_rep, d_rep = fac[rep], dist[rep]
    cost = edges["cost"].to_numpy()[eidx]
    parent = edges["parent"].to_numpy()[eidx]
    f0 = edges["f0"].to_numpy()[eidx]
    f1 = edges["f1"].to_numpy()[eidx]
    real = parent >= 0
    f_rep, d_rep, cost, parent, f0, f1 = (a[real] for a in (f_rep, d_rep, cost, parent, f0, f1))
    lines, groups = [], []
    n_breaks = len(breaks)
    for bi, brk in enumerate(breaks):
        ok = d_rep < brk
        r = np.clip((brk - d_rep[ok]) / cost[ok], 0.0, 1.0)
        p = parent[ok]
        scale = shapely.length(engine.geometry[p])  # fractions are of the geometry's length
        start = f0[ok] * scale
        end = (f0[ok] + r * (f1[ok] - f0[ok])) * scale
        lines.append(line_pieces(engine.geometry[p], start, end))
        groups.append(f_rep[ok] * n_breaks + bi)
        # the access leg from the facility to its road, where it fits within the break
        acc_ok = facilities.access_cost < brk
        legs = shapely.linestrings(
            np.stack([facilities.xy[acc_ok], facilities.snapped_xy[acc_ok]], axis=1)
        )
        lines.append(legs)
        groups.append(np.flatnonzero(acc_ok) * n_breaks + bi)
    return np.concatenate(lines), np.concatenate(groups)


def _fill_holes(engine: Engine, polys: np.ndarray) -> np.ndarray:
    """Fill the holes no road crosses; keep those an (unreachable) road runs through."""
    parts, part_of = shapely.get_parts(polys, return_index=True)
    n_holes = shapely.get_num_interior_rings(parts)
    if n_holes.sum() == 0:
        return polys
    shells = shapely.get_exterior_ring(parts)
    hole_part = np.repeat(np.arange(len(parts)), n_holes)
    hole_k = np.arange(n_holes.sum()) - np.repeat(np.cumsum(n_holes) - n_holes, n_holes)
    holes = shapely.get_interior_ring(parts[hole_part], hole_k)
    seg_tree = engine._segment_index()[5]
    hit, _ = seg_tree.query(shapely.polygons(holes), predicate="intersects")
    keep = np.zeros(len(holes), dtype=bool)
    keep[np.unique(hit)] = True
    rings = np.concatenate([shells, holes[keep]])
    ring_part = np.concatenate([np.arange(len(parts)), hole_part[keep]])
    rank = np.concatenate([np.zeros(len(parts)), np.ones(int(keep.sum()))])
    order = np.lexsort((rank, ring_part))
    new_parts = shapely.polygons(rings[order], indices=ring_part[order])
    out = np.empty(len(polys), dtype=object)
    out[:] = shapely.Polygon()
    has = np.unique(part_of)
    out[has] = shapely.multipolygons(new_parts, indices=part_of)
    return out


def service_areas(
    engine: Engine,
    facilities: Snapped,
    *,
    breaks: Sequence[float] = (300, 600, 900),
    rings: bool = False,
    dissolve: bool = False,
    barriers: BarrierArg = None,
    buffer_m: float = 30.0,
    quad_segs: int = 2,
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
        False: one disk per break (everything within it, nested); True: bands between
        consecutive breaks (disjoint).
    dissolve
        Merge all facilities per break (``facility_id`` is then None).
    barriers
        Barriers applied to the travel; closing polygon barriers are also cut out.
    buffer_m
        Half-width of the strip each reachable street serves, metres.
    quad_segs
        Segments per quarter circle of the buffer's round ends (2 keeps polygons light).

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
    n_fac, n_brk = len(facilities), len(brk)
    reach = engine.reach(facilities, cutoff=float(brk[-1]), barriers=barriers)
    lines, groups = _reached_pieces(engine, reach, facilities, brk)
    polys = np.empty(n_fac * n_brk, dtype=object)
    polys[:] = shapely.Polygon()
    if len(lines):
        order = np.argsort(groups, kind="stable")
        g_sorted = groups[order]
        present = np.unique(g_sorted)
        multi = shapely.multilinestrings(lines[order], indices=np.searchsorted(present, g_sorted))
        polys[present] = shapely.buffer(multi, buffer_m, quad_segs=quad_segs)
        polys = _fill_holes(engine, polys)
    cut = _closing_polygons(engine, barriers)
    if cut is not None:
        polys = shapely.difference(polys, cut)
    polys = polys.reshape(n_fac, n_brk)
    fac_ids = np.repeat(facilities.ids, n_brk).astype(object)
    if dissolve:
        polys = np.array([shapely.union_all(polys[:, j]) for j in range(n_brk)], dtype=object)
        polys = polys.reshape(1, n_brk)
        fac_ids = np.full(n_brk, None, dtype=object)
    if rings:
        inner = np.concatenate(
            [np.full((polys.shape[0], 1), shapely.Polygon(), dtype=object), polys[:, :-1]], axis=1
        )
        polys = shapely.difference(polys, inner)
    n_rows = polys.shape[0]
    return gpd.GeoDataFrame(
        {"facility_id": fac_ids, "break": np.tile(brk, n_rows)},
        geometry=polys.ravel(),
        crs=engine.crs,
    )


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
