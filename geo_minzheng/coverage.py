"""5/10/15-minute coverage by facility kind, gap areas, per-unit tables, compliance, 2SFCA.

Pure cores work on arrays (times, populations, cost matrices) and are unit-tested on their own;
thin wrappers take layers and a network :class:`~geo_minzheng.engine.Engine` and return
GeoDataFrames keyed by the layers' own IDs. Every result carries its provenance (speeds, breaks,
standard versions) so that a map or a report can say how it was computed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from geo_minzheng import crs as gm_crs
from geo_minzheng import standards as gm_standards
from geo_minzheng._errors import LayerValidationError, Problem
from geo_minzheng.engine import id_strings

#: Default time breaks in minutes: the 5/10/15-minute life circles of GB 50180-2018.
DEFAULT_BREAKS_MIN = (5, 10, 15)
#: Radius around each uncovered demand point when gap areas are drawn (two points closer than
#: twice this fall into the same gap). 150 m is half the 5-minute circle's 300 m walk.
DEFAULT_GAP_BUFFER_M = 150.0
TOTAL = "total"
WGS84 = CRS.from_epsg(4326)

#: Empty results, copied (a copy costs a fifth of building one, ~1 ms for a GeoDataFrame)
_GAP_COLUMNS = ["kind", "break_min", "rank", "n_points", "population", "aged_60_plus", "area_m2"]
_NO_GAPS = gpd.GeoDataFrame(
    pd.DataFrame({c: [] for c in _GAP_COLUMNS}).assign(geometry=None),
    geometry="geometry",
    crs=WGS84,
)
_NONE_FAR = pd.DataFrame(columns=["layer", "id", "distance_m"])

WeightSpec = Mapping[float, float] | Callable[[np.ndarray], np.ndarray] | None


# --------------------------------------------------------------------------------------------
# Pure cores
# --------------------------------------------------------------------------------------------


def summarize(
    time_s: np.ndarray,
    population: np.ndarray,
    aged_60_plus: np.ndarray,
    breaks_s: Sequence[float],
    *,
    membership: tuple[np.ndarray, np.ndarray] | None = None,
    unit_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Covered population and aged-60+ counts and shares per break, per unit and in total.

    Parameters
    ----------
    time_s
        Time from each demand point to its nearest facility (``inf`` if none within reach).
    population, aged_60_plus
        Counts per demand point.
    breaks_s
        Time breaks in seconds.
    membership
        ``(row, unit)`` integer arrays: demand row ``row[k]`` belongs to unit ``unit[k]``; a row
        may belong to several units (a district and its city), or to none.
    unit_ids
        Labels of the units indexed by ``membership``'s unit numbers.

    Returns
    -------
    pandas.DataFrame
        One row per (unit, break) with the unit ``total`` first: population, aged_60_plus,
        covered_population, covered_aged_60_plus, share_population, share_aged_60_plus.
    """
    cols = _summary_columns(
        time_s, population, aged_60_plus, breaks_s, membership=membership, unit_ids=unit_ids
    )
    del cols["group"]
    return pd.DataFrame(cols)


