"""Relief-material allocation and vehicle routing on open roads (救灾物资调运).

Which depot sends how much of which item to which shelter, on which vehicle, by which open road:

* :func:`item_norms` and :func:`needs`: need per shelter and item = sheltered persons x the
  per-person (daily) norm x days, or one per household, from ``standards/relief_norms.toml``
  (every number cited, with a ``confirmed`` flag), with unit weight and volume.
* :func:`depot_stock`: stock per depot and item, the depot's own minimum reserve (a
  ``reserve_<item>`` column, else ``reserve_share`` of the stock) that allocation never touches.
* :func:`allocate_from_cost_matrix`: the exact allocation over a depot x shelter cost matrix, one
  min-cost flow per item (OR-Tools ``SimpleMinCostFlow``, compiled network simplex): least
  tonne-minutes on the drive network while stock lasts. When stock is short the shortage is shared
  by :data:`PRIORITY_RULE`: residents aged 60+ are served before the others, and within each group
  every shelter gets the same share of its need, in steps of ``1 / share_steps``, before any
  shelter gets the next step; within a step the stock goes where it costs the fewest
  tonne-minutes. The rule is exact (lexicographic penalties on unmet units, each step's penalty
  larger than any trip).
* :func:`tours_from_cost_matrix`: vehicle tours from each depot over a travel-time matrix with
  PyVRP (hybrid genetic search with local search, compiled): capacities in kilograms and litres
  of load space, a shift length, a top speed per fleet (each road at the lower of its car speed
  and the vehicle's), several stops per trip and several trips per shift (the vehicle
  reloads at its depot), split deliveries (a shelter's load is cut into pieces that each fit the
  smallest vehicle, and several vehicles may carry them). Measured against OR-Tools routing and
  VROOM on the CVRPLIB set A instances (``benchmarks/relief.py``, docs/relief.md), PyVRP was the
  best of the three and is the one kept.
* :func:`plan`: the wrapper on layers and the drive :class:`~geo_minzheng.engine.Engine`, with
  closed roads and flooded polygons applied to allocation and tours alike, route geometry on the
  road network, and shelters or depots that cannot take part reported with the reason;
  :func:`compare` says what a barrier changed; :func:`dispatch_sheets` builds one zh-CN sheet per
  vehicle (出发库, 车辆, 装载明细, 途经避难场所及顺序, 里程, 预计到达时间).

Allocation is exact for the given needs and stock; tours are heuristic (PyVRP gives no optimality
proof). A depot's tours carry exactly what allocation sent from it, so a multi-depot plan is one
routing problem per depot, each with that depot's own fleet.
"""

from __future__ import annotations

import datetime as dt
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

from geo_minzheng import params
from geo_minzheng import standards as gm_standards
from geo_minzheng._errors import (
    CapacityError,
    LayerValidationError,
    NetworkError,
    Problem,
    SolverError,
    UnknownIdError,
)
from geo_minzheng.engine import Barriers, Engine, id_strings
from geo_minzheng.kinds import FACILITY_STATUS, IN_SERVICE_STATUSES, RELIEF_ITEMS

#: The norms file (``standards/relief_norms.toml``).
NORMS = "relief_norms"
#: What one norm quantity is counted per.
BASES = ("person_day", "person", "household")
#: How a shortage is shared (see the module docstring).
PRIORITY_RULE = (
    "aged_60_plus_first, equal shares: the needs of residents aged 60+ before the others; within "
    "each group every shelter gets the same share of its need, in steps of 1/share_steps, before "
    "any gets the next step; within a step, least tonne-minutes"
)
PRIORITY_RULE_ZH = (
    "物资不足时：先满足60岁及以上居民的需要，再满足其他居民；同一人群内各避难场所按需要量的同一比例"
    "分步（每步 1/分步数）分配，所有场所得到本步后才分配下一步；同一步内按吨·分钟最少分配"
)
#: Depot statuses whose stock may be sent (the one open-facility rule).
SENDING_STATUSES = tuple(sorted(IN_SERVICE_STATUSES))
#: Costs are rounded to whole seconds for the integer flow solver.
COST_STEP_S = 1.0
#: A shelter inside a hazard polygon by at least this share of its area gets no deliveries.
HAZARD_SHARE = 0.5
#: Why a shelter gets nothing, or a depot sends nothing (zh, en).
REASONS = {
    "not_snapped": ("远离车行道路", "too far from a drivable road"),
    "in_hazard": ("位于灾害影响区内", "inside a hazard area"),
    "cut_off": ("道路中断，无法通行", "cut off: no open road to or from it"),
    "no_depot": ("没有可发货的储备库", "no depot can send"),
    "closed": ("储备库未启用", "depot not in service"),
    "no_stock": ("可调用库存为零", "no stock above the reserve"),
    "stock": ("库存不足", "not enough stock"),
    "fleet": ("车辆运力或班次时长不足", "not enough vehicles or shift time"),
}
WGS84 = CRS.from_epsg(4326)
_MAX_SAFE = 2**62


# --------------------------------------------------------------------------------------------
# Norms and needs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ItemNorm:
    """One relief item: labels, counting unit, what its norm counts per, norm, weight and volume.

    ``needed`` is False for an item that is stocked but that no norm asks for.
    """

    item: str
    label_zh: str
    label_en: str
    unit_zh: str
    basis: str
    needed: bool
    quantity: gm_standards.Value
    unit_weight_kg: gm_standards.Value
    unit_volume_m3: gm_standards.Value

    def label(self, lang: str = "zh") -> str:
        """The item's name in ``lang``."""
        return self.label_zh if lang == "zh" else self.label_en


def item_norms(*, standard: gm_standards.Standard | None = None) -> dict[str, ItemNorm]:
    """Every item of the norms file, keyed by the depot layer's item codes (``stock_<item>``).

    Raises
    ------
    StandardError
        When an item is not a depot item (:data:`geo_minzheng.kinds.RELIEF_ITEMS`), its basis is
        unknown, or a weight or volume is not > 0.
    """
    std = standard or gm_standards.load(NORMS)
    out: dict[str, ItemNorm] = {}
    problems = []
    for code, node in std.section("item").items():
        if code not in RELIEF_ITEMS:
            problems.append(f"item.{code}: not a depot item ({', '.join(RELIEF_ITEMS)})")
            continue
        basis = str(node.get("basis"))
        if basis not in BASES:
            problems.append(f"item.{code}.basis must be one of {', '.join(BASES)}, got {basis!r}")
            continue
        norm = ItemNorm(
            item=code,
            label_zh=str(node.get("label_zh", RELIEF_ITEMS[code][0])),
            label_en=str(node.get("label_en", RELIEF_ITEMS[code][1])),
            unit_zh=str(node.get("unit_zh", RELIEF_ITEMS[code][2])),
            basis=basis,
            needed=bool(node.get("needed", True)),
            quantity=std.get(f"item.{code}.quantity"),
            unit_weight_kg=std.get(f"item.{code}.unit_weight_kg"),
            unit_volume_m3=std.get(f"item.{code}.unit_volume_m3"),
        )
        for name in ("unit_weight_kg", "unit_volume_m3"):
            value = float(getattr(norm, name).value)
            if not (math.isfinite(value) and value > 0):
                problems.append(f"item.{code}.{name} must be > 0, got {value}")
        if float(norm.quantity.value) < 0:
            problems.append(f"item.{code}.quantity must be >= 0, got {norm.quantity.value}")
        out[code] = norm
    if problems:
        msg = f"relief norms '{std.label}': " + "; ".join(problems)
        raise gm_standards.StandardError(msg)
    return out


def needed_items(norms: Mapping[str, ItemNorm] | None = None) -> tuple[str, ...]:
    """The items a norm asks for (``needed``), in the depot layer's order."""
    norms = norms or item_norms()
    return tuple(code for code in RELIEF_ITEMS if code in norms and norms[code].needed)


def check_items(items: Sequence[str] | None, norms: Mapping[str, ItemNorm]) -> tuple[str, ...]:
    """``items`` checked against the norms (ValueError naming an unknown one); None: the needed."""
    if items is None:
        return needed_items(norms)
    chosen = tuple(dict.fromkeys(items))
    unknown = [i for i in chosen if i not in norms]
    if unknown or not chosen:
        msg = f"items must be some of {', '.join(norms)}, got {list(items)!r}"
        raise ValueError(msg)
    return chosen


