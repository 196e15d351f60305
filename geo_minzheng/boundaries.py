"""Administrative boundary management (行政区域界线管理): hierarchy, shared lines, topology checks,
boundary markers (界桩), joint inspections (联合检查) and inspection routes.

* :func:`division_codes` and :func:`hierarchy`: admin units with adcode, level and parent, from the
  unit layer and the official division code lists (国家统计局 统计用区划代码); names are given
  wherever a table shows a unit, never bare codes.
* :func:`coverage_topology`: the pure core over polygon arrays in a projected CRS. Every ring
  segment is hashed once (the shared-arc idea of TopoJSON): a segment two units both use is on
  their shared line, a segment one unit alone uses is on the outer boundary or borders a fault.
  One sort finds every shared line of a level, with no pairwise overlay.
* :func:`coverage_faults`: gaps, overlaps and slivers are the faces the unmatched segments enclose
  (polygonized, then counted against the units: covered by none is a gap, by two or more an
  overlap, narrower than ``sliver_width_m`` a sliver); invalid rings, units outside their parent,
  parent area no child covers, and edges that do not match (GEOS ``coverage_invalid_edges``) are
  the other findings. Faults are findings, never errors.
* :func:`analyze`: the wrapper over the layers; returns a :class:`BoundaryResult` with the lines,
  the parents' outer boundaries, the faults, the markers with their line, distance and latest
  state, and each line's last joint inspection and next due date.
* :func:`check_inspection`: an inspection record checked before it is stored (append-only, in
  the store); :func:`inspection_route` orders a line's markers along the road network with
  the PyVRP solver the relief analysis uses (:func:`geo_minzheng.routing.visiting_order`, the
  cost-matrix entry point, re-exported here).

Metric work happens in the working CRS (CGCS2000 3-degree Gauss-Krüger, :mod:`geo_minzheng.crs`);
frames returned are WGS84.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from geo_minzheng import crs as gm_crs
from geo_minzheng import params
from geo_minzheng._errors import LayerValidationError, Problem, UnreachableError
from geo_minzheng.kinds import ADMIN_LEVELS, DEMO_SCENARIO_LABEL, MARKER_STATUS, MARKER_TYPE
from geo_minzheng.routing import SOLVER_NAME, visiting_order

if TYPE_CHECKING:
    from geo_minzheng.engine import Engine

#: Admin levels from the top down (kinds.ADMIN_LEVELS keys).
LEVELS: tuple[str, ...] = tuple(ADMIN_LEVELS)
#: Kinds of topology finding, with zh/en labels.
FAULT_KINDS: dict[str, tuple[str, str]] = {
    "gap": ("缝隙", "Gap"),
    "overlap": ("重叠", "Overlap"),
    "sliver": ("细缝（小于容差）", "Sliver (under the tolerance)"),
    "invalid_ring": ("无效环（自相交等）", "Invalid ring"),
    "outside_parent": ("超出上级区划", "Outside its parent"),
    "parent_uncovered": ("上级区划未被覆盖", "Parent area no unit covers"),
    "missing_polygon": ("缺少界线数据", "Unit without a polygon"),
    "edge_mismatch": ("界线节点不一致", "Edges that do not match"),
}
#: Inspection kinds: a joint inspection (联合检查) restarts the line's cycle; a routine patrol
#: (日常巡查) records a marker's state only.
INSPECTION_KINDS: dict[str, tuple[str, str]] = {
    "joint": ("联合检查", "Joint inspection"),
    "routine": ("日常巡查", "Routine patrol"),
}
#: Photo types accepted with an inspection, by their leading bytes.
PHOTO_TYPES: dict[str, tuple[bytes, ...]] = {
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/webp": (b"RIFF",),  # and b"WEBP" at offset 8, checked below
}
#: Columns of an inspection record (one row per marker visited), as the store keeps them.
INSPECTION_COLUMNS = (
    "seq",
    "inspection_id",
    "marker_id",
    "line_id",
    "inspected_on",
    "team",
    "kind",
    "status",
    "moved_m",
    "note",
    "photo_type",
    "recorded_at",
    "actor",
)
#: Coordinates are matched on this grid (metres) when segments are hashed: float noise from two
#: transformations of the same vertex stays far below it, and no survey is finer.
GRID_M = 0.001
#: Faces smaller than this (m²) are noding noise, not findings.
MIN_FAULT_AREA_M2 = 1e-3
#: County-level codes 71-80 of 统计用区划代码 are statistical zones (development zones and the
#: like), not administrative divisions with legal boundaries: no polygon is expected for them
#: (GB/T 2260 uses 01-20 for city districts, 21-80 for counties, 81-99 for county-level cities).
_STATISTICAL_COUNTY = range(71, 81)
_POINT_IN_REASON = re.compile(r"\[\s*([-0-9.eE+]+)\s+([-0-9.eE+]+)\s*\]")


# --------------------------------------------------------------------------------------------
# Division codes and the hierarchy
# --------------------------------------------------------------------------------------------


def normalize_code(code: object) -> str:
    """A division code as text, 2- and 4-digit province/city codes padded to 6 digits."""
    text = str(code).strip()
    if text.endswith(".0"):  # read as a float somewhere upstream
        text = text[:-2]
    if len(text) in (2, 4) and text.isdigit():
        return text.ljust(6, "0")
    return text


def code_level(code: str) -> str | None:
    """The level a division code names (by its length and zero tail), None for other codes."""
    c = normalize_code(code)
    if not c.isdigit():
        return None
    if len(c) == 12:
        return "community"
    if len(c) == 9:
        return "street"
    if len(c) == 6:
        if c[2:] == "0000":
            return "province"
        return "city" if c[4:] == "00" else "district"
    return None


def parent_code(code: str) -> str | None:
    """The code of the unit directly above ``code`` (GB/T 2260 and 统计用区划代码 structure)."""
    c = normalize_code(code)
    level = code_level(c)
    if level == "community":
        return c[:9]
    if level == "street":
        return c[:6]
    if level == "district":
        return c[:4] + "00"
    if level == "city":
        return c[:2] + "0000"
    return None


def is_statistical_zone(code: str) -> bool:
    """True for the county-level statistical zones (开发区 etc., codes xxxx71-xxxx80)."""
    c = normalize_code(code)
    return code_level(c) == "district" and int(c[4:6]) in _STATISTICAL_COUNTY


def division_codes(*sources: str | Path) -> pd.DataFrame:
    """Official division codes from CSV files or folders: ``[adcode, name, level, parent_adcode]``.

    Reads the china-division layout (``code,name,...`` with ``areaCode``/``streetCode`` parents:
    ``areas*.csv``, ``streets*.csv``, ``villages*.csv``) and the cnmaps index layout
    (``adcode,province,city,district,level``, any ``*index*.csv``), which names cities and
    provinces. A folder contributes every such file in it. The first name of a code wins.
    """
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files.extend(sorted(path.glob("*.csv")))
        elif path.exists():
            files.append(path)
        else:
            msg = f"division codes: file or folder not found: {path}"
            raise FileNotFoundError(msg)
    rows: dict[str, tuple[str, str | None]] = {}
    for path in files:
        with path.open(encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = set(reader.fieldnames or ())
            for row in reader:
                for code, name in _code_names(row, fields):
                    if code and name and code not in rows:
                        rows[code] = (name, code_level(code))
    out = pd.DataFrame(
        {
            "adcode": list(rows),
            "name": [v[0] for v in rows.values()],
            "level": [v[1] for v in rows.values()],
        }
    )
    out["parent_adcode"] = [parent_code(c) for c in out["adcode"]]
    return out


def _code_names(row: Mapping[str, str], fields: set[str]) -> list[tuple[str, str]]:
    """(code, name) pairs one CSV row gives."""
    if {"code", "name"} <= fields:
        return [(normalize_code(row["code"]), (row["name"] or "").strip())]
    if {"adcode", "province", "city"} <= fields:
        code = normalize_code(row["adcode"])
        level = code_level(code)
        names = {"province": row.get("province"), "city": row.get("city")}
        name = names.get(level or "") or row.get("district") or ""
        pairs = [(code, name.strip())]
        if row.get("province"):
            pairs.append((code[:2] + "0000", row["province"].strip()))
        if row.get("city") and level in ("city", "district"):
            pairs.append((code[:4] + "00", row["city"].strip()))
        return pairs
    return []


def hierarchy(
    gdf_units: gpd.GeoDataFrame | pd.DataFrame | None, codes: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Every unit of the layer, its ancestors, siblings and descendants from the code lists.

    Parameters
    ----------
    gdf_units
        An admin_unit layer (adcode, name, level, parent_adcode); its values win over the codes.
    codes
        From :func:`division_codes`; gives names and parents where no polygon exists.

    Returns
    -------
    DataFrame
        ``adcode, name, level, parent_adcode, parent_name, has_polygon, statistical_zone``, one
        row per unit, layer units first; units the code lists do not name keep their code as
        name.
    """
    table: dict[str, dict[str, Any]] = {}
    layer_codes: list[str] = []
    if gdf_units is not None and len(gdf_units):
        for row in pd.DataFrame(gdf_units).to_dict(orient="records"):
            code = normalize_code(row["adcode"])
            layer_codes.append(code)
            parent = row.get("parent_adcode")
            table[code] = {
                "adcode": code,
                "name": _text(row.get("name")),
                "level": _text(row.get("level")) or code_level(code),
                "parent_adcode": normalize_code(parent) if _text(parent) else parent_code(code),
                "has_polygon": True,
            }
    if codes is not None and len(codes):
        known = {
            str(r["adcode"]): r for r in codes.drop_duplicates("adcode").to_dict(orient="records")
        }
        for code in _related_codes(layer_codes, codes):
            row = known.get(code)
            if row is None:
                continue
            if code in table:
                table[code]["name"] = table[code]["name"] or str(row["name"])
                continue
            table[code] = {
                "adcode": code,
                "name": str(row["name"]),
                "level": row["level"],
                "parent_adcode": row["parent_adcode"],
                "has_polygon": False,
            }
        # ancestors the code lists do not hold (a city without a row) still get a row
    for code in list(table):
        parent = table[code]["parent_adcode"]
        if parent and parent not in table and (codes is None or parent not in set(codes["adcode"])):
            table[parent] = {
                "adcode": parent,
                "name": "",
                "level": code_level(parent),
                "parent_adcode": parent_code(parent),
                "has_polygon": False,
            }
    out = pd.DataFrame(
        list(table.values()),
        columns=["adcode", "name", "level", "parent_adcode", "has_polygon"],
    )
    out["name"] = [n if n else c for n, c in zip(out["name"], out["adcode"], strict=True)]
    names = dict(zip(out["adcode"], out["name"], strict=True))
    out["parent_name"] = [names.get(p, p) if p else None for p in out["parent_adcode"]]
    out["statistical_zone"] = [is_statistical_zone(c) for c in out["adcode"]]
    order = {lvl: i for i, lvl in enumerate(LEVELS)}
    out["_rank"] = [order.get(str(lvl), len(order)) for lvl in out["level"]]
    out["_layer"] = ~out["has_polygon"]
    out = out.sort_values(["_layer", "_rank", "adcode"], kind="stable").drop(
        columns=["_rank", "_layer"]
    )
    return out.reset_index(drop=True)[
        ["adcode", "name", "level", "parent_adcode", "parent_name", "has_polygon",
         "statistical_zone"]
    ]  # fmt: skip


