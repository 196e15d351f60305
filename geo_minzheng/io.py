"""Read and write layers: GeoJSON, GeoPackage, Shapefile, CSV/XLSX with lon/lat; UTF-8 and GBK.

Reading turns a bureau's own file into a layer in the shared in-memory form: a GeoDataFrame in
WGS84 with the kind's canonical column names (Chinese and English header variants such as
名称/床位数/经度/纬度 or "Floor Area (m2)" are recognised, :data:`kinds.HEADER_ALIASES`), field
types coerced per :mod:`geo_minzheng.kinds` without losing any value, and every problem reported
at once. The input file is never written to.

A file that cannot be read at all raises one :class:`LayerReadError` naming the file, with a
``code`` saying what is wrong, never a reader library's own exception:

- ``not_a_file``: a folder (``.gdb`` folders excepted)
- ``empty_file``: 0 bytes
- ``no_content``: only a byte-order mark or blank lines, or an empty worksheet: no header
- ``not_text``: a table (.csv/.txt/.tsv) holding binary data
- ``bad_encoding``: text that is not UTF-8 (with or without BOM), UTF-16 with BOM, GBK or GB18030
- ``bad_table``: a CSV row with more cells than the header has
- ``truncated``: a JSON file that ends in the middle (an interrupted download or copy)
- ``bad_json``: a JSON syntax error
- ``not_geojson``: valid JSON that is not GeoJSON
- ``missing_part``: a shapefile without its .shx or .dbf
- ``shapefile_part``: a .dbf, .shx, .prj, ... given instead of the .shp
- ``bad_format``: not the format its extension says (garbage, or renamed from another format)
- ``damaged``: an SQLite file named .gpkg whose content is broken (damaged or incomplete)
- ``damaged_workbook``: a ZIP file named .xlsx without a readable workbook inside
- ``unknown_format``: an extension no reader knows, and content GDAL does not recognise
- ``old_excel``: an .xls workbook (save it as .xlsx)
- ``no_geometry``: a table without geometry in a GeoPackage or similar
- ``no_permission``: the file may not be read
- ``unreadable``: anything else a reader refused (the reader's message is kept)
"""

from __future__ import annotations

import io as _stdio
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio

from geo_minzheng import crs as gm_crs
from geo_minzheng import validation as gm_validation
from geo_minzheng._errors import (
    CRSError,
    GeoMinzhengError,
    LayerReadError,
    LayerValidationError,
    Problem,
    UnknownIdError,
)
from geo_minzheng.kinds import HEADER_ALIASES, LayerKind, get_kind, normalize_header
from geo_minzheng.validation import coerce_column, is_missing, list_items

#: Column names recognised as longitude / latitude (compared case-insensitively, units stripped).
LON_NAMES = ("lon", "lng", "long", "longitude", "x", "经度", "东经", "wgs84_lon", "gcj02_lon")
LAT_NAMES = ("lat", "latitude", "y", "纬度", "北纬", "wgs84_lat", "gcj02_lat")
#: Encodings tried in order for text tables (GB18030 is the superset of GBK that 2005+ systems use).
#: UTF-16 is taken only with its byte-order mark (Excel's "Unicode text" export).
ENCODINGS = ("utf-8-sig", "utf-16", "utf-8", "gbk", "gb18030")
#: Extra Chinese/English headers per canonical field (defined in kinds.py, shared with the
#: validation's likely-match hints).
FIELD_ALIASES = HEADER_ALIASES
_TABLE_SUFFIXES = {".csv", ".txt", ".tsv"}
_EXCEL_SUFFIXES = {".xlsx", ".xlsm", ".xls"}
_JSON_SUFFIXES = {".geojson", ".json"}
#: The format a file's extension promises, as named in messages.
_FORMATS = {
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".gpkg": "GeoPackage",
    ".shp": "Shapefile",
    ".xlsx": "Excel (.xlsx)",
    ".xlsm": "Excel (.xlsm)",
    ".xls": "Excel (.xls)",
    ".csv": "CSV",
    ".txt": "CSV",
    ".tsv": "CSV",
    ".kml": "KML",
    ".gml": "GML",
    ".gdb": "FileGDB",
}
#: The files next to a .shp that are not layers by themselves.
_SHAPEFILE_PARTS = {".shx", ".dbf", ".prj", ".cpg", ".sbn", ".sbx", ".qix", ".qmd"}
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_GEOJSON_TYPES = {
    "FeatureCollection", "Feature", "Point", "MultiPoint", "LineString", "MultiLineString",
    "Polygon", "MultiPolygon", "GeometryCollection",
}  # fmt: skip


