"""Shelter capacity from the standards and capacitated shelter catchments (应急避难场所责任区).

Who goes to which emergency shelter, whether it can hold them, and who has no place:

* :func:`shelter_capacity`: capacity (persons) = effective area / effective area per person of the
  shelter's GB 51143-2015 class (``standards/gb51143_2015.toml``); a registry's own
  ``capacity_persons`` overrides the computed figure and the table says which was used.
* :func:`nearest_from_cost_matrix` and :func:`capacitated_from_cost_matrix`: the pure cores over a
  cost matrix (like spopt's ``from_cost_matrix``). The capacitated one is an exact min-cost flow
  solved by OR-Tools' compiled ``SimpleMinCostFlow``: as many people as the capacities allow are
  sheltered (a maximum flow), and among those assignments the person-weighted cost is least; the
  service radius is a hard limit (an arc beyond it does not exist, so nobody is ever sent beyond
  it: the bug of pysal/spopt issue #314 cannot happen) and demand above the reachable capacity is
  reported as unsheltered, never an error.
* :func:`catchments`: the wrapper on layers and the network :class:`~geo_minzheng.engine.Engine`,
  returning GeoDataFrames keyed by the layers' own IDs; :func:`responsibility_areas` draws one
  polygon per shelter from it, :func:`checks` runs the checks a standard asks for and
  :func:`compare` reports what a flood or closed roads change.

The service radius is a network walking *distance* (GB 51143 states the 责任区 range as an
evacuation distance), the same for every resident; walking *time* is that distance over the
walking speed of the resident's group: residents aged 60+ at ``elderly_walk_speed_mps`` (default
0.91 m/s, MUTCD 2009 §4E.06, as everywhere in geo-minzheng) and the others at
``adult_walk_speed_mps`` (default 1.2 m/s, FHWA-RD-98-107's recommendation for the Highway Capacity
Manual). The person-weighted walking time is what the assignment minimises; the older residents of
a block may go to a nearer shelter than the younger ones when capacity is short, because that saves
more walking time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from ortools.graph.python import min_cost_flow
from pyproj import CRS
from scipy import sparse
from scipy.spatial import cKDTree

from geo_minzheng import params
from geo_minzheng import standards as gm_standards
from geo_minzheng._errors import (
    CapacityError,
    LayerValidationError,
    NetworkError,
    Problem,
    SolverError,
)
from geo_minzheng.admin_units import unit_membership
from geo_minzheng.demand import check_demand
from geo_minzheng.engine import BarrierArg, Barriers, Engine, id_strings
from geo_minzheng.kinds import FACILITY_STATUS

#: Walking speeds of residents under 60 and aged 60+, m/s, with their sources (params).
ADULT_WALK_SPEED_MPS = params.ADULT_WALK_SPEED_MPS
ADULT_WALK_SPEED_SOURCE = params.ADULT_WALK_SPEED_SOURCE
ELDERLY_WALK_SPEED_MPS = params.ELDERLY_WALK_SPEED_MPS
ELDERLY_WALK_SPEED_SOURCE = params.ELDERLY_WALK_SPEED_SOURCE
#: Shelter statuses that take evacuees; ``closed``/``full`` never do and ``planned`` only on request
#: (a missing status counts as open).
SHELTERING_STATUSES = ("open",)
#: Times are rounded to this many seconds for the integer min-cost flow (the optimum is exact for
#: the rounded times; objectives are reported with the unrounded ones).
COST_STEP_S = 0.01
#: Radius of land a resident's place stands for when responsibility areas are drawn, metres
#: (half the 300 m spacing of the demo's demand points).
DEFAULT_AREA_BUFFER_M = 150.0
#: A polygon shelter whose area is at least this share inside a hazard polygon is disabled.
HAZARD_SHELTER_SHARE = 0.5
#: The two resident groups, each walking at its own speed.
GROUPS = ("under_60", "aged_60_plus")
STANDARD = "gb51143_2015"

WGS84 = CRS.from_epsg(4326)
_MAX_INT_COST = 2**40  # integer costs above this would risk int64 overflow in the flow solver


# --------------------------------------------------------------------------------------------
# Pure cores over a cost matrix
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Assignment:
    """An optimal capacitated assignment in matrix terms (one entry per used arc).

    Attributes
    ----------
    row, col
        Demand row and supply column of each assigned flow (``persons > 0``), sorted by row.
    persons
        Persons sent along each of those arcs (integers).
    cost
        The (unrounded) cost of each of those arcs.
    unsheltered
        Persons of each demand row that no supply within reach can take.
    load
        Persons assigned to each supply column (never above its capacity).
    objective
        Sum of persons x cost over the assignment (unrounded costs).
    cost_step
        The costs were rounded to multiples of this for the integer solver; the assignment is
        optimal for the rounded costs (exactly optimal when the costs are multiples of it).
    status
        ``"Optimal"`` (anything else raises :class:`~geo_minzheng._errors.SolverError`).
    """

    row: np.ndarray
    col: np.ndarray
    persons: np.ndarray
    cost: np.ndarray
    unsheltered: np.ndarray
    load: np.ndarray
    objective: float
    cost_step: float
    status: str

    @property
    def sheltered(self) -> int:
        """Persons assigned to some supply column."""
        return int(self.persons.sum())

    def to_frame(self) -> pd.DataFrame:
        """Long table ``[row, col, persons, cost]`` of the assignment."""
        return pd.DataFrame(
            {"row": self.row, "col": self.col, "persons": self.persons, "cost": self.cost}
        )


def _int_array(values: Any, name: str, n: int) -> np.ndarray:
    """Counts as int64; ValueError naming ``name`` unless ``n`` integers >= 0."""
    arr = np.asarray(values, dtype=float).ravel()
    if arr.shape != (n,):
        msg = f"{name} must have {n} values, got shape {np.shape(values)}"
        raise ValueError(msg)
    bad = ~np.isfinite(arr) | (arr < 0) | (arr != np.round(arr))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        msg = f"{name}[{k}] must be an integer >= 0, got {arr[k]:g}"
        raise ValueError(msg)
    return arr.astype(np.int64)


def _arcs(
    cost: Any, max_cost: float | Sequence[float] | np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """Arcs (row, col, cost) of a dense matrix (inf/NaN: no arc) or a sparse one (stored entries
    are the arcs), within ``max_cost`` (inclusive; a scalar or one bound per column)."""
    if sparse.issparse(cost):
        m = sparse.coo_matrix(cost)
        m.sum_duplicates()
        row, col, c = m.row.astype(np.int64), m.col.astype(np.int64), m.data.astype(float)
        shape = (int(m.shape[0]), int(m.shape[1]))
        ok = np.isfinite(c)
        row, col, c = row[ok], col[ok], c[ok]
    else:
        dense = np.asarray(cost, dtype=float)
        if dense.ndim != 2:
            msg = f"cost must be a 2-D matrix [n_demand, n_supply], got shape {dense.shape}"
            raise ValueError(msg)
        shape = (int(dense.shape[0]), int(dense.shape[1]))
        row, col = np.nonzero(np.isfinite(dense))
        c = dense[row, col]
    if (c < 0).any():
        k = int(np.flatnonzero(c < 0)[0])
        msg = f"cost[{row[k]}, {col[k]}] must be >= 0, got {c[k]}"
        raise ValueError(msg)
    if max_cost is not None:
        lim = np.broadcast_to(np.asarray(max_cost, dtype=float), (shape[1],))
        keep = c <= lim[col]
        row, col, c = row[keep], col[keep], c[keep]
    return row.astype(np.int64), col.astype(np.int64), c, shape


def nearest_from_cost_matrix(
    cost: Any, max_cost: float | Sequence[float] | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest column of each row within ``max_cost`` (uncapacitated catchments).

    Parameters
    ----------
    cost
        ``[n_demand, n_supply]`` costs: dense (``inf``/NaN where there is no path) or scipy
        sparse (its stored entries are the arcs).
    max_cost
        Hard limit, inclusive: a scalar or one per column (e.g. each shelter class's radius).

    Returns
    -------
    (col, cost)
        Column per row (-1 when none is within reach; the lowest column of equal costs) and its
        cost (``inf`` then).
    """
    row, col, c, (n, _) = _arcs(cost, max_cost)
    best_col = np.full(n, -1, dtype=np.int64)
    best = np.full(n, np.inf)
    if len(row):
        order = np.lexsort((col, c, row))
        first = order[np.r_[True, row[order][1:] != row[order][:-1]]]
        best_col[row[first]] = col[first]
        best[row[first]] = c[first]
    return best_col, best