def _summary_columns(
    time_s: np.ndarray,
    population: np.ndarray,
    aged_60_plus: np.ndarray,
    breaks_s: Sequence[float],
    *,
    membership: tuple[np.ndarray, np.ndarray] | None = None,
    unit_ids: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """:func:`summarize`'s columns as arrays, plus ``group``: 0 for the total, ``k + 1`` for
    unit ``k`` (so that a caller joins unit names by position and builds one table for many
    facility kinds)."""
    pop = np.asarray(population, dtype=float)
    aged = np.asarray(aged_60_plus, dtype=float)
    breaks = np.asarray(breaks_s, dtype=float)
    order = np.argsort(breaks, kind="stable")
    # level k: the point is first covered at the k-th smallest break (len(breaks): never);
    # breaks are inclusive (exactly 900 s is within 15 minutes), inf is never covered
    level = np.searchsorted(breaks[order], np.asarray(time_s, dtype=float), side="left")
    n_breaks = len(breaks)
    n_levels = n_breaks + 1
    labels: list[str] = [TOTAL]
    mrow = munit = np.zeros(0, dtype=np.int64)
    if membership is not None:
        mrow, munit = (np.asarray(a, dtype=np.int64) for a in membership)
        labels += [str(u) for u in (unit_ids or [])]
    n_groups = len(labels)
    # people per (group, level): the total straight from the levels, the units by membership
    unit_cell = munit * n_levels + level[mrow]
    by_level = {
        name: np.vstack(
            [
                np.bincount(level, weights=w, minlength=n_levels),
                np.bincount(
                    unit_cell, weights=w[mrow], minlength=(n_groups - 1) * n_levels
                ).reshape(n_groups - 1, n_levels),
            ]
        )
        for name, w in (("population", pop), ("aged_60_plus", aged))
    }
    # total first, then the units by label; breaks ascending within each unit
    unit_order = [0] + sorted(range(1, n_groups), key=lambda g: labels[g])
    g_idx = np.repeat(unit_order, n_breaks)
    b_idx = np.tile(np.arange(n_breaks), len(unit_order))
    cols: dict[str, np.ndarray] = {
        "group": g_idx,
        "unit": np.asarray(labels, dtype=object)[g_idx],
        "break_min": breaks[order][b_idx] / 60.0,
    }
    totals = {name: m.sum(axis=1)[g_idx] for name, m in by_level.items()}
    covered = {name: np.cumsum(m, axis=1)[g_idx, b_idx] for name, m in by_level.items()}
    for name in by_level:
        cols[name] = totals[name].round().astype(np.int64)
    for name in by_level:
        cols[f"covered_{name}"] = covered[name].round().astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        for name in by_level:
            cols[f"share_{name}"] = covered[name] / totals[name]
    return cols


def _weights(cost: np.ndarray, weights: WeightSpec) -> np.ndarray:
    """Distance-decay weight of each cost: 1 (2SFCA), steps, or a vectorised function."""
    if weights is None:
        return np.ones_like(cost)
    if callable(weights):
        return np.asarray(weights(cost), dtype=float)
    # Steps as in Luo & Qi (2009) and PySAL access.weights.step_fn: cost <= bound -> weight of
    # the smallest bound at or above the cost; beyond the largest bound -> 0.
    bounds = np.array(sorted(weights), dtype=float)
    values = np.array([weights[b] for b in sorted(weights)], dtype=float)
    idx = np.searchsorted(bounds, cost, side="left")
    out = np.zeros_like(cost)
    inside = idx < len(bounds)
    out[inside] = values[idx[inside]]
    return out


def two_step_fca(
    cost: np.ndarray,
    demand: np.ndarray,
    supply: np.ndarray,
    *,
    max_cost: float,
    weights: WeightSpec = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Two-step floating catchment accessibility (2SFCA; E2SFCA when ``weights`` is given).

    Step 1 gives each facility ``j`` its supply-to-demand ratio
    ``R_j = S_j / sum_i W(c_ij) D_i`` over demand within ``max_cost``; step 2 sums
    ``A_i = sum_j W(c_ij) R_j`` over facilities within ``max_cost`` (Luo & Wang 2003;
    Luo & Qi 2009 for the weighted form, which PySAL ``access`` also follows).

    Parameters
    ----------
    cost
        ``[n_demand, n_supply]`` travel costs; ``inf`` where unreachable.
    demand, supply
        Demand per demand point (e.g. persons aged 60+), capacity per facility (beds, m²).
    max_cost
        Catchment size in the cost's unit (inclusive).
    weights
        None for 2SFCA; ``{bound: weight}`` steps or a vectorised function for E2SFCA.

    Returns
    -------
    (access, ratio)
        Accessibility per demand point (capacity per person; 0 with no facility in reach) and
        the ratio ``R_j`` per facility (0 when no demand is in its catchment).
    """
    c = np.asarray(cost, dtype=float)
    d = np.asarray(demand, dtype=float)
    s = np.asarray(supply, dtype=float)
    if c.shape != (len(d), len(s)):
        msg = f"cost must have shape (n_demand, n_supply) = {(len(d), len(s))}, got {c.shape}"
        raise ValueError(msg)
    i, j = np.nonzero(c <= max_cost)
    w = _weights(c[i, j], weights)
    m = sparse.csr_matrix((w, (i, j)), shape=c.shape)
    weighted_demand = m.T @ d
    ratio = np.divide(s, weighted_demand, out=np.zeros_like(s), where=weighted_demand > 0)
    return m @ ratio, ratio


def cluster_points(xy: np.ndarray, *, link_m: float) -> np.ndarray:
    """Single-linkage cluster labels of points closer than ``link_m`` (metres, projected xy)."""
    n = len(xy)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    pairs = cKDTree(xy).query_pairs(link_m, output_type="ndarray")
    graph = sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels


def gap_polygons(
    xy: np.ndarray,
    population: np.ndarray,
    aged_60_plus: np.ndarray,
    *,
    buffer_m: float = DEFAULT_GAP_BUFFER_M,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Group uncovered demand points into gap areas ranked by aged-60+ population.

    Points within ``2 * buffer_m`` of each other share a gap; a gap's polygon is the union of
    ``buffer_m`` disks around its points (projected metres).

    Returns
    -------
    (labels, gaps)
        ``labels[k]`` is the gap rank (1 = most aged-60+) of point ``k``; ``gaps`` has one row per
        gap: rank, n_points, population, aged_60_plus, area_m2, geometry (shapely, same CRS as xy).
    """
    labels = cluster_points(xy, link_m=2.0 * buffer_m)
    if len(labels) == 0:
        cols = ["rank", "n_points", "population", "aged_60_plus", "area_m2", "geometry"]
        return labels, pd.DataFrame(columns=cols)
    n = labels.max() + 1
    pop = np.bincount(labels, weights=np.asarray(population, float), minlength=n)
    aged = np.bincount(labels, weights=np.asarray(aged_60_plus, float), minlength=n)
    count = np.bincount(labels, minlength=n)
    # rank: most aged first, then most people, then lowest label for a stable order
    order = np.lexsort((np.arange(n), -pop, -aged))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1)
    disks = shapely.buffer(shapely.points(xy), buffer_m, quad_segs=8)
    sort = np.argsort(labels, kind="stable")
    splits = np.cumsum(count)[:-1]
    geoms = [shapely.union_all(part) for part in np.split(disks[sort], splits)]
    gaps = pd.DataFrame(
        {
            "rank": rank,
            "n_points": count,
            "population": pop.round().astype("int64"),
            "aged_60_plus": aged.round().astype("int64"),
            "geometry": geoms,
        }
    )
    gaps["area_m2"] = shapely.area(np.asarray(geoms, dtype=object))
    gaps = gaps.sort_values("rank").reset_index(drop=True)
    return rank[labels], gaps[
        ["rank", "n_points", "population", "aged_60_plus", "area_m2", "geometry"]
    ]


# --------------------------------------------------------------------------------------------
# Layer handling
# --------------------------------------------------------------------------------------------


def facility_kinds(
    gdf_eldercare: gpd.GeoDataFrame | None = None,
    gdf_service_rooms: gpd.GeoDataFrame | None = None,
    *,
    categories: Sequence[str] | None = ("home_care_center", "day_care_center"),
    room_kind: str = "community_service_room",
    open_only: bool = True,
) -> dict[str, gpd.GeoDataFrame]:
    """Split facility layers into the kinds that coverage is computed for.

    The eldercare layer is split by its ``category`` (one kind per category listed, or every
    category present when ``categories`` is None); the community service room layer is one kind.
    Facilities whose ``status`` is closed/planned are left out when ``open_only``.
    """
    out: dict[str, gpd.GeoDataFrame] = {}
    if gdf_eldercare is not None:
        gdf = _open(gdf_eldercare) if open_only else gdf_eldercare
        present = list(pd.unique(gdf["category"].dropna()))
        for cat in categories if categories is not None else sorted(present):
            out[str(cat)] = gdf[gdf["category"] == cat].copy()
    if gdf_service_rooms is not None:
        out[room_kind] = (_open(gdf_service_rooms) if open_only else gdf_service_rooms).copy()
    return out


def _open(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    if "status" not in gdf.columns:
        return gdf
    return gdf[gdf["status"].isna() | gdf["status"].isin(["open", "full"])]


def _check_demand(gdf_demand: gpd.GeoDataFrame, layer: str = "demand") -> np.ndarray:
    """Check the demand layer's fields, collecting every problem; return its IDs as strings."""
    problems: list[Problem] = []
    for col in ("id", "population", "aged_60_plus"):
        if col not in gdf_demand.columns:
            problems.append(Problem(f"layer '{layer}'", col, "a column", "missing", "missing"))
    if problems:
        raise LayerValidationError(layer, problems)
    ids = id_strings(gdf_demand["id"])
    dup = pd.Series(ids, dtype=object).duplicated().to_numpy()  # (faster than Index.is_unique)
    for rid in pd.unique(ids[dup]):
        problems.append(Problem(f"{layer} '{rid}'", "id", "unique", "duplicate", "duplicate"))
    counts = {}
    for col in ("population", "aged_60_plus"):
        raw = gdf_demand[col]
        vals = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        bad = ~(vals >= 0)  # NaN (not a number) or negative
        for rid, value in zip(ids[bad], raw[bad], strict=True):
            problems.append(Problem(f"{layer} '{rid}'", col, "a number >= 0", repr(value)))
        counts[col] = vals
    pop, aged = counts["population"], counts["aged_60_plus"]
    over = (aged > pop) & (pop >= 0)
    for rid, a, p in zip(ids[over], aged[over], pop[over], strict=True):
        problems.append(
            Problem(f"{layer} '{rid}'", "aged_60_plus", f"<= population ({p:g})", f"{a:g}")
        )
    if gdf_demand.crs is None:
        problems.append(Problem(f"layer '{layer}'", "crs", "a defined CRS", "None", "crs"))
    if problems:
        raise LayerValidationError(layer, problems)
    return ids


def _points(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Polygon demand (blocks, communities) is represented by an interior point."""
    geom = gdf.geometry
    if (shapely.get_type_id(geom.to_numpy()) == 0).all():
        return gdf
    out = gdf.copy()
    out["geometry"] = geom.representative_point()
    return out


def unit_membership(
    gdf_demand: gpd.GeoDataFrame, gdf_units: gpd.GeoDataFrame | None
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Which admin units each demand row belongs to, at every level the unit layer holds.

    A demand record's ``admin_code`` is used when it names a unit (and the unit's ancestors via
    ``parent_adcode`` also count it); records without one are placed by a spatial join with the
    unit polygons, which also counts them in every overlapping level (district and city).

    Returns
    -------
    (rows, units, unit_info)
        Membership pairs (demand row, unit number) and one row per unit: adcode, name, level.
    """
    if gdf_units is None:
        if "admin_code" not in gdf_demand.columns:
            return (
                np.zeros(0, int),
                np.zeros(0, int),
                pd.DataFrame(columns=["adcode", "name", "level"]),
            )
        codes = gdf_demand["admin_code"].astype("string")
        known = codes.notna().to_numpy()
        info = pd.DataFrame({"adcode": sorted(codes[known].unique())})
        info["name"] = info["adcode"]
        info["level"] = None
        pos = pd.Index(info["adcode"]).get_indexer(codes[known])
        return np.flatnonzero(known), pos, info
    units = gdf_units.reset_index(drop=True)
    info = pd.DataFrame(
        {
            "adcode": units["adcode"].astype(str),
            "name": units["name"] if "name" in units.columns else units["adcode"].astype(str),
            "level": units["level"] if "level" in units.columns else None,
        }
    )
    index = pd.Index(info["adcode"])
    n = len(gdf_demand)
    rows_parts: list[np.ndarray] = []
    unit_parts: list[np.ndarray] = []
    by_code = np.zeros(n, dtype=bool)
    if "admin_code" in gdf_demand.columns:
        codes = gdf_demand["admin_code"].astype("string").to_numpy(dtype=object, na_value=None)
        pos = index.get_indexer(pd.Series(codes, dtype=object))
        by_code = pos >= 0
        parents = _parent_map(units)
        parent_pos = index.get_indexer(
            pd.Series([parents.get(c) for c in info["adcode"]], dtype=object)
        )
        for _ in range(8):  # admin trees are at most 5 levels deep; guards against cycles
            ok = pos >= 0
            if not ok.any():
                break
            rows_parts.append(np.flatnonzero(ok))
            unit_parts.append(pos[ok])
            pos = np.where(ok, parent_pos[np.maximum(pos, 0)], -1)
    rest = np.flatnonzero(~by_code)
    if len(rest):
        pts = _points(gdf_demand.iloc[rest])[["geometry"]].to_crs(units.crs)
        pts["_row"] = rest
        joined = gpd.sjoin(pts, units[["geometry"]], how="inner", predicate="intersects")
        rows_parts.append(joined["_row"].to_numpy())
        unit_parts.append(joined["index_right"].to_numpy())
    if not rows_parts:
        return np.zeros(0, int), np.zeros(0, int), info
    rows = np.concatenate(rows_parts)
    unit = np.concatenate(unit_parts)
    pairs = np.unique(np.stack([rows, unit]), axis=1)
    return pairs[0], pairs[1], info


def _parent_map(units: pd.DataFrame) -> dict[str, str]:
    if "parent_adcode" not in units.columns:
        return {}
    par = units["parent_adcode"]
    return {str(c): str(p) for c, p in zip(units["adcode"], par, strict=True) if pd.notna(p) and p}


# --------------------------------------------------------------------------------------------
# Wrappers on the network engine
# --------------------------------------------------------------------------------------------


@dataclass
class CoverageResult:
    """Coverage of demand by each facility kind, with gaps and per-unit tables.

    Attributes
    ----------
    demand
        Demand layer (WGS84) with, per kind, ``nearest_<kind>`` (facility id or None) and
        ``time_min_<kind>`` (minutes to it, inf if none within the largest break).
    table
        Long table: kind, unit, unit_name, level, break_min, population, aged_60_plus,
        covered_population, covered_aged_60_plus, share_population, share_aged_60_plus.
        ``unit == "total"`` is the whole demand layer.
    gaps
        Gap areas (WGS84): kind, break_min, rank, n_points, population, aged_60_plus, area_m2.
    not_snapped
        Demand and facility points too far from any road: layer, id, distance_m. Demand listed
        here is counted as not covered.
    provenance
        How it was computed: speeds, breaks, snapping distance, gap buffer, standards.
    """

    demand: gpd.GeoDataFrame
    table: pd.DataFrame
    gaps: gpd.GeoDataFrame
    not_snapped: pd.DataFrame
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def kinds(self) -> list[str]:
        """Facility kinds covered, in input order."""
        return list(self.provenance.get("kinds", []))

    def unit_table(self, kind: str, *, lang: str = "zh") -> pd.DataFrame:
        """Wide per-unit table for one kind: aged-60+ share covered at each break (for maps)."""
        t = self.table[self.table["kind"] == kind]
        wide = t.pivot_table(
            index=["unit", "unit_name"],
            columns="break_min",
            values="share_aged_60_plus",
            sort=False,
        )
        wide.columns = [
            (f"{c:g}分钟老年人覆盖率" if lang == "zh" else f"aged 60+ within {c:g} min")
            for c in wide.columns
        ]
        pops = t.drop_duplicates("unit").set_index(["unit", "unit_name"])[
            ["population", "aged_60_plus"]
        ]
        if lang == "zh":
            pops.columns = ["常住人口", "60岁及以上人口"]
        return pops.join(wide).reset_index()

    def unit_layer(
        self, gdf_units: gpd.GeoDataFrame, kind: str, *, lang: str = "zh"
    ) -> gpd.GeoDataFrame:
        """The admin-unit polygons with :meth:`unit_table`'s columns (WGS84), for maps and APIs."""
        table = self.unit_table(kind, lang=lang).drop(columns=["unit_name"])
        units = gdf_units.to_crs(4326)[["adcode", "name", "geometry"]].copy()
        units["adcode"] = units["adcode"].astype(str)
        out = units.merge(table, left_on="adcode", right_on="unit", how="left")
        return gpd.GeoDataFrame(out.drop(columns=["unit"]), geometry="geometry", crs=4326)


def _check_time_engine(engine: Any) -> None:
    """Breaks are minutes: the engine must minimise travel time in seconds."""
    weight = getattr(engine, "weight", "time_s")
    if weight != "time_s":
        msg = f"coverage needs an engine with weight='time_s' (seconds), got weight={weight!r}"
        raise ValueError(msg)


def _engine_speed(engine: Any) -> tuple[float | None, str | None, str]:
    """The walking speed, profile and cost attribute the engine's network was built with."""
    return (
        getattr(engine, "walk_speed_mps", None),
        getattr(engine, "profile", None),
        getattr(engine, "weight", "time_s"),
    )


def _kind_times(
    engine: Any,
    dem: Any,
    n_demand: int,
    gdf_facilities: gpd.GeoDataFrame,
    *,
    cutoff_s: float,
    max_snap_m: float,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame | None]:
    """Time (s) to and ID of the nearest facility of each demand row; facilities not snapped.

    One multi-source shortest-path tree per kind, bounded by ``cutoff_s``; results are joined
    to the demand rows by position (``dem.rows``), never by ID lookups.
    """
    if len(gdf_facilities) == 0:
        return *_unreached(n_demand), None
    fac = engine.snap(gdf_facilities, id_field="id", max_snap_m=max_snap_m)
    far = fac.too_far if len(fac.too_far) else None
    if len(fac) == 0 or len(dem) == 0:
        return *_unreached(n_demand), far
    cost, which = engine.nearest_arrays(fac, dem, cutoff=cutoff_s)
    ids = fac.ids_at(which)  # None where no facility is in reach
    if len(dem) == n_demand:  # every demand point snapped: rows are 0..n-1
        return cost, ids, far
    time_s, nearest = _unreached(n_demand)
    time_s[dem.rows] = cost
    nearest[dem.rows] = ids
    return time_s, nearest, far


def _unreached(n_demand: int) -> tuple[np.ndarray, np.ndarray]:
    """Times (inf) and nearest facilities (None) of demand that no facility reaches."""
    return np.full(n_demand, np.inf), np.full(n_demand, None, dtype=object)


def analyze(
    gdf_demand: gpd.GeoDataFrame,
    facilities: Mapping[str, gpd.GeoDataFrame],
    engine: Any,
    *,
    breaks_min: Sequence[float] = DEFAULT_BREAKS_MIN,
    gdf_units: gpd.GeoDataFrame | None = None,
    gap_break_min: float | None = None,
    gap_buffer_m: float = DEFAULT_GAP_BUFFER_M,
    gaps: bool = True,
    max_snap_m: float = 300.0,
) -> CoverageResult:
    """Coverage of demand by each facility kind at each time break, per admin unit and in total.

    Parameters
    ----------
    gdf_demand
        Demand layer (points or polygons) with id, population, aged_60_plus, optional admin_code.
    facilities
        Facility layers by kind name, e.g. from :func:`facility_kinds`.
    engine
        Network engine with costs in seconds (``weight="time_s"``) on an elderly walk network.
    breaks_min
        Time breaks in minutes (inclusive).
    gdf_units
        Admin units (any level or several) for the per-unit table; without it, demand
        ``admin_code`` values are used as units.
    gap_break_min
        Break whose uncovered demand forms the gap areas; default the largest break.
    gap_buffer_m
        Radius around each uncovered demand point in a gap polygon.
    gaps
        Whether to build gap areas (False skips the polygon work, e.g. for batch tables).
    max_snap_m
        Points farther from a road than this are reported in ``not_snapped``, never dropped.
    """
    ids = _check_demand(gdf_demand)
    _check_time_engine(engine)
    breaks = sorted({float(b) for b in breaks_min})
    if not breaks or breaks[0] <= 0:
        msg = f"breaks_min must be positive minutes, got {list(breaks_min)}"
        raise ValueError(msg)
    gap_break = float(gap_break_min) if gap_break_min is not None else breaks[-1]
    breaks_s = [b * 60.0 for b in breaks]
    cutoff_s = max(breaks[-1], gap_break) * 60.0
    demand = _in_wgs84(gdf_demand)
    pop = pd.to_numeric(demand["population"]).to_numpy(dtype=float)
    aged = pd.to_numeric(demand["aged_60_plus"]).to_numpy(dtype=float)
    rows, units, info = unit_membership(demand, gdf_units)
    unit_ids = info["adcode"].astype(str).tolist()

    # snap the input frame itself: the engine projects it once (no WGS84 round trip) and
    # represents polygons by an interior point
    dem_snapped = engine.snap(gdf_demand, id_field="id", max_snap_m=max_snap_m, checked_ids=ids)
    far = [dem_snapped.too_far.assign(layer="demand")] if len(dem_snapped.too_far) else []
    tables, gap_frames, columns = [], [], {}
    if pd.api.types.infer_dtype(demand["id"], skipna=False) != "string":
        columns["id"] = ids
    work = _working_crs(demand) if gaps else None  # gap polygons are drawn in metres
    xy = _projected_xy(demand, work) if work is not None else np.zeros((0, 2))
    for kind, gdf_fac in facilities.items():
        time_s, nearest, far_fac = _kind_times(
            engine, dem_snapped, len(demand), gdf_fac, cutoff_s=cutoff_s, max_snap_m=max_snap_m
        )
        if far_fac is not None:
            far.append(far_fac.assign(layer=kind))
        columns[f"nearest_{kind}"] = pd.Series(nearest, index=demand.index, dtype=object)
        columns[f"time_min_{kind}"] = time_s / 60.0
        tables.append(
            _summary_columns(
                time_s, pop, aged, breaks_s, membership=(rows, units), unit_ids=unit_ids
            )
        )
        if gaps:
            un = ~(time_s <= gap_break * 60.0)
            _, kind_gaps = gap_polygons(xy[un], pop[un], aged[un], buffer_m=gap_buffer_m)
            kind_gaps.insert(0, "break_min", gap_break)
            kind_gaps.insert(0, "kind", kind)
            gap_frames.append(kind_gaps)
    demand = demand.assign(**columns)
    table = _long_table(list(facilities), tables, info)
    if gap_frames:
        gaps_df = pd.concat(gap_frames, ignore_index=True)
        gaps_gdf = gpd.GeoDataFrame(gaps_df, geometry="geometry", crs=work).to_crs(WGS84)
    else:
        gaps_gdf = _NO_GAPS.copy()
    speed, profile, weight = _engine_speed(engine)
    provenance = {
        "kinds": list(facilities),
        "breaks_min": breaks,
        "gap_break_min": gap_break,
        "gap_buffer_m": gap_buffer_m,
        "max_snap_m": max_snap_m,
        "walk_speed_mps": speed,
        "profile": profile,
        "weight": weight,
        "units": "admin_code" if gdf_units is None else gdf_units.attrs.get("layer", "admin_unit"),
        "standard": _standard_label(),
    }
    demand.attrs = dict(gdf_demand.attrs) | {"coverage": provenance}
    not_snapped = (
        pd.concat(far, ignore_index=True)[["layer", "id", "distance_m"]]
        if far
        else _NONE_FAR.copy()
    )
    return CoverageResult(demand, table, gaps_gdf, not_snapped, provenance)


def _long_table(
    kinds: list[str], parts: list[dict[str, np.ndarray]], info: pd.DataFrame
) -> pd.DataFrame:
    """One table of every kind's :func:`_summary_columns`, with the units' names and levels."""
    if not parts:
        return pd.DataFrame()
    cols = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    group = cols.pop("group")
    # position 0 is the total: its name is 合计 and it has no level
    names = np.asarray(["合计", *info["name"]], dtype=object)
    levels = np.asarray([np.nan, *info["level"]], dtype=object)
    if pd.isna(levels).all():  # units from admin codes: no levels, a float NaN column
        levels = np.full(len(levels), np.nan)
    head = {
        "kind": np.repeat(np.asarray(kinds, dtype=object), [len(p["group"]) for p in parts]),
        "unit": cols.pop("unit"),
        "unit_name": names[group],
        "level": levels[group],
    }
    return pd.DataFrame(head | cols)


@functools.cache
def _standard_label() -> str:
    """The life-circle standard's label (the packaged file does not change while running)."""
    return gm_standards.load("gb50180_2018").label


def _in_wgs84(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The layer in WGS84: itself if it is (read, never modified, by the caller); point layers
    are transformed as coordinate arrays (several times faster than geometries)."""
    if gdf.crs == WGS84:
        return gdf
    geoms = gdf.geometry.to_numpy()
    if not ((shapely.get_type_id(geoms) == 0) & ~shapely.is_empty(geoms)).all():
        return gdf.to_crs(4326)
    lon, lat = gm_crs.point_transform(gdf.crs.srs, "EPSG:4326")(*shapely.get_coordinates(geoms).T)
    out = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
    return gpd.GeoDataFrame(out, geometry=shapely.points(lon, lat), crs=4326)


def _working_crs(gdf_wgs84: gpd.GeoDataFrame) -> Any:
    """The metric CRS of the layer's centre (a CGCS2000 Gauss-Kruger zone in China)."""
    minx, miny, maxx, maxy = gdf_wgs84.total_bounds
    return gm_crs.working_crs((minx + maxx) / 2.0, (miny + maxy) / 2.0)


def _projected_xy(gdf: gpd.GeoDataFrame, work: Any) -> np.ndarray:
    pts = _points(gdf).to_crs(work).geometry
    return np.column_stack([pts.x.to_numpy(), pts.y.to_numpy()])


# --------------------------------------------------------------------------------------------
# Standards compliance and accessibility
# --------------------------------------------------------------------------------------------


def compliance(
    result: CoverageResult,
    gdf_units: gpd.GeoDataFrame,
    gdf_eldercare: gpd.GeoDataFrame,
    *,
    province: str | None = None,
    existing: bool = True,
    area_categories: Sequence[str] = ("home_care_center", "day_care_center"),
    coverage_kind: str | None = "home_care_center",
    coverage_break_min: float = 15.0,
    coverage_target_share: float = 1.0,
) -> pd.DataFrame:
    """Compliance of each admin unit with the eldercare norms: met / not met and by how much.

    Three checks per unit, one row each:

    * ``floor_area_per_100_households``: community eldercare floor area (facilities of
      ``area_categories`` in the unit) per 100 households against the provincial or national
      norm (:func:`geo_minzheng.standards.floor_area_norm`). Households come from the unit's
      ``households`` field, else from the demand's ``households``, else are estimated as
      population / 2.62 (2020 census mean); ``households_source`` says which.
    * ``beds_per_1000_aged``: beds of all eldercare facilities in the unit per 1000 residents
      aged 60+ against the national target's lower bound (35).
    * ``coverage``: share of residents aged 60+ within ``coverage_break_min`` of a
      ``coverage_kind`` facility against ``coverage_target_share`` (full coverage by default:
      the 15-minute home-eldercare circle's goal); skipped when ``coverage_kind`` is None.

    Returns
    -------
    pandas.DataFrame
        unit, unit_name, level, check, value, target, unit_of_measure, met, shortfall
        (what is missing: m², beds or persons), standard, confirmed, households_source.
    """
    area_norm, area_from = gm_standards.floor_area_norm(province, existing=existing)
    beds_norm = gm_standards.beds_norm()
    hh_size = gm_standards.persons_per_household()
    units = gdf_units.reset_index(drop=True)
    demand = result.demand
    rows, unit_no, info = unit_membership(demand, units)
    n_units = len(info)
    pop = np.bincount(
        unit_no, weights=demand["population"].to_numpy(float)[rows], minlength=n_units
    )
    aged = np.bincount(
        unit_no, weights=demand["aged_60_plus"].to_numpy(float)[rows], minlength=n_units
    )
    dem_hh = None
    if "households" in demand.columns:
        hh_vals = pd.to_numeric(demand["households"], errors="coerce")
        if hh_vals.notna().all():
            dem_hh = np.bincount(unit_no, weights=hh_vals.to_numpy(float)[rows], minlength=n_units)
    unit_hh = (
        pd.to_numeric(units["households"], errors="coerce").to_numpy(float)
        if "households" in units.columns
        else np.full(n_units, np.nan)
    )
    households = np.where(np.isfinite(unit_hh) & (unit_hh > 0), unit_hh, np.nan)
    source = np.where(np.isfinite(households), "admin_unit", "").astype(object)
    if dem_hh is not None:
        fill = ~np.isfinite(households)
        households[fill] = dem_hh[fill]
        source[fill] = "demand"
    est = ~np.isfinite(households)
    households[est] = pop[est] / float(hh_size.value)
    source[est] = f"estimated: population / {hh_size.value} ({hh_size.source})"

    fac = gdf_eldercare.reset_index(drop=True)
    frow, funit, _ = unit_membership(fac.assign(id=fac["id"].astype(str)), units)
    cat = fac["category"].to_numpy(object)[frow]
    area_w = pd.to_numeric(fac["floor_area_m2"], errors="coerce").fillna(0).to_numpy(float)[frow]
    area = np.bincount(
        funit, weights=area_w * np.isin(cat, list(area_categories)), minlength=n_units
    )
    beds_w = (
        pd.to_numeric(fac["beds"], errors="coerce").fillna(0).to_numpy(float)[frow]
        if "beds" in fac.columns
        else np.zeros(len(frow))
    )
    beds = np.bincount(funit, weights=beds_w, minlength=n_units)

    out = []
    req_area = households / 100.0 * float(area_norm.value)
    with np.errstate(invalid="ignore", divide="ignore"):
        per100 = np.where(households > 0, area / households * 100.0, np.nan)
        per1000 = np.where(aged > 0, beds / aged * 1000.0, np.nan)
    req_beds = aged / 1000.0 * float(beds_norm.value)
    for k in range(n_units):
        base = {
            "unit": info["adcode"].iat[k],
            "unit_name": info["name"].iat[k],
            "level": info["level"].iat[k],
            "households_source": source[k],
        }
        out.append(
            base
            | {
                "check": "floor_area_per_100_households",
                "value": per100[k],
                "target": float(area_norm.value),
                "unit_of_measure": "m²/100户",
                "met": bool(area[k] >= req_area[k]),
                "shortfall": max(0.0, req_area[k] - area[k]),
                "standard": f"{area_norm.source} [{area_from}]",
                "confirmed": area_norm.confirmed,
            }
        )
        out.append(
            base
            | {
                "check": "beds_per_1000_aged",
                "value": per1000[k],
                "target": float(beds_norm.value),
                "unit_of_measure": "张/千名老年人",
                "met": bool(beds[k] >= req_beds[k]),
                "shortfall": max(0.0, req_beds[k] - beds[k]),
                "standard": beds_norm.source,
                "confirmed": beds_norm.confirmed,
            }
        )
    if coverage_kind is not None:
        t = result.table
        sel = t[(t["kind"] == coverage_kind) & np.isclose(t["break_min"], coverage_break_min)]
        if sel.empty:
            msg = (
                f"coverage_kind '{coverage_kind}' at {coverage_break_min:g} min is not in the "
                f"result; kinds: {result.kinds}, breaks: {result.provenance.get('breaks_min')}"
            )
            raise ValueError(msg)
        sel = sel.set_index("unit")
        gb = gm_standards.load("gb50180_2018")
        for k in range(n_units):
            code = info["adcode"].iat[k]
            share = sel["share_aged_60_plus"].get(code, np.nan)
            aged_k = sel["aged_60_plus"].get(code, 0)
            covered = sel["covered_aged_60_plus"].get(code, 0)
            need = int(np.ceil(coverage_target_share * aged_k - 1e-9)) - int(covered)
            out.append(
                {
                    "unit": code,
                    "unit_name": info["name"].iat[k],
                    "level": info["level"].iat[k],
                    "households_source": source[k],
                    "check": f"coverage_{coverage_kind}_{coverage_break_min:g}min",
                    "value": share,
                    "target": coverage_target_share,
                    "unit_of_measure": "share of aged 60+",
                    "met": bool(need <= 0),
                    "shortfall": float(max(0, need)),
                    "standard": f"{gb.label} {coverage_break_min:g}-minute life circle",
                    "confirmed": False,
                }
            )
    table = pd.DataFrame(out)
    return table.sort_values(["unit", "check"], kind="stable").reset_index(drop=True)


def accessibility(
    gdf_demand: gpd.GeoDataFrame,
    gdf_supply: gpd.GeoDataFrame,
    engine: Any,
    *,
    capacity_field: str = "beds",
    demand_field: str = "aged_60_plus",
    max_cost_min: float = 15.0,
    weights: WeightSpec = None,
    max_snap_m: float = 300.0,
) -> pd.DataFrame:
    """2SFCA (or E2SFCA with ``weights``) of facility capacity per person over network times.

    Parameters
    ----------
    capacity_field
        Supply column: ``beds`` or ``floor_area_m2``.
    demand_field
        Demand column: ``aged_60_plus`` (default) or ``population``.
    max_cost_min
        Catchment in minutes.
    weights
        ``{bound_s: weight}`` distance-decay steps (seconds) or a vectorised function of seconds.

    Returns
    -------
    pandas.DataFrame
        Index = demand id: ``access`` (capacity per person, e.g. beds per aged resident) and
        ``access_per_1000`` (the same per 1000 people).
    """
    _check_demand(gdf_demand)
    layer = str(gdf_supply.attrs.get("layer", "supply"))
    problems = []
    if capacity_field not in gdf_supply.columns:
        problems.append(Problem("layer 'supply'", capacity_field, "a column", "missing", "missing"))
    if problems:
        raise LayerValidationError(layer, problems)
    supply = pd.to_numeric(gdf_supply[capacity_field], errors="coerce")
    for rid, raw in zip(
        gdf_supply["id"][supply.isna() | (supply < 0)],
        gdf_supply[capacity_field][supply.isna() | (supply < 0)],
        strict=True,
    ):
        problems.append(Problem(f"supply '{rid}'", capacity_field, "a number >= 0", repr(raw)))
    if problems:
        raise LayerValidationError(layer, problems)
    max_cost_s = max_cost_min * 60.0
    dem = engine.snap(gdf_demand, id_field="id", max_snap_m=max_snap_m)
    fac = engine.snap(gdf_supply, id_field="id", max_snap_m=max_snap_m)
    od = engine.od_matrix(dem, fac, cutoff=max_cost_s)
    cost = od.to_dense(fill=np.inf)
    dem_ids = [str(i) for i in od.origin_ids]
    fac_ids = [str(i) for i in od.destination_ids]
    d = pd.to_numeric(gdf_demand.set_index(gdf_demand["id"].astype(str))[demand_field])
    s = supply.set_axis(gdf_supply["id"].astype(str))
    acc, _ = two_step_fca(
        cost,
        d.reindex(dem_ids).to_numpy(float),
        s.reindex(fac_ids).to_numpy(float),
        max_cost=max_cost_s,
        weights=weights,
    )
    out = pd.DataFrame({"access": acc}, index=pd.Index(dem_ids, name="id"))
    out = out.reindex(gdf_demand["id"].astype(str)).fillna(0.0)
    out["access_per_1000"] = out["access"] * 1000.0
    out.attrs["provenance"] = {
        "method": "2SFCA" if weights is None else "E2SFCA",
        "capacity_field": capacity_field,
        "demand_field": demand_field,
        "max_cost_min": max_cost_min,
        "weights": None if weights is None or callable(weights) else dict(weights),
    }
    return out