def _norm(name: object) -> str:
    """Header normalised for matching (:func:`geo_minzheng.kinds.normalize_header`)."""
    return normalize_header(name)


# --------------------------------------------------------------------------------------------
# Files that cannot be read: one LayerReadError naming the file
# --------------------------------------------------------------------------------------------


def _fail(path: Path | str, code: str, reason: str, **values: object) -> LayerReadError:
    return LayerReadError(str(path), code, reason, values)


def _short(exc: BaseException) -> str:
    """A reader's message on one line, without GDAL's advice to name a driver."""
    text = " ".join(str(exc).split())
    text = text.split("; It might help", 1)[0]
    return text if len(text) <= 200 else text[:197] + "..."


def _check_file(path: Path) -> None:
    """Refuse what is not a readable, non-empty file before any reader sees it."""
    if path.is_dir():
        if path.suffix.lower() == ".gdb":  # an Esri FileGDB is a folder that GDAL reads
            return
        raise _fail(path, "not_a_file", "it is a folder, not a file")
    if path.stat().st_size == 0:
        raise _fail(path, "empty_file", "the file is empty (0 bytes)")
    if path.suffix.lower() in _SHAPEFILE_PARTS:
        shp = path.with_suffix(".shp").name
        raise _fail(
            path,
            "shapefile_part",
            f"this is one part of a shapefile, not a layer: give the .shp file ({shp})",
            shp=shp,
        )
    if path.suffix.lower() == ".shp":
        for part in (".shx", ".dbf"):
            if not any(path.with_suffix(s).exists() for s in (part, part.upper())):
                raise _fail(
                    path,
                    "missing_part",
                    f"the shapefile's {part} file is missing; copy {path.stem}{part} next to it "
                    "(a shapefile is .shp, .shx, .dbf and .prj together)",
                    part=part,
                )