def _cost_step(c: np.ndarray, cost_step: float | None) -> float:
    """The rounding step: as given, 1 for integer costs, else a millionth of the largest."""
    if cost_step is not None:
        if not (math.isfinite(cost_step) and cost_step > 0):
            msg = f"cost_step must be > 0, got {cost_step}"
            raise ValueError(msg)
        return float(cost_step)
    top = float(c.max(initial=0.0))
    if np.all(c == np.round(c)) and top <= _MAX_INT_COST:
        return 1.0
    return top / 1e6 if top > 0 else 1.0


def _solve_arcs(
    row: np.ndarray,
    col: np.ndarray,
    cost_int: np.ndarray,
    demand: np.ndarray,
    capacity: np.ndarray,
) -> tuple[np.ndarray, str]:
    """Max flow of least cost from the demand rows through the arcs to the columns' capacities.

    OR-Tools' ``solve_max_flow_with_min_cost`` (cost scaling, compiled): demand rows supply their
    persons, one sink takes what the columns' capacities let through. Returns the flow on each
    arc and the status text; raises SolverError unless optimal.
    """
    n_rows, n_cols = len(demand), len(capacity)
    flow = np.zeros(len(row), dtype=np.int64)
    use = (demand[row] > 0) & (capacity[col] > 0)
    if not use.any():
        return flow, "Optimal"
    arc = np.flatnonzero(use)
    rows_used = np.unique(row[arc])
    cols_used = np.unique(col[arc])
    row_node = np.full(n_rows, -1, dtype=np.int64)
    row_node[rows_used] = np.arange(len(rows_used))
    col_node = np.full(n_cols, -1, dtype=np.int64)
    col_node[cols_used] = len(rows_used) + np.arange(len(cols_used))
    sink = len(rows_used) + len(cols_used)
    tails = np.concatenate([row_node[row[arc]], col_node[cols_used]])
    heads = np.concatenate([col_node[col[arc]], np.full(len(cols_used), sink)])
    caps = np.concatenate([np.minimum(demand[row[arc]], capacity[col[arc]]), capacity[cols_used]])
    unit = np.concatenate([cost_int[arc], np.zeros(len(cols_used), dtype=np.int64)])
    total = int(demand[rows_used].sum())
    if int(cost_int[arc].max(initial=0)) * max(total, 1) >= 2**62:
        msg = "costs x persons overflow the solver's 64-bit integers; use a larger cost_step"
        raise CapacityError(msg)
    solver = min_cost_flow.SimpleMinCostFlow()
    solver.add_arcs_with_capacity_and_unit_cost(
        tails.astype(np.int32), heads.astype(np.int32), caps.astype(np.int64), unit
    )
    supply = np.zeros(sink + 1, dtype=np.int64)
    supply[: len(rows_used)] = demand[rows_used]
    supply[sink] = -total
    solver.set_nodes_supplies(np.arange(sink + 1, dtype=np.int32), supply)
    status = solver.solve_max_flow_with_min_cost()
    if status != solver.OPTIMAL:
        msg = f"OR-Tools min-cost flow did not reach an optimum: status {status!r}"
        raise SolverError(msg)
    flow[arc] = np.asarray(solver.flows(np.arange(len(arc), dtype=np.int32)), dtype=np.int64)
    return flow, "Optimal"


def capacitated_from_cost_matrix(
    cost: Any,
    demand: Sequence[int] | np.ndarray,
    capacity: Sequence[int] | np.ndarray,
    max_cost: float | Sequence[float] | np.ndarray | None = None,
    *,
    cost_step: float | None = None,
) -> Assignment:
    """Assign integer demand to capacitated supply: most persons sheltered, then least cost.

    An exact min-cost flow (OR-Tools ``SimpleMinCostFlow``): persons flow from their demand row
    to a column within reach, no column takes more than its capacity; the flow is a maximum one
    (nobody is left out while a reachable place is free) and, among maximum flows, the sum of
    persons x cost is least. Persons that no column within reach can take are ``unsheltered``.

    Parameters
    ----------
    cost
        ``[n_demand, n_supply]`` costs >= 0: dense (``inf``/NaN = no arc) or scipy sparse (its
        stored entries are the arcs, an explicit 0 included).
    demand
        Persons per row (integers >= 0).
    capacity
        Places per column (integers >= 0).
    max_cost
        Hard limit on the cost of an arc, inclusive: a scalar or one per column (a shelter
        class's radius). Nobody is sent along an arc above it.
    cost_step
        Costs are rounded to multiples of this for the integer solver; default 1 for integer
        costs, else the largest cost / 10^6.

    Returns
    -------
    Assignment
        The flows, unsheltered persons per row, load per column and the objective.
    """
    row, col, c, (n_rows, n_cols) = _arcs(cost, max_cost)
    d = _int_array(demand, "demand", n_rows)
    cap = _int_array(capacity, "capacity", n_cols)
    step = _cost_step(c, cost_step)
    return _assign(row, col, c, d, cap, step)


def _assign(
    row: np.ndarray,
    col: np.ndarray,
    c: np.ndarray,
    demand: np.ndarray,
    capacity: np.ndarray,
    step: float,
) -> Assignment:
    """:func:`capacitated_from_cost_matrix` on checked arcs and counts."""
    cost_int = np.rint(c / step).astype(np.int64)
    flow, status = _solve_arcs(row, col, cost_int, demand, capacity)
    used = np.flatnonzero(flow > 0)
    used = used[np.lexsort((col[used], row[used]))]
    r, k, f, cc = row[used], col[used], flow[used], c[used]
    unsheltered = demand - np.bincount(r, weights=f, minlength=len(demand)).astype(np.int64)
    load = np.bincount(k, weights=f, minlength=len(capacity)).astype(np.int64)
    return Assignment(
        row=r,
        col=k,
        persons=f,
        cost=cc,
        unsheltered=unsheltered,
        load=load,
        objective=float(np.dot(f.astype(float), cc)),
        cost_step=step,
        status=status,
    )


# --------------------------------------------------------------------------------------------
# Capacity from the standards
# --------------------------------------------------------------------------------------------
def _layer_name(gdf: pd.DataFrame, default: str) -> str:
    return str(gdf.attrs.get("layer", default))


def _found(value: Any) -> str:
    """A value as a message shows it: numbers plainly (-120, not np.float64(-120.0))."""
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        return f"{float(value):g}"
    return repr(value)


