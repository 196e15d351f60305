"""Analysis parameters defined once: default, validation rule and unit of each.

Every entry point (CLI, API, demo, settings, the workflows) takes its defaults and checks from
here, so a time break or a walking speed means the same thing everywhere (STYLE.md #16).
Conversions between the user's unit (minutes) and the engine's unit (seconds) live here too.
"""

from __future__ import annotations

import math
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