def _position(data: bytes, offset: int) -> tuple[int, int]:
    """(line, byte in the line), 1-based, of byte ``offset``."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, offset - line_start + 1


def _encoding_error(
    path: Path, data: bytes, tried: tuple[str, ...], *, geojson: bool = False
) -> LayerReadError:
    """The undecodable byte that the most plausible encoding (the one read furthest) hit."""
    furthest = 0
    for encoding in tried:
        try:
            data.decode(encoding)
        except UnicodeDecodeError as exc:
            furthest = max(furthest, exc.start)
        except LookupError:
            continue
    line, column = _position(data, furthest)
    value = f"0x{data[furthest]:02X}" if furthest < len(data) else "end of file"
    names = ", ".join(tried)
    advice = (
        "a GeoJSON file must be UTF-8 text (RFC 7946)"
        if geojson
        else "save the file as 'CSV UTF-8' (or GBK) in Excel/WPS"
    )
    return _fail(
        path,
        "bad_encoding",
        f"the text is not in any of {names}: byte {value} at line {line}, byte {column} cannot "
        f"be decoded; {advice}",
        line=line,
        column=column,
        byte=value,
        tried=names,
        geojson=geojson,
    )


def _json_problem(path: Path, data: bytes) -> LayerReadError | None:
    """Why a .geojson/.json file is not GeoJSON: encoding, truncation, syntax, wrong JSON."""
    if b"\x00" in data[:4096]:
        return _fail(
            path,
            "bad_format",
            "not a GeoJSON file: it holds binary data (damaged, or renamed from another format)",
            format="GeoJSON",
            detail="",
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return _encoding_error(path, data, ("utf-8",), geojson=True)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        rest = text[exc.pos :]
        unterminated = exc.msg.startswith("Unterminated string") and '"' not in rest[1:]
        if exc.pos >= len(text.rstrip()) or unterminated:
            return _fail(
                path,
                "truncated",
                f"the file ends too early, at line {exc.lineno}, column {exc.colno}: it is "
                "incomplete (an interrupted download or copy?)",
                line=exc.lineno,
                column=exc.colno,
            )
        return _fail(
            path,
            "bad_json",
            f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
            line=exc.lineno,
            column=exc.colno,
            detail=exc.msg,
        )
    kind = document.get("type") if isinstance(document, dict) else None
    if kind not in _GEOJSON_TYPES:
        found = (
            f'"type": {json.dumps(kind, ensure_ascii=False)}'
            if isinstance(document, dict)
            else f"a JSON {type(document).__name__}"
        )
        return _fail(
            path,
            "not_geojson",
            f'valid JSON but not GeoJSON: expected "type": "FeatureCollection", found {found}',
            found=found,
        )
    return None


def _format_problem(path: Path, exc: BaseException) -> LayerReadError:
    """The clearest LayerReadError for a file a reader refused with ``exc``."""
    if isinstance(exc, LayerReadError):
        return exc
    if isinstance(exc, PermissionError):
        return _fail(path, "no_permission", "the file may not be read (permission denied)")
    if isinstance(exc, IsADirectoryError) or path.is_dir():
        return _fail(path, "not_a_file", "it is a folder, not a file")
    if isinstance(exc, OSError) and not path.exists():
        return _fail(path, "unreadable", _short(exc), detail=_short(exc))
    suffix = path.suffix.lower()
    fmt = _FORMATS.get(suffix)
    try:
        if path.stat().st_size == 0:
            return _fail(path, "empty_file", "the file is empty (0 bytes)")
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError as os_exc:
        return _fail(path, "unreadable", _short(os_exc), detail=_short(os_exc))
    if suffix in _JSON_SUFFIXES:
        problem = _json_problem(path, path.read_bytes())
        if problem is not None:
            return problem
    if suffix == ".xls" or (isinstance(exc, ImportError) and "xlrd" in str(exc)):
        return _fail(
            path,
            "old_excel",
            "old .xls workbooks cannot be read: save it as .xlsx (or CSV) in Excel/WPS",
        )
    expected_head = {".gpkg": b"SQLite f", ".shp": b"\x00\x00\x27\x0a"}.get(suffix)
    if suffix in (".xlsx", ".xlsm"):
        expected_head = b"PK\x03\x04"
    if expected_head is not None and not head.startswith(expected_head):
        return _fail(
            path,
            "bad_format",
            f"not a {fmt} file: its content is something else (damaged, or renamed from "
            "another format)",
            format=fmt,
            detail="",
        )
    if suffix == ".gpkg":  # an SQLite file, broken inside
        detail = _sqlite_detail(exc)
        return _fail(
            path,
            "damaged",
            f"the GeoPackage is damaged or incomplete: {detail}",
            format=fmt,
            detail=detail,
        )
    if suffix in (".xlsx", ".xlsm"):  # a ZIP file, without a readable workbook inside
        return _fail(
            path,
            "damaged_workbook",
            f"the workbook is damaged, or another ZIP-based file was renamed to {suffix}",
            suffix=suffix,
        )
    if fmt is None:
        return _fail(
            path,
            "unknown_format",
            f"unknown file format '{suffix or path.name}': use GeoJSON, GeoPackage, Shapefile, "
            "CSV or XLSX",
            suffix=suffix or path.name,
        )
    return _fail(
        path, "bad_format", f"not a valid {fmt} file: {_short(exc)}", format=fmt, detail=_short(exc)
    )


def _sqlite_detail(exc: BaseException) -> str:
    """SQLite's own words from a GDAL message, without the SQL statement, each said once."""
    text = re.sub(r"sqlite3_\w+\(.*?\) failed: ", "", " ".join(str(exc).split()))
    parts = list(dict.fromkeys(p.strip() for p in text.split(";") if p.strip()))
    return _short(RuntimeError("; ".join(parts)))


#: Exceptions that third-party readers raise for a bad file (the CLI turns them into one line
#: with :func:`read_error`); OSError is left to the caller, as it may come from writing too.
READ_ERRORS: tuple[type[BaseException], ...] = (
    UnicodeDecodeError,
    pyogrio.errors.DataSourceError,
    pyogrio.errors.DataLayerError,
    pyogrio.errors.FieldError,
    pyogrio.errors.GeometryError,
    pd.errors.ParserError,
    pd.errors.EmptyDataError,
    json.JSONDecodeError,
)