def _numbers(gdf: pd.DataFrame, column: str) -> np.ndarray:
    if column not in gdf.columns:
        return np.full(len(gdf), np.nan)
    return pd.to_numeric(gdf[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def shelter_capacity(
    gdf_shelters: gpd.GeoDataFrame,
    *,
    standard: gm_standards.Standard | None = None,
    use_registry: bool = True,
) -> pd.DataFrame:
    """Capacity in persons of every shelter, and which figure it is.

    ``computed_capacity_persons = floor(effective_area_m2 / m2_per_person)`` of the shelter's
    class; the registry's own ``capacity_persons`` (where the layer has it) overrides it when
    ``use_registry`` (``capacity_source`` says ``registry`` or ``computed``).

    Parameters
    ----------
    gdf_shelters
        Shelter layer (kind ``shelter``): id, shelter_class, effective_area_m2, optional
        capacity_persons, status, name.
    standard
        The shelter-class standard (default GB 51143-2015, ``standards/gb51143_2015.toml``).
    use_registry
        Whether a registry capacity overrides the computed one.

    Returns
    -------
    pandas.DataFrame
        Indexed by shelter id (str): name, shelter_class, status, effective_area_m2,
        m2_per_person, computed_capacity_persons, registry_capacity_persons (NA where none),
        capacity_persons, capacity_source, service_radius_m, fixed, m2_confirmed,
        radius_confirmed. ``attrs["standard"]`` is the standard's label.

    Raises
    ------
    LayerValidationError
        Listing every problem: a missing column, duplicate id, unknown class, effective area
        missing or <= 0, a registry capacity that is not an integer >= 0 or is larger than the
        area allows at the class's m² per person, an unknown status, no CRS.
    """
    std = standard or gm_standards.load(STANDARD)
    classes = gm_standards.shelter_classes(standard=std)
    layer = _layer_name(gdf_shelters, "shelters")
    problems: list[Problem] = []
    for column in ("id", "shelter_class", "effective_area_m2"):
        if column not in gdf_shelters.columns:
            problems.append(Problem(f"layer '{layer}'", column, "a column", "missing", "missing"))
    if problems:
        raise LayerValidationError(layer, problems)
    ids = id_strings(gdf_shelters["id"])
    label = np.array([f"shelter '{i}'" for i in ids], dtype=object)
    dup = pd.Series(ids, dtype=object).duplicated().to_numpy()
    for rid in pd.unique(ids[dup]):
        problems.append(Problem(f"shelter '{rid}'", "id", "unique", "duplicate", "duplicate"))
    cls = gdf_shelters["shelter_class"].to_numpy(dtype=object)
    known = np.array([c in classes for c in cls])
    for i in np.flatnonzero(~known):
        problems.append(
            Problem(
                label[i],
                "shelter_class",
                f"one of: {', '.join(classes)}",
                repr(cls[i]),
                "unknown_value",
            )
        )
    area = _numbers(gdf_shelters, "effective_area_m2")
    for i in np.flatnonzero(~(area > 0)):
        raw = gdf_shelters["effective_area_m2"].iat[i]
        problems.append(Problem(label[i], "effective_area_m2", "a number > 0 (m²)", _found(raw)))
    m2 = np.array([float(classes[c].m2_per_person.value) if c in classes else np.nan for c in cls])
    radius = np.array(
        [float(classes[c].service_radius_m.value) if c in classes else np.nan for c in cls]
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        computed = np.floor(area / m2 + 1e-9)
    registry = _numbers(gdf_shelters, "capacity_persons")
    if "capacity_persons" in gdf_shelters.columns:
        raw_cap = gdf_shelters["capacity_persons"]
        given = raw_cap.notna().to_numpy()
        bad = given & ~((registry >= 0) & (registry == np.round(registry)))
        for i in np.flatnonzero(bad):
            problems.append(
                Problem(label[i], "capacity_persons", "an integer >= 0", _found(raw_cap.iat[i]))
            )
        over = given & ~bad & (area > 0) & np.isfinite(computed) & (registry > computed)
        for i in np.flatnonzero(over):
            problems.append(
                Problem(
                    label[i],
                    "capacity_persons",
                    f"<= effective_area_m2 / {m2[i]:g} m² per person of class "
                    f"'{cls[i]}' ({int(computed[i])})",
                    f"{registry[i]:g}",
                    "inconsistent",
                )
            )
    if "status" in gdf_shelters.columns:
        status = gdf_shelters["status"].to_numpy(dtype=object)
        for k, value in enumerate(status):
            if not pd.isna(value) and value not in FACILITY_STATUS:
                problems.append(
                    Problem(
                        label[k],
                        "status",
                        f"one of: {', '.join(FACILITY_STATUS)}",
                        repr(value),
                        "unknown_value",
                    )
                )
    if gdf_shelters.crs is None:
        problems.append(Problem(f"layer '{layer}'", "crs", "a defined CRS", "None", "crs"))
    if problems:
        raise LayerValidationError(layer, problems)
    has_registry = np.isfinite(registry) & use_registry
    capacity = np.where(has_registry, registry, computed).astype(np.int64)
    out = pd.DataFrame(
        {
            "name": (
                gdf_shelters["name"].to_numpy(dtype=object)
                if "name" in gdf_shelters.columns
                else ids
            ),
            "shelter_class": cls,
            "status": (
                gdf_shelters["status"].fillna("open").to_numpy(dtype=object)
                if "status" in gdf_shelters.columns
                else np.full(len(ids), "open", dtype=object)
            ),
            "effective_area_m2": area,
            "m2_per_person": m2,
            "computed_capacity_persons": computed.astype(np.int64),
            "registry_capacity_persons": pd.array(
                np.where(np.isfinite(registry), registry, np.nan), dtype="Int64"
            ),
            "capacity_persons": capacity,
            "capacity_source": np.where(has_registry, "registry", "computed").astype(object),
            "service_radius_m": radius,
            "fixed": np.array([classes[c].fixed for c in cls], dtype=bool),
            "m2_confirmed": np.array([classes[c].m2_per_person.confirmed for c in cls]),
            "radius_confirmed": np.array([classes[c].service_radius_m.confirmed for c in cls]),
        },
        index=pd.Index(ids, name="id", dtype=object),
    )
    out.attrs["standard"] = std.label
    return out


# --------------------------------------------------------------------------------------------
# Catchments on the network
# --------------------------------------------------------------------------------------------
@dataclass
class CatchmentResult:
    """Nearest and capacitated shelter catchments of every demand point.

    Attributes
    ----------
    demand
        Demand layer (WGS84), one row per record: id, population, aged_60_plus,
        ``nearest_shelter`` (nearest open shelter within its class's radius, None if none),
        ``nearest_distance_m``, ``nearest_time_min`` (at the adult speed),
        ``nearest_time_min_60_plus`` (at the elderly speed), ``shelter`` (the shelter taking most
        of its residents in the capacitated assignment), ``assigned_persons``,
        ``assigned_aged_60_plus``, ``unsheltered_persons``, ``unsheltered_aged_60_plus``,
        ``mean_time_min`` (of its assigned residents), ``split`` (sent to several shelters),
        ``reason`` (why some are unsheltered: ``not_snapped``, ``in_hazard``,
        ``beyond_radius``, ``capacity``; None when all are sheltered).
    shelters
        Every shelter (WGS84), indexed by id: the :func:`shelter_capacity` columns, ``in_use``
        and ``excluded_reason`` (closed, full, planned, hazard, not_snapped), and
        ``assigned_persons``, ``assigned_aged_60_plus``, ``load_factor``, ``max_time_min``,
        ``mean_time_min``, ``max_distance_m``, ``nearest_persons`` (residents for whom it is the
        nearest), ``nearest_load_factor``, ``overloaded`` (nearest_persons > capacity).
    assignment
        Long table: demand_id, shelter_id, group (``under_60``/``aged_60_plus``), persons,
        distance_m, time_min.
    unsheltered
        Demand points (WGS84) with unsheltered residents: id, unsheltered_persons,
        unsheltered_aged_60_plus, reason.
    not_snapped
        Demand points and shelters too far from a road: layer, id, distance_m.
    provenance
        How it was computed: standard, speeds and their sources, radii, statuses, barriers,
        hazards, objective, solver.
    home_xy, street_xy, crs
        Each demand record's position and the point where it meets its street (NaN where not
        snapped), in ``crs`` (the engine's metric CRS): what :func:`responsibility_areas` draws.
    hazard_geometry
        The union of the hazard polygons in ``crs`` (None without hazards).
    """

    demand: gpd.GeoDataFrame
    shelters: gpd.GeoDataFrame
    assignment: pd.DataFrame
    unsheltered: gpd.GeoDataFrame
    not_snapped: pd.DataFrame
    provenance: dict[str, Any] = field(default_factory=dict)
    home_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)), repr=False)
    street_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)), repr=False)
    crs: Any = None
    hazard_geometry: Any = field(default=None, repr=False)

    @property
    def summary(self) -> dict[str, Any]:
        """Headline numbers: residents, sheltered, unsheltered, beyond every radius, shelters."""
        d = self.demand
        reason = d["reason"]
        return {
            "population": int(d["population"].sum()),
            "sheltered_persons": int(d["assigned_persons"].sum()),
            "unsheltered_persons": int(d["unsheltered_persons"].sum()),
            "unsheltered_aged_60_plus": int(d["unsheltered_aged_60_plus"].sum()),
            "beyond_radius_persons": int(
                d["unsheltered_persons"][reason.isin(["beyond_radius", "in_hazard"])].sum()
            ),
            "shelters_in_use": int(self.shelters["in_use"].sum()),
            "shelters_overloaded": int(self.shelters["overloaded"].sum()),
            "objective_person_min": params.s_to_minutes(
                float(self.provenance.get("objective_person_s", 0.0))
            ),
        }