def _related_codes(layer_codes: Sequence[str], codes: pd.DataFrame) -> list[str]:
    """Codes of the layer's ancestors, its units' siblings and their descendants."""
    wanted: set[str] = set(layer_codes)
    parents = {parent_code(c) for c in layer_codes} - {None}
    for code in layer_codes:
        up = parent_code(code)
        while up:
            wanted.add(up)
            up = parent_code(up)
    all_codes = codes["adcode"].astype(str)
    roots = tuple(sorted({*(p for p in parents if p), *layer_codes}))
    prefixes = tuple(_prefix(c) for c in roots)
    below = all_codes[all_codes.str.startswith(prefixes)] if prefixes else all_codes.iloc[:0]
    wanted.update(below)
    return sorted(wanted)


def _prefix(code: str) -> str:
    """The leading digits every descendant of ``code`` shares."""
    level = code_level(code)
    return {"province": code[:2], "city": code[:4], "district": code[:6]}.get(level or "", code)


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    return str(value).strip()


# --------------------------------------------------------------------------------------------
# The pure core: shared arcs of a polygon coverage
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topology:
    """Shared arcs of a set of polygons (projected coordinates, metres).

    Attributes
    ----------
    pair_a, pair_b
        Unit positions of each adjacent pair (``pair_a < pair_b``), one entry per pair.
    lines
        The pair's shared line (LineString, or MultiLineString where it is in pieces).
    free
        Segments used by one unit only (or by more than two), as LineStrings: the outer
        boundary, and the edges of gaps, overlaps and edges that do not match.
    free_owner
        The unit position each free segment comes from.
    n_segments
        Ring segments hashed in all.
    """

    pair_a: np.ndarray
    pair_b: np.ndarray
    lines: np.ndarray
    free: np.ndarray
    free_owner: np.ndarray
    n_segments: int