def read_error(exc: BaseException, path: str | Path | None = None) -> LayerReadError:
    """``exc``, raised by a reader for ``path``, as one :class:`LayerReadError`.

    For callers that read a file with geopandas/pyogrio/pandas themselves: the file is looked
    at again to say what is wrong (empty, truncated, not its format, ...). Without ``path`` it
    is taken from the exception (``OSError.filename``, or the path a GDAL message quotes).
    """
    if isinstance(exc, LayerReadError):
        return exc
    if path is None:
        filename = getattr(exc, "filename", None)
        quoted = re.search(r"'([^']+)'", str(exc))
        path = filename or (quoted.group(1) if quoted else None)
    if path is None or not Path(path).exists():
        where = str(path) if path is not None else ""
        return _fail(where, "unreadable", _short(exc), detail=_short(exc))
    return _format_problem(Path(path), exc)


# --------------------------------------------------------------------------------------------
# Encodings and raw reading
# --------------------------------------------------------------------------------------------


def detect_encoding(data: bytes, *, candidates: tuple[str, ...] = ENCODINGS) -> str:
    """The first of ``candidates`` that decodes ``data`` strictly.

    A UTF-8 byte-order mark gives 'utf-8-sig', a UTF-16 one 'utf-16'. Chinese text in GBK is
    almost never valid UTF-8, so trying UTF-8 first and GBK/GB18030 next is reliable for the
    encodings bureaus use.
    """
    for encoding in candidates:
        if encoding == "utf-8-sig" and not data.startswith(_UTF8_BOM):
            continue
        if encoding == "utf-16" and not data.startswith(_UTF16_BOMS):
            continue
        try:
            data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return encoding
    msg = f"cannot decode the file as any of {', '.join(candidates)}; pass encoding=..."
    raise ValueError(msg)


def _decode_table(path: Path, data: bytes, encoding: str | None) -> tuple[str, str]:
    """The text of a table and its encoding; LayerReadError when it is not text."""
    if encoding is None:
        if b"\x00" in data[:4096] and not data.startswith(_UTF16_BOMS):
            raise _fail(
                path,
                "not_text",
                "it holds binary data, not a text table: is it really a CSV file?",
            )
        try:
            encoding = detect_encoding(data)
        except ValueError:
            tried = tuple(e for e in ENCODINGS if e not in ("utf-8-sig", "utf-16"))
            raise _encoding_error(path, data, tried) from None
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError:
        raise _encoding_error(path, data, (encoding,)) from None


def _read_text_table(path: Path, encoding: str | None) -> tuple[pd.DataFrame, str]:
    data = path.read_bytes()
    text, encoding = _decode_table(path, data, encoding)
    text = text.lstrip("\ufeff")
    if not text.strip():
        bom = data.startswith(_UTF8_BOM) or data.startswith(_UTF16_BOMS)
        what = "only a byte-order mark (BOM)" if bom else "only blank lines"
        raise _fail(path, "no_content", f"no header and no records: {what}", bom=bom)
    first_line = text.split("\n", 1)[0]
    sep = max((",", "\t", ";", "|"), key=first_line.count)
    try:
        frame = pd.read_csv(
            _stdio.StringIO(text),
            sep=sep,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            skipinitialspace=True,
        )
    except pd.errors.ParserError as exc:
        match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if match is None:
            raise _fail(path, "bad_table", _short(exc), detail=_short(exc)) from None
        expected, line, found = (int(g) for g in match.groups())
        raise _fail(
            path,
            "bad_table",
            f"line {line} has {found} cells but the header has {expected} columns (a separator "
            f"'{sep}' inside a value needs quotes)",
            line=line,
            expected=expected,
            found=found,
            sep=sep,
        ) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame, encoding