def _cost_per_metre(engine: Engine) -> float:
    """Engine cost units per metre of walk: 1 for ``length_m``, 1 / speed for ``time_s``."""
    weight = getattr(engine, "weight", "time_s")
    if weight == "length_m":
        return 1.0
    speed = getattr(engine, "walk_speed_mps", None)
    profile = getattr(engine, "profile", None)
    if weight == "time_s" and speed and profile in (None, "walk"):
        return 1.0 / float(speed)
    msg = (
        "shelter catchments need a walk network engine with weight='length_m', or "
        f"weight='time_s' and a walk_speed_mps; got weight={weight!r}, profile={profile!r}, "
        f"walk_speed_mps={speed!r}"
    )
    raise NetworkError(msg)


def _symmetric(engine: Engine) -> bool:
    """Whether every edge has a reverse edge of the same cost (a two-way walk network), so that
    distances from the shelters equal distances to them."""
    u, v, c = engine.u, engine.v, engine.cost
    a = np.lexsort((c, v, u))
    b = np.lexsort((c, u, v))
    return bool(
        np.array_equal(u[a], v[b])
        and np.array_equal(v[a], u[b])
        and np.allclose(c[a], c[b], rtol=1e-9, atol=1e-9)
    )


def _hazard_series(hazards: gpd.GeoDataFrame | gpd.GeoSeries | None) -> gpd.GeoSeries | None:
    """The hazard polygons, checked: every record a non-empty Polygon or MultiPolygon, a CRS."""
    if hazards is None:
        return None
    geoms = hazards.geometry if isinstance(hazards, gpd.GeoDataFrame) else hazards
    layer = _layer_name(hazards, "hazards")
    if isinstance(hazards, gpd.GeoDataFrame) and "id" in hazards.columns:
        ids = id_strings(hazards["id"])
    else:
        ids = np.array([str(i) for i in geoms.index], dtype=object)
    problems = []
    for rid, g in zip(ids, geoms.to_numpy(), strict=True):
        kind = "empty" if g is None or shapely.is_empty(g) else g.geom_type
        if kind not in ("Polygon", "MultiPolygon"):
            problems.append(
                Problem(f"hazard '{rid}'", "geometry", "a Polygon or MultiPolygon", kind)
            )
    if geoms.crs is None:
        problems.append(Problem(f"layer '{layer}'", "crs", "a defined CRS", "None", "crs"))
    if problems:
        raise LayerValidationError(layer, problems)
    return geoms


def _points_xy(gdf: gpd.GeoDataFrame, crs: CRS) -> np.ndarray:
    """Each record's point (a polygon's representative point) in ``crs``."""
    geoms = gdf.geometry.to_crs(crs).to_numpy()
    pts = np.where(shapely.get_type_id(geoms) == 0, geoms, shapely.point_on_surface(geoms))
    return shapely.get_coordinates(pts.astype(object)).reshape(-1, 2)


def _in_hazard_shelters(gdf: gpd.GeoDataFrame, hazard: Any, crs: CRS) -> np.ndarray:
    """Shelters a hazard disables: a point shelter inside it, a polygon shelter with at least
    HAZARD_SHELTER_SHARE of its area inside it."""
    geoms = gdf.geometry.to_crs(crs).to_numpy()
    area = shapely.area(geoms)
    poly = area > 0
    out = np.zeros(len(geoms), dtype=bool)
    if (~poly).any():
        out[~poly] = shapely.intersects(geoms[~poly], hazard)
    if poly.any():
        inside = shapely.area(shapely.intersection(geoms[poly], hazard))
        out[poly] = inside >= HAZARD_SHELTER_SHARE * area[poly]
    return out


def _objects(values: np.ndarray, index: pd.Index) -> pd.Series:
    """An object column that keeps None as None (pandas would infer a string dtype with NaN)."""
    return pd.Series(values, index=index, dtype=object)


