"""Standards: every number carries its source and a confirmed flag; loaders pick the right norm."""

from __future__ import annotations

from pathlib import Path

import pytest

from geo_minzheng import standards
from geo_minzheng._errors import UnknownIdError


def test_shipped_standards_load_and_every_number_is_cited() -> None:
    names = standards.available()
    assert {"gb50180_2018", "eldercare_provision"} <= set(names)
    for name in names:
        std = standards.load(name)
        assert std.values, name
        for key, val in std.values.items():
            assert val.source, key
            assert isinstance(val.confirmed, bool), key
            if val.confirmed:
                assert val.evidence, key


def test_life_circles_gb50180() -> None:
    tiers = standards.life_circles()
    assert [t.minutes for t in tiers] == [5, 10, 15]
    by = {t.tier: t for t in tiers}
    assert (by["15min"].population.value, by["15min"].population.maximum) == (50000, 100000)
    assert (by["10min"].population.value, by["10min"].population.maximum) == (15000, 25000)
    assert by["10min"].walking_distance_m.value == 500
    assert (by["15min"].walking_distance_m.value, by["15min"].walking_distance_m.maximum) == (
        800,
        1000,
    )
    assert (by["5min"].walking_distance_m.value, by["5min"].population.maximum) == (300, 12000)
    # numbers not checked against a text are flagged, not passed off as confirmed
    assert by["5min"].population.confirmed is False
    assert by["10min"].population.confirmed is True
    assert "day_care_center" in by["5min"].facility_kinds.value


def test_floor_area_norms_fall_back_to_national() -> None:
    nat_existing, src = standards.floor_area_norm(None, existing=True)
    assert (nat_existing.value, src) == (15, "national")
    assert standards.floor_area_norm(None, existing=False)[0].value == 20
    # Jilin has no confirmed provincial value: national applies and says so
    assert standards.floor_area_norm("jilin", existing=False) == (
        standards.floor_area_norm(None, existing=False)[0],
        "national",
    )
    anhui, src = standards.floor_area_norm("anhui", existing=False)
    assert (anhui.value, src, anhui.confirmed) == (30, "anhui", True)
    with pytest.raises(UnknownIdError, match="province 'atlantis'.*known: anhui"):
        standards.floor_area_norm("atlantis")


def test_beds_and_household_size() -> None:
    beds = standards.beds_norm()
    assert (beds.value, beds.maximum) == (35, 40)
    hh = standards.persons_per_household()
    assert hh.value == pytest.approx(2.62)
    assert hh.confirmed


def test_malformed_standard_lists_every_problem(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(
        '[standard]\nid = "bad"\nversion = "1"\ntitle_zh = "坏"\ntitle_en = "Bad"\nsource = "x"\n'
        "[a]\n"
        "x = { value = 1 }\n"
        'y = { value = 2, source = "s", confirmed = true }\n'
        'z = { min = 5, max = 1, source = "s", confirmed = false }\n',
        encoding="utf-8",
    )
    with pytest.raises(standards.StandardError) as info:
        standards.load("bad", directory=tmp_path)
    text = str(info.value)
    assert "4 problem(s)" in text
    assert "a.x.source must be a non-empty string" in text
    assert "a.x.confirmed must be true or false" in text
    assert "a.y.evidence must name the text checked" in text
    assert "a.z: max must be >= min, got 5..1" in text
    with pytest.raises(UnknownIdError, match="no standard 'nope'.*available: bad"):
        standards.load("nope", directory=tmp_path)
    std = standards.load("gb50180_2018")
    assert std.label == "gb50180_2018@2018"
    with pytest.raises(UnknownIdError, match="has no value 'life_circle.20min"):
        std.get("life_circle.20min.population")