def _read_excel(path: Path, sheet: str | int | None) -> pd.DataFrame:
    try:
        book = pd.ExcelFile(path)
    except Exception as exc:  # pandas/openpyxl raise ValueError, KeyError, BadZipFile, ...
        raise _format_problem(path, exc) from None
    with book:
        names = [str(n) for n in book.sheet_names]
        chosen: str | int = sheet if sheet is not None else 0
        if isinstance(chosen, str) and chosen not in names:
            msg = f"'{path.name}' has no sheet '{chosen}'; it has: {', '.join(names) or 'none'}"
            raise UnknownIdError(msg)
        frame = pd.read_excel(book, sheet_name=chosen, dtype=object)
    if len(frame.columns) == 0:
        name = chosen if isinstance(chosen, str) else names[chosen]
        raise _fail(
            path, "no_content", f"sheet '{name}' is empty: no header and no records", sheet=name
        )
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _dbf_encoding(path: Path) -> str | None:
    """Encoding of a shapefile's .dbf when no .cpg says it: UTF-8, else GBK/GB18030."""
    if path.suffix.lower() != ".shp":
        return None
    stem = path.with_suffix("")
    if any(stem.with_suffix(s).exists() for s in (".cpg", ".CPG")):
        return None
    dbf = next(
        (stem.with_suffix(s) for s in (".dbf", ".DBF") if stem.with_suffix(s).exists()), None
    )
    if dbf is None:
        return None
    data = dbf.read_bytes()
    header_len = int.from_bytes(data[8:10], "little")
    # field names (11 bytes each from byte 32) and record bytes carry the text
    names = b"".join(data[i : i + 11] for i in range(32, header_len - 1, 32)).replace(b"\x00", b"")
    try:
        return detect_encoding(names + data[header_len:], candidates=("utf-8", "gbk", "gb18030"))
    except ValueError:
        return None


def layer_names(path: str | Path) -> list[str]:
    """The layers of a GeoPackage (or any file GDAL reads); LayerReadError when unreadable."""
    path = Path(path)
    try:
        _check_file(path)
        return [str(row[0]) for row in pyogrio.list_layers(path)]
    except (GeoMinzhengError, FileNotFoundError):
        raise
    except Exception as exc:  # GDAL's DataSourceError and anything else about the file
        raise _format_problem(path, exc) from None


def _pick_layer(path: Path, layer_name: str | None, layer_id: str | None) -> str | None:
    """The layer to read from a multi-layer file; the error lists the layers it has."""
    names = layer_names(path)
    if layer_name is None:
        if len(names) <= 1:
            return None
        if layer_id in names:
            return layer_id
        msg = (
            f"'{path.name}' holds several layers ({', '.join(names)}): pass layer_name= "
            "(in the catalog: layer:)"
        )
        raise UnknownIdError(msg)
    if layer_name not in names:
        msg = f"'{path.name}' has no layer '{layer_name}'; it has: {', '.join(names) or 'none'}"
        raise UnknownIdError(msg)
    return layer_name


def _read_vector(
    path: Path, layer_name: str | None, encoding: str | None, layer_id: str | None = None
) -> tuple[gpd.GeoDataFrame, str]:
    layer_name = _pick_layer(path, layer_name, layer_id)
    encoding = encoding or _dbf_encoding(path)
    kwargs = {"encoding": encoding} if encoding else {}
    gdf = gpd.read_file(path, layer=layer_name, engine="pyogrio", **kwargs)
    if not isinstance(gdf, gpd.GeoDataFrame):
        where = f"layer '{layer_name}'" if layer_name else "the layer"
        raise _fail(
            path,
            "no_geometry",
            f"{where} has no geometry: it is a plain table, not a map layer",
            layer=layer_name or "",
        )
    return gdf, encoding or "utf-8"


# --------------------------------------------------------------------------------------------
# Columns
# --------------------------------------------------------------------------------------------


def _column_map(
    columns: list[str], spec: LayerKind, field_map: Mapping[str, str] | None
) -> dict[str, str]:
    """Source column -> canonical field, from ``field_map`` then names, zh/en labels, aliases."""
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for canonical, source_col in (field_map or {}).items():
        if source_col in columns:
            mapping[source_col] = canonical
            taken.add(canonical)
    by_norm: dict[str, str] = {}
    for col in columns:
        by_norm.setdefault(_norm(col), col)
    for field in spec.fields:
        if field.name in taken:
            continue
        candidates = (
            field.name,
            field.label_zh,
            field.label_en,
            *FIELD_ALIASES.get(field.name, ()),
            field.name[:10],  # shapefiles cut names to 10 characters: effective_area_m2
        )
        for candidate in candidates:
            found = by_norm.get(_norm(candidate))
            if found is not None and found not in mapping:
                mapping[found] = field.name
                taken.add(field.name)
                break
    return mapping


