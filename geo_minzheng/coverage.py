"""5/10/15-minute coverage of demand by facility kind: shares, gap areas, per-unit tables.

Pure cores work on arrays (times, populations) and are unit-tested on their own;
thin wrappers take layers and a network :class:`~geo_minzheng.engine.Engine` and return
GeoDataFrames keyed by the layers' own IDs. Every result carries its provenance (speeds, breaks,
standard versions) so that a map or a report can say how it was computed.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
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
from geo_minzheng import params
from geo_minzheng import standards as gm_standards
from geo_minzheng.admin_units import unit_membership
from geo_minzheng.demand import check_demand, representative_points
from geo_minzheng.engine import Engine, Snapped
from geo_minzheng.kinds import ADMIN_LEVELS, ELDERCARE_CATEGORIES, in_service

#: Radius around each uncovered demand point when gap areas are drawn (two points closer than
#: twice this fall into the same gap). 150 m is half the 5-minute circle's 300 m walk.
DEFAULT_GAP_BUFFER_M = 150.0
TOTAL = "total"
WGS84 = CRS.from_epsg(4326)
#: The combined kind: a demand point is covered when any eldercare facility of the kinds
#: covered (``ELDERCARE_CATEGORIES``) is within the break, whichever category it is.
ANY_ELDERCARE = "any_eldercare"
#: A unit whose street density (km of network per km²) is below this share of the median of
#: its level's units has almost no road data in the network's extract: its coverage shares are
#: not computed (NaN) and the table says so, instead of a misleading 0 %. 5 %: the Changchun
#: extract's 绿园区 has 0.4 % of the median density (1.1 km of streets in 320 km²), the other
#: districts 58-100 %.
SPARSE_ROAD_SHARE = 0.05

#: The table's note on a unit with almost no road data (zh, en); ``km``: its street length.
_SPARSE_NOTE = (
    "路网数据几乎未覆盖本区（仅 {km:.1f} km 道路），覆盖率无法计算",
    "almost no road data in this unit (only {km:.1f} km of streets): coverage not computed",
)

#: Empty results, copied (a copy costs a fifth of building one, ~1 ms for a GeoDataFrame)
_GAP_COLUMNS = [
    "kind",
    "break_min",
    "rank",
    "unit",
    "unit_name",
    "n_points",
    "population",
    "aged_60_plus",
    "area_m2",
]
_NO_GAPS = gpd.GeoDataFrame(
    pd.DataFrame({c: [] for c in _GAP_COLUMNS}).assign(geometry=None),
    geometry="geometry",
    crs=WGS84,
)
_NONE_FAR = pd.DataFrame(columns=["layer", "id", "distance_m"])


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
        "break_min": params.s_to_minutes(breaks[order][b_idx]),
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


def finest_units(
    rows: np.ndarray, units: np.ndarray, levels: Sequence[Any], n_rows: int
) -> np.ndarray:
    """Each demand row's most detailed admin unit (-1 where it is in none).

    ``(rows, units)`` are membership pairs (a row is in its district and in its city);
    ``levels[u]`` is unit ``u``'s level (``kinds.ADMIN_LEVELS``: the later the finer; unknown
    levels count as the coarsest). Ties go to the lowest unit number.
    """
    out = np.full(n_rows, -1, dtype=np.int64)
    if len(rows) == 0:
        return out
    order = {level: i for i, level in enumerate(ADMIN_LEVELS)}
    rank = np.asarray([order.get(lv, -1) if isinstance(lv, str) else -1 for lv in levels])
    rows, units = np.asarray(rows, dtype=np.int64), np.asarray(units, dtype=np.int64)
    # sorted by row, then coarse to fine, then highest unit number first: each row's last pair
    # is its finest unit (the lowest number among equals)
    o = np.lexsort((-units, rank[units], rows))
    r, u = rows[o], units[o]
    last = np.flatnonzero(np.r_[r[1:] != r[:-1], True])
    out[r[last]] = u[last]
    return out


def gap_units(
    gap_of_point: np.ndarray,
    unit_of_point: np.ndarray,
    aged_60_plus: np.ndarray,
    population: np.ndarray,
    n_gaps: int,
) -> np.ndarray:
    """The admin unit each gap lies in: the one holding most of its residents aged 60+ (then
    most residents, then the lowest unit number); -1 when none of its points is in a unit.

    ``gap_of_point`` holds gap ranks (1..n_gaps) of uncovered points, ``unit_of_point`` their
    units (-1: none), e.g. from :func:`finest_units`.
    """
    out = np.full(n_gaps, -1, dtype=np.int64)
    ok = np.asarray(unit_of_point) >= 0
    if not ok.any():
        return out
    gap = np.asarray(gap_of_point, dtype=np.int64)[ok] - 1
    unit = np.asarray(unit_of_point, dtype=np.int64)[ok]
    n_units = int(unit.max()) + 1
    keys, inverse = np.unique(gap * n_units + unit, return_inverse=True)
    aged = np.bincount(inverse, weights=np.asarray(aged_60_plus, float)[ok])
    pop = np.bincount(inverse, weights=np.asarray(population, float)[ok])
    g, u = keys // n_units, keys % n_units
    o = np.lexsort((u, -pop, -aged, g))
    first = o[np.r_[True, g[o][1:] != g[o][:-1]]]
    out[g[first]] = u[first]
    return out


def sparse_road_units(
    road_km: np.ndarray,
    area_km2: np.ndarray,
    levels: Sequence[Any],
    *,
    share: float = SPARSE_ROAD_SHARE,
) -> np.ndarray:
    """Which units have almost no road data: street density below ``share`` of the median
    density of the units of the same level (a level with one unit is never flagged)."""
    km = np.asarray(road_km, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        density = km / np.asarray(area_km2, dtype=float)
    keys = pd.Series([str(lv) if isinstance(lv, str) else "" for lv in levels])
    sparse = np.zeros(len(km), dtype=bool)
    for _, idx in keys.groupby(keys).groups.items():
        pos = np.asarray(idx)
        d = density[pos]
        finite = d[np.isfinite(d)]
        if len(pos) < 2 or not len(finite) or np.median(finite) <= 0:
            continue
        sparse[pos] = np.isfinite(d) & (d < share * np.median(finite))
    return sparse


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
        gdf = in_service(gdf_eldercare) if open_only else gdf_eldercare
        present = list(pd.unique(gdf["category"].dropna()))
        for cat in categories if categories is not None else sorted(present):
            out[str(cat)] = gdf[gdf["category"] == cat].copy()
    if gdf_service_rooms is not None:
        out[room_kind] = (in_service(gdf_service_rooms) if open_only else gdf_service_rooms).copy()
    return out


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
        covered_population, covered_aged_60_plus, share_population, share_aged_60_plus, and
        with unit polygons road_km (streets of the network in the unit) and sparse_roads
        (almost no road data: shares NaN, see :meth:`unit_notes`). ``unit == "total"`` is the
        whole demand layer; kinds are the facility kinds, then the combined ones
        (``any_eldercare``).
    gaps
        Gap areas (WGS84): kind, break_min, rank, unit and unit_name (the admin unit holding most
        of the gap's residents aged 60+, the most detailed level), n_points, population,
        aged_60_plus, area_m2.
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

    def unit_notes(self, *, lang: str = "zh") -> dict[str, str]:
        """Why a unit has no coverage shares (almost no road data), by unit code, in ``lang``."""
        if "sparse_roads" not in self.table:
            return {}
        rows = self.table[self.table["sparse_roads"]].drop_duplicates("unit")
        text = _SPARSE_NOTE[0 if lang == "zh" else 1]
        return {str(r.unit): text.format(km=float(r.road_km)) for r in rows.itertuples()}

    def unit_table(self, kind: str, *, lang: str = "zh") -> pd.DataFrame:
        """Wide per-unit table for one kind: aged-60+ share covered at each break (for maps);
        a unit with almost no road data has no shares and a note saying so."""
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
        out = pops.join(wide).reset_index()
        notes = self.unit_notes(lang=lang)
        if notes:
            out["备注" if lang == "zh" else "note"] = out["unit"].astype(str).map(notes)
        return out

    def unit_layer(
        self, gdf_units: gpd.GeoDataFrame, kind: str, *, lang: str = "zh"
    ) -> gpd.GeoDataFrame:
        """The admin-unit polygons with :meth:`unit_table`'s columns (WGS84), for maps and APIs."""
        table = self.unit_table(kind, lang=lang).drop(columns=["unit_name"])
        units = gdf_units.to_crs(4326)[["adcode", "name", "geometry"]].copy()
        units["adcode"] = units["adcode"].astype(str)
        out = units.merge(table, left_on="adcode", right_on="unit", how="left")
        return gpd.GeoDataFrame(out.drop(columns=["unit"]), geometry="geometry", crs=4326)


