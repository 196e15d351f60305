"""The layer kinds: labels in both languages, required fields, geometry types, lookups."""

from __future__ import annotations

import re

import pytest

from geo_minzheng._errors import UnknownIdError
from geo_minzheng.kinds import KINDS, get_kind

HAN = re.compile(r"[\u4e00-\u9fff]")
VALID_GEOMETRIES = {"Point", "LineString", "Polygon", "MultiPoint", "MultiLineString",
                    "MultiPolygon"}  # fmt: skip
EXPECTED_KINDS = {
    "eldercare_center",
    "community_service_room",
    "shelter",
    "supply_depot",
    "admin_unit",
    "boundary_marker",
    "demand",
    "road",
}


def test_the_eight_kinds_of_the_design_exist() -> None:
    assert set(KINDS) == EXPECTED_KINDS
    for name, kind in KINDS.items():
        assert kind.name == name


@pytest.mark.parametrize("name", sorted(EXPECTED_KINDS))
def test_kind_and_field_labels_in_both_languages(name: str) -> None:
    kind = KINDS[name]
    assert HAN.search(kind.label("zh")), kind.label_zh
    assert kind.label("en") and not HAN.search(kind.label("en"))
    for field in kind.fields:
        assert HAN.search(field.label("zh")), (name, field.name)
        assert field.label("en") and not HAN.search(field.label("en")), (name, field.name)
        for code, labels in (field.choices or {}).items():
            assert HAN.search(labels[0]), (name, field.name, code)
            assert labels[1] and not HAN.search(labels[1]), (name, field.name, code)


@pytest.mark.parametrize("name", sorted(EXPECTED_KINDS))
def test_required_fields_exist_and_id_is_required(name: str) -> None:
    kind = KINDS[name]
    names = [f.name for f in kind.fields]
    assert len(names) == len(set(names)), "duplicate field names"
    assert kind.id_field in kind.required_fields
    for required in kind.required_fields:
        assert kind.field(required).required
    if kind.name_field is not None:
        assert kind.name_field in names
    assert set(kind.geometry_types) <= VALID_GEOMETRIES


def test_numeric_bounds_are_consistent() -> None:
    for kind in KINDS.values():
        for field in kind.fields:
            if field.minimum is not None or field.maximum is not None:
                assert field.type in ("int", "float"), (kind.name, field.name)
            if field.minimum is not None and field.maximum is not None:
                assert field.minimum < field.maximum
            if field.exclusive_minimum:
                assert field.minimum is not None


def test_admin_unit_is_keyed_by_adcode() -> None:
    assert get_kind("admin_unit").id_field == "adcode"
    assert get_kind("shelter").id_field == "id"


def test_get_kind_error_lists_known_kinds() -> None:
    with pytest.raises(UnknownIdError) as info:
        get_kind("nursing_homes")
    message = str(info.value)
    assert "'nursing_homes'" in message
    for name in EXPECTED_KINDS:
        assert name in message
    assert isinstance(info.value, KeyError)


def test_field_lookup_error_names_kind_and_field() -> None:
    with pytest.raises(UnknownIdError, match="'shelter' has no field 'beds'"):
        get_kind("shelter").field("beds")