def _find_column(columns: list[str], given: str | None, names: tuple[str, ...]) -> str | None:
    if given is not None:
        return given if given in columns else None
    by_norm = {_norm(c): c for c in reversed(columns)}
    return next((by_norm[_norm(n)] for n in names if _norm(n) in by_norm), None)


def _points_from_table(
    frame: pd.DataFrame,
    *,
    source: Path,
    layer: str,
    lon_field: str | None,
    lat_field: str | None,
    first_row: int,
) -> tuple[gpd.GeoDataFrame, list[Problem]]:
    """Point geometry from lon/lat columns; unreadable coordinates become problems, not NaN."""
    columns = list(frame.columns)
    lon_col = _find_column(columns, lon_field, LON_NAMES)
    lat_col = _find_column(columns, lat_field, LAT_NAMES)
    if lon_col is None or lat_col is None:
        missing = [
            f"{what} column {given!r}" if given else f"a {what} column ({'/'.join(names)})"
            for what, col, given, names in (
                ("longitude", lon_col, lon_field, LON_NAMES),
                ("latitude", lat_col, lat_field, LAT_NAMES),
            )
            if col is None
        ]
        problem = Problem(
            f"file '{source.name}'",
            "lon/lat",
            " and ".join(missing) + " (or pass lon_field=/lat_field=)",
            "columns: " + ", ".join(columns),
            "missing_lonlat",
        )
        # a header-only table is "no records" as well, not only a missing column
        no_records = gm_validation.check_records(frame, layer)
        raise LayerValidationError(layer, [problem, *no_records])
    lon = pd.to_numeric(frame[lon_col].map(_clean_number), errors="coerce").to_numpy(float)
    lat = pd.to_numeric(frame[lat_col].map(_clean_number), errors="coerce").to_numpy(float)
    problems: list[Problem] = []
    for col, values in ((lon_col, lon), (lat_col, lat)):
        raw = frame[col]
        unreadable = np.isnan(values) & ~raw.map(is_missing).to_numpy(bool)
        for i in np.flatnonzero(unreadable):
            problems.append(
                Problem(
                    f"row {first_row + i}", col, "a number (degrees)", repr(raw.iloc[i]), "bad_type"
                )
            )
    geometry = gpd.points_from_xy(lon, lat)
    geometry[np.isnan(lon) | np.isnan(lat)] = None
    keep_raw = bool(problems)  # keep the raw columns only when some coordinates were unreadable
    rest = frame if keep_raw else frame.drop(columns=[lon_col, lat_col])
    return gpd.GeoDataFrame(rest, geometry=geometry, crs=None), problems


def _clean_number(value: object) -> object:
    if isinstance(value, str):
        return value.strip().replace("°", "").replace("，", "").replace(",", ".")
    return value


def _canonicalise(
    gdf: gpd.GeoDataFrame, spec: LayerKind, field_map: Mapping[str, str] | None
) -> gpd.GeoDataFrame:
    """Rename recognised columns to canonical names and coerce them; keep every other column."""
    geom_name = gdf.geometry.name
    columns = [c for c in gdf.columns if c != geom_name]
    mapping = _column_map(columns, spec, field_map)
    out = gdf.rename(columns=mapping)
    for field in spec.fields:
        if field.name in out.columns:
            out[field.name] = coerce_column(out[field.name], field)[0]
    if geom_name != "geometry":
        out = out.rename_geometry("geometry")
    return out


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _read_source(
    path: Path,
    *,
    layer: str,
    layer_name: str | None,
    layer_id: str | None,
    encoding: str | None,
    lon_field: str | None,
    lat_field: str | None,
) -> tuple[gpd.GeoDataFrame, str, list[Problem], bool]:
    """The file's frame (in its own CRS), encoding, read problems, and whether it is a table."""
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix in _TABLE_SUFFIXES or suffix in _EXCEL_SUFFIXES:
        if suffix in _TABLE_SUFFIXES:
            frame, used_encoding = _read_text_table(path, encoding)
        else:
            frame, used_encoding = _read_excel(path, layer_name), "xlsx"
        gdf, problems = _points_from_table(
            frame, source=path, layer=layer, lon_field=lon_field, lat_field=lat_field, first_row=2
        )
        return gdf, used_encoding, problems, True
    gdf, used_encoding = _read_vector(path, layer_name, encoding, layer_id)
    return gdf, used_encoding, [], False


