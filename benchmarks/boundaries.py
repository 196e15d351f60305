"""Boundary topology at scale: shared lines and faults of a >= 10,000-unit tessellation.

The tessellation is the Voronoi diagram of seeded random points in a 60 km square (GEOS; cells
share their edges vertex for vertex, as real district coverages do), in metres. Faults are
injected by bending a shared edge at a new middle vertex: overlaps (80 m into the neighbour),
gaps (60 m away), sliver overlaps (1 m) and sliver gaps (1.5 m), each on its own pair of units far
from the others, and holes cut inside units.

Two computations of the same things, in the same process:

* ``geo_minzheng.boundaries``: ``coverage_topology`` (every ring segment hashed once: the shared
  arcs) and ``coverage_faults`` (faces of the unmatched segments; GEOS coverage_invalid_edges on
  the units owning them);
* the baseline, a geopandas pairwise overlay: neighbour pairs by ``sjoin``, each pair's shared
  line as the intersection of the two boundaries, overlaps by ``overlay(how="intersection")``
  of the layer with itself, gaps as the holes of the dissolved layer, each classified sliver or
  not by the same width rule.

Both must find the same lines (pairs and lengths) and the same faults (kind, units, area);
the script prints ``boundaries_topology_vs_pairwise ratio=X`` (baseline time / ours, best of
``--repeat`` runs each).
"""

from __future__ import annotations

import argparse
import time

import geopandas as gpd
import numpy as np
import shapely

from geo_minzheng import boundaries

SIDE_M = 60_000.0


def tessellation(n: int, seed: int) -> np.ndarray:
    """Voronoi cells of ``n`` random points in a square, clipped to it (metres)."""
    rng = np.random.default_rng(seed)
    pts = shapely.multipoints(rng.uniform(0.0, SIDE_M, (n, 2)))
    box = shapely.box(0.0, 0.0, SIDE_M, SIDE_M)
    cells = shapely.get_parts(shapely.voronoi_polygons(pts, extend_to=box))
    return np.asarray(shapely.intersection(cells, box), dtype=object)


def _move(geoms: np.ndarray, i: int, j: int, line: shapely.Geometry, metres: float) -> bool:
    """Bend unit i's part of the i|j shared line by ``metres`` toward j (< 0: away from j).

    A new vertex is put in the middle of the line's middle segment and moved along its normal,
    so the fault is a triangle (Voronoi neighbours share one straight segment).
    """
    coords = shapely.get_coordinates(line)
    m = (len(coords) - 1) // 2
    p0, p1 = coords[m], coords[m + 1]
    if np.hypot(*(p1 - p0)) < 20.0:
        return False
    ring = np.asarray(shapely.get_exterior_ring(geoms[i]).coords)
    for k in range(len(ring) - 1):
        a, b = ring[k], ring[k + 1]
        if ((a == p0).all() and (b == p1).all()) or ((a == p1).all() and (b == p0).all()):
            break
    else:
        return False
    along = b - a
    normal = np.array([-along[1], along[0]]) / np.hypot(*along)
    mid = (a + b) / 2.0
    if not shapely.Point(mid + normal * 0.1).within(geoms[j]):
        normal = -normal
    moved = np.insert(ring, k + 1, mid + normal * metres, axis=0)
    candidate = shapely.Polygon(moved)
    if not candidate.is_valid:
        return False
    geoms[i] = candidate
    return True


def inject(geoms: np.ndarray, per_kind: int, seed: int) -> dict[str, int]:
    """Inject faults in place on pairs of units that touch no other injected unit."""
    topo = boundaries.coverage_topology(geoms)
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(len(topo.pair_a))
    used: set[int] = set()
    tree = shapely.STRtree(geoms)
    plan = [("overlap", 80.0), ("gap", -60.0), ("sliver_overlap", 1.0), ("sliver_gap", -1.5)]
    counts = dict.fromkeys([name for name, _ in plan], 0)
    counts["hole"] = 0
    wanted = [name for name, _ in plan for _ in range(per_kind)]
    metres = dict(plan)
    k = 0
    for p in order:
        if k == len(wanted):
            break
        i, j = int(topo.pair_a[p]), int(topo.pair_b[p])
        near = set(tree.query(shapely.buffer(shapely.union(geoms[i], geoms[j]), 200.0)).tolist())
        if near & used:
            continue
        if _move(geoms, i, j, topo.lines[p], metres[wanted[k]]):
            used |= near
            counts[wanted[k]] += 1
            k += 1
    for i in rng.permutation(len(geoms)):
        if counts["hole"] == per_kind:
            break
        i = int(i)
        near = set(tree.query(geoms[i]).tolist())
        if near & used or geoms[i].area < 2e5:
            continue
        hole = shapely.buffer(shapely.point_on_surface(geoms[i]), 60.0)
        if not shapely.contains_properly(geoms[i], hole):
            continue
        geoms[i] = shapely.difference(geoms[i], hole)
        used |= near
        counts["hole"] += 1
    return counts


