"""Layer validation: every problem of a layer (fields, values, geometry, CRS, alignment), at once.

Validation never changes its input. It collects every problem as a
:class:`~geo_minzheng._errors.Problem` that names the record (``"<kind> '<id>'"``, or ``"row N"``
when the record has no ID), the field, what was expected and what was found, so that a bureau can
fix its registry in one pass (osmnx ``_validate.py`` style: collect, then raise once).

This module holds the rules only. Reading a file to check it is ``io.validate_file`` and wording
problems for people is :mod:`geo_minzheng.reports`; it imports neither (io imports it, one way).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import json
import math
import re
from collections.abc import Iterable, Sequence

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer

from geo_minzheng import crs as gm_crs
from geo_minzheng._errors import LayerValidationError, Problem
from geo_minzheng.kinds import (
    HEADER_ALIASES,
    HEADER_LOOKALIKES,
    FieldSpec,
    LayerKind,
    get_kind,
    normalize_header,
)

#: GB 51143-2015 防灾避难场所设计规范: at least 1.0 m² effective area per sheltered person
#: (emergency shelters; fixed shelters need more), so capacity above area / 1.0 is impossible.
MIN_SHELTER_AREA_PER_PERSON_M2 = 1.0
#: Separators accepted between items of a list field (ASCII and full-width Chinese punctuation).
_LIST_SPLIT = re.compile(r"\s*[;,，；、|]\s*")
_TRUE = {"true", "t", "yes", "y", "1", "是", "有", "√"}
_FALSE = {"false", "f", "no", "n", "0", "否", "无", "×"}
_MISSING_STRINGS = {"", "nan", "none", "null", "<na>", "nat"}


# --------------------------------------------------------------------------------------------
# Value coercion, shared with io.py
# --------------------------------------------------------------------------------------------


def is_missing(value: object) -> bool:
    """True for None, NaN, pandas NA and blank strings (a value that was not filled in)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in _MISSING_STRINGS


class _Bad(Exception):
    """A value cannot be coerced to its field's type."""


def _to_number(value: object) -> float:
    if isinstance(value, bool):
        raise _Bad
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    text = str(value).strip().replace(",", "").replace("，", "")
    try:
        return float(text)
    except ValueError:
        raise _Bad from None


def _to_int(value: object) -> int:
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)  # exact: a round trip through float rounds beyond 2**53
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value.strip().replace(",", "").replace("，", ""))
    number = _to_number(value)
    if not math.isfinite(number) or number != int(number):
        raise _Bad
    return int(number)


def to_str(value: object) -> str:
    """A value as stripped text; integral floats lose their ``.0`` (IDs, codes, store keys).

    Excel and shapefiles hand integer codes back as floats: 220102.0 must stay "220102".
    """
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and value == int(value):
        return str(int(value))
    return str(value).strip()


def _to_bool(value: object) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = to_str(value).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _Bad


def _to_date(value: object) -> str:
    if isinstance(value, (dt.date, pd.Timestamp)):
        return pd.Timestamp(value).date().isoformat()
    text = to_str(value).replace("/", "-").replace(".", "-")
    match = re.fullmatch(r"(\d{4})[-年](\d{1,2})[-月](\d{1,2})日?(?:[ T].*)?", text)
    if match is None:
        raise _Bad
    try:
        return dt.date(*(int(g) for g in match.groups())).isoformat()
    except ValueError:
        raise _Bad from None


def _choice_lookup(spec: FieldSpec) -> dict[str, str]:
    """Map codes and their zh/en labels (lower-cased) to the code."""
    lookup: dict[str, str] = {}
    for code, labels in (spec.choices or {}).items():
        for key in (code, *labels[:2]):
            lookup[str(key).strip().lower()] = code
    return lookup