def read_layer(
    source: str | Path,
    *,
    kind: str,
    layer: str | None = None,
    source_crs: object | None = None,
    field_map: Mapping[str, str] | None = None,
    lon_field: str | None = None,
    lat_field: str | None = None,
    encoding: str | None = None,
    validate: bool = True,
    layer_name: str | None = None,
) -> gpd.GeoDataFrame:
    """Read a layer file into WGS84 with the kind's canonical fields.

    Parameters
    ----------
    source
        GeoJSON, GeoPackage, Shapefile (.shp), CSV/TXT or XLSX file.
    kind
        The layer kind (``geo_minzheng.kinds.KINDS``); decides field names, types and checks.
    layer
        The layer's ID in messages and ``gdf.attrs["layer"]``; defaults to ``layer_name`` or the
        file name without suffix.
    source_crs
        CRS of the file's coordinates when the file does not say it or says it wrongly: an EPSG
        code (CGCS2000 is 'EPSG:4490'), 'GCJ-02' (Amap/Tencent) or 'BD-09' (Baidu). Tables
        (CSV/XLSX) are taken as WGS84 lon/lat unless given.
    field_map
        Canonical field -> source column, for headers that are not recognised automatically.
    lon_field, lat_field
        Coordinate columns of a table; found automatically (lon/lng/longitude/x/经度, ...).
    encoding
        Text encoding of a table or shapefile; detected when omitted (UTF-8, UTF-8 with BOM,
        UTF-16 with BOM, GBK, GB18030) and reported in ``gdf.attrs["encoding"]``.
    validate
        Raise :class:`LayerValidationError` listing every problem (default). With False the
        problems are left for :func:`geo_minzheng.validation.validate`.
    layer_name
        The layer inside a GeoPackage, or the sheet of a workbook.

    Returns
    -------
    GeoDataFrame
        In EPSG:4326; ``attrs`` holds kind, layer, source, encoding, source_crs, first_row and
        read_problems (values that could not be read, e.g. non-numeric coordinates).

    Raises
    ------
    FileNotFoundError
        ``source`` does not exist.
    LayerReadError
        The file cannot be read at all (empty, truncated, undecodable, not its format, a
        folder, ...); its ``code`` says which (see the module's table).
    CRSError
        A vector file without a coordinate system and no ``source_crs``.
    LayerValidationError
        A table without lon/lat columns, or (with ``validate``) any problem of the layer.
    """
    spec = get_kind(kind)
    path = Path(source)
    if not path.exists():
        msg = f"layer file not found: {path}"
        raise FileNotFoundError(msg)
    layer_id = layer
    layer = layer or layer_name or path.stem
    try:
        gdf, used_encoding, read_problems, is_table = _read_source(
            path,
            layer=layer,
            layer_name=layer_name,
            layer_id=layer_id,
            encoding=encoding,
            lon_field=lon_field,
            lat_field=lat_field,
        )
    except (GeoMinzhengError, FileNotFoundError):
        raise
    except Exception as exc:  # whatever a reader library raises about the file itself
        raise _format_problem(path, exc) from None
    if is_table:
        declared = source_crs if source_crs is not None else gm_crs.WGS84
    else:
        if gdf.crs is None and source_crs is None:
            raise CRSError(_no_crs_message(path))
        declared = source_crs if source_crs is not None else gdf.crs
    gdf = gm_crs.to_wgs84(gdf, declared)
    gdf = _canonicalise(gdf, spec, field_map)
    gdf.attrs = {
        "kind": spec.name,
        "layer": layer,
        "source": str(path),
        "encoding": used_encoding,
        "source_crs": _crs_name(declared),
        "first_row": 2 if is_table else 1,
        "read_problems": read_problems,
    }
    if validate:
        problems = gm_validation.validate(gdf, spec, layer=layer)
        if problems:
            raise LayerValidationError(layer, problems)
    return gdf