def _first_per_group(group: np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """Index of the first element of each group after sorting by ``keys`` (last key primary
    after ``group``)."""
    order = np.lexsort((*keys, group))
    g = group[order]
    return order[np.r_[True, g[1:] != g[:-1]]] if len(g) else order


def catchments(
    gdf_demand: gpd.GeoDataFrame,
    gdf_shelters: gpd.GeoDataFrame,
    engine: Engine,
    *,
    adult_walk_speed_mps: float = ADULT_WALK_SPEED_MPS,
    elderly_walk_speed_mps: float = ELDERLY_WALK_SPEED_MPS,
    barriers: BarrierArg = None,
    hazards: gpd.GeoDataFrame | gpd.GeoSeries | None = None,
    standard: gm_standards.Standard | None = None,
    use_registry_capacity: bool = True,
    include_planned: bool = False,
    service_radius_m: Mapping[str, float] | None = None,
    max_snap_m: float = params.DEFAULT_MAX_SNAP_M,
) -> CatchmentResult:
    """Nearest and capacitated shelter catchments over the street network.

    Each demand point's residents walk to an open shelter within that shelter class's service
    radius (network walking distance, a hard limit). The nearest catchment ignores capacity; the
    capacitated one (:func:`capacitated_from_cost_matrix` on the same arcs) shelters as many as
    the capacities allow with the least person-weighted walking time, residents aged 60+ at
    ``elderly_walk_speed_mps`` and the others at ``adult_walk_speed_mps``.

    Parameters
    ----------
    gdf_demand
        Demand layer (points or blocks): id, population, aged_60_plus (integers >= 0).
    gdf_shelters
        Shelter layer: id, shelter_class, effective_area_m2, optional capacity_persons, status.
        Shelters whose status is closed or full (or planned, unless ``include_planned``) take
        nobody.
    engine
        Walk network engine (``weight="time_s"`` with its walking speed, or ``"length_m"``);
        distances are read off it, times are distance / the group's speed.
    adult_walk_speed_mps, elderly_walk_speed_mps
        Walking speeds of residents under 60 and aged 60+.
    barriers
        Closed or slowed roads (:class:`~geo_minzheng.engine.Barriers`: points, lines).
    hazards
        Hazard polygons (a flooded area): they close every street they touch and disable the
        shelters inside them; residents inside them who cannot get out are reported
        (``reason = "in_hazard"``).
    standard
        Shelter-class standard (default GB 51143-2015).
    use_registry_capacity
        Whether the layer's own ``capacity_persons`` overrides the computed capacity.
    include_planned
        Whether planned shelters take evacuees (to test a plan).
    service_radius_m
        Radius per shelter class (metres) instead of the standard's.
    max_snap_m
        Points farther from a road are reported in ``not_snapped`` (and never sheltered).
    """
    adult = params.check_walk_speed_mps(adult_walk_speed_mps, name="adult_walk_speed_mps")
    elderly = params.check_walk_speed_mps(elderly_walk_speed_mps, name="elderly_walk_speed_mps")
    ids = check_demand(gdf_demand, _layer_name(gdf_demand, "demand"))
    pop_f = _numbers(gdf_demand, "population")
    aged_f = _numbers(gdf_demand, "aged_60_plus")
    problems = []
    for col, vals in (("population", pop_f), ("aged_60_plus", aged_f)):
        for i in np.flatnonzero(vals != np.round(vals)):
            problems.append(
                Problem(f"demand '{ids[i]}'", col, "a whole number of persons", f"{vals[i]:g}")
            )
    if problems:
        raise LayerValidationError(_layer_name(gdf_demand, "demand"), problems)
    pop = pop_f.astype(np.int64)
    aged = aged_f.astype(np.int64)
    cap = shelter_capacity(gdf_shelters, standard=standard, use_registry=use_registry_capacity)
    if service_radius_m is not None:
        unknown = sorted(
            set(service_radius_m)
            - set(gm_standards.shelter_classes(standard=standard or gm_standards.load(STANDARD)))
        )
        if unknown:
            msg = f"service_radius_m names unknown shelter classes: {unknown}"
            raise ValueError(msg)
        for cls_code, r in service_radius_m.items():
            if not (math.isfinite(float(r)) and float(r) > 0):
                msg = f"service_radius_m['{cls_code}'] must be metres > 0, got {r!r}"
                raise ValueError(msg)
            cap.loc[cap["shelter_class"] == cls_code, "service_radius_m"] = float(r)
    hazard_geoms = _hazard_series(hazards)
    per_m = _cost_per_metre(engine)
    work = engine.crs

    # which shelters take evacuees
    allowed = set(SHELTERING_STATUSES) | ({"planned"} if include_planned else set())
    reason_ex = cap["status"].to_numpy(dtype=object).copy()  # why a shelter takes nobody
    reason_ex[cap["status"].isin(allowed).to_numpy()] = None
    hazard_union = None
    barrier_list: list[Barriers] = (
        [] if barriers is None else [barriers] if isinstance(barriers, Barriers) else list(barriers)
    )
    if hazard_geoms is not None and len(hazard_geoms):
        hazard_union = shapely.union_all(hazard_geoms.to_crs(work).to_numpy())
        hit = _in_hazard_shelters(gdf_shelters, hazard_union, work)
        reason_ex = np.where(hit & pd.isna(reason_ex), "hazard", reason_ex)
        barrier_list.append(Barriers.from_geodataframe(hazard_geoms, tolerance_m=0.0))
    use = pd.isna(reason_ex)

    dem = engine.snap(gdf_demand, id_field="id", max_snap_m=max_snap_m, checked_ids=ids)
    shel = engine.snap(gdf_shelters.iloc[np.flatnonzero(use)], id_field="id", max_snap_m=max_snap_m)
    shel_rows = np.flatnonzero(use)[shel.rows]  # shelter layer row of each snapped shelter
    far_shel = np.zeros(len(cap), dtype=bool)
    far_shel[np.flatnonzero(use)] = True
    far_shel[shel_rows] = False
    reason_ex = np.where(far_shel, "not_snapped", reason_ex)
    radius = cap["service_radius_m"].to_numpy(dtype=float)

    # walking distances within the largest radius: from the shelters when the network is
    # two-way (300 trees instead of 100,000), else from every demand point
    n, m = len(gdf_demand), len(cap)
    d_row = s_row = np.zeros(0, dtype=np.int64)
    dist = np.zeros(0)
    blist: BarrierArg = barrier_list or None
    if len(shel) and len(dem):
        cutoff = float(radius[shel_rows].max()) * per_m * (1 + 1e-9)
        if _symmetric(engine):
            od = engine.od_matrix(shel, dem, cutoff=cutoff, barriers=blist)
            s_pos, d_pos = od.origin_index, od.destination_index
        else:
            od = engine.od_matrix(dem, shel, cutoff=cutoff, barriers=blist)
            s_pos, d_pos = od.destination_index, od.origin_index
        s_row, d_row = shel_rows[s_pos], dem.rows[d_pos]
        dist = od.cost / per_m
        keep = dist <= radius[s_row] * (1 + 1e-9)
        s_row, d_row, dist = s_row[keep], d_row[keep], dist[keep]

    # nearest open shelter within its radius (uncapacitated)
    near = np.full(n, -1, dtype=np.int64)
    near_d = np.full(n, np.inf)
    if len(d_row):
        first = _first_per_group(d_row, s_row, dist)
        near[d_row[first]] = s_row[first]
        near_d[d_row[first]] = dist[first]

    # capacitated: rows 0..n-1 are residents under 60, n..2n-1 those aged 60+
    speeds = np.array([adult, elderly])
    rows = np.concatenate([d_row, d_row + n])
    cols = np.concatenate([s_row, s_row])
    dist2 = np.concatenate([dist, dist])
    time_s = dist2 / np.repeat(speeds, len(d_row))
    capacity = cap["capacity_persons"].to_numpy(dtype=np.int64) * use.astype(np.int64)
    capacity[far_shel] = 0
    res = _assign(rows, cols, time_s, np.concatenate([pop - aged, aged]), capacity, COST_STEP_S)
    group = (res.row >= n).astype(np.int64)
    dem_of = res.row % n
    arc_dist = res.cost * speeds[group]

    # per demand point
    assigned = np.bincount(dem_of, weights=res.persons, minlength=n).astype(np.int64)
    assigned_aged = np.bincount(
        dem_of[group == 1], weights=res.persons[group == 1], minlength=n
    ).astype(np.int64)
    person_s = np.bincount(dem_of, weights=res.persons * res.cost, minlength=n)
    pair = pd.DataFrame({"d": dem_of, "s": res.col, "p": res.persons, "t": res.cost})
    per_pair = pair.groupby(["d", "s"], sort=False).agg(p=("p", "sum"), t=("t", "min"))
    per_pair = per_pair.reset_index()
    primary = np.full(n, -1, dtype=np.int64)
    n_shel = np.zeros(n, dtype=np.int64)
    if len(per_pair):
        pd_, ps_ = per_pair["d"].to_numpy(), per_pair["s"].to_numpy()
        first = _first_per_group(pd_, ps_, per_pair["t"].to_numpy(), -per_pair["p"].to_numpy())
        primary[pd_[first]] = ps_[first]
        n_shel = np.bincount(pd_, minlength=n)
    unsheltered = pop - assigned
    unsheltered_aged = aged - assigned_aged
    snapped = np.zeros(n, dtype=bool)
    snapped[dem.rows] = True
    has_arc = np.zeros(n, dtype=bool)
    has_arc[d_row] = True
    home_xy = _points_xy(gdf_demand, work)
    in_hazard = np.zeros(n, dtype=bool)
    if hazard_union is not None:
        in_hazard = shapely.intersects(shapely.points(home_xy), hazard_union)
    reason = np.full(n, None, dtype=object)
    short = unsheltered > 0
    reason[short] = "capacity"
    reason[short & ~has_arc] = "beyond_radius"
    reason[short & ~has_arc & in_hazard] = "in_hazard"
    reason[short & ~snapped] = "not_snapped"

    shel_ids = cap.index.to_numpy(dtype=object)
    none_id = np.append(shel_ids, np.array([None], dtype=object))
    street_xy = np.full((n, 2), np.nan)
    street_xy[dem.rows] = dem.snapped_xy
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_t = np.where(
            assigned > 0, params.s_to_minutes(person_s / np.maximum(assigned, 1)), np.nan
        )
    demand_cols = {
        "id": ids,
        "population": pop,
        "aged_60_plus": aged,
        "nearest_shelter": _objects(none_id[near], gdf_demand.index),
        "nearest_distance_m": near_d,
        "nearest_time_min": params.s_to_minutes(near_d / adult),
        "nearest_time_min_60_plus": params.s_to_minutes(near_d / elderly),
        "shelter": _objects(none_id[primary], gdf_demand.index),
        "assigned_persons": assigned,
        "assigned_aged_60_plus": assigned_aged,
        "unsheltered_persons": unsheltered,
        "unsheltered_aged_60_plus": unsheltered_aged,
        "mean_time_min": mean_t,
        "split": n_shel > 1,
        "reason": _objects(reason, gdf_demand.index),
    }
    geometry = gdf_demand.geometry.to_crs(WGS84).to_numpy()
    demand_out = gpd.GeoDataFrame(
        pd.DataFrame(demand_cols, index=gdf_demand.index), geometry=geometry, crs=WGS84
    )

    # per shelter
    load = res.load
    load_aged = np.bincount(res.col[group == 1], weights=res.persons[group == 1], minlength=m)
    shel_person_s = np.bincount(res.col, weights=res.persons * res.cost, minlength=m)
    max_t = np.zeros(m)
    max_d = np.zeros(m)
    if len(res.col):
        np.maximum.at(max_t, res.col, res.cost)
        np.maximum.at(max_d, res.col, arc_dist)
    has_near = near >= 0
    near_load = np.bincount(near[has_near], weights=pop[has_near], minlength=m).astype(np.int64)
    cap_p = cap["capacity_persons"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        shelters_cols = {
            "in_use": pd.isna(reason_ex),
            "excluded_reason": reason_ex,
            "assigned_persons": load,
            "assigned_aged_60_plus": load_aged.astype(np.int64),
            "load_factor": np.where(cap_p > 0, load / cap_p, np.nan),
            "max_time_min": np.where(load > 0, params.s_to_minutes(max_t), np.nan),
            "mean_time_min": np.where(
                load > 0, params.s_to_minutes(shel_person_s / np.maximum(load, 1)), np.nan
            ),
            "max_distance_m": np.where(load > 0, max_d, np.nan),
            "nearest_persons": near_load,
            "nearest_load_factor": np.where(cap_p > 0, near_load / cap_p, np.nan),
            "overloaded": near_load > cap_p,
        }
    if "admin_code" in gdf_shelters.columns:
        shelters_cols["admin_code"] = gdf_shelters["admin_code"].to_numpy(dtype=object)
    shelters_out = gpd.GeoDataFrame(
        cap.assign(**shelters_cols),
        geometry=gdf_shelters.geometry.to_crs(WGS84).to_numpy(),
        crs=WGS84,
    )

    assignment = pd.DataFrame(
        {
            "demand_id": ids[dem_of],
            "shelter_id": shel_ids[res.col],
            "group": np.asarray(GROUPS, dtype=object)[group],
            "persons": res.persons,
            "distance_m": arc_dist,
            "time_min": params.s_to_minutes(res.cost),
        }
    )
    un = demand_out.loc[
        short, ["id", "unsheltered_persons", "unsheltered_aged_60_plus", "reason", "geometry"]
    ]
    far_parts = []
    if len(dem.too_far):
        far_parts.append(dem.too_far.assign(layer="demand"))
    if len(shel.too_far):
        far_parts.append(shel.too_far.assign(layer="shelters"))
    not_snapped = (
        pd.concat(far_parts, ignore_index=True)[["layer", "id", "distance_m"]]
        if far_parts
        else pd.DataFrame({"layer": [], "id": [], "distance_m": []})
    )
    provenance = {
        "standard": cap.attrs["standard"],
        "radius": "network walking distance per shelter class (hard limit)",
        "service_radius_m": {
            str(c): float(r)
            for c, r in cap.groupby("shelter_class")["service_radius_m"].first().items()
        },
        "adult_walk_speed_mps": adult,
        "adult_walk_speed_source": ADULT_WALK_SPEED_SOURCE,
        "elderly_walk_speed_mps": elderly,
        "elderly_walk_speed_source": ELDERLY_WALK_SPEED_SOURCE,
        "sheltering_statuses": sorted(allowed),
        "use_registry_capacity": use_registry_capacity,
        "barriers": len(barrier_list) - (hazard_union is not None),
        "hazards": 0 if hazard_geoms is None else len(hazard_geoms),
        "max_snap_m": max_snap_m,
        "solver": "OR-Tools SimpleMinCostFlow (max flow of min cost)",
        "cost_step_s": COST_STEP_S,
        "objective_person_s": res.objective,
        "engine_weight": getattr(engine, "weight", None),
    }
    demand_out.attrs = dict(gdf_demand.attrs) | {"shelters": provenance}
    return CatchmentResult(
        demand=demand_out,
        shelters=shelters_out,
        assignment=assignment,
        unsheltered=gpd.GeoDataFrame(un, geometry="geometry", crs=WGS84),
        not_snapped=not_snapped,
        provenance=provenance,
        home_xy=home_xy,
        street_xy=street_xy,
        crs=work,
        hazard_geometry=hazard_union,
    )


# --------------------------------------------------------------------------------------------
# Responsibility areas
# --------------------------------------------------------------------------------------------
def responsibility_areas(
    result: CatchmentResult, *, buffer_m: float = DEFAULT_AREA_BUFFER_M
) -> gpd.GeoDataFrame:
    """One polygon per shelter: the land of the residents it takes (责任区), never overlapping.

    Each demand record stands for the land around its home and around the point where it meets
    its street. The land is shared out by a Voronoi tessellation of those points (so two
    shelters' areas never overlap), together with filler points laid every ``buffer_m`` wherever
    no record is within ``buffer_m`` (their cells belong to nobody, which keeps each area within
    about ``buffer_m`` of its residents and streets) and the homes of unsheltered records (whose
    land belongs to nobody either). The cells are dissolved by the shelter that takes most of a
    record's residents (:attr:`CatchmentResult.demand`'s ``shelter``; a record split between
    shelters is drawn with its main one) and hazard polygons are cut out. The drawing method is
    this function alone: another can replace it on the same :class:`CatchmentResult`.

    Returns
    -------
    geopandas.GeoDataFrame
        WGS84, one row per shelter that takes anybody: shelter_id, assigned_persons, area_m2,
        geometry (Polygon or MultiPolygon).
    """
    if not (math.isfinite(buffer_m) and buffer_m > 0):
        msg = f"buffer_m must be metres > 0, got {buffer_m!r}"
        raise ValueError(msg)
    demand = result.demand
    label_id = demand["shelter"].to_numpy(dtype=object)
    has = pd.notna(label_id)
    columns = ["shelter_id", "assigned_persons", "area_m2"]
    if not has.any():
        return gpd.GeoDataFrame(
            pd.DataFrame({c: [] for c in columns}).assign(geometry=None),
            geometry="geometry",
            crs=WGS84,
        )
    shel_ids = result.shelters.index.to_numpy(dtype=object)
    lab = np.full(len(label_id), -1, dtype=np.int64)
    lab[has] = pd.Index(shel_ids).get_indexer(label_id[has])
    home_ok = np.isfinite(result.home_xy).all(axis=1)
    street_ok = np.isfinite(result.street_xy).all(axis=1) & has
    xy = np.concatenate([result.home_xy[home_ok], result.street_xy[street_ok]])
    gen_lab = np.concatenate([lab[home_ok], lab[street_ok]])
    # one generator per position (two records at one place: the first keeps it)
    _, first = np.unique(np.round(xy, 2), axis=0, return_index=True)
    first = np.sort(first)
    xy, gen_lab = xy[first], gen_lab[first]
    # filler points (nobody's land) every buffer_m where no generator is within buffer_m
    lo, hi = xy.min(axis=0) - 2 * buffer_m, xy.max(axis=0) + 2 * buffer_m
    gx, gy = np.meshgrid(np.arange(lo[0], hi[0], buffer_m), np.arange(lo[1], hi[1], buffer_m))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    gap, _ = cKDTree(xy).query(grid, distance_upper_bound=buffer_m)
    fill = grid[~np.isfinite(gap)]
    xy = np.concatenate([xy, fill])
    gen_lab = np.concatenate([gen_lab, np.full(len(fill), -1, dtype=np.int64)])
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(xy), ordered=True))
    order = np.argsort(gen_lab, kind="stable")
    order = order[gen_lab[order] >= 0]
    groups = np.split(order, np.flatnonzero(np.diff(gen_lab[order])) + 1)
    geoms = []
    labels = []
    for g in groups:
        try:  # Voronoi cells share their edges exactly: the fast coverage union applies
            poly = shapely.coverage_union_all(cells[g])
        except shapely.errors.GEOSException:  # pragma: no cover - a GEOS noding corner case
            poly = shapely.union_all(cells[g])
        if result.hazard_geometry is not None:
            poly = shapely.difference(poly, result.hazard_geometry)
        geoms.append(poly)
        labels.append(int(gen_lab[g[0]]))
    geoms_arr = np.asarray(geoms, dtype=object)
    load = result.shelters["assigned_persons"].to_numpy()
    out = gpd.GeoDataFrame(
        {
            "shelter_id": shel_ids[labels],
            "assigned_persons": load[labels],
            "area_m2": shapely.area(geoms_arr),
        },
        geometry=geoms_arr,
        crs=result.crs,
    )
    out.attrs["responsibility_areas"] = {
        "method": "Voronoi cells of homes and street points, dissolved by main shelter",
        "buffer_m": buffer_m,
    }
    return out.to_crs(WGS84)