def needs(
    sheltered: pd.DataFrame,
    *,
    days: float = params.DEFAULT_RELIEF_DAYS,
    items: Sequence[str] | None = None,
    norms: Mapping[str, ItemNorm] | None = None,
    persons_per_household: float | None = None,
) -> pd.DataFrame:
    """Need per shelter and item, in the item's counting unit (whole units, rounded up).

    Parameters
    ----------
    sheltered
        Indexed by shelter id: ``persons`` and ``aged_60_plus`` (whole numbers >= 0, aged <=
        persons), e.g. :func:`sheltered_from_catchments`.
    days
        Days the supplies must last (person-day items).
    items
        Items to plan (default: every item with a norm, :func:`needed_items`).
    norms
        The item norms (default :func:`item_norms`).
    persons_per_household
        For per-household items (default: the 2020 census figure, 2.62).

    Returns
    -------
    pandas.DataFrame
        Long table: shelter_id, item, need, need_aged (the part for residents aged 60+, their
        share of the persons, rounded up), weight_kg, volume_m3.

    Raises
    ------
    LayerValidationError
        Listing every shelter with a negative or fractional count, or more aged than persons.
    """
    norms = dict(norms or item_norms())
    chosen = check_items(items, norms)
    days = params.check_relief_days(days)
    pph = float(
        persons_per_household
        if persons_per_household is not None
        else gm_standards.persons_per_household().value
    )
    if not (math.isfinite(pph) and pph > 0):
        msg = f"persons_per_household must be > 0, got {persons_per_household!r}"
        raise ValueError(msg)
    ids, persons, aged = _sheltered_arrays(sheltered)
    rows = []
    for code in chosen:
        norm = norms[code]
        q = float(norm.quantity.value)
        raw = {
            "person_day": persons * q * days,
            "person": persons * q,
            "household": persons / pph * q,
        }[norm.basis]
        need = np.ceil(np.round(raw, 9)).astype(np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(persons > 0, aged / np.maximum(persons, 1), 0.0)
        need_aged = np.minimum(need, np.ceil(np.round(need * share, 9)).astype(np.int64))
        rows.append(
            pd.DataFrame(
                {
                    "shelter_id": ids,
                    "item": code,
                    "need": need,
                    "need_aged": need_aged,
                    "weight_kg": need * float(norm.unit_weight_kg.value),
                    "volume_m3": need * float(norm.unit_volume_m3.value),
                }
            )
        )
    out = pd.concat(rows, ignore_index=True)
    out.attrs["relief_needs"] = {
        "days": days,
        "persons_per_household": pph,
        "items": list(chosen),
        "norms": {c: _cite(norms[c].quantity) for c in chosen},
    }
    return out


def _cite(value: gm_standards.Value) -> dict[str, Any]:
    return {
        "value": value.value,
        "unit": value.unit,
        "source": value.source,
        "confirmed": value.confirmed,
    }


def _found(value: Any) -> str:
    """A value as a message shows it: numbers plainly (-5, not np.float64(-5.0))."""
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        return f"{float(value):g}"
    return repr(value)


def _sheltered_arrays(sheltered: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shelter ids, persons and aged 60+ as arrays, every problem listed at once."""
    missing = [c for c in ("persons", "aged_60_plus") if c not in sheltered.columns]
    if missing:
        problems = [Problem("sheltered", c, "a column", "missing", "missing") for c in missing]
        msg = "sheltered"
        raise LayerValidationError(msg, problems)
    ids = id_strings(pd.Series(sheltered.index, dtype=object))
    persons = pd.to_numeric(sheltered["persons"], errors="coerce").to_numpy(float)
    aged = pd.to_numeric(sheltered["aged_60_plus"], errors="coerce").to_numpy(float)
    problems = []
    valid = {}
    for name, values in (("persons", persons), ("aged_60_plus", aged)):
        bad = ~np.isfinite(values) | (values < 0) | (values != np.round(values))
        valid[name] = ~bad
        for i in np.flatnonzero(bad):
            raw = sheltered[name].iat[i]
            problems.append(
                Problem(f"shelter '{ids[i]}'", name, "a whole number of persons >= 0", _found(raw))
            )
    over = valid["persons"] & valid["aged_60_plus"] & (aged > persons)
    for i in np.flatnonzero(over):
        problems.append(
            Problem(
                f"shelter '{ids[i]}'",
                "aged_60_plus",
                f"<= persons ({persons[i]:g})",
                f"{aged[i]:g}",
                "inconsistent",
            )
        )
    dup = pd.Series(ids, dtype=object).duplicated().to_numpy()
    for i in np.flatnonzero(dup):
        problems.append(Problem(f"shelter '{ids[i]}'", "id", "unique", "duplicate", "duplicate"))
    if problems:
        msg = "sheltered"
        raise LayerValidationError(msg, problems)
    return ids, persons.astype(np.int64), aged.astype(np.int64)


def sheltered_from_catchments(gdf_shelters: pd.DataFrame) -> pd.DataFrame:
    """Persons and aged 60+ per shelter from a shelter run
    (:attr:`geo_minzheng.shelters.CatchmentResult.shelters`: ``assigned_persons``,
    ``assigned_aged_60_plus``), indexed by shelter id."""
    for column in ("assigned_persons", "assigned_aged_60_plus"):
        if column not in gdf_shelters.columns:
            msg = f"shelter catchments need a '{column}' column (from shelters.catchments)"
            raise ValueError(msg)
    out = pd.DataFrame(
        {
            "persons": gdf_shelters["assigned_persons"].to_numpy(),
            "aged_60_plus": gdf_shelters["assigned_aged_60_plus"].to_numpy(),
        },
        index=pd.Index(id_strings(pd.Series(gdf_shelters.index, dtype=object)), name="id"),
    )
    out.attrs["source"] = "shelter catchments (assigned_persons, assigned_aged_60_plus)"
    return out


def sheltered_from_registry(
    gdf_shelters: gpd.GeoDataFrame,
    *,
    persons_field: str = params.DEFAULT_OCCUPANCY_FIELD,
    aged_field: str | None = params.DEFAULT_OCCUPANCY_AGED_FIELD,
) -> pd.DataFrame:
    """Persons per shelter from the registry's own occupancy field (and aged 60+, when the
    registry counts them; 0 otherwise), indexed by shelter id.

    Raises
    ------
    LayerValidationError
        When the layer has no ``persons_field`` or a value is not a whole number >= 0.
    """
    layer = str(gdf_shelters.attrs.get("layer", "shelters"))
    if persons_field not in gdf_shelters.columns:
        problems = [
            Problem(f"layer '{layer}'", persons_field, "an occupancy column", "missing", "missing")
        ]
        raise LayerValidationError(layer, problems)
    ids = id_strings(gdf_shelters["id"])
    persons = gdf_shelters[persons_field].fillna(0).to_numpy()
    aged = (
        gdf_shelters[aged_field].fillna(0).to_numpy()
        if aged_field and aged_field in gdf_shelters.columns
        else np.zeros(len(ids), dtype=np.int64)
    )
    out = pd.DataFrame(
        {"persons": persons, "aged_60_plus": aged}, index=pd.Index(ids, name="id", dtype=object)
    )
    try:
        _sheltered_arrays(out)
    except LayerValidationError as exc:
        fixed = [
            Problem(p.record, persons_field if p.field == "persons" else p.field, p.expected,
                    p.found, p.code)
            for p in exc.problems
        ]  # fmt: skip
        raise LayerValidationError(layer, fixed) from None
    out.attrs["source"] = f"registry field '{persons_field}'"
    return out


# --------------------------------------------------------------------------------------------
# Stock
# --------------------------------------------------------------------------------------------
def depot_stock(
    gdf_depots: gpd.GeoDataFrame,
    *,
    items: Sequence[str],
    reserve_share: float = params.DEFAULT_RESERVE_SHARE,
) -> pd.DataFrame:
    """Stock, the depot's minimum reserve and what may be sent, per depot and item.

    The reserve is the layer's ``reserve_<item>`` where given, else ``reserve_share`` of the stock
    rounded up; ``available = stock - reserve`` (0 for a depot that is not in service:
    :data:`SENDING_STATUSES`).

    Returns
    -------
    pandas.DataFrame
        Long table: depot_id, name, level, status, item, stock, reserve, available.

    Raises
    ------
    LayerValidationError
        Listing every negative or fractional stock or reserve, a reserve above the stock, a
        duplicate id, an unknown status.
    """
    layer = str(gdf_depots.attrs.get("layer", "depots"))
    share = params.check_reserve_share(reserve_share)
    if "id" not in gdf_depots.columns:
        raise LayerValidationError(
            layer, [Problem(f"layer '{layer}'", "id", "a column", "missing")]
        )
    ids = id_strings(gdf_depots["id"])
    problems = []
    for i in np.flatnonzero(pd.Series(ids, dtype=object).duplicated().to_numpy()):
        problems.append(Problem(f"depot '{ids[i]}'", "id", "unique", "duplicate", "duplicate"))
    status = (
        gdf_depots["status"].fillna("open").to_numpy(dtype=object)
        if "status" in gdf_depots.columns
        else np.full(len(ids), "open", dtype=object)
    )
    for pos, value in enumerate(status):
        if value not in FACILITY_STATUS:
            problems.append(
                Problem(f"depot '{ids[pos]}'", "status", f"one of: {', '.join(FACILITY_STATUS)}",
                        repr(value), "unknown_value")
            )  # fmt: skip
    sending = np.isin(status, SENDING_STATUSES)
    rows = []
    for code in items:
        column = f"stock_{code}"
        raw = (
            gdf_depots[column]
            if column in gdf_depots.columns
            else pd.Series(0, index=gdf_depots.index)
        )
        stock = pd.to_numeric(raw, errors="coerce").fillna(0).to_numpy(float)
        bad = ~np.isfinite(stock) | (stock < 0) | (stock != np.floor(stock))
        for i in np.flatnonzero(bad):
            problems.append(
                Problem(
                    f"depot '{ids[i]}'", column, "a whole number of units >= 0", _found(raw.iat[i])
                )
            )
        rcol = f"reserve_{code}"
        if rcol in gdf_depots.columns:
            rraw = gdf_depots[rcol]
            given = rraw.notna().to_numpy()
            rval = pd.to_numeric(rraw, errors="coerce").to_numpy(float)
            reserve = np.where(given, rval, np.ceil(stock * share - 1e-9))
            rbad = given & (~np.isfinite(rval) | (rval < 0) | (rval != np.floor(rval)))
            for i in np.flatnonzero(rbad):
                problems.append(
                    Problem(f"depot '{ids[i]}'", rcol, "a whole number of units >= 0",
                            _found(rraw.iat[i]))
                )  # fmt: skip
            over = given & ~rbad & ~bad & (rval > stock)
            for i in np.flatnonzero(over):
                problems.append(
                    Problem(f"depot '{ids[i]}'", rcol, f"<= {column} ({stock[i]:g})",
                            f"{rval[i]:g}", "inconsistent")
                )  # fmt: skip
        else:
            reserve = np.ceil(stock * share - 1e-9)
        stock_i = np.where(bad, 0, stock).astype(np.int64)
        reserve_i = np.clip(np.nan_to_num(reserve), 0, stock_i).astype(np.int64)
        rows.append(
            pd.DataFrame(
                {
                    "depot_id": ids,
                    "item": code,
                    "stock": stock_i,
                    "reserve": reserve_i,
                    "available": np.where(sending, stock_i - reserve_i, 0),
                }
            )
        )
    if problems:
        raise LayerValidationError(layer, problems)
    out = pd.concat(rows, ignore_index=True)
    info = pd.DataFrame(
        {
            "depot_id": ids,
            "name": gdf_depots["name"].to_numpy(dtype=object) if "name" in gdf_depots else ids,
            "level": gdf_depots["level"].to_numpy(dtype=object) if "level" in gdf_depots else None,
            "status": status,
        }
    )
    out = info.merge(out, on="depot_id", how="right")
    out.attrs["reserve_share"] = share
    return out


# --------------------------------------------------------------------------------------------
# Allocation: the pure core over a cost matrix
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AllocationResult:
    """An exact allocation in matrix terms.

    Attributes
    ----------
    depot, shelter, item, quantity, cost
        One entry per used (depot row, shelter column, item column) with ``quantity > 0``
        units and the unrounded cost of one unit's trip (sorted by item, depot, shelter).
    delivered, unmet, unmet_priority
        ``[n_shelters, n_items]``: units sent, units short, and how many of the short units are
        the priority group's (aged 60+).
    used
        ``[n_depots, n_items]`` units sent from each depot.
    objective
        Sum of quantity x cost x unit weight (tonne-minutes when costs are minutes and weights
        tonnes).
    cost_step
        Costs were rounded to multiples of this for the integer solver.
    status
        ``"Optimal"`` (anything else raises :class:`~geo_minzheng._errors.SolverError`).
    """

    depot: np.ndarray
    shelter: np.ndarray
    item: np.ndarray
    quantity: np.ndarray
    cost: np.ndarray
    delivered: np.ndarray
    unmet: np.ndarray
    unmet_priority: np.ndarray
    used: np.ndarray
    objective: float
    cost_step: float
    status: str

    def to_frame(self) -> pd.DataFrame:
        """Long table ``[depot, shelter, item, quantity, cost]``."""
        return pd.DataFrame(
            {
                "depot": self.depot,
                "shelter": self.shelter,
                "item": self.item,
                "quantity": self.quantity,
                "cost": self.cost,
            }
        )


def _counts(values: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Whole units as int64; ValueError naming ``name`` and the first bad cell otherwise."""
    arr = np.asarray(values, dtype=float)
    if arr.shape != shape:
        msg = f"{name} must have shape {shape}, got {arr.shape}"
        raise ValueError(msg)
    bad = ~np.isfinite(arr) | (arr < 0) | (arr != np.round(arr))
    if bad.any():
        where = tuple(int(k) for k in np.argwhere(bad)[0])
        msg = f"{name}{list(where)} must be a whole number >= 0, got {arr[where]:g}"
        raise ValueError(msg)
    return arr.astype(np.int64)


def _steps(total: np.ndarray, k: int) -> np.ndarray:
    """``total`` split into ``k`` whole steps per row, the cumulative sums rounding up
    (``[n, k]``; step t holds ceil(total t/k) - ceil(total (t-1)/k))."""
    t = np.arange(k + 1, dtype=np.int64)
    cum = -((-total[:, None] * t[None, :]) // k)  # ceil division
    return np.diff(cum, axis=1)


def allocation_network(
    cost_int: np.ndarray,
    available: np.ndarray,
    need: np.ndarray,
    need_priority: np.ndarray,
    *,
    share_steps: int = params.DEFAULT_SHARE_STEPS,
) -> dict[str, np.ndarray]:
    """The min-cost-flow network of one item, as arrays (what OR-Tools and a networkx check solve).

    Nodes: depots ``0..D-1`` (supply: available), shelters ``D..D+S-1``, per shelter
    ``2 * share_steps`` step nodes (the priority group's steps, then the others'; demand: the
    step's units), a shortage node (supply: all needs) and a leftover node (demand: all stock).
    Arcs: depot -> shelter (the rounded trip cost, where finite), shelter -> its steps (0), shortage
    -> each step (a penalty that falls with the step's rank, each gap larger than any trip), depot
    and shortage -> leftover (0). Returns ``tail``, ``head``, ``capacity``, ``cost``, ``supply``
    and ``n_arcs_trip`` (the first arcs are the depot -> shelter ones, in ``row``/``col``).
    """
    n_d, n_s = cost_int.shape
    k = int(share_steps)
    row, col = np.nonzero(cost_int >= 0)
    keep = (available[row] > 0) & (need[col] > 0)
    row, col = row[keep], col[keep]
    trip = cost_int[row, col]
    big = int(trip.max(initial=0)) + 1
    # steps: [n_s, 2k], priority group first; a step of rank r costs big * (2k - r) when short
    steps = np.concatenate([_steps(need_priority, k), _steps(need - need_priority, k)], axis=1)
    rank = np.arange(2 * k, dtype=np.int64)
    penalty = big * (2 * k - rank)
    s_idx, r_idx = np.nonzero(steps > 0)
    step_node = n_d + n_s + np.arange(len(s_idx), dtype=np.int64)
    short = n_d + n_s + len(s_idx)
    left = short + 1
    total_need = int(need.sum())
    total_avail = int(available.sum())
    tail = np.concatenate(
        [row, n_d + s_idx, np.full(len(s_idx), short), np.arange(n_d), [short]]
    ).astype(np.int64)
    head = np.concatenate([n_d + col, step_node, step_node, np.full(n_d, left), [left]]).astype(
        np.int64
    )
    size = steps[s_idx, r_idx]
    capacity = np.concatenate(
        [np.minimum(available[row], need[col]), size, size, available, [total_need]]
    ).astype(np.int64)
    cost = np.concatenate(
        [trip, np.zeros(len(s_idx), np.int64), penalty[r_idx], np.zeros(n_d + 1, np.int64)]
    ).astype(np.int64)
    supply = np.zeros(left + 1, dtype=np.int64)
    supply[:n_d] = available
    supply[step_node] = -size
    supply[short] = total_need
    supply[left] = -total_avail
    if int(penalty.max(initial=0)) * max(total_need + total_avail, 1) >= _MAX_SAFE:
        msg = "trip costs x units overflow the solver's 64-bit integers; use a larger cost_step"
        raise CapacityError(msg)
    return {
        "tail": tail,
        "head": head,
        "capacity": capacity,
        "cost": cost,
        "supply": supply,
        "row": row,
        "col": col,
        "n_arcs_trip": np.array(len(row)),
        "step_shelter": s_idx,
        "step_rank": r_idx,
        "n_arcs_steps": np.array(len(s_idx)),
    }


def allocate_from_cost_matrix(
    cost: Any,
    available: Any,
    need: Any,
    *,
    need_priority: Any = None,
    unit_weight: Sequence[float] | np.ndarray | None = None,
    share_steps: int = params.DEFAULT_SHARE_STEPS,
    cost_step: float = COST_STEP_S,
) -> AllocationResult:
    """Send stock from depots to shelters: needs met at least total cost, shortage shared.

    For each item an exact min-cost flow (OR-Tools ``SimpleMinCostFlow``) on
    :func:`allocation_network`: first as many units of the priority group's first step as can
    reach their shelters, then the next step, ... (:data:`PRIORITY_RULE`), and among all such
    allocations the least sum of units x cost. A depot never sends more than ``available``.

    Parameters
    ----------
    cost
        ``[n_depots, n_shelters]`` cost of moving one unit (e.g. minutes; ``inf``/NaN: no open
        road), the same for every item (the weight per unit is per item).
    available
        ``[n_depots, n_items]`` whole units each depot may send (stock above its reserve).
    need
        ``[n_shelters, n_items]`` whole units each shelter needs.
    need_priority
        ``[n_shelters, n_items]`` part of ``need`` for the priority group (aged 60+); default 0.
    unit_weight
        Weight of one unit per item (e.g. tonnes), for the objective only (default 1).
    share_steps
        Steps in which a shortage is shared equally (10: every shelter gets 10 % of its need
        before any gets 20 %).
    cost_step
        Costs are rounded to multiples of this (default 1: whole seconds).
    """
    c = np.asarray(cost, dtype=float)
    if c.ndim != 2:
        msg = f"cost must be a 2-D matrix [n_depots, n_shelters], got shape {c.shape}"
        raise ValueError(msg)
    n_d, n_s = c.shape
    if (c[np.isfinite(c)] < 0).any():
        msg = "cost must be >= 0 where finite"
        raise ValueError(msg)
    need_a = np.asarray(need, dtype=float)
    n_i = need_a.shape[1] if need_a.ndim == 2 else -1
    avail = _counts(available, "available", (n_d, n_i))
    need_i = _counts(need, "need", (n_s, n_i))
    prio = (
        np.zeros_like(need_i)
        if need_priority is None
        else _counts(need_priority, "need_priority", (n_s, n_i))
    )
    if (prio > need_i).any():
        where = tuple(int(k) for k in np.argwhere(prio > need_i)[0])
        msg = f"need_priority{list(where)} must be <= need, got {prio[where]} > {need_i[where]}"
        raise ValueError(msg)
    weight = np.ones(n_i) if unit_weight is None else np.asarray(unit_weight, dtype=float)
    if weight.shape != (n_i,):
        msg = f"unit_weight must have {n_i} values, got shape {weight.shape}"
        raise ValueError(msg)
    steps = params.check_share_steps(share_steps)
    if not (math.isfinite(cost_step) and cost_step > 0):
        msg = f"cost_step must be > 0, got {cost_step}"
        raise ValueError(msg)
    cost_int = np.where(np.isfinite(c), np.rint(np.nan_to_num(c, posinf=0) / cost_step), -1)
    cost_int = cost_int.astype(np.int64)
    parts = []
    delivered = np.zeros((n_s, n_i), dtype=np.int64)
    used = np.zeros((n_d, n_i), dtype=np.int64)
    unmet_prio = np.zeros((n_s, n_i), dtype=np.int64)
    for j in range(n_i):
        net = allocation_network(cost_int, avail[:, j], need_i[:, j], prio[:, j], share_steps=steps)
        flow = _solve_network(net)
        n_trip = int(net["n_arcs_trip"])
        f = flow[:n_trip]
        r, s = net["row"], net["col"]
        delivered[:, j] = np.bincount(s, weights=f, minlength=n_s).astype(np.int64)
        used[:, j] = np.bincount(r, weights=f, minlength=n_d).astype(np.int64)
        # the shortage node's flow into the priority steps (ranks < steps) is the priority unmet
        n_st = int(net["n_arcs_steps"])
        short_flow = flow[n_trip + n_st : n_trip + 2 * n_st]
        is_prio = net["step_rank"] < steps
        unmet_prio[:, j] = np.bincount(
            net["step_shelter"][is_prio], weights=short_flow[is_prio], minlength=n_s
        ).astype(np.int64)
        on = f > 0
        parts.append((r[on], s[on], np.full(int(on.sum()), j), f[on], c[r[on], s[on]]))
    depot_a, shelter_a, item_a, qty_a, cost_a = (
        np.concatenate([p[k] for p in parts]) if parts else np.zeros(0) for k in range(5)
    )
    objective = (
        float(np.dot(qty_a * cost_a, weight[item_a.astype(np.int64)])) if len(qty_a) else 0.0
    )
    return AllocationResult(
        depot=depot_a.astype(np.int64),
        shelter=shelter_a.astype(np.int64),
        item=item_a.astype(np.int64),
        quantity=qty_a.astype(np.int64),
        cost=cost_a.astype(float),
        delivered=delivered,
        unmet=need_i - delivered,
        unmet_priority=unmet_prio,
        used=used,
        objective=objective,
        cost_step=float(cost_step),
        status="Optimal",
    )


def _solve_network(net: Mapping[str, np.ndarray]) -> np.ndarray:
    """Flows on every arc of a balanced network (OR-Tools ``SimpleMinCostFlow.solve``)."""
    n_arcs = len(net["tail"])
    if n_arcs == 0:
        return np.zeros(0, dtype=np.int64)
    solver = min_cost_flow.SimpleMinCostFlow()
    solver.add_arcs_with_capacity_and_unit_cost(
        net["tail"].astype(np.int32),
        net["head"].astype(np.int32),
        net["capacity"],
        net["cost"],
    )
    supply = net["supply"]
    solver.set_nodes_supplies(np.arange(len(supply), dtype=np.int32), supply)
    status = solver.solve()
    if status != solver.OPTIMAL:
        msg = f"OR-Tools min-cost flow did not reach an optimum: status {status!r}"
        raise SolverError(msg)
    return np.asarray(solver.flows(np.arange(n_arcs, dtype=np.int32)), dtype=np.int64)


# --------------------------------------------------------------------------------------------
# Vehicle tours: the pure core over a travel-time matrix
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fleet:
    """The vehicles of one depot: how many, what each carries, how fast, how long a shift lasts.

    ``capacity_kg`` and ``capacity_m3`` must both be > 0; every vehicle of a fleet is alike
    (give a depot several fleets for mixed vehicles). ``speed_kmh`` is the vehicle's top speed:
    on every road it drives at the lower of the road's speed and its own, so a slow fleet's
    tours, shifts and arrival times are longer than the network's car times.
    """

    count: int = params.DEFAULT_VEHICLES_PER_DEPOT
    capacity_kg: float = params.DEFAULT_VEHICLE_CAPACITY_T * 1000.0
    capacity_m3: float = params.DEFAULT_VEHICLE_CAPACITY_M3
    shift_min: float = params.DEFAULT_SHIFT_H * params.MINUTES_PER_HOUR
    name: str = ""
    speed_kmh: float = params.DEFAULT_FLEET_SPEED_KMH

    def check(self, where: str) -> Fleet:
        """This fleet, or CapacityError naming ``where`` and the bad field."""
        for name in ("capacity_kg", "capacity_m3", "shift_min", "speed_kmh"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                msg = f"{where}: {name} must be > 0, got {value:g}"
                raise CapacityError(msg)
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            msg = f"{where}: count must be a whole number >= 0, got {self.count!r}"
            raise CapacityError(msg)
        return self


@dataclass(frozen=True)
class VRPSolution:
    """Tours of one or more depots in matrix terms.

    Attributes
    ----------
    routes
        One entry per vehicle used: ``(depot, vehicle type, trips)``, each trip a tuple of
        client indices (0-based) in visiting order; the vehicle returns to its depot between
        trips to reload.
    arrival_s
        Per route, per trip, the time each client's service starts (seconds after the shift
        starts).
    trip_start_s, trip_end_s
        Per route, when each trip leaves and is back at the depot.
    cost
        Sum of the matrix costs of every leg driven.
    missing
        Clients no vehicle serves (the fleet or the shift is too small).
    solver
        Which solver and stopping rule.
    """

    routes: tuple[tuple[int, int, tuple[tuple[int, ...], ...]], ...]
    arrival_s: tuple[tuple[tuple[float, ...], ...], ...]
    trip_start_s: tuple[tuple[float, ...], ...]
    trip_end_s: tuple[tuple[float, ...], ...]
    cost: float
    missing: tuple[int, ...]
    solver: str


def tours_from_cost_matrix(
    cost: Any,
    demand: Any,
    *,
    capacity: Any,
    vehicles: Sequence[int] | int,
    duration: Any = None,
    service_s: Any = None,
    shift_s: Sequence[float] | float | None = None,
    client_depot: Sequence[int] | np.ndarray | None = None,
    type_depot: Sequence[int] | np.ndarray | None = None,
    reload: bool = True,
    required: bool = True,
    max_iterations: int = params.DEFAULT_VRP_ITERATIONS,
    max_runtime_s: float | None = None,
    seed: int = 1,
) -> VRPSolution:
    """Capacitated vehicle tours over a cost matrix with PyVRP (the solver kept, docs/relief.md).

    Locations are the depots (``0..n_depots-1``) then the clients. Each depot's clients are
    served by that depot's vehicle types only (one routing problem per depot).

    Parameters
    ----------
    cost
        ``[n_locations, n_locations]`` whole-number cost of each leg (what is minimised; e.g.
        seconds, or CVRPLIB's rounded distances), or ``[n_types, n_locations, n_locations]``:
        one matrix per vehicle type (vehicles of different speeds).
    demand
        ``[n_clients]`` or ``[n_clients, n_dims]`` whole-number load of each client.
    capacity
        ``[n_types, n_dims]`` (or ``[n_dims]`` / a number for one type) whole-number capacity.
    vehicles
        Vehicles of each type.
    duration
        ``[n_locations, n_locations]`` (or one per type, as ``cost``) travel time of each leg
        (default: ``cost``), for shifts.
    service_s
        ``[n_clients]`` time spent at each client (default 0).
    shift_s
        Longest shift per type (default: none).
    client_depot, type_depot
        Depot of each client and of each vehicle type (default: all depot 0).
    reload
        Whether a vehicle may return to its depot to reload and start another trip.
    required
        True: every client must be served (CVRP); False: clients the fleet cannot serve are left
        out and reported in ``missing`` (each served client is worth more than any tour).
    max_iterations, max_runtime_s, seed
        Stopping rule (iterations, and an optional time limit) and seed of the search.
    """
    from pyvrp import Model
    from pyvrp.stop import MaxIterations, MaxRuntime, MultipleCriteria

    c3 = np.asarray(cost, dtype=float)
    c3 = c3[None] if c3.ndim == 2 else c3
    if c3.ndim != 3 or c3.shape[1] != c3.shape[2]:
        msg = f"cost must be a square matrix (or one per vehicle type), got shape {c3.shape}"
        raise ValueError(msg)
    c = c3[0]
    dem = np.asarray(demand, dtype=float)
    dem = dem[:, None] if dem.ndim == 1 else dem
    n_c, n_dims = dem.shape
    n_dep = c.shape[0] - n_c
    if n_dep < 1:
        msg = f"cost has {c.shape[0]} locations for {n_c} clients: the depots come first"
        raise ValueError(msg)
    dem_i = _counts(dem, "demand", (n_c, n_dims))
    cap = np.asarray(capacity, dtype=float)
    cap = np.broadcast_to(cap, (n_dims,))[None, :] if cap.ndim <= 1 else cap
    n_listed = len(np.atleast_1d(np.asarray(vehicles)))
    if cap.shape[0] == 1 and n_listed > 1:  # one capacity for every type listed in vehicles
        cap = np.repeat(cap, n_listed, axis=0)
    n_t = cap.shape[0]
    cap_i = _counts(cap, "capacity", (n_t, n_dims))
    if (cap_i <= 0).any():
        t = int(np.argwhere(cap_i <= 0)[0][0])
        msg = f"vehicle type {t}: capacity must be > 0 in every dimension, got {cap_i[t].tolist()}"
        raise CapacityError(msg)
    count = np.broadcast_to(np.asarray(vehicles, dtype=np.int64), (n_t,))
    d3 = c3 if duration is None else np.asarray(duration, dtype=float)
    d3 = d3[None] if d3.ndim == 2 else d3
    for name, mat in (("cost", c3), ("duration", d3)):
        if mat.shape[0] not in (1, n_t) or mat.shape[1:] != c.shape:
            msg = f"{name} must be one matrix or one per vehicle type ({n_t}), got {mat.shape}"
            raise ValueError(msg)
    # one PyVRP profile per distinct matrix pair (types with their own speed)
    n_prof = max(c3.shape[0], d3.shape[0])
    prof_of = np.arange(n_t) if n_prof > 1 else np.zeros(n_t, np.int64)
    svc = np.zeros(n_c) if service_s is None else np.asarray(service_s, dtype=float)
    shift = (
        np.full(n_t, np.inf)
        if shift_s is None
        else np.broadcast_to(np.asarray(shift_s, dtype=float), (n_t,))
    )
    cdep = np.zeros(n_c, np.int64) if client_depot is None else np.asarray(client_depot, np.int64)
    tdep = np.zeros(n_t, np.int64) if type_depot is None else np.asarray(type_depot, np.int64)
    finite = np.isfinite(c3)
    big = int(np.nanmax(np.where(finite, c3, 0), initial=0)) + 1
    routes: list[tuple[int, int, tuple[tuple[int, ...], ...]]] = []
    arrivals: list[tuple[tuple[float, ...], ...]] = []
    starts: list[tuple[float, ...]] = []
    ends: list[tuple[float, ...]] = []
    missing: list[int] = []
    total = 0.0
    for d in range(n_dep):
        clients = np.flatnonzero(cdep == d)
        types = np.flatnonzero((tdep == d) & (count > 0))
        if not len(clients):
            continue
        if not len(types):
            missing.extend(int(k) for k in clients)
            continue
        over = np.any(dem_i[clients][:, None, :] > cap_i[types][None, :, :], axis=2)
        too_big = clients[np.all(over, axis=1)]
        if len(too_big):
            k = int(too_big[0])
            msg = (
                f"client {k}: load {dem_i[k].tolist()} exceeds every vehicle of depot {d} "
                f"(capacities {cap_i[types].tolist()})"
            )
            raise CapacityError(msg)
        m = Model()
        loc = [n_dep + int(k) for k in clients]
        where = [d, *loc]
        locations = [m.add_location(0.0, 0.0) for _ in where]
        depot = m.add_depot(locations[0])
        prize = big * 4 * (len(clients) + 2)
        used = sorted({int(prof_of[tt]) for tt in types})
        profiles = {p: m.add_profile(name=str(p)) for p in used} if len(used) > 1 else {}
        for pos, ck in enumerate(clients):
            m.add_client(
                locations[pos + 1],
                delivery=[int(v) for v in dem_i[ck]],
                service_duration=int(round(svc[ck])),
                required=required,
                prize=0 if required else int(prize),
            )
        for tt in types:
            m.add_vehicle_type(
                num_available=int(count[tt]),
                capacity=[int(v) for v in cap_i[tt]],
                start_depot=depot,
                end_depot=depot,
                shift_duration=int(shift[tt]) if np.isfinite(shift[tt]) else np.iinfo(np.int64).max,
                reload_depots=[depot] if reload else [],
                profile=profiles.get(int(prof_of[tt])),
                name=str(int(tt)),
            )
        sub = np.asarray(where)
        unreachable = big * 10 * (len(clients) + 2)
        for p in used:
            cc = c3[min(p, c3.shape[0] - 1)][np.ix_(sub, sub)]
            dd = d3[min(p, d3.shape[0] - 1)][np.ix_(sub, sub)]
            for i, a in enumerate(locations):
                for j, b in enumerate(locations):
                    if i == j:
                        continue
                    ok = np.isfinite(cc[i, j]) and np.isfinite(dd[i, j])
                    m.add_edge(
                        a,
                        b,
                        distance=int(round(cc[i, j])) if ok else unreachable,
                        duration=int(round(dd[i, j])) if ok else unreachable,
                        profile=profiles.get(p),
                    )
        stop: Any = MaxIterations(int(max_iterations))
        if max_runtime_s is not None:
            stop = MultipleCriteria([stop, MaxRuntime(float(max_runtime_s))])
        res = m.solve(stop=stop, seed=int(seed), display=False)
        sol = res.best
        if required and not sol.is_feasible():
            msg = (
                f"depot {d}: PyVRP found no feasible tours (loads, capacities or shifts "
                "cannot all be met)"
            )
            raise SolverError(msg)
        served: set[int] = set()
        for route in sol.routes():
            trips: dict[int, list[int]] = {}
            arr: dict[int, list[float]] = {}
            for act in route.schedule():
                if act.is_depot():
                    continue
                k = int(clients[int(act.idx)])  # a client activity indexes the clients
                trips.setdefault(int(act.trip), []).append(k)
                arr.setdefault(int(act.trip), []).append(float(act.start_time))
                served.add(k)
            t_start, t_end = _trip_times(route)
            keep = sorted(trips)
            vtype = int(types[route.vehicle_type()])
            routes.append((d, vtype, tuple(tuple(trips[i]) for i in keep)))
            arrivals.append(tuple(tuple(arr[i]) for i in keep))
            starts.append(tuple(t_start[i] for i in keep))
            ends.append(tuple(t_end[i] for i in keep))
            total += float(route.distance())
        missing.extend(int(k) for k in clients if int(k) not in served)
    rule = f"MaxIterations({int(max_iterations)})" + (
        f" or MaxRuntime({max_runtime_s:g} s)" if max_runtime_s is not None else ""
    )
    return VRPSolution(
        routes=tuple(routes),
        arrival_s=tuple(arrivals),
        trip_start_s=tuple(starts),
        trip_end_s=tuple(ends),
        cost=total,
        missing=tuple(sorted(missing)),
        solver=f"PyVRP (hybrid genetic search), {rule}, seed {seed}",
    )


def _trip_times(route: Any) -> tuple[list[float], list[float]]:
    """When each trip of a PyVRP route leaves its depot and is back (seconds)."""
    starts: list[float] = []
    ends: list[float] = []
    acts = list(route.schedule())
    for pos, act in enumerate(acts):
        if not act.is_depot():
            continue
        if pos > 0:  # every depot visit but the first ends a trip
            ends.append(float(act.start_time))
        if pos < len(acts) - 1:  # every depot visit but the last starts one
            starts.append(float(act.end_time))
    return starts, ends


# --------------------------------------------------------------------------------------------
# The plan on layers and the network
# --------------------------------------------------------------------------------------------
@dataclass
class ReliefPlan:
    """A relief plan: needs, stock, allocation, tours and what could not be done.

    Attributes
    ----------
    needs
        Per shelter and item: shelter_id, item, need, need_aged, delivered (allocated), unmet,
        unmet_aged, reason (why some is unmet: ``stock``, ``cut_off``, ``not_snapped``,
        ``in_hazard``, ``no_depot``; None when met).
    stock
        Per depot and item: depot_id, name, level, status, item, stock, reserve, available,
        sent, left (stock - sent), excluded_reason (``closed``, ``not_snapped``, ``in_hazard``).
    allocation
        Per depot, shelter and item sent: depot_id, shelter_id, item, quantity, weight_kg,
        volume_m3, time_min (the fastest open road), tonne_min.
    shelters
        Every shelter (WGS84), indexed by id: name, persons, aged_60_plus, need_weight_kg,
        delivered_weight_kg, unmet_weight_kg, reachable, reason, first_arrival_min,
        last_arrival_min, geometry (a point).
    depots
        Every depot (WGS84), indexed by id: name, level, status, vehicles, sent_weight_kg,
        excluded_reason, geometry.
    tours
        One row per trip (WGS84): tour_id, vehicle_id, depot_id, trip, stops (shelter ids in
        order), n_stops, load_kg, load_m3, load_<item> per item, distance_km, depart_min,
        return_min, duration_min, geometry (the route on the road network).
    stops
        One row per stop: vehicle_id, tour_id, depot_id, trip, seq, shelter_id, shelter_name,
        arrival_min, <item> units per item, load_kg, load_m3, leg_km.
    undelivered
        Allocated loads no vehicle carries: depot_id, shelter_id, item, quantity, reason.
    unreachable
        Shelters with persons that get nothing because of where they are, and why: shelter_id,
        persons, reason.
    flows
        Lines depot -> shelter (WGS84) with the weight sent, for maps.
    provenance
        Norms, days, rule, solvers, barriers, objective.
    """

    needs: pd.DataFrame
    stock: pd.DataFrame
    allocation: pd.DataFrame
    shelters: gpd.GeoDataFrame
    depots: gpd.GeoDataFrame
    tours: gpd.GeoDataFrame
    stops: pd.DataFrame
    undelivered: pd.DataFrame
    unreachable: pd.DataFrame
    flows: gpd.GeoDataFrame
    provenance: dict[str, Any] = field(default_factory=dict)
    items: tuple[str, ...] = ()
    depart_at: dt.datetime | None = None

    @property
    def summary(self) -> dict[str, Any]:
        """Headline numbers: tonnes needed, sent, carried; units short; vehicles, trips, km."""
        need_kg = float(self.shelters["need_weight_kg"].sum())
        sent_kg = float(self.allocation["weight_kg"].sum())
        carried_kg = float(self.tours["load_kg"].sum()) if len(self.tours) else 0.0
        return {
            "shelters_supplied": int((self.shelters["delivered_weight_kg"] > 0).sum()),
            "shelters_unreachable": int(len(self.unreachable)),
            "need_t": round(need_kg / 1000.0, 3),
            "allocated_t": round(sent_kg / 1000.0, 3),
            "carried_t": round(carried_kg / 1000.0, 3),
            "unmet_units": {
                item: int(self.needs.loc[self.needs["item"] == item, "unmet"].sum())
                for item in self.items
            },
            "vehicles_used": int(self.tours["vehicle_id"].nunique()) if len(self.tours) else 0,
            "trips": int(len(self.tours)),
            "distance_km": round(float(self.tours["distance_km"].sum()), 2)
            if len(self.tours)
            else 0.0,
            "last_arrival_min": round(float(self.stops["arrival_min"].max()), 1)
            if len(self.stops)
            else None,
            "tonne_min": round(float(self.allocation["tonne_min"].sum()), 1),
        }


def _points(gdf: gpd.GeoDataFrame, engine: Engine) -> gpd.GeoSeries:
    """Where a truck delivers to each record, WGS84: a point itself; for an area (a park
    shelter), the point of its outline nearest to a road (its gate side), so a large park is
    not reported as far from every road because its middle is."""
    g = gdf.geometry.to_crs(engine.crs)
    geoms = g.to_numpy()
    out = geoms.copy()
    area = ~np.isin(g.geom_type.to_numpy(), ["Point"]) & ~shapely.is_empty(geoms)
    if area.any():
        tree = engine.arrays.segment_tree
        q, seg = tree.query_nearest(geoms[area], all_matches=False)
        lines = shapely.shortest_line(geoms[area][q], engine.arrays.segment_geometry[seg])
        gate = shapely.get_point(lines, 0)
        part = out[area]
        part[q] = gate
        out[area] = part
    return gpd.GeoSeries(out, index=gdf.index, crs=engine.crs).to_crs(WGS84)


def _hazard_union(hazards: gpd.GeoDataFrame | None, crs: Any) -> Any:
    if hazards is None or not len(hazards):
        return None
    if hazards.crs is None:
        msg = "hazards have no CRS: set one (e.g. gdf.set_crs('EPSG:4326'))"
        raise NetworkError(msg)
    return shapely.union_all(hazards.geometry.to_crs(crs).to_numpy())


def _in_hazard(gdf: gpd.GeoDataFrame, hazard: Any, crs: Any) -> np.ndarray:
    """Records a hazard covers: points inside it, polygons at least HAZARD_SHARE inside."""
    if hazard is None:
        return np.zeros(len(gdf), dtype=bool)
    geoms = gdf.geometry.to_crs(crs).to_numpy()
    area = shapely.area(geoms)
    out = np.zeros(len(geoms), dtype=bool)
    poly = area > 0
    out[~poly] = shapely.intersects(geoms[~poly], hazard)
    if poly.any():
        out[poly] = (
            shapely.area(shapely.intersection(geoms[poly], hazard)) >= HAZARD_SHARE * area[poly]
        )
    return out


def barriers_for(
    *,
    closed_roads: gpd.GeoDataFrame | None = None,
    hazards: gpd.GeoDataFrame | None = None,
) -> list[Barriers]:
    """The engine barriers of closed roads (within 5 m of a road) and hazard polygons."""
    out = []
    if closed_roads is not None and len(closed_roads):
        out.append(Barriers.from_geodataframe(closed_roads, tolerance_m=5.0))
    if hazards is not None and len(hazards):
        out.append(Barriers.from_geodataframe(hazards, tolerance_m=0.0))
    return out


def split_load(
    quantity: np.ndarray, weight: np.ndarray, volume: np.ndarray, cap_kg: float, cap_m3: float
) -> list[np.ndarray]:
    """One delivery (units per item) cut into the fewest equal pieces that each fit
    ``cap_kg``/``cap_m3``: the split deliveries of a shelter needing more than one vehicle."""
    total_kg = float(quantity @ weight)
    total_m3 = float(quantity @ volume)
    k = max(1, math.ceil(total_kg / cap_kg - 1e-9), math.ceil(total_m3 / cap_m3 - 1e-9))
    while True:
        base = quantity // k
        extra = quantity % k
        rows = np.repeat(base[None, :], k, axis=0)
        # spread the remainders so the heaviest item's extras land on different pieces
        for j in np.argsort(-weight):
            if extra[j]:
                order = np.argsort(rows @ weight, kind="stable")[: extra[j]]
                rows[order, j] += 1
        fits = (rows @ weight <= cap_kg + 1e-9) & (rows @ volume <= cap_m3 + 1e-12)
        if fits.all():
            return [r for r in rows if r.any()]
        k += 1


def plan(
    sheltered: pd.DataFrame,
    gdf_shelters: gpd.GeoDataFrame,
    gdf_depots: gpd.GeoDataFrame,
    engine: Engine,
    *,
    days: float = params.DEFAULT_RELIEF_DAYS,
    items: Sequence[str] | None = None,
    norms: Mapping[str, ItemNorm] | None = None,
    reserve_share: float = params.DEFAULT_RESERVE_SHARE,
    fleets: Fleet | Mapping[str, Fleet | Sequence[Fleet]] | None = None,
    unload_min_per_t: float = params.DEFAULT_UNLOAD_MIN_PER_T,
    share_steps: int = params.DEFAULT_SHARE_STEPS,
    closed_roads: gpd.GeoDataFrame | None = None,
    hazards: gpd.GeoDataFrame | None = None,
    max_snap_m: float = params.DEFAULT_MAX_SNAP_M,
    depart_at: dt.datetime | None = None,
    vrp_iterations: int = params.DEFAULT_VRP_ITERATIONS,
    vrp_max_runtime_s: float | None = params.DEFAULT_VRP_MAX_RUNTIME_S,
    seed: int = 1,
    route_geometry: bool = True,
) -> ReliefPlan:
    """Needs, exact allocation and vehicle tours over the drive network, on open roads only.

    Parameters
    ----------
    sheltered
        Persons and aged 60+ per shelter id (:func:`sheltered_from_catchments` or
        :func:`sheltered_from_registry`); shelters not in it have nobody.
    gdf_shelters
        Shelter layer (points or polygons): id, name.
    gdf_depots
        Depot layer: id, name, level, status, ``stock_<item>``, optional ``reserve_<item>``.
    engine
        Drive network engine (``weight="time_s"``).
    days, items, norms
        What to plan for (:func:`needs`).
    reserve_share
        Share of each stock that stays in the depot where the layer gives no ``reserve_<item>``.
    fleets
        One :class:`Fleet` for every depot, or fleets by depot id (a depot missing from the
        mapping has none).
    unload_min_per_t
        Unloading time at a shelter per tonne (part of each stop's time and of the shift).
    share_steps
        Shortage sharing steps (:func:`allocate_from_cost_matrix`).
    closed_roads, hazards
        Closed roads (points or lines) and hazard polygons: their roads are closed for
        allocation and tours alike; depots and shelters inside a hazard take no part.
    max_snap_m
        Shelters and depots farther from a drivable road are reported, not planned.
    depart_at
        When the vehicles leave (dispatch sheets show clock times), else minutes after leaving.
    vrp_iterations, vrp_max_runtime_s, seed
        Stopping rule and seed of the tour search, per depot.
    route_geometry
        Whether to draw every trip on the road network (False: straight legs, faster).
    """
    if getattr(engine, "weight", "time_s") != "time_s":
        msg = f"relief plans need an engine with weight='time_s', got {engine.weight!r}"
        raise NetworkError(msg)
    norms = dict(norms or item_norms())
    chosen = check_items(items, norms)
    unload = params.check_unload_min_per_t(unload_min_per_t)
    need_long = needs(sheltered, days=days, items=chosen, norms=norms)
    stock = depot_stock(gdf_depots, items=chosen, reserve_share=reserve_share)
    fleet_of = _fleets(fleets, id_strings(gdf_depots["id"]))
    work = engine.crs
    barriers = barriers_for(closed_roads=closed_roads, hazards=hazards)
    hazard = _hazard_union(hazards, work)

    shel_ids = id_strings(gdf_shelters["id"])
    known = set(shel_ids)
    unknown = [i for i in id_strings(pd.Series(sheltered.index, dtype=object)) if i not in known]
    if unknown:
        msg = f"sheltered names shelters not in the shelter layer: {unknown[:10]}"
        raise UnknownIdError(msg)
    dep_ids = id_strings(gdf_depots["id"])
    n_s, n_d, n_i = len(shel_ids), len(dep_ids), len(chosen)
    need = np.zeros((n_s, n_i), dtype=np.int64)
    need_aged = np.zeros((n_s, n_i), dtype=np.int64)
    s_pos = pd.Index(shel_ids).get_indexer(need_long["shelter_id"])
    i_pos = pd.Index(chosen).get_indexer(need_long["item"])
    need[s_pos, i_pos] = need_long["need"].to_numpy()
    need_aged[s_pos, i_pos] = need_long["need_aged"].to_numpy()
    available = (
        stock.pivot(index="depot_id", columns="item", values="available")
        .reindex(index=dep_ids, columns=list(chosen))
        .fillna(0)
        .to_numpy(np.int64)
    )
    weight_kg = np.array([float(norms[c].unit_weight_kg.value) for c in chosen])
    volume_m3 = np.array([float(norms[c].unit_volume_m3.value) for c in chosen])

    # who can take part: status, hazards, snapping
    dep_status = stock.drop_duplicates("depot_id").set_index("depot_id")["status"].reindex(dep_ids)
    dep_reason = np.full(n_d, None, dtype=object)
    dep_reason[~dep_status.isin(SENDING_STATUSES).to_numpy()] = "closed"
    dep_reason[_in_hazard(gdf_depots, hazard, work) & pd.isna(dep_reason)] = "in_hazard"
    shel_reason = np.full(n_s, None, dtype=object)
    shel_reason[_in_hazard(gdf_shelters, hazard, work)] = "in_hazard"
    shel_pts = gpd.GeoDataFrame(
        {"id": shel_ids}, geometry=_points(gdf_shelters, engine).to_numpy(), crs=WGS84
    )
    dep_pts = gpd.GeoDataFrame(
        {"id": dep_ids}, geometry=_points(gdf_depots, engine).to_numpy(), crs=WGS84
    )
    both = gpd.GeoDataFrame(
        {"id": [f"D\x1f{i}" for i in dep_ids] + [f"S\x1f{i}" for i in shel_ids]},
        geometry=np.concatenate([dep_pts.geometry.to_numpy(), shel_pts.geometry.to_numpy()]),
        crs=WGS84,
    )
    time_s, located = _time_matrix(engine, both, max_snap_m, barriers)
    dep_reason = np.where(~located[:n_d] & pd.isna(dep_reason), "not_snapped", dep_reason)
    shel_reason = np.where(~located[n_d:] & pd.isna(shel_reason), "not_snapped", shel_reason)
    # each fleet's own times: the car times capped by its top speed (tours, shifts, arrivals)
    speeds = sorted({float(f.speed_kmh) for g in fleet_of.values() for f in g if f.count > 0})
    vehicle_engine = {v: _capped_engine(engine, v) for v in speeds}
    time_by_speed = {
        v: time_s if eng is engine else _time_matrix(eng, both, max_snap_m, barriers)[0]
        for v, eng in vehicle_engine.items()
    }
    shel_ok = pd.isna(shel_reason)
    # a depot whose every road out is closed reaches no shelter at all
    cut = pd.isna(dep_reason) & ~np.isfinite(time_s[:n_d, n_d:][:, shel_ok]).any(axis=1)
    dep_reason = np.where(cut & shel_ok.any(), "cut_off", dep_reason)
    dep_ok = pd.isna(dep_reason)
    cost_s = time_s[:n_d, n_d:].copy()
    cost_s[~dep_ok, :] = np.inf
    cost_s[:, ~shel_ok] = np.inf
    cost_min = params.s_to_minutes(cost_s)

    alloc = allocate_from_cost_matrix(
        cost_s,
        available,
        need * shel_ok[:, None],
        need_priority=need_aged * shel_ok[:, None],
        unit_weight=weight_kg / 1000.0,
        share_steps=share_steps,
        cost_step=COST_STEP_S,
    )
    # why a shelter is short
    has_persons = need.sum(axis=1) > 0
    reach_any = np.isfinite(cost_min[dep_ok & (available.sum(axis=1) > 0)]).any(axis=0)
    no_depot = not (dep_ok & (available.sum(axis=1) > 0)).any()
    shel_reason = np.where(
        pd.isna(shel_reason) & has_persons & ~reach_any,
        "no_depot" if no_depot else "cut_off",
        shel_reason,
    )

    # allocation table
    a_dep = dep_ids[alloc.depot]
    a_shel = shel_ids[alloc.shelter]
    a_item = np.asarray(chosen, dtype=object)[alloc.item]
    allocation = pd.DataFrame(
        {
            "depot_id": a_dep,
            "shelter_id": a_shel,
            "item": a_item,
            "quantity": alloc.quantity,
            "weight_kg": alloc.quantity * weight_kg[alloc.item],
            "volume_m3": alloc.quantity * volume_m3[alloc.item],
            "time_min": params.s_to_minutes(alloc.cost),
        }
    )
    allocation["tonne_min"] = allocation["weight_kg"] / 1000.0 * allocation["time_min"]

    # needs with delivered and unmet
    need_long = need_long.copy()
    need_long["delivered"] = alloc.delivered[s_pos, i_pos]
    need_long["unmet"] = need_long["need"] - need_long["delivered"]
    # a shelter left out of the allocation (too far from a road, in a hazard) gets nothing
    short_aged = np.where(shel_ok[:, None], np.minimum(need_aged, alloc.unmet_priority), need_aged)
    need_long["unmet_aged"] = short_aged[s_pos, i_pos]
    reason_of = pd.Series(shel_reason, index=shel_ids)
    place = reason_of.reindex(need_long["shelter_id"]).to_numpy(dtype=object)
    why = np.full(len(need_long), None, dtype=object)
    short = need_long["unmet"].to_numpy() > 0
    why[short] = np.where(pd.isna(place[short]), "stock", place[short])
    need_long["reason"] = pd.Series(why, index=need_long.index, dtype=object)

    # stock with what was sent
    sent = pd.DataFrame(alloc.used, index=dep_ids, columns=list(chosen)).stack()
    stock = stock.copy()
    stock["sent"] = sent.reindex(
        pd.MultiIndex.from_arrays([stock["depot_id"], stock["item"]])
    ).to_numpy(np.int64)
    stock["left"] = stock["stock"] - stock["sent"]
    stock["excluded_reason"] = (
        pd.Series(dep_reason, index=dep_ids).reindex(stock["depot_id"]).to_numpy()
    )

    # tours, per depot, and their geometry on the road network
    tours, stops, undelivered, trip_legs, trip_speed = _tours(
        allocation, chosen, weight_kg, volume_m3, dep_ids, shel_ids, fleet_of, time_by_speed,
        unload, vrp_iterations, vrp_max_runtime_s, seed,
    )  # fmt: skip
    names = pd.Series(
        gdf_shelters["name"].to_numpy(dtype=object) if "name" in gdf_shelters else shel_ids,
        index=shel_ids,
    )
    if len(stops):
        stops.insert(stops.columns.get_loc("shelter_id") + 1, "shelter_name",
                     names.reindex(stops["shelter_id"]).to_numpy())  # fmt: skip
    xy = {f"D\x1f{i}": p for i, p in zip(dep_ids, dep_pts.geometry, strict=True)}
    xy |= {f"S\x1f{i}": p for i, p in zip(shel_ids, shel_pts.geometry, strict=True)}
    # each trip drawn on its own vehicle's fastest roads
    legs_of = {
        v: _legs(
            {leg for trip, tv in zip(trip_legs, trip_speed, strict=True) if tv == v
             for leg in zip(trip[:-1], trip[1:], strict=True)},
            xy, vehicle_engine[v], barriers, route_geometry, max_snap_m,
        )
        for v in sorted(set(trip_speed))
    }  # fmt: skip
    geometry = []
    distance_km = []
    stop_km: list[float] = []
    for trip, tv in zip(trip_legs, trip_speed, strict=True):
        legs = legs_of[tv]
        pairs = list(zip(trip[:-1], trip[1:], strict=True))
        geometry.append(_join([legs[p][0] for p in pairs]))
        distance_km.append(sum(legs[p][1] for p in pairs) / 1000.0)
        stop_km.extend(legs[p][1] / 1000.0 for p in pairs[:-1])  # the leg into each stop
    if len(tours):
        tours["distance_km"] = np.round(distance_km, 3)
        stops["leg_km"] = np.round(stop_km, 3)
    tours_gdf = gpd.GeoDataFrame(tours, geometry=geometry, crs=WGS84)

    # per shelter and per depot summaries
    sid, spersons, saged = _sheltered_arrays(sheltered)
    persons = pd.Series(spersons, index=sid)
    aged = pd.Series(saged, index=sid)
    need_kg = (need * weight_kg).sum(axis=1)
    got_kg = (alloc.delivered * weight_kg).sum(axis=1)
    first = (
        stops.groupby("shelter_id")["arrival_min"].min() if len(stops) else pd.Series(dtype=float)
    )
    last = (
        stops.groupby("shelter_id")["arrival_min"].max() if len(stops) else pd.Series(dtype=float)
    )
    shelters_out = gpd.GeoDataFrame(
        {
            "name": gdf_shelters["name"].to_numpy(dtype=object)
            if "name" in gdf_shelters
            else shel_ids,
            "persons": persons.reindex(shel_ids).fillna(0).to_numpy(np.int64),
            "aged_60_plus": aged.reindex(shel_ids).fillna(0).to_numpy(np.int64),
            "need_weight_kg": need_kg,
            "delivered_weight_kg": got_kg,
            "unmet_weight_kg": need_kg - got_kg,
            "reachable": shel_ok & (reach_any | ~has_persons),
            "reason": shel_reason,
            "first_arrival_min": first.reindex(shel_ids).to_numpy(float),
            "last_arrival_min": last.reindex(shel_ids).to_numpy(float),
        },
        index=pd.Index(shel_ids, name="id"),
        geometry=shel_pts.geometry.to_numpy(),
        crs=WGS84,
    )
    sent_kg = (alloc.used * weight_kg).sum(axis=1)
    depots_out = gpd.GeoDataFrame(
        {
            "name": gdf_depots["name"].to_numpy(dtype=object) if "name" in gdf_depots else dep_ids,
            "level": gdf_depots["level"].to_numpy(dtype=object) if "level" in gdf_depots else None,
            "status": dep_status.to_numpy(dtype=object),
            "vehicles": [sum(f.count for f in fleet_of.get(d, [])) for d in dep_ids],
            "sent_weight_kg": sent_kg,
            "excluded_reason": dep_reason,
        },
        index=pd.Index(dep_ids, name="id"),
        geometry=dep_pts.geometry.to_numpy(),
        crs=WGS84,
    )
    unreachable = pd.DataFrame(
        {
            "shelter_id": shel_ids,
            "persons": shelters_out["persons"].to_numpy(),
            "reason": shel_reason,
        }
    )
    unreachable = unreachable[pd.notna(unreachable["reason"]) & (unreachable["persons"] > 0)]
    unreachable = unreachable.reset_index(drop=True)
    flows = _flow_lines(allocation, dep_pts, shel_pts)
    provenance = {
        "norms": gm_standards.load(NORMS).label,
        "days": float(days),
        "items": list(chosen),
        "reserve_share": float(stock.attrs.get("reserve_share", reserve_share)),
        "priority_rule": PRIORITY_RULE,
        "share_steps": int(share_steps),
        "allocation_solver": "OR-Tools SimpleMinCostFlow (exact, costs in whole seconds)",
        "allocation_objective_tonne_min": round(params.s_to_minutes(alloc.objective), 3),
        "tour_solver": "PyVRP hybrid genetic search (heuristic), per depot",
        "vrp_iterations": int(vrp_iterations),
        "vrp_max_runtime_s": vrp_max_runtime_s,
        "unload_min_per_t": unload,
        "barriers": len(barriers),
        "closed_roads": 0 if closed_roads is None else len(closed_roads),
        "hazards": 0 if hazards is None else len(hazards),
        "engine_profile": getattr(engine, "profile", None),
        "max_snap_m": max_snap_m,
        "sheltered_source": sheltered.attrs.get("source", "given"),
    }
    return ReliefPlan(
        needs=need_long,
        stock=stock,
        allocation=allocation,
        shelters=shelters_out,
        depots=depots_out,
        tours=tours_gdf,
        stops=stops,
        undelivered=undelivered,
        unreachable=unreachable,
        flows=flows,
        provenance=provenance,
        items=tuple(chosen),
        depart_at=depart_at,
    )


def _fleets(
    fleets: Fleet | Mapping[str, Fleet | Sequence[Fleet]] | None, depot_ids: np.ndarray
) -> dict[str, list[Fleet]]:
    """Fleets per depot id, each checked (CapacityError naming the depot)."""
    if fleets is None:
        fleets = Fleet()
    if isinstance(fleets, Fleet):
        out = {str(d): [fleets] for d in depot_ids}
    else:
        unknown = sorted(set(map(str, fleets)) - set(depot_ids))
        if unknown:
            msg = f"fleets name depots not in the depot layer: {unknown}"
            raise UnknownIdError(msg)
        out = {str(d): [f] if isinstance(f, Fleet) else list(f) for d, f in fleets.items()}
    for d, group in out.items():
        for k, f in enumerate(group):
            f.check(f"depot '{d}' fleet {k + 1}" + (f" ({f.name})" if f.name else ""))
    return out


def _tours(
    allocation: pd.DataFrame,
    items: Sequence[str],
    weight_kg: np.ndarray,
    volume_m3: np.ndarray,
    dep_ids: np.ndarray,
    shel_ids: np.ndarray,
    fleet_of: Mapping[str, list[Fleet]],
    time_by_speed: Mapping[float, np.ndarray],
    unload_min_per_t: float,
    iterations: int,
    max_runtime_s: float | None,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[list[str]], list[float]]:
    """Cut every depot -> shelter delivery into pieces, route each depot's pieces with its own
    fleet (:func:`tours_from_cost_matrix`), and lay the result out as trip and stop tables.

    Returns tours (no geometry yet), stops, undelivered loads, and each trip's location keys
    (``"D\\x1f<depot>"``, ``"S\\x1f<shelter>"``, ...) and its vehicle's top speed (km/h) for
    the route geometry. ``time_by_speed``: the travel-time matrix of each fleet speed.
    """
    n_d = len(dep_ids)
    item_cols = list(items)
    tour_rows: list[dict[str, Any]] = []
    stop_rows: list[dict[str, Any]] = []
    undelivered: list[pd.DataFrame] = []
    trip_legs: list[list[str]] = []
    trip_speed: list[float] = []
    if not len(allocation):
        return _empty_tours(item_cols), _empty_stops(item_cols), _empty_undelivered(), [], []
    wide = allocation.pivot_table(
        index=["depot_id", "shelter_id"], columns="item", values="quantity", aggfunc="sum",
        fill_value=0,
    ).reindex(columns=item_cols, fill_value=0)  # fmt: skip
    d_pos = pd.Index(dep_ids).get_indexer(wide.index.get_level_values(0))
    s_pos = pd.Index(shel_ids).get_indexer(wide.index.get_level_values(1))
    qty = wide.to_numpy(np.int64)
    # pieces per depot, each fitting that depot's smallest vehicle
    piece_qty: list[np.ndarray] = []
    piece_dep: list[int] = []
    piece_shel: list[int] = []
    for r in range(len(qty)):
        d = str(dep_ids[d_pos[r]])
        group = [f for f in fleet_of.get(d, []) if f.count > 0]
        if not group:
            undelivered.append(_undelivered_rows(d, shel_ids[s_pos[r]], item_cols, qty[r], "fleet"))
            continue
        cap_kg = min(f.capacity_kg for f in group)
        cap_m3 = min(f.capacity_m3 for f in group)
        heavy = (qty[r] > 0) & ((weight_kg > cap_kg) | (volume_m3 > cap_m3))
        if heavy.any():
            j = int(np.flatnonzero(heavy)[0])
            msg = (
                f"depot '{d}': one unit of '{items[j]}' ({weight_kg[j]:g} kg, {volume_m3[j]:g} m³) "
                f"does not fit its smallest vehicle ({cap_kg:g} kg, {cap_m3:g} m³)"
            )
            raise CapacityError(msg)
        for piece in split_load(qty[r], weight_kg, volume_m3, cap_kg, cap_m3):
            piece_qty.append(piece)
            piece_dep.append(int(d_pos[r]))
            piece_shel.append(int(s_pos[r]))
    if piece_qty:
        pq = np.array(piece_qty, dtype=np.int64)
        p_kg = pq @ weight_kg
        p_m3 = pq @ volume_m3
        demand = np.column_stack([np.ceil(p_kg - 1e-9), np.ceil(p_m3 * 1000.0 - 1e-9)])
        # locations: every depot, then one per piece (pieces of one shelter share its place)
        loc = np.concatenate([np.arange(n_d), n_d + np.array(piece_shel)])
        types: list[Fleet] = []
        type_dep: list[int] = []
        for k, d in enumerate(dep_ids):
            for f in fleet_of.get(str(d), []):
                if f.count > 0:
                    types.append(f)
                    type_dep.append(k)
        capacity = np.array(
            [[math.floor(f.capacity_kg), math.floor(f.capacity_m3 * 1000.0)] for f in types]
        )
        type_speed = [float(f.speed_kmh) for f in types]
        if len(set(type_speed)) == 1:
            travel = time_by_speed[type_speed[0]][np.ix_(loc, loc)]
        else:
            travel = np.stack([time_by_speed[v][np.ix_(loc, loc)] for v in type_speed])
        sol = tours_from_cost_matrix(
            travel,
            demand,
            capacity=capacity,
            vehicles=[f.count for f in types],
            service_s=np.ceil(p_kg / 1000.0 * params.minutes_to_s(unload_min_per_t)),
            shift_s=[params.minutes_to_s(f.shift_min) for f in types],
            client_depot=np.array(piece_dep),
            type_depot=np.array(type_dep),
            reload=True,
            required=False,
            max_iterations=iterations,
            max_runtime_s=max_runtime_s,
            seed=seed,
        )
        per_type_seen: dict[int, int] = {}
        for (d_idx, t_idx, trips), arr, t0, t1 in zip(
            sol.routes, sol.arrival_s, sol.trip_start_s, sol.trip_end_s, strict=True
        ):
            depot = str(dep_ids[d_idx])
            per_type_seen[d_idx] = per_type_seen.get(d_idx, 0) + 1
            vehicle = f"{depot}-V{per_type_seen[d_idx]}"
            for n_trip, (trip, times, start, end) in enumerate(
                zip(trips, arr, t0, t1, strict=True), start=1
            ):
                tour_id = f"{vehicle}-T{n_trip}"
                # consecutive pieces of one shelter are one stop
                merged: list[tuple[int, float, np.ndarray]] = []
                for client, when in zip(trip, times, strict=True):
                    s = piece_shel[client]
                    if merged and merged[-1][0] == s:
                        merged[-1] = (s, merged[-1][1], merged[-1][2] + pq[client])
                    else:
                        merged.append((s, when, pq[client].copy()))
                load = np.sum([m[2] for m in merged], axis=0)
                tour_rows.append(
                    {
                        "tour_id": tour_id,
                        "vehicle_id": vehicle,
                        "depot_id": depot,
                        "trip": n_trip,
                        "stops": " → ".join(str(shel_ids[m[0]]) for m in merged),
                        "n_stops": len(merged),
                        "load_kg": float(load @ weight_kg),
                        "load_m3": float(load @ volume_m3),
                        **{f"load_{c}": int(v) for c, v in zip(item_cols, load, strict=True)},
                        "depart_min": params.s_to_minutes(start),
                        "return_min": params.s_to_minutes(end),
                        "duration_min": params.s_to_minutes(end - start),
                    }
                )
                trip_legs.append(
                    [f"D\x1f{depot}", *[f"S\x1f{shel_ids[m[0]]}" for m in merged], f"D\x1f{depot}"]
                )
                trip_speed.append(type_speed[t_idx])
                for seq, (s, when, units) in enumerate(merged, start=1):
                    stop_rows.append(
                        {
                            "vehicle_id": vehicle,
                            "tour_id": tour_id,
                            "depot_id": depot,
                            "trip": n_trip,
                            "seq": seq,
                            "shelter_id": str(shel_ids[s]),
                            "arrival_min": params.s_to_minutes(when),
                            **{c: int(v) for c, v in zip(item_cols, units, strict=True)},
                            "load_kg": float(units @ weight_kg),
                            "load_m3": float(units @ volume_m3),
                        }
                    )
        for client in sol.missing:
            undelivered.append(
                _undelivered_rows(
                    str(dep_ids[piece_dep[client]]), shel_ids[piece_shel[client]], item_cols,
                    pq[client], "fleet",
                )
            )  # fmt: skip
    tours = pd.DataFrame(tour_rows) if tour_rows else _empty_tours(item_cols)
    stops = pd.DataFrame(stop_rows) if stop_rows else _empty_stops(item_cols)
    und = (
        pd.concat(undelivered, ignore_index=True)
        .groupby(["depot_id", "shelter_id", "item", "reason"], as_index=False)["quantity"]
        .sum()
        if undelivered
        else _empty_undelivered()
    )
    und = und[und["quantity"] > 0].reset_index(drop=True)
    return tours, stops, und, trip_legs, trip_speed


def _time_matrix(
    engine: Engine, both: gpd.GeoDataFrame, max_snap_m: float, barriers: Sequence[Barriers]
) -> tuple[np.ndarray, np.ndarray]:
    """Travel time (s) between every depot and shelter point of ``both`` on ``engine`` under the
    barriers (inf: no open road, or a point too far from a road), and which points snapped."""
    n = len(both)
    snapped = engine.snap(both, id_field="id", max_snap_m=max_snap_m)
    located = np.zeros(n, dtype=bool)
    located[snapped.rows] = True
    od = engine.od_matrix(snapped, snapped, barriers=list(barriers) or None)
    pos_of = np.full(n, -1, dtype=np.int64)
    pos_of[snapped.rows] = np.arange(len(snapped))
    full = np.full((len(snapped), len(snapped)), np.inf)
    full[od.origin_index, od.destination_index] = od.cost
    np.fill_diagonal(full, 0.0)
    time_s = np.full((n, n), np.inf)
    ok = pos_of >= 0
    time_s[np.ix_(ok, ok)] = full[np.ix_(pos_of[ok], pos_of[ok])]
    return time_s, located


def _capped_engine(engine: Engine, speed_kmh: float) -> Engine:
    """The drive engine as a vehicle of top speed ``speed_kmh`` sees it: every road's time is
    max(car time, length / speed). The engine itself where no road is faster than the vehicle."""
    slowest_s = engine.length_m / (float(speed_kmh) / 3.6)
    if not np.any(slowest_s > engine.cost * (1.0 + 1e-9)):
        return engine
    return Engine.from_arrays(
        node_ids=engine.node_ids, node_x=engine.node_x, node_y=engine.node_y, u=engine.u,
        v=engine.v, cost=np.maximum(engine.cost, slowest_s), length_m=engine.length_m,
        geometry=engine.geometry, crs=engine.crs, weight=engine.weight,
        walk_speed_mps=engine.walk_speed_mps, profile=engine.profile,
    )  # fmt: skip


def _undelivered_rows(
    depot: str, shelter: str, items: Sequence[str], units: np.ndarray, reason: str
) -> pd.DataFrame:
    return pd.DataFrame(
        {"depot_id": depot, "shelter_id": str(shelter), "item": list(items),
         "quantity": np.asarray(units, dtype=np.int64), "reason": reason}
    )  # fmt: skip


def _empty_tours(items: Sequence[str]) -> pd.DataFrame:
    cols = ["tour_id", "vehicle_id", "depot_id", "trip", "stops", "n_stops", "load_kg", "load_m3"]
    cols += [f"load_{c}" for c in items] + ["depart_min", "return_min", "duration_min"]
    return pd.DataFrame({c: [] for c in cols}).assign(distance_km=[])


def _empty_stops(items: Sequence[str]) -> pd.DataFrame:
    cols = ["vehicle_id", "tour_id", "depot_id", "trip", "seq", "shelter_id", "arrival_min"]
    cols += [*items, "load_kg", "load_m3", "leg_km"]
    return pd.DataFrame({c: [] for c in cols})


def _empty_undelivered() -> pd.DataFrame:
    return pd.DataFrame(
        {"depot_id": [], "shelter_id": [], "item": [], "reason": [], "quantity": []}
    )


def _legs(
    pairs: set[tuple[str, str]],
    xy: Mapping[str, Any],
    engine: Engine,
    barriers: Sequence[Barriers],
    on_roads: bool,
    max_snap_m: float,
) -> dict[tuple[str, str], tuple[Any, float]]:
    """Geometry (WGS84) and length in metres of every leg, on the open roads (each pair once)."""
    out: dict[tuple[str, str], tuple[Any, float]] = {}
    if not pairs:
        return out
    keys = sorted({k for p in pairs for k in p})
    pts = gpd.GeoSeries([xy[k] for k in keys], crs=WGS84).to_crs(engine.crs)
    work = dict(zip(keys, shapely.get_coordinates(pts.to_numpy()), strict=True))
    back = gpd.GeoSeries(crs=engine.crs)
    lines = []
    lengths = []
    for a, b in sorted(pairs):
        pa, pb = work[a], work[b]
        if on_roads:
            route = engine.route(
                (float(pa[0]), float(pa[1])), (float(pb[0]), float(pb[1])),
                barriers=list(barriers) or None, max_snap_m=max_snap_m,
            )  # fmt: skip
            lines.append(route.geometry)
            lengths.append(route.length_m)
        else:
            line = shapely.LineString([pa, pb])
            lines.append(line)
            lengths.append(float(line.length))
    back = gpd.GeoSeries(lines, crs=engine.crs).to_crs(WGS84)
    for pair, geom, length in zip(sorted(pairs), back.to_numpy(), lengths, strict=True):
        out[pair] = (geom, float(length))
    return out


def _join(lines: Sequence[Any]) -> Any:
    """One line through consecutive legs (a MultiLineString where they do not meet)."""
    coords = [shapely.get_coordinates(g) for g in lines if g is not None and not g.is_empty]
    if not coords:
        return None
    merged = [coords[0]]
    for c in coords[1:]:
        if np.allclose(merged[-1][-1], c[0]):
            merged[-1] = np.vstack([merged[-1], c[1:]])
        else:
            merged.append(c)
    parts = [shapely.LineString(c) for c in merged if len(c) >= 2]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else shapely.MultiLineString(parts)


def _flow_lines(
    allocation: pd.DataFrame, dep_pts: gpd.GeoDataFrame, shel_pts: gpd.GeoDataFrame
) -> gpd.GeoDataFrame:
    """Straight lines depot -> shelter with the weight and units sent (for maps)."""
    if not len(allocation):
        return gpd.GeoDataFrame(
            {"depot_id": [], "shelter_id": [], "weight_kg": [], "time_min": []},
            geometry=[], crs=WGS84,
        )  # fmt: skip
    g = allocation.groupby(["depot_id", "shelter_id"], as_index=False).agg(
        weight_kg=("weight_kg", "sum"), time_min=("time_min", "first")
    )
    dp = dep_pts.set_index("id").geometry.reindex(g["depot_id"]).to_numpy()
    sp = shel_pts.set_index("id").geometry.reindex(g["shelter_id"]).to_numpy()
    lines = shapely.linestrings(
        np.stack([shapely.get_coordinates(dp), shapely.get_coordinates(sp)], axis=1)
    )
    return gpd.GeoDataFrame(g, geometry=lines, crs=WGS84)


# --------------------------------------------------------------------------------------------
# What a barrier changed
# --------------------------------------------------------------------------------------------
@dataclass
class ReliefChanges:
    """What changes between two plans on the same shelters and depots (before / after a barrier).

    Attributes
    ----------
    shelters
        Per shelter whose supply, arrival or reachability changes: shelter_id, delivered_kg_before,
        delivered_kg_after, first_arrival_min_before, first_arrival_min_after, delay_min,
        reachable_before, reachable_after, reason_after.
    newly_unreachable
        Shelters reachable before and not after, with the reason: shelter_id, persons, reason.
    tours
        Per vehicle whose trips change: vehicle_id, stops_before, stops_after, distance_km_before,
        distance_km_after.
    summary
        shelters_newly_unreachable, shelters_later, max_delay_min, vehicles_changed,
        distance_km_before, distance_km_after, allocated_t_before, allocated_t_after.
    """

    shelters: pd.DataFrame
    newly_unreachable: pd.DataFrame
    tours: pd.DataFrame
    summary: dict[str, Any]


def compare(before: ReliefPlan, after: ReliefPlan) -> ReliefChanges:
    """What a barrier changed: shelters cut off (and why), later arrivals, changed tours."""
    if not before.shelters.index.equals(after.shelters.index):
        msg = "compare needs two plans on the same shelter layer (ids differ)"
        raise ValueError(msg)
    b, a = before.shelters, after.shelters
    table = pd.DataFrame(
        {
            "shelter_id": b.index.to_numpy(),
            "delivered_kg_before": b["delivered_weight_kg"].to_numpy(),
            "delivered_kg_after": a["delivered_weight_kg"].to_numpy(),
            "first_arrival_min_before": b["first_arrival_min"].to_numpy(),
            "first_arrival_min_after": a["first_arrival_min"].to_numpy(),
            "reachable_before": b["reachable"].to_numpy(),
            "reachable_after": a["reachable"].to_numpy(),
            "reason_after": a["reason"].to_numpy(),
        }
    )
    table["delay_min"] = table["first_arrival_min_after"] - table["first_arrival_min_before"]
    changed = (
        ~np.isclose(table["delivered_kg_before"], table["delivered_kg_after"])
        | (table["reachable_before"] != table["reachable_after"])
        | (table["delay_min"].abs().fillna(0) > 0.05)
        | (table["first_arrival_min_before"].isna() != table["first_arrival_min_after"].isna())
    )
    table = table[changed].reset_index(drop=True)
    lost = b["reachable"].to_numpy() & ~a["reachable"].to_numpy()
    newly = pd.DataFrame(
        {
            "shelter_id": a.index.to_numpy()[lost],
            "persons": a["persons"].to_numpy()[lost],
            "reason": a["reason"].to_numpy()[lost],
        }
    )

    def by_vehicle(plan: ReliefPlan) -> pd.DataFrame:
        if not len(plan.tours):
            return pd.DataFrame({"stops": [], "distance_km": []})
        return plan.tours.groupby("vehicle_id").agg(
            stops=("stops", " | ".join), distance_km=("distance_km", "sum")
        )

    vb, va = by_vehicle(before), by_vehicle(after)
    both = vb.add_suffix("_before").join(va.add_suffix("_after"), how="outer")
    diff = both["stops_before"].fillna("") != both["stops_after"].fillna("")
    tours = both[diff].reset_index().rename(columns={"index": "vehicle_id"})
    later = table["delay_min"] > 0.05
    summary = {
        "shelters_newly_unreachable": int(lost.sum()),
        "persons_newly_unreachable": int(newly["persons"].sum()),
        "shelters_later": int(later.sum()),
        "max_delay_min": round(float(table.loc[later, "delay_min"].max()), 1)
        if later.any()
        else 0.0,
        "vehicles_changed": int(diff.sum()),
        "distance_km_before": before.summary["distance_km"],
        "distance_km_after": after.summary["distance_km"],
        "allocated_t_before": before.summary["allocated_t"],
        "allocated_t_after": after.summary["allocated_t"],
    }
    return ReliefChanges(shelters=table, newly_unreachable=newly, tours=tours, summary=summary)


# --------------------------------------------------------------------------------------------
# Dispatch sheets (调度单)
# --------------------------------------------------------------------------------------------
_SHEET = {
    "depot": ("出发库", "Depot"),
    "vehicle": ("车辆", "Vehicle"),
    "trip": ("趟次", "Trip"),
    "seq": ("途经顺序", "Stop"),
    "shelter": ("避难场所", "Shelter"),
    "shelter_id": ("避难场所编号", "Shelter ID"),
    "load": ("装载明细", "Load"),
    "weight": ("重量（吨）", "Weight (t)"),
    "volume": ("体积（立方米）", "Volume (m³)"),
    "leg_km": ("本段里程（公里）", "Leg (km)"),
    "km": ("累计里程（公里）", "Distance so far (km)"),
    "eta": ("预计到达时间", "Estimated arrival"),
    "after": ("出发后 {m:.0f} 分钟", "{m:.0f} min after departure"),
    "depart": ("出发", "Depart"),
    "back": ("返回储备库", "Back at the depot"),
}


def _sheet_text(key: str, lang: str) -> str:
    zh, en = _SHEET[key]
    return zh if lang == "zh" else en


def dispatch_sheets(
    relief_plan: ReliefPlan, *, lang: str = "zh", norms: Mapping[str, ItemNorm] | None = None
) -> dict[str, pd.DataFrame]:
    """One dispatch sheet per vehicle (调度单): depot, vehicle, trip, stop order, shelter, load
    per item, weight, leg and running kilometres, estimated arrival; keyed by vehicle id.

    Arrival times are clock times when the plan has ``depart_at``, else minutes after departure.
    """
    norms = dict(norms or item_norms())
    p = relief_plan
    out: dict[str, pd.DataFrame] = {}
    if not len(p.stops):
        return out
    depot_name = p.depots["name"].astype(str)

    def eta(minutes: float) -> str:
        if p.depart_at is not None:
            return (p.depart_at + dt.timedelta(minutes=float(minutes))).strftime("%Y-%m-%d %H:%M")
        return _sheet_text("after", lang).format(m=minutes)

    def load_text(row: pd.Series) -> str:
        parts = []
        for item in p.items:
            n = int(row.get(item, 0) or 0)
            if n:
                norm = norms[item]
                unit = norm.unit_zh if lang == "zh" else RELIEF_ITEMS[item][2]
                parts.append(f"{norm.label(lang)} {n:,} {unit}")
        return "；".join(parts) if lang == "zh" else "; ".join(parts)

    t = {k: _sheet_text(k, lang) for k in _SHEET}

    def row(**values: Any) -> dict[str, Any]:
        return {t[k]: v for k, v in values.items()}

    for vehicle, stops in p.stops.groupby("vehicle_id", sort=True):
        depot = str(stops["depot_id"].iloc[0])
        name = depot_name.get(depot, depot)
        dname = f"{name}（{depot}）" if lang == "zh" else f"{name} ({depot})"
        tours = p.tours[p.tours["vehicle_id"] == vehicle].set_index("trip")
        rows = []
        km = 0.0
        for trip, trip_stops in stops.groupby("trip", sort=True):
            tour = tours.loc[trip]
            common = {"depot": dname, "vehicle": vehicle, "trip": int(trip)}
            loads = pd.Series({i: tour[f"load_{i}"] for i in p.items})
            rows.append(
                row(**common, seq=0, shelter=t["depart"], shelter_id="", load=load_text(loads),
                    weight=round(float(tour["load_kg"]) / 1000.0, 3),
                    volume=round(float(tour["load_m3"]), 2), leg_km=0.0, km=round(km, 2),
                    eta=eta(float(tour["depart_min"])))
            )  # fmt: skip
            ordered = trip_stops.sort_values("seq")
            for _, s in ordered.iterrows():
                leg = float(s.get("leg_km", 0.0) or 0.0)
                km += leg
                rows.append(
                    row(**common, seq=int(s["seq"]), shelter=str(s["shelter_name"]),
                        shelter_id=str(s["shelter_id"]), load=load_text(s),
                        weight=round(float(s["load_kg"]) / 1000.0, 3),
                        volume=round(float(s["load_m3"]), 2), leg_km=round(leg, 2),
                        km=round(km, 2), eta=eta(float(s["arrival_min"])))
                )  # fmt: skip
            back = max(0.0, float(tour["distance_km"]) - float(ordered["leg_km"].fillna(0).sum()))
            km += back
            rows.append(
                row(**common, seq=len(ordered) + 1, shelter=t["back"], shelter_id="", load="",
                    weight=0.0, volume=0.0, leg_km=round(back, 2), km=round(km, 2),
                    eta=eta(float(tour["return_min"])))
            )  # fmt: skip
        out[str(vehicle)] = pd.DataFrame(rows)
    return out


def write_dispatch_sheets(
    relief_plan: ReliefPlan, folder: str | Any, *, lang: str = "zh", prefix: str = "dispatch"
) -> dict[str, Any]:
    """Write every vehicle's dispatch sheet as CSV (UTF-8 with BOM, opens in Excel) and all of
    them as one XLSX workbook (a sheet per vehicle); returns the paths by name."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sheets = dispatch_sheets(relief_plan, lang=lang)
    paths: dict[str, Any] = {}
    for vehicle, table in sheets.items():
        path = folder / f"{prefix}_{vehicle}.csv"
        table.to_csv(path, index=False, encoding="utf-8-sig")
        paths[f"{prefix}_{vehicle}"] = path
    xlsx = folder / f"{prefix}.xlsx"
    with pd.ExcelWriter(xlsx, engine="openpyxl") as writer:
        if not sheets:
            pd.DataFrame({_sheet_text("vehicle", lang): []}).to_excel(writer, index=False)
        for vehicle, table in sheets.items():
            table.to_excel(writer, sheet_name=vehicle[:31], index=False)
    paths[f"{prefix}_xlsx"] = xlsx
    return paths