# ------------------------------------------------------------------------------------------------
# The two computations
# ------------------------------------------------------------------------------------------------


def ours(geoms: np.ndarray, sliver_m: float) -> tuple[dict, list]:
    topo = boundaries.coverage_topology(geoms)
    faults = boundaries.coverage_faults(geoms, topo, sliver_width_m=sliver_m)
    lines = {
        (int(a), int(b)): float(shapely.length(g))
        for a, b, g in zip(topo.pair_a, topo.pair_b, topo.lines, strict=True)
    }
    found = [(f.kind, tuple(sorted(f.units)), round(float(f.area_m2 or 0.0), 3)) for f in faults]
    return lines, sorted(found)


def pairwise(geoms: np.ndarray, sliver_m: float) -> tuple[dict, list]:
    """The geopandas pairwise overlay baseline."""
    gdf = gpd.GeoDataFrame({"unit": np.arange(len(geoms))}, geometry=geoms)
    pairs = gpd.sjoin(gdf, gdf, predicate="intersects")
    pairs = pairs[pairs["unit_left"] < pairs["unit_right"]]
    a = pairs["unit_left"].to_numpy()
    b = pairs["unit_right"].to_numpy()
    common = shapely.intersection(shapely.boundary(geoms[a]), shapely.boundary(geoms[b]))
    parts, owner = shapely.get_parts(common, return_index=True)
    is_line = shapely.get_type_id(parts) == 1
    length = np.bincount(owner[is_line], weights=shapely.length(parts[is_line]), minlength=len(a))
    lines = {(int(i), int(j)): float(x) for i, j, x in zip(a, b, length, strict=True) if x > 0}
    found = []
    inter = gpd.overlay(gdf, gdf, how="intersection", keep_geom_type=True)
    inter = inter[inter["unit_1"] < inter["unit_2"]]
    for u1, u2, geom in zip(inter["unit_1"], inter["unit_2"], inter.geometry, strict=True):
        for part in shapely.get_parts(geom):
            if part.area > boundaries.MIN_FAULT_AREA_M2:
                kind = "sliver" if _width(part) < sliver_m else "overlap"
                found.append((kind, (int(u1), int(u2)), round(float(part.area), 3)))
    union = gdf.dissolve().geometry.iloc[0]
    holes = [shapely.Polygon(r) for p in shapely.get_parts(union) for r in p.interiors]
    tree = shapely.STRtree(geoms)
    for hole in holes:
        if hole.area <= boundaries.MIN_FAULT_AREA_M2:
            continue
        units = tuple(sorted(int(u) for u in tree.query(hole, predicate="dwithin", distance=0.01)))
        kind = "sliver" if _width(hole) < sliver_m else "gap"
        found.append((kind, units, round(float(hole.area), 3)))
    return lines, sorted(found)


def _width(polygon: shapely.Geometry) -> float:
    return 2.0 * float(shapely.length(shapely.maximum_inscribed_circle(polygon)))


def _best(func, *args, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = func(*args)
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--faults", type=int, default=10, help="faults of each kind")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    sliver_m = 5.0
    geoms = tessellation(args.units, args.seed)
    counts = inject(geoms, args.faults, args.seed)
    segments = int(shapely.get_num_coordinates(geoms).sum())
    print(f"tessellation: {len(geoms):,} units, {segments:,} vertices; injected {counts}")
    t_ours, (lines_o, faults_o) = _best(ours, geoms, sliver_m, repeat=args.repeat)
    t_base, (lines_b, faults_b) = _best(pairwise, geoms, sliver_m, repeat=args.repeat)
    same_pairs = set(lines_o) == set(lines_b)
    worst = max(abs(lines_o[k] - lines_b[k]) / lines_b[k] for k in lines_b) if same_pairs else 1.0
    mine = [(k, u) for k, u, _ in faults_o if k != "edge_mismatch"]
    theirs = [(k, u) for k, u, _ in faults_b]
    areas_ok = all(
        abs(x[2] - y[2]) <= 1e-6 * max(1.0, y[2]) + 2e-3
        for x, y in zip(sorted(faults_o), sorted(faults_b), strict=False)
    )
    expected = sum(counts.values())
    print(f"lines: {len(lines_o):,} pairs (baseline {len(lines_b):,}), same pairs {same_pairs}, "
          f"largest relative length difference {worst:.1e}")  # fmt: skip
    print(f"faults: {len(faults_o)} found (baseline {len(faults_b)}, injected {expected}), "
          f"same faults {sorted(mine) == sorted(theirs)}, same areas {areas_ok}")  # fmt: skip
    print(f"ours {t_ours * 1000:.0f} ms, geopandas pairwise overlay {t_base * 1000:.0f} ms")
    print(f"boundaries_topology_vs_pairwise ratio={t_base / t_ours:.1f}")


if __name__ == "__main__":
    main()