# --------------------------------------------------------------------------------------------
# Checks a standard asks for
# --------------------------------------------------------------------------------------------
@dataclass
class ShelterChecks:
    """The checks of :func:`checks`.

    Attributes
    ----------
    units
        Per admin unit (``total`` first): population, aged_60_plus, shelters, fixed_shelters,
        fixed_capacity_persons, fixed_share, target_share, fixed_share_met, shortfall_persons,
        shelter_area_m2, area_per_resident_m2, unsheltered_persons, beyond_radius_persons,
        standard, confirmed.
    overloaded
        Shelters whose nearest residents outnumber their capacity: id, name, shelter_class,
        capacity_persons, nearest_persons, excess_persons.
    beyond_radius
        Demand points (WGS84) with residents beyond every open shelter's service radius (or cut
        off inside a hazard, or too far from a road): id, population, aged_60_plus, reason.
    """

    units: pd.DataFrame
    overloaded: pd.DataFrame
    beyond_radius: gpd.GeoDataFrame


def checks(
    result: CatchmentResult,
    gdf_units: gpd.GeoDataFrame | None = None,
    *,
    region: str = "national",
    standard: gm_standards.Standard | None = None,
) -> ShelterChecks:
    """Shelter provision checks per admin unit and in total.

    * fixed shelters (short/medium/long-term and central) in use hold at least the share of the
      unit's population that ``shelter_provision.toml`` sets for ``region`` (15 % nationally,
      clause 4.2.2 of the code text cited there); the demand layer's population stands for the
      planned population;
    * effective shelter area per resident;
    * overloaded shelters (more nearest residents than places);
    * residents beyond every service radius.

    Parameters
    ----------
    gdf_units
        Admin units; without them the records' ``admin_code`` values are the units.
    region
        Which share applies: ``national``, ``guangdong``, ``guangdong_city_centre``.
    standard
        The provision standard (default ``shelter_provision``).
    """
    share = gm_standards.fixed_shelter_share(region, standard=standard)
    target = float(share.value)
    demand = result.demand
    shel = result.shelters[result.shelters["in_use"]]
    rows, unit_no, info = unit_membership(demand, gdf_units)
    keep = ["id", "geometry"] + (["admin_code"] if "admin_code" in shel.columns else [])
    shel_layer = gpd.GeoDataFrame(
        shel.reset_index()[keep], geometry="geometry", crs=result.shelters.crs
    )
    srows, sunit, sinfo = unit_membership(shel_layer, gdf_units)
    # shelters may name units the demand does not (no residents there): align on the adcode
    codes = pd.Index(pd.unique(np.concatenate([info["adcode"], sinfo["adcode"]])))
    names = pd.concat([info, sinfo]).drop_duplicates("adcode").set_index("adcode")
    k = len(codes)
    dmap = codes.get_indexer(info["adcode"])[unit_no] if len(unit_no) else unit_no
    smap = codes.get_indexer(sinfo["adcode"])[sunit] if len(sunit) else sunit

    def per_unit(where: np.ndarray, of: np.ndarray, w: np.ndarray) -> np.ndarray:
        total = float(w.sum())
        return np.r_[total, np.bincount(where, weights=w[of], minlength=k)]

    pop = demand["population"].to_numpy(float)
    aged = demand["aged_60_plus"].to_numpy(float)
    unsh = demand["unsheltered_persons"].to_numpy(float)
    beyond_mask = demand["reason"].isin(["beyond_radius", "in_hazard", "not_snapped"]).to_numpy()
    beyond = np.where(beyond_mask, unsh, 0.0)
    fixed_cap = (shel["capacity_persons"] * shel["fixed"]).to_numpy(float)
    area = shel["effective_area_m2"].to_numpy(float)
    ones = np.ones(len(shel))
    fixed_ones = shel["fixed"].to_numpy(float)
    cols = {
        "population": per_unit(dmap, rows, pop),
        "aged_60_plus": per_unit(dmap, rows, aged),
        "shelters": per_unit(smap, srows, ones),
        "fixed_shelters": per_unit(smap, srows, fixed_ones),
        "fixed_capacity_persons": per_unit(smap, srows, fixed_cap),
        "shelter_area_m2": per_unit(smap, srows, area),
        "unsheltered_persons": per_unit(dmap, rows, unsh),
        "beyond_radius_persons": per_unit(dmap, rows, beyond),
    }
    table = pd.DataFrame(
        {
            "unit": ["total", *codes.astype(str)],
            "unit_name": ["合计", *[str(names["name"].get(c, c)) for c in codes]],
            "level": [None, *[names["level"].get(c) for c in codes]],
        }
    )
    for name, vals in cols.items():
        table[name] = np.round(vals).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        table["fixed_share"] = table["fixed_capacity_persons"] / table["population"]
        table["area_per_resident_m2"] = table["shelter_area_m2"] / table["population"]
    table["target_share"] = target
    need = np.ceil(target * table["population"].to_numpy(float) - 1e-9)
    table["fixed_share_met"] = table["fixed_capacity_persons"].to_numpy(float) >= need
    table["shortfall_persons"] = np.maximum(
        0, need - table["fixed_capacity_persons"].to_numpy(float)
    ).astype(np.int64)
    table["standard"] = share.source
    table["confirmed"] = share.confirmed
    over = result.shelters[result.shelters["overloaded"]]
    overloaded = pd.DataFrame(
        {
            "id": over.index.to_numpy(dtype=object),
            "name": over["name"].to_numpy(dtype=object),
            "shelter_class": over["shelter_class"].to_numpy(dtype=object),
            "capacity_persons": over["capacity_persons"].to_numpy(),
            "nearest_persons": over["nearest_persons"].to_numpy(),
            "excess_persons": (over["nearest_persons"] - over["capacity_persons"]).to_numpy(),
        }
    ).sort_values("excess_persons", ascending=False, ignore_index=True)
    far = demand.loc[beyond_mask, ["id", "population", "aged_60_plus", "reason", "geometry"]]
    return ShelterChecks(
        units=table,
        overloaded=overloaded,
        beyond_radius=gpd.GeoDataFrame(far, geometry="geometry", crs=WGS84),
    )