def _check_time_engine(engine: Engine) -> None:
    """Breaks are minutes: the engine must minimise travel time in seconds."""
    weight = engine.weight
    if weight != "time_s":
        msg = f"coverage needs an engine with weight='time_s' (seconds), got weight={weight!r}"
        raise ValueError(msg)


def _engine_speed(engine: Engine) -> tuple[float | None, str | None, str]:
    """The walking speed, profile and cost attribute the engine's network was built with."""
    return engine.walk_speed_mps, engine.profile, engine.weight


def _kind_times(
    engine: Engine,
    dem: Snapped,
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


def road_km_per_unit(engine: Engine, gdf_units: gpd.GeoDataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Kilometres of the engine's streets in each unit and the unit's area in km².

    A street segment counts in the unit holding its midpoint (segments are short, so the
    share of a segment across a boundary does not matter for a density); each street is
    counted once, whatever its directions.
    """
    polys = gdf_units.geometry.to_numpy()
    if len(polys) == 0:
        return np.zeros(0), np.zeros(0)
    to_engine = gm_crs.point_transform(CRS.from_user_input(gdf_units.crs).srs, engine.crs.srs)
    polys = shapely.transform(polys, lambda xy: np.column_stack(to_engine(xy[:, 0], xy[:, 1])))
    segments = engine.arrays.segment_geometry
    # the midpoints and their index are kept with the engine: every coverage run on it (each
    # partition of a province run, each API request) asks again
    middle_tree = engine.derived.entry(
        ("coverage.segment_midpoints",), lambda: _midpoint_tree(segments)
    )
    # the polygons are the query side: GEOS prepares them once each
    unit, seg = middle_tree.query(polys, predicate="contains")
    km = np.bincount(unit, weights=shapely.length(segments[seg]), minlength=len(polys)) / 1e3
    return km, shapely.area(polys) / 1e6


def _midpoint_tree(segments: np.ndarray) -> shapely.STRtree:
    """GEOS index of the street segments' midpoints (positions as in ``segments``)."""
    return shapely.STRtree(shapely.line_interpolate_point(segments, 0.5, normalized=True))


def analyze(
    gdf_demand: gpd.GeoDataFrame,
    facilities: Mapping[str, gpd.GeoDataFrame],
    engine: Engine,
    *,
    breaks_min: Sequence[float] = params.DEFAULT_BREAKS_MIN,
    gdf_units: gpd.GeoDataFrame | None = None,
    gap_break_min: float | None = None,
    gap_buffer_m: float = DEFAULT_GAP_BUFFER_M,
    gaps: bool = True,
    max_snap_m: float = params.DEFAULT_MAX_SNAP_M,
    combined: Mapping[str, Sequence[str]] | None = None,
) -> CoverageResult:
    """Coverage of demand by each facility kind at each time break, per admin unit and in total.

    Besides the facility kinds, the result covers combined kinds (by default
    :data:`ANY_ELDERCARE`: the nearest facility of any eldercare category covered, when two or
    more are), in the table, the demand columns and the gaps. With ``gdf_units``, each unit's
    street length is measured and a unit with almost no road data (:func:`sparse_road_units`)
    gets NaN shares and ``sparse_roads`` set, rather than a 0 % that the data cannot support.

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
    combined
        Combined kinds: name -> facility kinds whose nearest facility counts (kinds not in
        ``facilities`` are ignored; a name with none left is dropped). None: the default above;
        ``{}``: none.
    """
    ids = check_demand(gdf_demand)
    _check_time_engine(engine)
    breaks = list(params.check_breaks_min(breaks_min))
    gap_break = float(gap_break_min) if gap_break_min is not None else breaks[-1]
    breaks_s = params.breaks_to_s(breaks)
    cutoff_s = params.minutes_to_s(max(breaks[-1], gap_break))
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
    # each point's finest unit, for the gap areas' units only (not worked out without gaps)
    finest = finest_units(rows, units, info["level"].tolist(), len(demand)) if gaps else None
    wanted = combined if combined is not None else _default_combined(list(facilities))
    combine = {
        name: [k for k in members if k in facilities]
        for name, members in wanted.items()
        if name not in facilities and any(k in facilities for k in members)
    }
    times: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    kinds = list(facilities)
    for kind in [*kinds, *combine]:
        if kind in facilities:
            time_s, nearest, far_fac = _kind_times(
                engine,
                dem_snapped,
                len(demand),
                facilities[kind],
                cutoff_s=cutoff_s,
                max_snap_m=max_snap_m,
            )
            if far_fac is not None:
                far.append(far_fac.assign(layer=kind))
            times[kind] = time_s, nearest
        else:  # a combined kind: the nearest facility of any of its member kinds
            time_s, nearest = _nearest_of([times[k] for k in combine[kind]])
        columns[f"nearest_{kind}"] = pd.Series(nearest, index=demand.index, dtype=object)
        columns[f"time_min_{kind}"] = params.s_to_minutes(time_s)
        tables.append(
            _summary_columns(
                time_s, pop, aged, breaks_s, membership=(rows, units), unit_ids=unit_ids
            )
        )
        if gaps:
            un = ~(time_s <= params.minutes_to_s(gap_break))
            labels, kind_gaps = gap_polygons(xy[un], pop[un], aged[un], buffer_m=gap_buffer_m)
            assert finest is not None  # built above whenever gaps are
            where = gap_units(labels, finest[un], aged[un], pop[un], len(kind_gaps))
            kind_gaps.insert(1, "unit_name", _unit_labels(where, info["name"]))
            kind_gaps.insert(1, "unit", _unit_labels(where, info["adcode"].astype(str)))
            kind_gaps.insert(0, "break_min", gap_break)
            kind_gaps.insert(0, "kind", kind)
            gap_frames.append(kind_gaps)
    demand = demand.assign(**columns)
    table = _long_table([*kinds, *combine], tables, info)
    roads = _road_data(engine, gdf_units, info) if len(info) else None
    if roads is not None and len(table):
        table = _with_road_data(table, *roads)
    if gap_frames:
        gaps_df = pd.concat(gap_frames, ignore_index=True)
        gaps_gdf = gpd.GeoDataFrame(gaps_df, geometry="geometry", crs=work).to_crs(WGS84)
    else:
        gaps_gdf = _NO_GAPS.copy()
    speed, profile, weight = _engine_speed(engine)
    provenance = {
        "kinds": kinds,
        "combined": combine,
        "breaks_min": breaks,
        "gap_break_min": gap_break,
        "gap_buffer_m": gap_buffer_m,
        "max_snap_m": max_snap_m,
        "walk_speed_mps": speed,
        "profile": profile,
        "weight": weight,
        "units": "admin_code" if gdf_units is None else gdf_units.attrs.get("layer", "admin_unit"),
        "standard": _standard_label(),
        "sparse_road_share": SPARSE_ROAD_SHARE,
        "sparse_road_units": sorted(table.loc[table["sparse_roads"], "unit"].unique())
        if "sparse_roads" in table
        else [],
    }
    demand.attrs = dict(gdf_demand.attrs) | {"coverage": provenance}
    not_snapped = (
        pd.concat(far, ignore_index=True)[["layer", "id", "distance_m"]]
        if far
        else _NONE_FAR.copy()
    )
    return CoverageResult(demand, table, gaps_gdf, not_snapped, provenance)


def _default_combined(kinds: list[str]) -> dict[str, list[str]]:
    """``any_eldercare`` over the eldercare categories covered, when there are two or more."""
    members = [k for k in kinds if k in ELDERCARE_CATEGORIES]
    return {ANY_ELDERCARE: members} if len(members) >= 2 else {}


def _nearest_of(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Time to and ID of the nearest facility among several kinds' (time, id) arrays."""
    time_all = np.vstack([t for t, _ in parts])
    best = np.argmin(time_all, axis=0)
    cols = np.arange(time_all.shape[1])
    nearest = np.vstack([n for _, n in parts])[best, cols]
    return time_all[best, cols], nearest


def _unit_labels(where: np.ndarray, labels: pd.Series) -> np.ndarray:
    """``labels[where]``, None where ``where`` is -1 (no unit)."""
    values = np.asarray(labels, dtype=object)
    if not len(values):
        return np.full(len(where), None, dtype=object)
    out = values[np.maximum(where, 0)]
    out[where < 0] = None
    return out


def _road_data(
    engine: Engine, gdf_units: gpd.GeoDataFrame | None, info: pd.DataFrame
) -> tuple[pd.Series, pd.Series] | None:
    """Street km and the almost-no-road-data flag per unit code (None without unit polygons)."""
    if gdf_units is None or gdf_units.crs is None or len(gdf_units) != len(info):
        return None
    km, area = road_km_per_unit(engine, gdf_units.reset_index(drop=True))
    sparse = sparse_road_units(km, area, info["level"].tolist())
    codes = info["adcode"].astype(str).to_numpy()
    total = engine.derived.entry(
        ("coverage.street_km",),
        lambda: float(shapely.length(engine.arrays.segment_geometry).sum()) / 1e3,
    )
    road_km = pd.Series(np.r_[km, total], index=[*codes, TOTAL])
    flags = pd.Series(np.r_[sparse, False], index=[*codes, TOTAL])
    # a code listed twice (two polygons of one unit): its km add up, either part flags it
    return road_km.groupby(level=0).sum(), flags.groupby(level=0).any()


def _with_road_data(table: pd.DataFrame, road_km: pd.Series, sparse: pd.Series) -> pd.DataFrame:
    """The table with ``road_km`` and ``sparse_roads``; sparse units' shares set to NaN."""
    unit = table["unit"].astype(str)
    table["road_km"] = unit.map(road_km).to_numpy(dtype=float)
    flag = unit.map(sparse).fillna(False).to_numpy(dtype=bool)
    table["sparse_roads"] = flag
    for column in ("share_population", "share_aged_60_plus"):
        table.loc[flag, column] = np.nan
    return table


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
    pts = representative_points(gdf).to_crs(work).geometry
    return np.column_stack([pts.x.to_numpy(), pts.y.to_numpy()])