def coverage_topology(geoms: np.ndarray, *, grid_m: float = GRID_M) -> Topology:
    """Shared lines and unmatched segments of polygons, from one sort of their ring segments.

    A segment (two consecutive ring vertices, direction ignored, matched on a ``grid_m`` grid)
    that two different units use lies on their common line; one used once lies on the outer
    boundary or on a fault. Parameters: ``geoms`` is an array of valid (Multi)Polygons in a
    projected CRS; empty or missing geometries take part in nothing.
    """
    geoms = np.asarray(geoms, dtype=object)
    parts, part_owner = shapely.get_parts(geoms, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    ring_owner = part_owner[ring_part]
    coords, ring_of = shapely.get_coordinates(rings, return_index=True)
    if len(coords) < 2:
        empty = np.empty(0, dtype=np.int64)
        return Topology(empty, empty, np.empty(0, object), np.empty(0, object), empty, 0)
    same = ring_of[1:] == ring_of[:-1]
    start, end = coords[:-1][same], coords[1:][same]
    owner = np.asarray(ring_owner, dtype=np.int64)[ring_of[:-1][same]]
    qs = np.round(start / grid_m).astype(np.int64)
    qe = np.round(end / grid_m).astype(np.int64)
    keep = (qs != qe).any(axis=1)  # repeated vertices
    start, end, owner, qs, qe = start[keep], end[keep], owner[keep], qs[keep], qe[keep]
    swap = (qs[:, 0] > qe[:, 0]) | ((qs[:, 0] == qe[:, 0]) & (qs[:, 1] > qe[:, 1]))
    k0 = np.where(swap, qe[:, 0], qs[:, 0])
    k1 = np.where(swap, qe[:, 1], qs[:, 1])
    k2 = np.where(swap, qs[:, 0], qe[:, 0])
    k3 = np.where(swap, qs[:, 1], qe[:, 1])
    order = np.lexsort((owner, k3, k2, k1, k0))
    k0, k1, k2, k3 = k0[order], k1[order], k2[order], k3[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (k0[1:] != k0[:-1]) | (k1[1:] != k1[:-1]) | (k2[1:] != k2[:-1]) | (k3[1:] != k3[:-1])
    first = np.flatnonzero(new)
    size = np.diff(np.append(first, len(order)))
    own_sorted = owner[order]
    two = size == 2
    a = own_sorted[first[two]]
    b = own_sorted[first[two] + 1]
    shared = a != b  # one unit using a segment twice is a degenerate ring, not a neighbour
    shared_first = first[two][shared]
    a, b = a[shared], b[shared]
    # free: every member of a group that is not a clean two-unit pair
    pair_member = np.zeros(len(order), dtype=bool)
    pair_member[shared_first] = True
    pair_member[shared_first + 1] = True
    free_sorted = np.flatnonzero(~pair_member)
    free_idx = order[free_sorted]
    free = shapely.linestrings(np.stack([start[free_idx], end[free_idx]], axis=1))
    free_owner = owner[free_idx]
    if not len(a):
        empty = np.empty(0, dtype=np.int64)
        return Topology(empty, empty, np.empty(0, object), free, free_owner, len(order))
    seg = order[shared_first]
    n_units = len(geoms)
    pair_key = a * n_units + b
    by_pair = np.argsort(pair_key, kind="stable")
    pair_key, seg = pair_key[by_pair], seg[by_pair]
    keys, index, counts = np.unique(pair_key, return_inverse=True, return_counts=True)
    pieces = shapely.linestrings(np.stack([start[seg], end[seg]], axis=1))
    # a pair sharing one segment is that segment; only longer lines are merged (line_merge
    # is the costly step, and most pairs of a fine tessellation share a single edge)
    lines = np.empty(len(keys), dtype=object)
    first_of = np.searchsorted(index, np.arange(len(keys)))
    single = counts == 1
    lines[single] = pieces[first_of[single]]
    multi = np.flatnonzero(~single)
    if len(multi):
        member = ~single[index]
        remap = np.full(len(keys), -1)
        remap[multi] = np.arange(len(multi))
        grouped = shapely.multilinestrings(pieces[member], indices=remap[index[member]])
        lines[multi] = shapely.line_merge(grouped)
    return Topology(
        (keys // n_units).astype(np.int64),
        (keys % n_units).astype(np.int64),
        np.asarray(lines, dtype=object),
        free,
        free_owner,
        len(order),
    )


@dataclass(frozen=True)
class Fault:
    """One topology finding, in the working CRS: which units, where, how large."""

    kind: str
    units: tuple[int, ...]
    geometry: shapely.Geometry
    area_m2: float | None = None
    width_m: float | None = None
    length_m: float | None = None
    detail: str = ""


def coverage_faults(
    geoms: np.ndarray,
    topology: Topology,
    *,
    sliver_width_m: float = params.DEFAULT_SLIVER_WIDTH_M,
    parent_geoms: np.ndarray | None = None,
    grid_m: float = GRID_M,
) -> list[Fault]:
    """Gaps, overlaps and slivers enclosed by the unmatched segments, and edges that do not match.

    The free segments are noded and polygonized; each face is counted against the units (a point
    inside the face, inside how many units): none is a gap, two or more an overlap; a gap or
    overlap narrower than ``sliver_width_m`` (twice its maximum inscribed circle's radius) is a
    sliver; a gap only one unit touches is a hole in it (``detail`` 'hole'). ``parent_geoms``
    (each unit's parent polygon, None where unknown) drops holes that lie outside the parent
    (an enclave of another unit is not a gap). Edges that GEOS's coverage
    validator finds invalid (``coverage_invalid_edges``, run on the units owning free segments
    only) and that border no such face are reported as edges that do not match.

    ``geoms`` must be valid polygons (:func:`valid_polygons`).
    """
    geoms = np.asarray(geoms, dtype=object)
    faults: list[Fault] = []
    if not len(topology.free):
        return faults
    noded = shapely.union_all(topology.free)
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
    faces = faces[shapely.area(faces) > MIN_FAULT_AREA_M2]
    tree = shapely.STRtree(geoms)
    covers = _face_covers(faces, tree)
    fault_faces = []
    for face, cover in zip(faces, covers, strict=True):
        if len(cover) == 1:
            continue
        if not cover:
            owners = _neighbours(face, tree, grid_m)
            if parent_geoms is not None and owners:
                parent = _common_parent(parent_geoms, owners)
                if parent is not None:
                    face = shapely.intersection(face, parent)
                    if shapely.area(face) <= MIN_FAULT_AREA_M2:
                        continue
            units, side = tuple(owners), "gap"
        else:
            units, side = tuple(sorted(cover)), "overlap"
        radius = shapely.length(shapely.maximum_inscribed_circle(face))
        width = 2.0 * float(radius)
        kind = "sliver" if width < sliver_width_m else side
        fault_faces.append(face)
        # a gap only one unit surrounds is a hole in it: an enclave of a unit the layer does
        # not hold, or land nobody holds; the report says which it may be
        detail = "hole" if side == "gap" and len(units) == 1 else side
        faults.append(
            Fault(
                kind, units, face, area_m2=float(shapely.area(face)), width_m=width, detail=detail
            )
        )
    faults.extend(_edge_mismatches(geoms, topology, fault_faces, sliver_width_m, grid_m))
    return faults


def _face_covers(faces: np.ndarray, tree: shapely.STRtree) -> list[list[int]]:
    """Which units contain each face: tested at a point inside it, retried where that point lies
    on a unit's edge (a face's representative point may fall on a shared edge inside it)."""
    points = shapely.point_on_surface(faces)
    inside = _hits(tree, points, "within", len(faces))
    touching = _hits(tree, points, "intersects", len(faces))
    out = []
    for i, face in enumerate(faces):
        if len(inside[i]) == len(touching[i]):
            out.append(inside[i])
            continue
        out.append(_cover_by_triangles(face, tree))
    return out


def _hits(tree: shapely.STRtree, points: np.ndarray, predicate: str, n: int) -> list[list[int]]:
    found: list[list[int]] = [[] for _ in range(n)]
    if not len(points):
        return found
    q, t = tree.query(points, predicate=predicate)
    for i, j in zip(q.tolist(), t.tolist(), strict=True):
        found[i].append(j)
    return found


def _cover_by_triangles(face: shapely.Geometry, tree: shapely.STRtree) -> list[int]:
    """Units containing the face, tested at triangle centroids until one is unambiguous."""
    triangles = shapely.get_parts(shapely.constrained_delaunay_triangles(face))
    order = np.argsort(-shapely.area(triangles))
    for tri in triangles[order[:64]]:
        point = shapely.centroid(tri)
        inside = tree.query(point, predicate="within").tolist()
        touching = tree.query(point, predicate="intersects").tolist()
        if len(inside) == len(touching):
            return sorted(inside)
    return sorted(tree.query(shapely.point_on_surface(face), predicate="within").tolist())


def _neighbours(face: shapely.Geometry, tree: shapely.STRtree, grid_m: float) -> list[int]:
    """Units touching a gap face (within a grid step of it)."""
    near = tree.query(face, predicate="dwithin", distance=grid_m * 10)
    return sorted(int(i) for i in near)


def _common_parent(parent_geoms: np.ndarray, owners: Sequence[int]) -> shapely.Geometry | None:
    known = [parent_geoms[i] for i in owners if parent_geoms[i] is not None]
    return known[0] if known else None


def _edge_mismatches(
    geoms: np.ndarray,
    topology: Topology,
    fault_faces: Sequence[shapely.Geometry],
    sliver_width_m: float,
    grid_m: float,
) -> list[Fault]:
    """GEOS invalid coverage edges that border no gap or overlap face found."""
    suspects = np.unique(topology.free_owner)
    if not len(suspects):
        return []
    edges = shapely.coverage_invalid_edges(geoms[suspects], gap_width=sliver_width_m)
    has = ~shapely.is_empty(edges) & ~shapely.is_missing(edges)
    if not has.any():
        return []
    explained = None
    if fault_faces:
        explained = shapely.buffer(shapely.union_all(shapely.boundary(fault_faces)), grid_m * 10)
    out = []
    for unit, edge in zip(suspects[has], edges[has], strict=True):
        rest = edge if explained is None else shapely.difference(edge, explained)
        length = float(shapely.length(rest))
        if length <= grid_m * 100:
            continue
        out.append(
            Fault("edge_mismatch", (int(unit),), rest, length_m=length, detail="invalid_edges")
        )
    return out


def valid_polygons(geoms: np.ndarray) -> tuple[np.ndarray, list[tuple[int, str, shapely.Point]]]:
    """Polygons made valid for the coverage work, and each invalid one's reason and location.

    Returns the repaired array (polygonal parts of ``make_valid``) and ``(position, reason,
    point)`` for every input that was invalid (the point GEOS names, or a point on it).
    """
    geoms = np.asarray(geoms, dtype=object)
    valid = shapely.is_valid(geoms) | shapely.is_missing(geoms)
    problems: list[tuple[int, str, shapely.Point]] = []
    if valid.all():
        return geoms, problems
    out = geoms.copy()
    for i in np.flatnonzero(~valid):
        reason = str(shapely.is_valid_reason(geoms[i]))
        match = _POINT_IN_REASON.search(reason)
        where = (
            shapely.Point(float(match.group(1)), float(match.group(2)))
            if match
            else shapely.point_on_surface(geoms[i])
        )
        problems.append((int(i), reason, where))
        fixed = shapely.make_valid(geoms[i])
        parts = [
            p for p in shapely.get_parts(fixed) if shapely.get_type_id(p) in (3, 6) and p.area > 0
        ]
        polys = [q for p in parts for q in shapely.get_parts(p)]
        out[i] = shapely.MultiPolygon(polys) if polys else shapely.Polygon()
    return out, problems


def thin_parts(geoms: np.ndarray, *, sliver_width_m: float) -> list[tuple[int, shapely.Geometry]]:
    """Polygon parts of units narrower than ``sliver_width_m`` (stray slivers inside a unit)."""
    parts, owner = shapely.get_parts(np.asarray(geoms, dtype=object), return_index=True)
    # a part narrower than w has area <= w * perimeter / 2: only those need the exact test
    maybe = shapely.area(parts) <= sliver_width_m * shapely.length(parts) / 2.0
    out = []
    for i in np.flatnonzero(maybe):
        width = 2.0 * shapely.length(shapely.maximum_inscribed_circle(parts[i]))
        if width < sliver_width_m:
            out.append((int(owner[i]), parts[i]))
    return out


# --------------------------------------------------------------------------------------------
# The wrapper over layers
# --------------------------------------------------------------------------------------------


@dataclass
class BoundaryResult:
    """Boundary lines, topology findings, markers and inspection state of an admin-unit layer.

    Attributes
    ----------
    units
        The hierarchy (:func:`hierarchy`) with ``area_km2`` and a point inside (``lon``,
        ``lat``) for units that have a polygon.
    lines
        One row per adjacent pair at a level: ``line_id`` (``"<code a>-<code b>"``, codes
        sorted), ``unit_a``/``unit_b``, ``name_a``/``name_b``, ``level``, ``length_m`` (working
        CRS), ``parts``, markers by latest status, ``last_joint_inspection``, ``next_due``,
        ``due``; WGS84 geometry.
    outer
        The outer boundary of each parent's children: ``parent_adcode``, ``parent_name``,
        ``level`` (the children's), ``length_m``; WGS84.
    faults
        Every topology finding: ``fault_id``, ``kind`` (:data:`FAULT_KINDS`), ``level``,
        ``units``/``names`` (joined with ';' / '、'), ``area_m2``, ``width_m``, ``length_m``,
        ``lon``/``lat`` (a point on it), ``detail``; WGS84 geometry (none for a missing
        polygon).
    markers
        The marker layer with ``line_id``, ``line_name``, ``distance_m`` (to its own line),
        ``nearest_line``/``nearest_m``, ``check`` ('ok', 'far', 'no_line'), ``latest_status``,
        ``latest_on``, ``moved_m``; WGS84. Empty without a marker layer.
    inspections
        The inspection records used, newest first (:data:`INSPECTION_COLUMNS`).
    """

    units: pd.DataFrame
    lines: gpd.GeoDataFrame
    outer: gpd.GeoDataFrame
    faults: gpd.GeoDataFrame
    markers: gpd.GeoDataFrame
    inspections: pd.DataFrame
    working_crs: CRS
    as_of: dt.date
    provenance: dict[str, Any] = field(default_factory=dict)

    def line(self, line_id: str) -> pd.Series:
        """The row of ``line_id`` (UnknownIdError listing a few known IDs when missing)."""
        from geo_minzheng._errors import UnknownIdError

        hit = self.lines[self.lines["line_id"] == line_id]
        if hit.empty:
            known = ", ".join(self.lines["line_id"].head(8)) or "none"
            msg = f"unknown boundary line '{line_id}'; lines are e.g. {known}"
            raise UnknownIdError(msg)
        return hit.iloc[0]

    def markers_of(self, line_id: str) -> gpd.GeoDataFrame:
        """The markers of ``line_id`` in the marker layer's order."""
        self.line(line_id)
        if self.markers.empty:
            return self.markers
        return self.markers[self.markers["line_id"] == line_id]

    @property
    def due_lines(self) -> gpd.GeoDataFrame:
        """Lines whose last joint inspection is older than the cycle (or that have none)."""
        return self.lines[self.lines["due"].astype(bool)]

    def summary(self) -> dict[str, Any]:
        """Counts for reports: units, lines, length, faults by kind, markers by state, due lines."""
        faults = self.faults
        markers = self.markers
        return {
            "units_with_polygon": int(self.units["has_polygon"].sum()),
            "units_in_hierarchy": int(len(self.units)),
            "lines": int(len(self.lines)),
            "lines_length_km": round(float(self.lines["length_m"].sum()) / 1000.0, 3),
            "outer_length_km": round(float(self.outer["length_m"].sum()) / 1000.0, 3),
            "faults": {k: int(v) for k, v in faults["kind"].value_counts().items()},
            "markers": int(len(markers)),
            "markers_by_status": {
                str(k): int(v)
                for k, v in markers.get("latest_status", pd.Series()).value_counts().items()
            },
            "markers_by_type": {
                str(k): int(v)
                for k, v in markers.get("marker_type", pd.Series()).value_counts().items()
            },
            "markers_off_line": int((markers.get("check", pd.Series()) != "ok").sum()),
            "lines_due": int(self.lines["due"].sum()),
            "inspections": int(len(self.inspections)),
            "as_of": self.as_of.isoformat(),
        }


def analyze(
    gdf_units: gpd.GeoDataFrame,
    *,
    codes: pd.DataFrame | None = None,
    gdf_markers: gpd.GeoDataFrame | None = None,
    inspections: pd.DataFrame | Iterable[Any] | None = None,
    level: str | None = None,
    sliver_width_m: float = params.DEFAULT_SLIVER_WIDTH_M,
    marker_tolerance_m: float = params.DEFAULT_MARKER_TOLERANCE_M,
    cycle_years: int = params.DEFAULT_INSPECTION_CYCLE_YEARS,
    as_of: dt.date | None = None,
) -> BoundaryResult:
    """Lines, outer boundaries, topology findings, markers and due lines of an admin-unit layer.

    Parameters
    ----------
    gdf_units
        An admin_unit layer (any CRS with a definition; GCJ-02 data must be converted first):
        ``adcode``, ``name``, ``level``, ``parent_adcode``; it is not modified.
    codes
        Official division codes (:func:`division_codes`) for names, parents and the units that
        have no polygon.
    gdf_markers
        A boundary_marker layer (``id``, ``unit_a``, ``unit_b``, ``status``, ...).
    inspections
        Inspection records (a frame or the store's records, :func:`inspections_frame`).
    level
        Only this level's lines and checks (default: every level the layer holds).
    sliver_width_m, marker_tolerance_m, cycle_years
        Tolerances and the joint-inspection cycle (:mod:`geo_minzheng.params`).
    as_of
        The day lines are due against (default today).
    """
    sliver_width_m = params.check_sliver_width_m(sliver_width_m)
    marker_tolerance_m = params.check_marker_tolerance_m(marker_tolerance_m)
    cycle_years = params.check_cycle_years(cycle_years)
    as_of = as_of or dt.date.today()
    units = _checked_units(gdf_units)
    lonlat = units.to_crs(gm_crs.WGS84)
    minx, miny, maxx, maxy = lonlat.total_bounds
    work = gm_crs.working_crs((minx + maxx) / 2, (miny + maxy) / 2)
    projected = units.to_crs(work)
    tree_info = hierarchy(units, codes)
    names = dict(zip(tree_info["adcode"], tree_info["name"], strict=True))
    geoms, invalid = valid_polygons(np.asarray(projected.geometry.values))
    codes_arr = units["adcode"].to_numpy(dtype=object)
    levels_arr = units["level"].to_numpy(dtype=object)
    parents_arr = units["parent_adcode"].to_numpy(dtype=object)
    position = {c: i for i, c in enumerate(codes_arr)}
    faults: list[tuple[str, Fault]] = []
    for i, reason, where in invalid:
        faults.append((levels_arr[i], Fault("invalid_ring", (i,), where, detail=reason)))
    for i, part in thin_parts(geoms, sliver_width_m=sliver_width_m):
        width = 2.0 * float(shapely.length(shapely.maximum_inscribed_circle(part)))
        faults.append(
            (levels_arr[i], Fault("sliver", (i,), part, float(part.area), width, detail="part"))
        )
    wanted = [lvl for lvl in LEVELS if lvl in set(levels_arr)] if level is None else [level]
    line_rows: list[dict[str, Any]] = []
    outer_rows: list[dict[str, Any]] = []
    for lvl in wanted:
        at = np.flatnonzero(levels_arr == lvl)
        if not len(at):
            continue
        sub = geoms[at]
        parent_geoms = np.array(
            [geoms[position[p]] if p in position else None for p in parents_arr[at]], dtype=object
        )
        topo = coverage_topology(sub)
        found = coverage_faults(sub, topo, sliver_width_m=sliver_width_m, parent_geoms=parent_geoms)
        faults += [(lvl, _renumber(f, at)) for f in found]
        for a, b, line in zip(topo.pair_a, topo.pair_b, topo.lines, strict=True):
            ca, cb = sorted((codes_arr[at[a]], codes_arr[at[b]]))
            line_rows.append(
                {
                    "line_id": f"{ca}-{cb}",
                    "unit_a": ca,
                    "unit_b": cb,
                    "name_a": names.get(ca, ca),
                    "name_b": names.get(cb, cb),
                    "level": lvl,
                    "length_m": float(shapely.length(line)),
                    "parts": int(shapely.get_num_geometries(line)),
                    "geometry": line,
                }
            )
        level_faults = [f for lv, f in faults if lv == lvl]
        parent_faults, outer = _parent_checks(
            at, geoms, parents_arr, position, level_faults, tree_info, lvl, names
        )
        faults += [(lvl, f) for f in parent_faults]
        outer_rows += outer
    lines = _lines_frame(line_rows, work)
    outer_frame = gpd.GeoDataFrame(
        outer_rows or {"parent_adcode": [], "parent_name": [], "level": [], "length_m": []},
        geometry=[r["geometry"] for r in outer_rows] if outer_rows else [],
        crs=work,
    )
    if "geometry" in outer_frame.columns and outer_rows:
        outer_frame = outer_frame.set_geometry("geometry")
    fault_frame = _faults_frame(faults, codes_arr, names, work, tree_info)
    fault_frame = pd.concat(
        [fault_frame, _missing_polygons(tree_info, codes_arr, levels_arr, wanted, work)],
        ignore_index=True,
    )
    fault_frame = gpd.GeoDataFrame(fault_frame, geometry="geometry", crs=4326)
    fault_frame["fault_id"] = [f"F{i + 1:03d}" for i in range(len(fault_frame))]
    fault_frame = fault_frame[["fault_id", *[c for c in fault_frame.columns if c != "fault_id"]]]
    records = inspections_frame(inspections)
    marker_frame = _markers(gdf_markers, lines, work, marker_tolerance_m, records)
    lines = _line_status(lines, marker_frame, records, cycle_years, as_of)
    area = shapely.area(geoms) / 1e6
    inside = gpd.GeoSeries(shapely.point_on_surface(geoms), crs=work).to_crs(4326)
    at_code = {
        c: (round(float(a), 3), round(float(p.x), 6), round(float(p.y), 6))
        for c, a, p in zip(codes_arr, area, inside, strict=True)
    }
    for j, column in enumerate(("area_km2", "lon", "lat")):
        tree_info[column] = [at_code[c][j] if c in at_code else None for c in tree_info["adcode"]]
    provenance = {
        "method": "shared ring segments hashed once (TopoJSON shared arcs); faults from the "
        "polygonized unmatched segments; GEOS coverage_invalid_edges / coverage_union_all",
        "working_crs": work.to_string(),
        "sliver_width_m": sliver_width_m,
        "marker_tolerance_m": marker_tolerance_m,
        "cycle_years": cycle_years,
        "as_of": as_of.isoformat(),
        "grid_m": GRID_M,
    }
    return BoundaryResult(
        tree_info,
        lines.to_crs(4326),
        outer_frame.to_crs(4326)
        if len(outer_frame)
        else outer_frame.set_crs(4326, allow_override=True),
        fault_frame,
        marker_frame,
        records,
        work,
        as_of,
        provenance,
    )


def _checked_units(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The unit layer with canonical text codes, levels and parents; every problem raised once."""
    layer = str(gdf.attrs.get("layer", "admin_units"))
    problems: list[Problem] = []
    if gdf.crs is None:
        problems.append(
            Problem(
                f"layer '{layer}'", "crs", "a CRS (e.g. EPSG:4326; convert GCJ-02 first)", "none"
            )
        )
    if "adcode" not in gdf.columns:
        problems.append(Problem(f"layer '{layer}'", "adcode", "a column of division codes", "none"))
    if problems:
        raise LayerValidationError(layer, problems)
    out = gdf.copy()
    out["adcode"] = [normalize_code(c) for c in out["adcode"]]
    if "level" not in out.columns:
        out["level"] = None
    out["level"] = [
        _text(lv) or code_level(c) for lv, c in zip(out["level"], out["adcode"], strict=True)
    ]
    if "parent_adcode" not in out.columns:
        out["parent_adcode"] = None
    out["parent_adcode"] = [
        normalize_code(p) if _text(p) else parent_code(c)
        for p, c in zip(out["parent_adcode"], out["adcode"], strict=True)
    ]
    if "name" not in out.columns:
        out["name"] = None
    dup = out["adcode"].duplicated(keep=False)
    for code in sorted(set(out.loc[dup, "adcode"])):
        problems.append(Problem(f"admin_unit '{code}'", "adcode", "unique", "a duplicate"))
    types = shapely.get_type_id(np.asarray(out.geometry.values))
    for code, tid in zip(out["adcode"], types, strict=True):
        if tid not in (3, 6):
            found = "no geometry" if tid < 0 else shapely.GeometryType(tid).name.title()
            problems.append(
                Problem(f"admin_unit '{code}'", "geometry", "Polygon or MultiPolygon", found)
            )
    bad_levels = sorted({str(lv) for lv in out["level"] if lv not in ADMIN_LEVELS})
    for lv in bad_levels:
        problems.append(
            Problem(f"layer '{layer}'", "level", f"one of {', '.join(LEVELS)}", repr(lv))
        )
    if problems:
        raise LayerValidationError(layer, problems)
    return out


def _renumber(fault: Fault, at: np.ndarray) -> Fault:
    """A fault found within one level, its units numbered in the whole layer."""
    return Fault(
        fault.kind,
        tuple(int(at[u]) for u in fault.units),
        fault.geometry,
        fault.area_m2,
        fault.width_m,
        fault.length_m,
        fault.detail,
    )


def _parent_checks(
    at: np.ndarray,
    geoms: np.ndarray,
    parents: np.ndarray,
    position: Mapping[str, int],
    level_faults: Sequence[Fault],
    tree_info: pd.DataFrame,
    level: str,
    names: Mapping[str, str],
) -> tuple[list[Fault], list[dict[str, Any]]]:
    """Per parent: the children's outer boundary, children outside the parent's polygon, and
    the parent's area no child covers (when the layer holds the parent's polygon)."""
    faults: list[Fault] = []
    outer: list[dict[str, Any]] = []
    gap_faces = [
        f.geometry
        for f in level_faults
        if f.kind in ("gap", "sliver") and f.detail in ("gap", "hole")
    ]
    overlapping = {u for f in level_faults if f.detail == "overlap" for u in f.units}
    gaps = shapely.union_all(gap_faces) if gap_faces else None
    by_parent: dict[str, list[int]] = {}
    for i in at:
        by_parent.setdefault(str(parents[i]) if parents[i] else "", []).append(int(i))
    for parent, children in by_parent.items():
        kids = geoms[children]
        if overlapping & set(children):
            union = shapely.union_all(kids)
        else:
            union = shapely.coverage_union_all(kids)
        rings = []
        for part in shapely.get_parts(union):
            rings.append(shapely.get_exterior_ring(part))
            for hole in (
                shapely.get_parts(
                    shapely.get_interior_ring(part, range(shapely.get_num_interior_rings(part)))
                )
                if shapely.get_num_interior_rings(part)
                else []
            ):
                face = shapely.Polygon(hole)
                if (
                    gaps is not None
                    and shapely.area(shapely.intersection(face, gaps)) >= 0.5 * face.area
                ):
                    continue  # a gap's edge, not the parent's boundary
                rings.append(hole)
        boundary = (
            shapely.line_merge(shapely.multilinestrings(rings))
            if rings
            else shapely.MultiLineString()
        )
        outer.append(
            {
                "parent_adcode": parent or None,
                "parent_name": names.get(parent, parent) if parent else None,
                "level": level,
                "children": len(children),
                "length_m": float(shapely.length(boundary)),
                "geometry": boundary,
            }
        )
        if parent not in position:
            continue
        p = position[parent]
        outside = shapely.difference(kids, geoms[p])
        for child, piece in zip(children, outside, strict=True):
            for part in shapely.get_parts(piece):
                if shapely.get_type_id(part) == 3 and part.area > MIN_FAULT_AREA_M2:
                    width = 2.0 * float(shapely.length(shapely.maximum_inscribed_circle(part)))
                    faults.append(
                        Fault(
                            "outside_parent",
                            (child, p),
                            part,
                            float(part.area),
                            width,
                            detail=parent,
                        )
                    )
        uncovered = shapely.difference(geoms[p], union)
        if gaps is not None:
            uncovered = shapely.difference(uncovered, gaps)
        missing = tree_info[
            (tree_info["parent_adcode"] == parent)
            & ~tree_info["has_polygon"]
            & ~tree_info["statistical_zone"]
            & (tree_info["level"] == level)
        ]["name"].tolist()
        for part in shapely.get_parts(uncovered):
            if shapely.get_type_id(part) == 3 and part.area > MIN_FAULT_AREA_M2:
                width = 2.0 * float(shapely.length(shapely.maximum_inscribed_circle(part)))
                detail = "、".join(missing)
                faults.append(
                    Fault("parent_uncovered", (p,), part, float(part.area), width, detail=detail)
                )
    return faults, outer


def _lines_frame(rows: list[dict[str, Any]], work: CRS) -> gpd.GeoDataFrame:
    columns = ["line_id", "unit_a", "unit_b", "name_a", "name_b", "level", "length_m", "parts"]
    if not rows:
        return gpd.GeoDataFrame({c: [] for c in columns}, geometry=[], crs=work)
    frame = gpd.GeoDataFrame(rows, geometry="geometry", crs=work)
    return frame.sort_values("line_id").reset_index(drop=True)


def _faults_frame(
    faults: list[tuple[str, Fault]],
    codes: np.ndarray,
    names: Mapping[str, str],
    work: CRS,
    tree_info: pd.DataFrame,
) -> pd.DataFrame:
    columns = ["kind", "level", "units", "names", "area_m2", "width_m", "length_m", "lon", "lat",
               "detail", "geometry"]  # fmt: skip
    if not faults:
        return pd.DataFrame({c: [] for c in columns}).astype({"geometry": object})
    geoms = gpd.GeoSeries([f.geometry for _, f in faults], crs=work).to_crs(4326)
    where = shapely.point_on_surface(np.asarray(geoms.values))
    xy = shapely.get_coordinates(where)
    rows = []
    for (lvl, f), (x, y), geom in zip(faults, xy, geoms, strict=True):
        unit_codes = [str(codes[u]) for u in f.units]
        if f.kind != "outside_parent":  # (child, parent) keeps its order; the rest by code
            unit_codes.sort()
        rows.append(
            {
                "kind": f.kind,
                "level": lvl,
                "units": ";".join(unit_codes),
                "names": "、".join(names.get(c, c) for c in unit_codes),
                "area_m2": None if f.area_m2 is None else round(f.area_m2, 3),
                "width_m": None if f.width_m is None else round(f.width_m, 3),
                "length_m": None if f.length_m is None else round(f.length_m, 3),
                "lon": round(float(x), 6),
                "lat": round(float(y), 6),
                "detail": f.detail,
                "geometry": geom,
            }
        )
    order = {k: i for i, k in enumerate(FAULT_KINDS)}
    frame = pd.DataFrame(rows, columns=columns)
    frame["_o"] = frame["kind"].map(order)
    return frame.sort_values(["_o", "units"], kind="stable").drop(columns="_o")


def _missing_polygons(
    tree_info: pd.DataFrame,
    codes: np.ndarray,
    levels: np.ndarray,
    wanted: Sequence[str],
    work: CRS,
) -> pd.DataFrame:
    """Units the code lists hold under a parent whose other children have polygons, but that
    have none themselves (statistical zones excepted)."""
    rows = []
    with_polygon = tree_info[tree_info["has_polygon"]]
    for lvl in wanted:
        parents = set(with_polygon.loc[with_polygon["level"] == lvl, "parent_adcode"].dropna())
        lacking = tree_info[
            ~tree_info["has_polygon"]
            & ~tree_info["statistical_zone"]
            & (tree_info["level"] == lvl)
            & tree_info["parent_adcode"].isin(parents)
        ]
        for row in lacking.itertuples():
            rows.append(
                {
                    "kind": "missing_polygon",
                    "level": lvl,
                    "units": row.adcode,
                    "names": row.name,
                    "area_m2": None,
                    "width_m": None,
                    "length_m": None,
                    "lon": None,
                    "lat": None,
                    "detail": f"{row.parent_name}（{row.parent_adcode}）",
                    "geometry": None,
                }
            )
    return pd.DataFrame(rows)


def inspections_frame(records: pd.DataFrame | Iterable[Any] | None) -> pd.DataFrame:
    """Inspection records as a frame of :data:`INSPECTION_COLUMNS`, newest first.

    Takes a frame, mappings, or the store's record objects (attributes of those names).
    """
    if records is None:
        rows: list[dict[str, Any]] = []
    elif isinstance(records, pd.DataFrame):
        rows = records.to_dict(orient="records")
    else:
        rows = [
            dict(r)
            if isinstance(r, Mapping)
            else {c: getattr(r, c, None) for c in INSPECTION_COLUMNS}
            for r in records
        ]
    frame = pd.DataFrame(rows, columns=list(INSPECTION_COLUMNS))
    if frame.empty:
        return frame
    frame["inspected_on"] = [str(d)[:10] for d in frame["inspected_on"]]
    frame["moved_m"] = pd.to_numeric(frame["moved_m"], errors="coerce")
    frame["seq"] = pd.to_numeric(frame["seq"], errors="coerce").fillna(0).astype(np.int64)
    return frame.sort_values(["inspected_on", "seq"], ascending=False).reset_index(drop=True)


_MARKER_COLUMNS = ["marker_type", "line_id", "line_name", "distance_m", "nearest_line",
                   "nearest_m", "check", "latest_status", "latest_on", "moved_m"]  # fmt: skip


def _markers(
    gdf_markers: gpd.GeoDataFrame | None,
    lines: gpd.GeoDataFrame,
    work: CRS,
    tolerance_m: float,
    records: pd.DataFrame,
) -> gpd.GeoDataFrame:
    """Markers with their line, distances, check and latest state (WGS84)."""
    if gdf_markers is None or not len(gdf_markers):
        return gpd.GeoDataFrame({c: [] for c in ["id", *_MARKER_COLUMNS]}, geometry=[], crs=4326)
    if gdf_markers.crs is None:
        layer = str(gdf_markers.attrs.get("layer", "markers"))
        problem = Problem(f"layer '{layer}'", "crs", "a CRS (e.g. EPSG:4326)", "none")
        raise LayerValidationError(layer, [problem])
    m = gdf_markers.to_crs(work).copy()
    m["id"] = m["id"].astype(str)
    # the optional 界桩类型 as its code (single/double/triple); a zh/en label is accepted too
    raw_type = m["marker_type"] if "marker_type" in m.columns else [None] * len(m)
    m["marker_type"] = [_lookup(MARKER_TYPE, _text(t)) if _text(t) else None for t in raw_type]
    pair = [
        sorted((normalize_code(a), normalize_code(b)))
        for a, b in zip(m["unit_a"], m["unit_b"], strict=True)
    ]
    m["line_id"] = [f"{a}-{b}" for a, b in pair]
    by_id = lines.set_index("line_id") if len(lines) else None
    pts = np.asarray(m.geometry.values)
    own = np.full(len(m), np.nan)
    names: list[str | None] = []
    for i, lid in enumerate(m["line_id"]):
        if by_id is not None and lid in by_id.index:
            own[i] = float(shapely.distance(pts[i], by_id.at[lid, "geometry"]))
            names.append(f"{by_id.at[lid, 'name_a']}—{by_id.at[lid, 'name_b']}")
        else:
            names.append(None)
    m["line_name"] = names
    m["distance_m"] = np.round(own, 2)
    if len(lines):
        tree = shapely.STRtree(np.asarray(lines.geometry.values))
        (qi, li), dist = tree.query_nearest(pts, return_distance=True, all_matches=False)
        nearest = np.full(len(m), None, dtype=object)
        nearest_m = np.full(len(m), np.nan)
        nearest[qi] = lines["line_id"].to_numpy()[li]
        nearest_m[qi] = dist
    else:
        nearest, nearest_m = np.full(len(m), None, dtype=object), np.full(len(m), np.nan)
    m["nearest_line"] = nearest
    m["nearest_m"] = np.round(nearest_m, 2)
    m["check"] = np.where(np.isnan(own), "no_line", np.where(own > tolerance_m, "far", "ok"))
    latest = records.drop_duplicates("marker_id") if len(records) else records
    latest = latest.set_index("marker_id") if len(latest) else None
    status, on, moved = [], [], []
    register_date = m["last_inspected"] if "last_inspected" in m.columns else [None] * len(m)
    for mid, reg, reg_on in zip(
        m["id"], m.get("status", [None] * len(m)), register_date, strict=True
    ):
        if latest is not None and mid in latest.index:
            row = latest.loc[mid]
            status.append(row["status"])
            on.append(row["inspected_on"])
            moved.append(row["moved_m"])
        else:
            status.append(reg if _text(reg) else None)
            on.append(_text(reg_on)[:10] or None)
            moved.append(np.nan)
    m["latest_status"] = status
    m["latest_on"] = on
    m["moved_m"] = pd.to_numeric(pd.Series(moved, index=m.index), errors="coerce")
    return m.to_crs(4326)


def _add_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def _line_status(
    lines: gpd.GeoDataFrame,
    markers: gpd.GeoDataFrame,
    records: pd.DataFrame,
    cycle_years: int,
    as_of: dt.date,
) -> gpd.GeoDataFrame:
    """Markers per line by latest state, last joint inspection, next due date, due flag."""
    out = lines.copy()
    ids = out["line_id"]
    counts = (
        markers.groupby(["line_id", "latest_status"]).size().unstack(fill_value=0)
        if len(markers)
        else pd.DataFrame()
    )
    out["markers"] = [int(counts.loc[i].sum()) if i in counts.index else 0 for i in ids]
    for status in MARKER_STATUS:
        out[f"markers_{status}"] = [
            int(counts.at[i, status]) if i in counts.index and status in counts.columns else 0
            for i in ids
        ]
    typed = (
        markers.groupby(["line_id", "marker_type"]).size().unstack(fill_value=0)
        if len(markers) and "marker_type" in markers.columns
        else pd.DataFrame()
    )
    for kind in MARKER_TYPE:  # counts by 界桩类型; markers without a type count in none
        out[f"markers_{kind}"] = [
            int(typed.at[i, kind]) if i in typed.index and kind in typed.columns else 0 for i in ids
        ]
    joint = records[records["kind"] == "joint"] if len(records) else records
    last_joint = joint.groupby("line_id")["inspected_on"].max().to_dict() if len(joint) else {}
    register: dict[str, str] = {}
    if len(markers) and "last_inspected" in markers.columns:
        reg = markers[["line_id", "last_inspected"]].dropna()
        reg = reg[reg["last_inspected"].astype(str).str.len() >= 10]
        # a joint inspection visits every marker of the line: the line was last inspected whole
        # no later than its least recently checked marker
        dates = reg.assign(d=reg["last_inspected"].astype(str).str[:10])
        register = dates.groupby("line_id")["d"].min().to_dict()
    last: list[str | None] = []
    source: list[str | None] = []
    due_on: list[str | None] = []
    due: list[bool] = []
    for lid in ids:
        day = last_joint.get(lid)
        src = "inspection" if day else None
        if day is None and lid in register:
            day, src = register[lid], "register"
        last.append(day)
        source.append(src)
        if day is None:
            due_on.append(None)
            due.append(True)
            continue
        nxt = _add_years(dt.date.fromisoformat(str(day)[:10]), cycle_years)
        due_on.append(nxt.isoformat())
        due.append(nxt <= as_of)
    out["last_joint_inspection"] = last
    out["last_source"] = source
    out["next_due"] = due_on
    out["due"] = due
    return out


# --------------------------------------------------------------------------------------------
# Markers and inspections: checks before anything is stored
# --------------------------------------------------------------------------------------------


def check_marker_positions(
    gdf_markers: gpd.GeoDataFrame,
    result: BoundaryResult,
    *,
    tolerance_m: float = params.DEFAULT_MARKER_TOLERANCE_M,
) -> list[Problem]:
    """Every marker further than ``tolerance_m`` from any boundary line, or on no line.

    For a register of markers a bureau loads (strict: one problem per marker, naming it), where
    :func:`analyze` only flags them.
    """
    tolerance_m = params.check_marker_tolerance_m(tolerance_m)
    lines = result.lines.to_crs(result.working_crs)
    checked = _markers(gdf_markers, lines, result.working_crs, tolerance_m, inspections_frame(None))
    problems = []
    for row in checked.itertuples():
        label = f"boundary_marker '{row.id}'"
        if not isinstance(row.nearest_line, str):
            problems.append(
                Problem(label, "geometry", "a position near a boundary line", "no line")
            )
        elif row.nearest_m > tolerance_m:
            found = f"{row.nearest_m:.0f} m from the nearest line ({row.nearest_line})"
            problems.append(
                Problem(
                    label, "geometry", f"within {tolerance_m:g} m of a boundary line", found, "far"
                )
            )
        elif row.check == "no_line":
            found = f"units {row.line_id}, which share no line"
            problems.append(
                Problem(
                    label, "unit_a/unit_b", "two units that share a boundary line", found, "no_line"
                )
            )
        elif row.check == "far":
            found = f"{row.distance_m:.0f} m from line {row.line_id}"
            problems.append(
                Problem(
                    label, "geometry", f"within {tolerance_m:g} m of its own line", found, "far"
                )
            )
    return problems


def photo_type(data: bytes) -> str | None:
    """The image type of ``data`` from its leading bytes (JPEG, PNG, WebP), None otherwise."""
    for mime, magics in PHOTO_TYPES.items():
        if any(data.startswith(m) for m in magics):
            if mime == "image/webp" and data[8:12] != b"WEBP":
                continue
            return mime
    return None


def check_inspection(
    inspection: Mapping[str, Any],
    gdf_markers: pd.DataFrame,
    *,
    today: dt.date | None = None,
    max_photo_bytes: int = params.MAX_PHOTO_BYTES,
) -> list[dict[str, Any]]:
    """Check one inspection and return the rows to append (one per marker visited).

    Parameters
    ----------
    inspection
        ``inspected_on`` (ISO date, not in the future), ``team`` (who inspected), ``kind``
        ('joint' or 'routine', default joint), optional ``line_id`` (every marker must be on
        it), and ``items``: for each marker ``marker_id``, ``status`` (intact / damaged /
        missing / moved, or 完好 / 损坏 / 丢失 / 移位), ``moved_m`` (required when moved),
        ``note``, ``photo`` (JPEG/PNG/WebP bytes, at most ``max_photo_bytes``).
    gdf_markers
        The marker layer (``id``, ``unit_a``, ``unit_b``): markers must exist in it.

    Raises
    ------
    LayerValidationError
        Listing every problem, each naming the item (marker) and the field; nothing is returned
        then, so nothing is stored.
    """
    import uuid

    today = today or dt.date.today()
    problems: list[Problem] = []
    head = "inspection"
    day = _inspection_date(inspection.get("inspected_on"), today, problems, head)
    team = _text(inspection.get("team"))
    if not team:
        problems.append(Problem(head, "team", "the inspecting team's name", "nothing"))
    kind = _text(inspection.get("kind")) or "joint"
    kind = _lookup(INSPECTION_KINDS, kind) or kind
    if kind not in INSPECTION_KINDS:
        problems.append(Problem(head, "kind", "joint or routine", repr(kind)))
    markers = pd.DataFrame(gdf_markers)
    lines_of = {
        str(mid): "-".join(sorted((normalize_code(a), normalize_code(b))))
        for mid, a, b in zip(markers["id"], markers["unit_a"], markers["unit_b"], strict=True)
    }
    wanted_line = _text(inspection.get("line_id")) or None
    items = inspection.get("items") or []
    if not items:
        problems.append(Problem(head, "items", "at least one marker", "none"))
    seen: set[str] = set()
    rows = []
    inspection_id = uuid.uuid4().hex
    for n, item in enumerate(items, start=1):
        mid = _text(item.get("marker_id"))
        label = f"inspection item {n} (marker '{mid}')"
        if mid not in lines_of:
            problems.append(
                Problem(label, "marker_id", "a marker of the marker layer", repr(mid), "unknown_id")
            )
        elif wanted_line and lines_of[mid] != wanted_line:
            found = f"a marker of line {lines_of[mid]}"
            problems.append(Problem(label, "marker_id", f"a marker of line {wanted_line}", found))
        if mid in seen:
            problems.append(Problem(label, "marker_id", "each marker once per inspection", "twice"))
        seen.add(mid)
        raw_status = _text(item.get("status"))
        status = _lookup(MARKER_STATUS, raw_status)
        if status is None:
            expected = "one of " + ", ".join(f"{k} ({v[0]})" for k, v in MARKER_STATUS.items())
            problems.append(Problem(label, "status", expected, repr(raw_status or None)))
        moved = _moved_m(item.get("moved_m"), status, label, problems)
        photo = item.get("photo")
        mime = None
        if photo is not None and len(photo):
            data = bytes(photo)
            if len(data) > max_photo_bytes:
                found = f"{len(data):,} bytes"
                problems.append(
                    Problem(
                        label, "photo", f"at most {max_photo_bytes:,} bytes", found, "too_large"
                    )
                )
            mime = photo_type(data)
            if mime is None:
                problems.append(
                    Problem(
                        label,
                        "photo",
                        "a JPEG, PNG or WebP image",
                        "another kind of file",
                        "not_image",
                    )
                )
        else:
            photo = None
        rows.append(
            {
                "inspection_id": inspection_id,
                "marker_id": mid,
                "line_id": lines_of.get(mid, ""),
                "inspected_on": day.isoformat() if day else None,
                "team": team,
                "kind": kind,
                "status": status,
                "moved_m": moved,
                "note": _text(item.get("note")) or None,
                "photo": None if photo is None else bytes(photo),
                "photo_type": mime,
            }
        )
    if problems:
        where = "inspections"
        raise LayerValidationError(where, problems)
    return rows


def _lookup(table: Mapping[str, tuple[str, str]], value: str) -> str | None:
    """The key of ``value`` given as a key or as its zh/en label (case-insensitive)."""
    if value in table:
        return value
    low = value.lower()
    for key, (zh, en) in table.items():
        if value == zh or low == en.lower():
            return key
    return None


def _inspection_date(
    value: object, today: dt.date, problems: list[Problem], head: str
) -> dt.date | None:
    text = _text(value)
    try:
        day = dt.date.fromisoformat(text[:10]) if text else None
    except ValueError:
        day = None
    if day is None:
        problems.append(
            Problem(head, "inspected_on", "a date such as 2026-05-20", repr(text or None))
        )
        return None
    if day > today:
        problems.append(
            Problem(
                head,
                "inspected_on",
                f"a day on or before today ({today.isoformat()})",
                day.isoformat(),
                "future",
            )
        )
    if day.year < 1949:
        problems.append(Problem(head, "inspected_on", "a day from 1949 on", day.isoformat()))
    return day


def _moved_m(
    value: object, status: str | None, label: str, problems: list[Problem]
) -> float | None:
    text = _text(value)
    number: float | None
    try:
        number = float(text) if text else None
    except ValueError:
        number = math.nan
    if number is not None and (not math.isfinite(number) or number < 0):
        problems.append(Problem(label, "moved_m", "metres >= 0", repr(value)))
        return None
    if status == "moved" and (number is None or number <= 0):
        problems.append(
            Problem(
                label,
                "moved_m",
                "the distance the marker moved, metres > 0",
                repr(value if text else None),
                "missing",
            )
        )
    return number


# --------------------------------------------------------------------------------------------
# Inspection routes: the shared PyVRP solver (geo_minzheng.routing) over the road network
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InspectionRoute:
    """A visiting route over one line's markers on the road network.

    ``stops``: sequence, marker id and name, leg and cumulative distance (m) and time (s), WGS84
    points; ``legs``: one road path per leg (WGS84); ``not_reached``: markers left out (too far
    from a road, or no path) with the reason.
    """

    line_id: str
    stops: gpd.GeoDataFrame
    legs: gpd.GeoDataFrame
    distance_m: float
    time_s: float | None
    not_reached: pd.DataFrame
    solver: str = SOLVER_NAME


def inspection_route(
    engine: Engine,
    result: BoundaryResult,
    line_id: str,
    *,
    start_lonlat: tuple[float, float] | None = None,
    return_to_start: bool = False,
    max_snap_m: float = params.DEFAULT_MAX_SNAP_M,
) -> InspectionRoute:
    """Order the markers of ``line_id`` into a route on the network from a start point.

    Parameters
    ----------
    engine
        The road network (costs in seconds; the workflows build it).
    start_lonlat
        Where the team sets out (WGS84); default the line's first marker within
        ``max_snap_m`` of a road (which is then the first stop).
    return_to_start
        Close the route back to the start.
    """
    markers = result.markers_of(line_id)
    if markers.empty:
        msg = f"line '{line_id}' has no markers to visit"
        raise UnreachableError(msg)
    ids_in = [str(i) for i in markers["id"]]
    names_in = [str(n) for n in markers.get("name", markers["id"])]
    geoms_in = list(markers.geometry)
    if start_lonlat is None:
        start_id = ids_in[0]  # the team starts at the line's first marker
    else:
        start_id = "start"
        lon, lat = (float(v) for v in start_lonlat)
        ids_in, names_in = ["start", *ids_in], ["起点 / start", *names_in]
        geoms_in = [shapely.Point(lon, lat), *geoms_in]
    pts = gpd.GeoDataFrame({"id": ids_in, "name": names_in}, geometry=geoms_in, crs=4326)
    snapped = engine.snap(pts, id_field="id", max_snap_m=max_snap_m)
    not_reached = [
        {"id": i, "reason": "too_far_from_road", "distance_m": round(float(d), 1)}
        for i, d in zip(snapped.too_far["id"], snapped.too_far["distance_m"], strict=True)
    ]
    if start_lonlat is None and len(snapped.ids):
        start_id = str(snapped.ids[0])  # the first marker a road reaches
    if start_id not in set(snapped.ids):
        where = shapely.get_coordinates(geoms_in[ids_in.index(start_id)])[0]
        msg = (
            f"route start {start_id} ({where[0]:.6f}, {where[1]:.6f}) is more than "
            f"{max_snap_m:g} m from any road"
        )
        raise UnreachableError(msg)
    cost = engine.od_matrix(snapped, snapped).to_dense()
    ids = list(snapped.ids)
    s = ids.index(start_id)
    reach = np.isfinite(cost[s]) & np.isfinite(cost[:, s])
    for cut in np.flatnonzero(~reach):
        not_reached.append({"id": ids[int(cut)], "reason": "no_path", "distance_m": None})
    keep = np.flatnonzero(reach)
    sub = cost[np.ix_(keep, keep)]
    order = [
        int(keep[i])
        for i in visiting_order(
            sub, start=int(np.flatnonzero(keep == s)[0]), return_to_start=return_to_start
        )
    ]
    if return_to_start and len(order) > 1:
        order.append(order[0])
    xy = snapped.xy
    legs: list[shapely.Geometry] = []
    leg_m, leg_s = [0.0], [0.0]
    for i, j in zip(order[:-1], order[1:], strict=True):
        route = engine.route(tuple(xy[i]), tuple(xy[j]), max_snap_m=max_snap_m)
        legs.append(route.geometry)
        leg_m.append(route.length_m)
        leg_s.append(route.cost)
    names = dict(zip(pts["id"], pts["name"], strict=True))
    seq_ids = [ids[i] for i in order]
    timed = engine.weight == "time_s"
    stops = gpd.GeoDataFrame(
        {
            "sequence": np.arange(len(order)),
            "id": seq_ids,
            "name": [names[i] for i in seq_ids],
            "leg_m": np.round(leg_m, 1),
            "cumulative_m": np.round(np.cumsum(leg_m), 1),
            "leg_s": np.round(leg_s, 1) if timed else None,
            "cumulative_s": np.round(np.cumsum(leg_s), 1) if timed else None,
        },
        geometry=shapely.points(xy[order]),
        crs=engine.crs,
    ).to_crs(4326)
    leg_frame = gpd.GeoDataFrame(
        {
            "sequence": np.arange(1, len(legs) + 1),
            "from_id": seq_ids[:-1],
            "to_id": seq_ids[1:],
            "length_m": np.round(leg_m[1:], 1),
        },
        geometry=legs,
        crs=engine.crs,
    ).to_crs(4326)
    return InspectionRoute(
        line_id,
        stops,
        leg_frame,
        float(sum(leg_m)),
        float(sum(leg_s)) if timed else None,
        pd.DataFrame(not_reached, columns=["id", "reason", "distance_m"]),
    )


# --------------------------------------------------------------------------------------------
# 两图一责 tables: the responsibility table and the network diagram's graph
# --------------------------------------------------------------------------------------------

_TABLE_COLUMNS = {
    "line_id": ("界线编号", "Line ID"),
    "line_name": ("界线名称", "Line"),
    "name_a": ("甲方", "Side A"),
    "unit_a": ("甲方代码", "Side A code"),
    "name_b": ("乙方", "Side B"),
    "unit_b": ("乙方代码", "Side B code"),
    "length_km": ("长度（千米）", "Length (km)"),
    "markers": ("界桩数", "Markers"),
    "markers_intact": ("完好", "Intact"),
    "markers_damaged": ("损坏", "Damaged"),
    "markers_missing": ("丢失", "Missing"),
    "markers_moved": ("移位", "Moved"),
    "markers_single": ("单立界桩", "Single markers"),
    "markers_double": ("双立界桩", "Double markers"),
    "markers_triple": ("三立界桩", "Triple markers"),
    "last_joint_inspection": ("最近联合检查", "Last joint inspection"),
    "next_due": ("下次检查到期", "Next due"),
    "due": ("是否到期", "Due"),
    "responsible": ("责任单位", "Responsible"),
}


def responsibility_table(result: BoundaryResult, *, lang: str = "zh") -> pd.DataFrame:
    """界线管理责任表: each line, its two units, length, markers by state, last inspection and
    next due date, and the two bureaus responsible; headers in ``lang``."""
    lines = pd.DataFrame(result.lines.drop(columns="geometry"))
    sep = "—"
    out = pd.DataFrame(
        {
            "line_id": lines["line_id"],
            "line_name": [
                f"{a}{sep}{b}" for a, b in zip(lines["name_a"], lines["name_b"], strict=True)
            ],
            "name_a": lines["name_a"],
            "unit_a": lines["unit_a"],
            "name_b": lines["name_b"],
            "unit_b": lines["unit_b"],
            "length_km": (lines["length_m"] / 1000.0).round(3),
            "markers": lines["markers"],
            **{f"markers_{s}": lines[f"markers_{s}"] for s in MARKER_STATUS},
            **{f"markers_{k}": lines[f"markers_{k}"] for k in MARKER_TYPE},
            "last_joint_inspection": lines["last_joint_inspection"],
            "next_due": lines["next_due"],
            "due": [
                ("是" if d else "否") if lang == "zh" else ("yes" if d else "no")
                for d in lines["due"]
            ],
            "responsible": [
                f"{a}民政局、{b}民政局" if lang == "zh" else f"civil-affairs bureaus of {a} and {b}"
                for a, b in zip(lines["name_a"], lines["name_b"], strict=True)
            ],
        }
    )
    return out.rename(columns={k: v[0 if lang == "zh" else 1] for k, v in _TABLE_COLUMNS.items()})


def network_graph(result: BoundaryResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    """界线管理网络图 data: units as nodes (a point inside each, WGS84 and working x/y), shared
    lines as edges with their lengths."""
    lines = result.lines
    codes = sorted(set(lines["unit_a"]) | set(lines["unit_b"]))
    units = result.units.set_index("adcode")
    nodes = pd.DataFrame(
        {
            "adcode": codes,
            "name": [units.at[c, "name"] for c in codes],
            "lon": [units.at[c, "lon"] for c in codes],
            "lat": [units.at[c, "lat"] for c in codes],
        }
    )
    edges = pd.DataFrame(
        {
            "line_id": lines["line_id"],
            "unit_a": lines["unit_a"],
            "unit_b": lines["unit_b"],
            "length_m": lines["length_m"].round(1),
            "markers": lines["markers"],
            "due": lines["due"].astype(bool),
        }
    )
    return nodes, edges


def summary_markdown(summary: Mapping[str, Any] | None, *, lang: str = "zh") -> list[str]:
    """The boundary section of a Markdown report from :meth:`BoundaryResult.summary` (plus the
    route, when one was planned); empty when there is none."""
    if not summary:
        return []

    def t(zh: str, en: str) -> str:
        return zh if lang == "zh" else en

    lines = [
        "",
        f"## {t('行政区域界线管理', 'Administrative boundaries')}",
        "",
        f"- {t('界线', 'Boundary lines')}: {summary['lines']}"
        f"（{summary['lines_length_km']:.1f} km）；{t('外边界', 'outer boundary')} "
        f"{summary['outer_length_km']:.1f} km",
        f"- {t('界桩', 'Markers')}: {summary['markers']}，"
        f"{t('偏离界线', 'off their line')} {summary['markers_off_line']}",
        f"- {t('到期需联合检查的界线', 'Lines due for joint inspection')}: {summary['lines_due']}"
        f"（{t('截至', 'as of')} {summary['as_of']}）",
    ]
    by_status = summary.get("markers_by_status") or {}
    if by_status:
        shown = "，".join(
            f"{MARKER_STATUS[k][0 if lang == 'zh' else 1]} {v}"
            for k, v in by_status.items()
            if k in MARKER_STATUS
        )
        lines.append(f"- {t('界桩最新状态', 'Latest marker states')}: {shown}")
    by_type = summary.get("markers_by_type") or {}
    if by_type:
        shown = "，".join(
            f"{MARKER_TYPE[k][0 if lang == 'zh' else 1]} {v}"
            for k, v in by_type.items()
            if k in MARKER_TYPE
        )
        lines.append(f"- {t('界桩类型', 'Marker types')}: {shown}")
    faults = summary.get("faults") or {}
    if faults:
        shown = "，".join(
            f"{FAULT_KINDS[k][0 if lang == 'zh' else 1]} {v}" for k, v in faults.items()
        )
        lines.append(f"- {t('拓扑检查发现', 'Topology findings')}: {shown}")
    else:
        lines.append(f"- {t('拓扑检查：未发现问题', 'Topology checks: nothing found')}")
    route = summary.get("route")
    if route:
        lines.append(
            f"- {t('巡查路线', 'Inspection route')} {route['line_id']}: "
            f"{route['stops']} {t('个点', 'stops')}，{route['distance_km']:.2f} km，"
            f"{route['time_min']:.0f} {t('分钟', 'min')}（{route['solver']}）"
        )
    if summary.get("scenario"):
        note = t("界桩与检查记录为演示情景数据", "markers are demo scenario data")
        lines.append(f"- {DEMO_SCENARIO_LABEL}: {note}")
    return lines