# --------------------------------------------------------------------------------------------
# Before / after
# --------------------------------------------------------------------------------------------
@dataclass
class Comparison:
    """What changes between two catchment runs (e.g. before and after a flood).

    Attributes
    ----------
    moved
        Demand points whose residents change shelter: id, shelter_before, shelter_after,
        moved_persons, time_min_before, time_min_after.
    lost
        Demand points (WGS84) whose residents lose their place: id, lost_persons,
        lost_aged_60_plus, reason (after), geometry.
    shelters
        Per shelter: capacity_before, capacity_after, load_before, load_after, nearest_before,
        nearest_after, in_use_before, in_use_after, excluded_reason_after, full_after,
        overflows (more nearest residents than places after), newly_overflowing.
    summary
        moved_persons, lost_persons, lost_aged_60_plus, shelters_disabled, shelters_overflowing.
    """

    moved: pd.DataFrame
    lost: gpd.GeoDataFrame
    shelters: pd.DataFrame
    summary: dict[str, int]


def compare(before: CatchmentResult, after: CatchmentResult) -> Comparison:
    """Who changes shelter, who loses one and which shelters overflow between two runs on the
    same demand and shelter layers."""
    b, a = before.demand, after.demand
    if not np.array_equal(b["id"].to_numpy(), a["id"].to_numpy()):
        msg = "compare needs two runs on the same demand layer (ids differ)"
        raise ValueError(msg)
    if not before.shelters.index.equals(after.shelters.index):
        msg = "compare needs two runs on the same shelter layer (ids differ)"
        raise ValueError(msg)
    fb = before.assignment.groupby(["demand_id", "shelter_id"])["persons"].sum()
    fa = after.assignment.groupby(["demand_id", "shelter_id"])["persons"].sum()
    both = pd.concat([fb.rename("b"), fa.rename("a")], axis=1).fillna(0)
    kept = np.minimum(both["b"], both["a"]).groupby(level=0).sum()
    ids = b["id"].astype(str)
    kept_d = kept.reindex(ids).fillna(0).to_numpy()
    ab = b["assigned_persons"].to_numpy()
    aa = a["assigned_persons"].to_numpy()
    moved_n = (np.minimum(ab, aa) - kept_d).astype(np.int64)
    lost_n = np.maximum(
        0, a["unsheltered_persons"].to_numpy() - b["unsheltered_persons"].to_numpy()
    )
    lost_aged = np.maximum(
        0, a["unsheltered_aged_60_plus"].to_numpy() - b["unsheltered_aged_60_plus"].to_numpy()
    )
    mv = moved_n > 0
    moved = pd.DataFrame(
        {
            "id": ids.to_numpy()[mv],
            "shelter_before": b["shelter"].to_numpy()[mv],
            "shelter_after": a["shelter"].to_numpy()[mv],
            "moved_persons": moved_n[mv],
            "time_min_before": b["mean_time_min"].to_numpy()[mv],
            "time_min_after": a["mean_time_min"].to_numpy()[mv],
        }
    )
    ls = lost_n > 0
    lost = gpd.GeoDataFrame(
        {
            "id": ids.to_numpy()[ls],
            "lost_persons": lost_n[ls].astype(np.int64),
            "lost_aged_60_plus": lost_aged[ls].astype(np.int64),
            "reason": a["reason"].to_numpy()[ls],
        },
        geometry=a.geometry.to_numpy()[ls],
        crs=WGS84,
    )
    sb, sa = before.shelters, after.shelters
    cap_a = sa["capacity_persons"].to_numpy()
    over_b = sb["overloaded"].to_numpy() & sb["in_use"].to_numpy()
    over_a = sa["overloaded"].to_numpy() & sa["in_use"].to_numpy()
    shelters = pd.DataFrame(
        {
            "capacity_before": sb["capacity_persons"].to_numpy(),
            "capacity_after": cap_a,
            "load_before": sb["assigned_persons"].to_numpy(),
            "load_after": sa["assigned_persons"].to_numpy(),
            "nearest_before": sb["nearest_persons"].to_numpy(),
            "nearest_after": sa["nearest_persons"].to_numpy(),
            "in_use_before": sb["in_use"].to_numpy(),
            "in_use_after": sa["in_use"].to_numpy(),
            "excluded_reason_after": sa["excluded_reason"].to_numpy(),
            "full_after": sa["in_use"].to_numpy() & (sa["assigned_persons"].to_numpy() >= cap_a),
            "overflows": over_a,
            "newly_overflowing": over_a & ~over_b,
        },
        index=sa.index,
    )
    summary = {
        "moved_persons": int(moved_n.sum()),
        "lost_persons": int(lost_n.sum()),
        "lost_aged_60_plus": int(lost_aged.sum()),
        "shelters_disabled": int((shelters["in_use_before"] & ~shelters["in_use_after"]).sum()),
        "shelters_overflowing": int(over_a.sum()),
    }
    return Comparison(moved=moved, lost=lost, shelters=shelters, summary=summary)