def validate_file(path: str | Path, *, kind: str, **read_kwargs: Any) -> list[Problem]:
    """Read ``path`` as a layer of ``kind`` and return every problem (``geo-minzheng validate``).

    Problems with the layer's columns and records are returned, never raised, including a
    table without lon/lat columns and a file with a header but no records (``no_records``).
    A file that cannot be read at all raises :class:`LayerReadError`; a missing file
    FileNotFoundError; a vector file without a CRS CRSError. ``read_kwargs`` go to
    :func:`read_layer` (source_crs, layer_name, field_map, ...).
    """
    try:
        gdf = read_layer(path, kind=kind, validate=False, **read_kwargs)
    except LayerValidationError as exc:  # a table without lon/lat columns
        return exc.problems
    return gm_validation.validate(gdf, kind, layer=gdf.attrs.get("layer"))


def read_features(source: str | Path) -> gpd.GeoDataFrame:
    """Read a vector file as it is, with no kind: hazard areas, closed roads, ...

    The same checks as :func:`read_layer`: FileNotFoundError when ``source`` does not exist,
    :class:`LayerReadError` naming the file when it cannot be read (empty, truncated, not its
    format, a folder, no geometry). Columns and CRS are left as the file has them.
    """
    path = Path(source)
    if not path.exists():
        msg = f"file not found: {path}"
        raise FileNotFoundError(msg)
    try:
        _check_file(path)
        gdf = gpd.read_file(path, engine="pyogrio")
    except (GeoMinzhengError, FileNotFoundError):
        raise
    except Exception as exc:  # whatever a reader library raises about the file itself
        raise _format_problem(path, exc) from None
    if not isinstance(gdf, gpd.GeoDataFrame):
        raise _fail(
            path, "no_geometry", "the file has no geometry: it is a plain table, not a map layer"
        )
    return gdf


def _crs_name(crs: object) -> str:
    normalized = gm_crs.normalize_crs(crs)
    return normalized if isinstance(normalized, str) else normalized.to_string()


def _no_crs_message(path: Path) -> str:
    if path.suffix.lower() == ".shp":
        return (
            f"shapefile '{path.name}' has no .prj file, so its coordinate system is unknown: "
            f"pass source_crs (e.g. source_crs='EPSG:4490' for CGCS2000, 'EPSG:4326' for WGS84, "
            f"'GCJ-02' for Amap/Tencent data) or put the .prj next to '{path.name}'"
        )
    return (
        f"layer file '{path.name}' has no coordinate system: pass source_crs "
        f"(e.g. 'EPSG:4490', 'EPSG:4326' or 'GCJ-02')"
    )


def _prepare_for_writing(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """A WGS84 copy with list values joined by ';' (GeoPackage and GeoJSON need scalars)."""
    if gdf.crs is None:
        msg = "cannot write a layer without a CRS: set it with gdf.set_crs(...) or crs.to_wgs84"
        raise CRSError(msg)
    out = gdf.to_crs(gm_crs.WGS84)
    for col in out.columns:
        if col == out.geometry.name or out[col].dtype != object:
            continue
        values = out[col].tolist()
        if any(isinstance(v, (list, tuple, np.ndarray)) for v in values):
            out[col] = [
                None
                if not isinstance(v, (list, tuple, np.ndarray)) and is_missing(v)
                else ";".join(list_items(v))
                for v in values
            ]
    out.attrs = {}
    return out


def write_gpkg(layers: Mapping[str, gpd.GeoDataFrame], path: str | Path) -> Path:
    """Write each frame as a GeoPackage layer named by its key; other layers in the file stay."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for name, gdf in layers.items():
        out = _prepare_for_writing(gdf)
        pyogrio.write_dataframe(out, path, layer=name, driver="GPKG")
    return path


def write_geojson(gdf: gpd.GeoDataFrame, path: str | Path) -> Path:
    """Write ``gdf`` as RFC 7946 GeoJSON (WGS84, right-hand polygons, 7 decimals ~ 1 cm)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = _prepare_for_writing(gdf)
    if path.exists():
        path.unlink()
    pyogrio.write_dataframe(out, path, driver="GeoJSON", layer_options={"RFC7946": "YES"})
    return path
