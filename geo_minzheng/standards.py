"""Versioned, cited planning standards read from ``geo_minzheng/standards/*.toml``.

Each number in a standard file is a table ``{value | min/max, unit, source, confirmed}`` so that a
report can say where a target comes from and whether it was checked against a public text.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geo_minzheng._errors import GeoMinzhengError, UnknownIdError

STANDARDS_DIR = Path(__file__).resolve().parent / "standards"


class StandardError(GeoMinzhengError, ValueError):
    """A standard file is malformed: a number lacks its source or confirmation flag."""


@dataclass(frozen=True)
class Value:
    """One cited number (or range) of a standard.

    Attributes
    ----------
    value
        The number, or the lower bound of a range; a list for lists of facility kinds.
    maximum
        The upper bound of a range (equal to ``value`` for a single number).
    unit
        The unit as written in the file.
    source
        The clause or document the number comes from.
    confirmed
        Whether the number was checked against the public text in ``evidence``.
    """

    value: Any
    maximum: Any
    unit: str | None
    source: str
    confirmed: bool
    evidence: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Standard:
    """A loaded standard: its identity, version, and every cited number by dotted path."""

    id: str
    version: str
    title_zh: str
    title_en: str
    source: str
    path: Path
    values: dict[str, Value] = field(repr=False)
    raw: dict[str, Any] = field(repr=False)

    @property
    def label(self) -> str:
        """``"<id>@<version>"``: what results record as their provenance."""
        return f"{self.id}@{self.version}"

    def get(self, key: str) -> Value:
        """The number at dotted ``key`` (e.g. ``"life_circle.15min.population"``)."""
        try:
            return self.values[key]
        except KeyError:
            known = ", ".join(sorted(self.values))
            msg = f"standard '{self.label}' has no value '{key}'; it has: {known}"
            raise UnknownIdError(msg) from None

    def section(self, key: str) -> dict[str, Any]:
        """The raw table at dotted ``key`` (e.g. ``"life_circle"``)."""
        node: Any = self.raw
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                msg = f"standard '{self.label}' has no section '{key}'"
                raise UnknownIdError(msg)
            node = node[part]
        return dict(node)


def available() -> list[str]:
    """IDs of the standards shipped with geo-minzheng (the TOML file stems)."""
    return sorted(p.stem for p in STANDARDS_DIR.glob("*.toml"))


def load(name: str, *, directory: Path | None = None) -> Standard:
    """Load the standard ``name`` and check that every number carries its source.

    Parameters
    ----------
    name
        File stem, e.g. ``"gb50180_2018"`` or ``"eldercare_provision"``.
    directory
        Where to look instead of the package's ``standards/`` folder (for a bureau's own norms).
    """
    folder = directory or STANDARDS_DIR
    path = folder / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.toml"))) or "none"
        msg = f"no standard '{name}' in {folder}; available: {known}"
        raise UnknownIdError(msg)
    with path.open("rb") as fh:
        raw = tomllib.load(fh)
    head = raw.get("standard")
    if not isinstance(head, dict):
        msg = f"standard file {path.name}: missing [standard] table"
        raise StandardError(msg)
    problems: list[str] = []
    for key in ("id", "version", "title_zh", "title_en", "source"):
        if not isinstance(head.get(key), str) or not head[key]:
            problems.append(f"[standard].{key} must be a non-empty string, got {head.get(key)!r}")
    values: dict[str, Value] = {}
    _collect(raw, "", values, problems)
    if problems:
        msg = f"standard file {path.name} has {len(problems)} problem(s):\n  - " + "\n  - ".join(
            problems
        )
        raise StandardError(msg)
    return Standard(
        id=head["id"],
        version=head["version"],
        title_zh=head["title_zh"],
        title_en=head["title_en"],
        source=head["source"],
        path=path,
        values=values,
        raw=raw,
    )


def _is_number_table(node: Mapping[str, Any]) -> bool:
    return "value" in node or "min" in node


def _collect(
    node: Mapping[str, Any], prefix: str, out: dict[str, Value], problems: list[str]
) -> None:
    """Walk the TOML tree; every table holding ``value``/``min`` is one cited number."""
    for key, child in node.items():
        if key == "standard" and not prefix:
            continue
        path = f"{prefix}{key}"
        if not isinstance(child, dict):
            continue
        if _is_number_table(child):
            value = _to_value(path, child, problems)
            if value is not None:
                out[path] = value
        else:
            _collect(child, path + ".", out, problems)


def _to_value(path: str, node: Mapping[str, Any], problems: list[str]) -> Value | None:
    source = node.get("source")
    confirmed = node.get("confirmed")
    ok = True
    if not isinstance(source, str) or not source:
        problems.append(f"{path}.source must be a non-empty string, got {source!r}")
        ok = False
    if not isinstance(confirmed, bool):
        problems.append(f"{path}.confirmed must be true or false, got {confirmed!r}")
        ok = False
    if confirmed is True and not node.get("evidence"):
        problems.append(f"{path}.evidence must name the text checked when confirmed = true")
        ok = False
    lo = node.get("value", node.get("min"))
    hi = node.get("max", lo)
    if isinstance(lo, int | float) and isinstance(hi, int | float) and hi < lo:
        problems.append(f"{path}: max must be >= min, got {lo}..{hi}")
        ok = False
    if not ok:
        return None
    return Value(
        value=lo,
        maximum=hi,
        unit=node.get("unit"),
        source=source,  # type: ignore[arg-type]
        confirmed=confirmed,  # type: ignore[arg-type]
        evidence=node.get("evidence"),
        note=node.get("note"),
    )


@dataclass(frozen=True)
class LifeCircleTier:
    """One GB 50180 life-circle tier: minutes, walking distance, population, kinds required."""

    tier: str
    minutes: int
    walking_distance_m: Value
    population: Value
    facility_kinds: Value


def life_circles(standard: Standard | None = None) -> list[LifeCircleTier]:
    """The GB 50180-2018 life-circle tiers, shortest first."""
    std = standard or load("gb50180_2018")
    tiers = []
    for tier, node in std.section("life_circle").items():
        tiers.append(
            LifeCircleTier(
                tier=tier,
                minutes=int(node["minutes"]),
                walking_distance_m=std.get(f"life_circle.{tier}.walking_distance_m"),
                population=std.get(f"life_circle.{tier}.population"),
                facility_kinds=std.get(f"life_circle.{tier}.facility_kinds"),
            )
        )
    return sorted(tiers, key=lambda t: t.minutes)


def floor_area_norm(
    province: str | None = None, *, existing: bool = True, standard: Standard | None = None
) -> tuple[Value, str]:
    """Eldercare floor area required per 100 households, and which table it came from.

    Parameters
    ----------
    province
        Pinyin key (e.g. ``"jilin"``); a province without a value falls back to the national one.
    existing
        True for built-up areas (老城区/已建成小区,补建 norm), False for new areas (新建).
    """
    std = standard or load("eldercare_provision")
    which = "existing_area" if existing else "new_area"
    table = std.section("floor_area_per_100_households")
    if province is not None and province not in table:
        known = ", ".join(sorted(table))
        msg = f"province '{province}' not in {std.label}; known: {known}"
        raise UnknownIdError(msg)
    for key in (province, "national"):
        if key is not None and f"floor_area_per_100_households.{key}.{which}" in std.values:
            return std.get(f"floor_area_per_100_households.{key}.{which}"), key
    msg = f"{std.label} has no national {which} value"
    raise StandardError(msg)


def beds_norm(*, standard: Standard | None = None) -> Value:
    """Beds per 1000 residents aged 60+ (the national 2020 target, lower bound in ``value``)."""
    std = standard or load("eldercare_provision")
    return std.get("beds_per_1000_elderly.national_2020.beds")


def persons_per_household(*, standard: Standard | None = None) -> Value:
    """Mean household size used to estimate households from population (2020 census)."""
    std = standard or load("eldercare_provision")
    return std.get("household_size.persons_per_household")


@dataclass(frozen=True)
class ShelterClass:
    """One GB 51143-2015 shelter class: effective area per person and service radius (责任区)."""

    code: str
    label_zh: str
    label_en: str
    #: a fixed shelter (short/medium/long-term, and central): counts towards the fixed-share check
    fixed: bool
    m2_per_person: Value
    service_radius_m: Value


def shelter_classes(*, standard: Standard | None = None) -> dict[str, ShelterClass]:
    """The shelter classes by code (the ``shelter_class`` values of the shelter layer kind)."""
    std = standard or load("gb51143_2015")
    out = {}
    for code, node in std.section("shelter_class").items():
        out[code] = ShelterClass(
            code=code,
            label_zh=str(node.get("label_zh", code)),
            label_en=str(node.get("label_en", code)),
            fixed=bool(node.get("fixed", False)),
            m2_per_person=std.get(f"shelter_class.{code}.m2_per_person"),
            service_radius_m=std.get(f"shelter_class.{code}.service_radius_m"),
        )
    return out


def fixed_shelter_share(region: str = "national", *, standard: Standard | None = None) -> Value:
    """Least share of the planned population that fixed shelters must hold (``value``: lower
    bound), for ``region`` (``"national"``, ``"guangdong"``, ...)."""
    std = standard or load("shelter_provision")
    return std.get(f"fixed_share.{region}")