def _to_list(value: object, spec: FieldSpec) -> str:
    """A list field as a ';'-joined string of codes (storable in GeoPackage and shapefiles)."""
    if isinstance(value, str) and value.strip().startswith("["):
        with contextlib.suppress(json.JSONDecodeError):
            value = json.loads(value)
    items: Iterable[object]
    if isinstance(value, (list, tuple, np.ndarray)):
        items = value
    else:
        items = _LIST_SPLIT.split(to_str(value))
    lookup = _choice_lookup(spec)
    codes = [lookup.get(to_str(item).lower(), to_str(item)) for item in items]
    return ";".join(code for code in codes if code)


def list_items(value: object) -> list[str]:
    """The items of a list-field value (a ';'-joined string or a list); [] when missing."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [to_str(v) for v in value if not is_missing(v)]
    if is_missing(value):
        return []
    return [item for item in _LIST_SPLIT.split(to_str(value)) if item]


def coerce_value(value: object, spec: FieldSpec) -> object:
    """``value`` converted to ``spec``'s type; raises ValueError when it cannot be.

    Enumerated string fields also accept their zh/en labels (e.g. 启用 -> 'open'); an unknown
    value is kept as written, so that validation can report it with the allowed values.
    """
    try:
        if spec.type == "int":
            return _to_int(value)
        if spec.type == "float":
            return _to_number(value)
        if spec.type == "bool":
            return _to_bool(value)
        if spec.type == "date":
            return _to_date(value)
        if spec.type == "list":
            return _to_list(value, spec)
    except _Bad:
        msg = f"cannot read {value!r} as {spec.type}"
        raise ValueError(msg) from None
    text = to_str(value)
    if spec.choices:
        return _choice_lookup(spec).get(text.lower(), text)
    return text


_DTYPES = {
    "int": "Int64",
    "float": "float64",
    "bool": "boolean",
    "str": "str",
    "date": "str",
    "list": "str",
}
_TYPE_EN = {
    "int": "an integer",
    "float": "a number",
    "str": "text",
    "bool": "yes/no (true/false, 是/否)",
    "date": "a date (YYYY-MM-DD)",
    "list": "a list separated by ';'",
}


def coerce_column(values: pd.Series, spec: FieldSpec) -> tuple[pd.Series, pd.Series]:
    """Coerce a column to ``spec``'s type without losing anything.

    Returns the new column and a boolean mask of the values that could not be coerced. When every
    value converts, the column gets the field's dtype (nullable Int64, float64, boolean, str);
    otherwise it stays an object column holding the converted values and, for the bad cells,
    the original values untouched, so nothing is replaced by NaN silently.
    """
    no_bad = pd.Series(np.zeros(len(values), dtype=bool), index=values.index)
    # fast paths for columns a GeoPackage/GeoJSON already typed (most of a big layer)
    numeric = pd.api.types.is_numeric_dtype(values.dtype)
    if spec.type == "float" and numeric and not pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("float64"), no_bad
    if spec.type == "int" and pd.api.types.is_integer_dtype(values.dtype):
        return values.astype("Int64"), no_bad
    out: list[object] = []
    bad = np.zeros(len(values), dtype=bool)
    for i, value in enumerate(values.tolist()):
        if is_missing(value):
            out.append(None)
            continue
        try:
            out.append(coerce_value(value, spec))
        except ValueError:
            out.append(value)
            bad[i] = True
    bad_mask = pd.Series(bad, index=values.index)
    if bad.any():
        return pd.Series(out, index=values.index, dtype=object, name=values.name), bad_mask
    dtype = _DTYPES.get(spec.type, object)
    if dtype == "float64":
        out = [np.nan if v is None else v for v in out]
    return pd.Series(out, index=values.index, dtype=dtype, name=values.name), bad_mask


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _kind(kind: str | LayerKind) -> LayerKind:
    return kind if isinstance(kind, LayerKind) else get_kind(kind)


def record_labels(gdf: pd.DataFrame, kind: str | LayerKind) -> list[str]:
    """How each record is named in messages: ``"<kind> '<id>'"``, else ``"row N"``.

    Row numbers start at ``gdf.attrs["first_row"]`` (2 for CSV/XLSX read by io.py, so that they
    match the row a user sees in Excel/WPS with the header in row 1; 1 otherwise).
    """
    spec = _kind(kind)
    first_row = int(gdf.attrs.get("first_row", 1))
    ids = gdf[spec.id_field].tolist() if spec.id_field in gdf.columns else [None] * len(gdf)
    return [
        f"row {first_row + i}" if is_missing(v) else f"{spec.name} '{to_str(v)}'"
        for i, v in enumerate(ids)
    ]


def _fmt(value: object) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, str) else str(value)


def _range_text(spec: FieldSpec) -> str:
    parts = []
    if spec.minimum is not None:
        parts.append(f"{'>' if spec.exclusive_minimum else '>='} {_fmt(spec.minimum)}")
    if spec.maximum is not None:
        parts.append(f"<= {_fmt(spec.maximum)}")
    unit = f" {spec.unit}" if spec.unit else ""
    return " and ".join(parts) + unit


def _out_of_range(number: float, spec: FieldSpec) -> bool:
    if spec.minimum is not None:
        if spec.exclusive_minimum and not number > spec.minimum:
            return True
        if number < spec.minimum:
            return True
    return spec.maximum is not None and number > spec.maximum


def _check_crs(gdf: gpd.GeoDataFrame, layer: str) -> list[Problem]:
    if gdf.crs is None:
        return [
            Problem(
                f"layer '{layer}'",
                "crs",
                "EPSG:4326 (WGS84); read files with io.read_layer(..., source_crs=...)",
                "no CRS",
                "missing_crs",
            )
        ]
    if not CRS(gdf.crs).equals(CRS(gm_crs.WGS84)):
        return [
            Problem(
                f"layer '{layer}'",
                "crs",
                "EPSG:4326 (WGS84); convert with geo_minzheng.crs.to_wgs84(gdf)",
                gdf.crs.to_string(),
                "wrong_crs",
            )
        ]
    return []


def check_records(gdf: pd.DataFrame, layer: str) -> list[Problem]:
    """A ``no_records`` problem when ``gdf`` has no records (a file with only a header)."""
    if len(gdf) > 0:
        return []
    return [
        Problem(
            f"layer '{layer}'",
            "records",
            "at least one record (a header alone is not a layer)",
            "0 records",
            "no_records",
        )
    ]


def _tokens(text: str) -> set[str]:
    return {t for t in text.split("_") if len(t) >= 3}


def _resemblance(column: str, name: str) -> float:
    """How much a normalised header resembles a normalised field name or alias (0..1).

    The edit similarity (catches typos: "catagory", "shelterclass"), or, when one contains the
    other (CJK text of two characters or more) or they share English words of three letters or
    more, 0.6 plus 0.3 times the shared share, whichever is higher.
    """
    if not column or not name:
        return 0.0
    if column == name:
        return 1.0
    score = difflib.SequenceMatcher(None, column, name).ratio()
    if column.isascii() and name.isascii():
        a, b = _tokens(column), _tokens(name)
        if a & b:
            score = max(score, 0.6 + 0.3 * len(a & b) / max(len(a), len(b)))
    elif min(len(column), len(name)) >= 2 and (column in name or name in column):
        score = max(score, 0.6 + 0.3 * min(len(column), len(name)) / max(len(column), len(name)))
    return score


def _field_names(field: FieldSpec) -> set[str]:
    names = (
        field.name,
        field.label_zh,
        field.label_en,
        *HEADER_ALIASES.get(field.name, ()),
        *HEADER_LOOKALIKES.get(field.name, ()),
    )
    return {normalize_header(n) for n in names}


def _likely_column(spec: LayerKind, field: FieldSpec, candidates: Sequence[str]) -> str | None:
    """The unmapped column that most resembles ``field`` and no other field of the kind more."""
    best, best_score = None, 0.7
    for column in candidates:
        normalized = normalize_header(column)
        scores = {
            f.name: max(_resemblance(normalized, n) for n in _field_names(f)) for f in spec.fields
        }
        score = scores[field.name]
        if score > best_score and score >= max(scores.values()):
            best, best_score = column, score
    return best


def _lower_first(label: str) -> str:
    """'Shelter class (GB 51143)' -> 'shelter class (GB 51143)'; 'ID' stays 'ID'."""
    return label if label[:2].isupper() else label[:1].lower() + label[1:]


def _check_columns(gdf: pd.DataFrame, spec: LayerKind, layer: str) -> list[Problem]:
    """A ``missing_field`` problem per absent required column, naming a likely match.

    A likely match is a column that is no field of the kind and resembles the missing one
    (a header close to its name, labels or :data:`kinds.HEADER_ALIASES`, or a header such as a
    shelter's "面积" that :data:`kinds.HEADER_LOOKALIKES` lists as not taken without being told).
    """
    columns = [str(c) for c in gdf.columns if c != "geometry"]
    present = ", ".join(columns) or "none"
    known = {f.name for f in spec.fields}
    unmapped = [c for c in columns if c not in known]
    problems = []
    for name in spec.required_fields:
        if name in gdf.columns:
            continue
        field = spec.field(name)
        found = f"columns: {present}"
        likely = _likely_column(spec, field, unmapped)
        if likely is not None:
            unmapped.remove(likely)
            what = _lower_first(field.label_en)
            found += (
                f"; likely match: '{likely}' (if it holds the {what}, rename "
                f"that column to '{field.label_zh}' or '{name}', or map it: fields: "
                f"{{{name}: {likely}}} in the catalog, field_map={{'{name}': '{likely}'}} in "
                "Python)"
            )
        problems.append(
            Problem(
                f"layer '{layer}'",
                name,
                f"a column '{name}' ({field.label_zh})",
                found,
                "missing_field",
            )
        )
    return problems


def _check_field(values: pd.Series, field: FieldSpec, labels: Sequence[str]) -> list[Problem]:
    problems: list[Problem] = []
    allowed = ", ".join(field.choices) if field.choices else ""
    for label, raw in zip(labels, values.tolist(), strict=True):
        if is_missing(raw) or (field.type == "list" and not list_items(raw)):
            if field.required:
                problems.append(
                    Problem(
                        label, field.name, f"a value ({field.label_zh})", "empty", "missing_value"
                    )
                )
            continue
        try:
            value = coerce_value(raw, field)
        except ValueError:
            problems.append(Problem(label, field.name, _TYPE_EN[field.type], repr(raw), "bad_type"))
            continue
        if field.type in ("int", "float") and _out_of_range(float(value), field):  # type: ignore[arg-type]
            problems.append(
                Problem(label, field.name, _range_text(field), _fmt(raw), "out_of_range")
            )
        if field.choices:
            items = list_items(value) if field.type == "list" else [str(value)]
            unknown = [item for item in items if item not in field.choices]
            if unknown:
                problems.append(
                    Problem(
                        label,
                        field.name,
                        f"one of: {allowed}",
                        ", ".join(repr(u) for u in unknown),
                        "unknown_value",
                    )
                )
    return problems


def _numbers(gdf: pd.DataFrame, name: str) -> np.ndarray:
    """Column ``name`` as floats (NaN where missing or not a number)."""
    if name not in gdf.columns:
        return np.full(len(gdf), np.nan)
    return pd.to_numeric(gdf[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _check_consistency(gdf: pd.DataFrame, spec: LayerKind, labels: Sequence[str]) -> list[Problem]:
    problems: list[Problem] = []
    if spec.name == "demand":
        aged, population = _numbers(gdf, "aged_60_plus"), _numbers(gdf, "population")
        for i in np.flatnonzero(aged > population):
            problems.append(
                Problem(
                    labels[int(i)],
                    "aged_60_plus",
                    f"<= population ({_fmt(population[i])})",
                    _fmt(aged[i]),
                    "inconsistent",
                )
            )
    if spec.name == "shelter":
        capacity, area = _numbers(gdf, "capacity_persons"), _numbers(gdf, "effective_area_m2")
        limit = area / MIN_SHELTER_AREA_PER_PERSON_M2
        for i in np.flatnonzero(capacity > limit):
            problems.append(
                Problem(
                    labels[int(i)],
                    "capacity_persons",
                    f"<= effective_area_m2 / {MIN_SHELTER_AREA_PER_PERSON_M2} m² per person "
                    f"({_fmt(limit[i])})",
                    _fmt(capacity[i]),
                    "inconsistent",
                )
            )
    return problems


def _check_ids(gdf: pd.DataFrame, spec: LayerKind, labels: Sequence[str]) -> list[Problem]:
    if spec.id_field not in gdf.columns:
        return []
    first_row = int(gdf.attrs.get("first_row", 1))
    ids = pd.Series([None if is_missing(v) else to_str(v) for v in gdf[spec.id_field].tolist()])
    dup = ids[ids.notna() & ids.duplicated(keep=False)]
    problems = []
    for _value, rows in dup.groupby(dup, sort=False).groups.items():
        where = ", ".join(str(first_row + int(r)) for r in rows)
        problems.append(
            Problem(
                labels[int(rows[0])],
                spec.id_field,
                "a unique value",
                f"{len(rows)} records with this {spec.id_field} (rows {where})",
                "duplicate_id",
            )
        )
    return problems


def _lonlat_problem(label: str, bounds: np.ndarray) -> Problem | None:
    """Outside-China or swapped lon/lat problem for one geometry's (minx, miny, maxx, maxy)."""
    west, south, east, north = gm_crs.CHINA_BOUNDS
    minx, miny, maxx, maxy = bounds
    if west <= minx and maxx <= east and south <= miny and maxy <= north:
        return None
    found = f"lon {minx:.6f}, lat {miny:.6f}" if minx == maxx else f"bounds {tuple(bounds)}"
    if west <= miny and maxy <= east and south <= minx and maxx <= north:
        return Problem(
            label,
            "geometry",
            "lon within 73.66..135.05 and lat within 3.86..53.55 (China); longitude and latitude "
            "look swapped: swap the 经度/longitude and 纬度/latitude columns",
            found,
            "swapped_lonlat",
        )
    return Problem(
        label,
        "geometry",
        f"a location inside China (lon {west}..{east}, lat {south}..{north})",
        found,
        "outside_china",
    )


def _check_geometry(gdf: gpd.GeoDataFrame, spec: LayerKind, labels: Sequence[str]) -> list[Problem]:
    if "geometry" not in gdf.columns and not isinstance(gdf, gpd.GeoDataFrame):
        return [Problem("layer", "geometry", "a geometry column", "none", "missing_field")]
    geoms = np.asarray(gdf.geometry.values)
    problems: list[Problem] = []
    empty = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    types = shapely.get_type_id(geoms)
    names = np.array(["Point", "LineString", "LinearRing", "Polygon", "MultiPoint",
                      "MultiLineString", "MultiPolygon", "GeometryCollection"])  # fmt: skip
    valid = shapely.is_valid(geoms)
    lonlat = gdf.crs is None or CRS(gdf.crs).is_geographic
    geographic = geoms
    if gdf.crs is not None and not CRS(gdf.crs).equals(CRS(gm_crs.WGS84)):
        geographic = np.asarray(gdf.geometry.to_crs(gm_crs.WGS84).values)
        lonlat = True
    bounds = shapely.bounds(geographic)
    for i, label in enumerate(labels):
        if empty[i]:
            problems.append(
                Problem(
                    label, "geometry", "a location (geometry or lon/lat)", "empty", "empty_geometry"
                )
            )
            continue
        gtype = names[types[i]]
        if gtype not in spec.geometry_types:
            problems.append(
                Problem(
                    label,
                    "geometry",
                    " or ".join(spec.geometry_types),
                    gtype,
                    "wrong_geometry_type",
                )
            )
        if not valid[i]:
            reason = shapely.is_valid_reason(geoms[i])
            problems.append(
                Problem(label, "geometry", "a valid geometry", reason, "invalid_geometry")
            )
        if lonlat:
            issue = _lonlat_problem(label, bounds[i])
            if issue is not None:
                problems.append(issue)
    return problems


def validate(
    gdf: gpd.GeoDataFrame, kind: str | LayerKind, *, layer: str | None = None
) -> list[Problem]:
    """Every problem of ``gdf`` as a layer of ``kind``; an empty list when it is clean.

    Parameters
    ----------
    gdf
        The layer, as read by :func:`geo_minzheng.io.read_layer` (WGS84, canonical columns).
        It is not modified.
    kind
        A kind name from :mod:`geo_minzheng.kinds` or a :class:`LayerKind`.
    layer
        The layer's name in messages; defaults to ``gdf.attrs["layer"]`` or the kind name.

    Returns
    -------
    list[Problem]
        Problems found while reading (``gdf.attrs["read_problems"]``, e.g. unreadable
        coordinates), no records at all, then CRS, column, value, ID, consistency and geometry
        problems.
    """
    spec = _kind(kind)
    layer = layer or gdf.attrs.get("layer") or spec.name
    labels = record_labels(gdf, spec)
    problems: list[Problem] = list(gdf.attrs.get("read_problems", []))
    problems += check_records(gdf, layer)
    problems += _check_crs(gdf, layer)
    problems += _check_columns(gdf, spec, layer)
    for field in spec.fields:
        if field.name in gdf.columns:
            problems += _check_field(gdf[field.name], field, labels)
    problems += _check_ids(gdf, spec, labels)
    problems += _check_consistency(gdf, spec, labels)
    problems += _check_geometry(gdf, spec, labels)
    return problems


def check(gdf: gpd.GeoDataFrame, kind: str | LayerKind, *, layer: str | None = None) -> None:
    """Raise one LayerValidationError listing every problem of ``gdf``; return if it is clean."""
    problems = validate(gdf, kind, layer=layer)
    if problems:
        raise LayerValidationError(layer or gdf.attrs.get("layer") or _kind(kind).name, problems)


def repair_geometries(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """A copy of ``gdf`` with invalid geometries made valid (shapely ``make_valid``).

    Only called when a user asks for it: repairing changes shapes (a bow-tie polygon becomes two
    triangles), so validation reports invalid geometries instead of fixing them silently.
    """
    out = gdf.copy()
    geoms = np.asarray(out.geometry.values)
    invalid = ~shapely.is_valid(geoms) & ~shapely.is_missing(geoms)
    if invalid.any():
        geoms = geoms.copy()
        geoms[invalid] = shapely.make_valid(geoms[invalid])
        out = out.set_geometry(gpd.GeoSeries(geoms, index=out.index, crs=out.crs))
    return out


# --------------------------------------------------------------------------------------------
# GCJ-02 alignment check against reference roads
# --------------------------------------------------------------------------------------------


def _distances_m(xy: np.ndarray, tree: shapely.STRtree, to_working: Transformer) -> np.ndarray:
    """Distance (m) from each (lon, lat) to the nearest reference line."""
    x, y = to_working.transform(xy[:, 0], xy[:, 1])
    _, dist = tree.query_nearest(shapely.points(x, y), return_distance=True, all_matches=False)
    return dist


def alignment_offsets(
    gdf: gpd.GeoDataFrame,
    gdf_reference_lines: gpd.GeoDataFrame,
    *,
    quantile: float = 0.25,
    max_points: int = 5000,
) -> dict[str, float]:
    """A low quantile of the vertex-to-nearest-reference-line distance (m), three ways.

    Returns ``{"as_given": ..., "as_gcj02": ..., "as_bd09": ..., "n_vertices": ...}``: the layer
    taken as WGS84 as declared, and taken as GCJ-02 or BD-09 and converted to WGS84. Only
    vertices inside the reference lines' extent are used.

    Why the lower quartile and not the median: only some vertices of a boundary (or points of a
    facility layer) lie on a road; the others follow rivers or fields and are far from any road
    whatever the CRS. A GCJ-02 shift of 300-500 m pushes the on-road vertices off their roads,
    which moves the lower quartile several-fold, while the median is dominated by the off-road
    vertices. On the Changchun districts (GCJ-02) against OSM roads the lower quartile is 19 m as
    given and 5 m after conversion; the median barely moves (56 m vs 93 m).
    """
    ref = gdf_reference_lines.to_crs(gm_crs.WGS84)
    minx, miny, maxx, maxy = (float(v) for v in ref.total_bounds)
    working = gm_crs.working_crs((minx + maxx) / 2, (miny + maxy) / 2)
    to_working = Transformer.from_crs(gm_crs.WGS84, working, always_xy=True)
    tree = shapely.STRtree(np.asarray(ref.to_crs(working).geometry.values))
    layer = gdf.to_crs(gm_crs.WGS84) if gdf.crs is not None else gdf
    pts = np.unique(shapely.get_coordinates(np.asarray(layer.geometry.values)), axis=0)
    pts = pts[(pts[:, 0] >= minx) & (pts[:, 0] <= maxx) & (pts[:, 1] >= miny) & (pts[:, 1] <= maxy)]
    if len(pts) > max_points:
        pts = pts[np.linspace(0, len(pts) - 1, max_points).astype(int)]
    if len(pts) == 0:
        return {"as_given": math.nan, "as_gcj02": math.nan, "as_bd09": math.nan, "n_vertices": 0}
    variants = {
        "as_given": pts,
        "as_gcj02": np.column_stack(gm_crs.gcj02_to_wgs84(pts[:, 0], pts[:, 1])),
        "as_bd09": np.column_stack(gm_crs.bd09_to_wgs84(pts[:, 0], pts[:, 1])),
    }
    stats = {
        name: float(np.quantile(_distances_m(xy, tree, to_working), quantile))
        for name, xy in variants.items()
    }
    return {**stats, "n_vertices": len(pts)}


def check_alignment(
    gdf: gpd.GeoDataFrame,
    gdf_reference_lines: gpd.GeoDataFrame,
    *,
    layer: str | None = None,
    min_improvement_ratio: float = 0.5,
    min_improvement_m: float = 5.0,
    aligned_within_m: float = 12.0,
    min_vertices: int = 20,
) -> list[Problem]:
    """Detect a layer that is really GCJ-02 (Amap/Tencent) or BD-09 (Baidu) but declared WGS84.

    The layer's vertices are compared with reference road lines in WGS84 (OpenStreetMap), see
    :func:`alignment_offsets`: if undoing the GCJ-02 (or BD-09) shift brings the lower quartile
    of the vertex-to-road distance down to at most ``min_improvement_ratio`` of its value, by at
    least ``min_improvement_m`` metres, and to at most ``aligned_within_m`` (the on-road vertices
    are then really on the roads), the layer is reported as shifted. The absolute bound keeps a
    layer that merely sits at the edge of clipped reference roads from being flagged.

    Returns
    -------
    list[Problem]
        Empty when the layer lines up, or when fewer than ``min_vertices`` vertices overlap the
        reference lines (nothing can be said then).
    """
    layer = layer or gdf.attrs.get("layer") or "layer"
    stats = alignment_offsets(gdf, gdf_reference_lines)
    if stats["n_vertices"] < min_vertices:
        return []
    given = stats["as_given"]
    name, shifted = min(
        ("GCJ-02", stats["as_gcj02"]), ("BD-09", stats["as_bd09"]), key=lambda t: t[1]
    )
    if (
        shifted > min_improvement_ratio * given
        or given - shifted < min_improvement_m
        or shifted > aligned_within_m
    ):
        return []
    return [
        Problem(
            f"layer '{layer}'",
            "crs",
            "coordinates in WGS84 that line up with the reference roads; read the file with "
            f"source_crs='{name}'",
            f"a lower-quartile distance to roads of {given:.0f} m as given but {shifted:.0f} m "
            f"if the layer is {name} (Amap/Tencent: GCJ-02, Baidu: BD-09)",
            "gcj02_offset" if name == "GCJ-02" else "bd09_offset",
        )
    ]
