"""Read and write layers: GeoJSON, GeoPackage, Shapefile, CSV/XLSX with lon/lat; UTF-8 and GBK.

Reading turns a bureau's own file into a layer in the shared in-memory form: a GeoDataFrame in
WGS84 with the kind's canonical column names (Chinese headers such as 名称/床位数/经度/纬度 are
recognised), field types coerced per :mod:`geo_minzheng.kinds` without losing any value, and every
problem reported at once. The input file is never written to.
"""

from __future__ import annotations

import io as _stdio
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
from geo_minzheng._errors import CRSError, LayerValidationError, Problem, UnknownIdError
from geo_minzheng.kinds import LayerKind, get_kind
from geo_minzheng.validation import coerce_column, is_missing, list_items

#: Column names recognised as longitude / latitude (compared case-insensitively, units stripped).
LON_NAMES = ("lon", "lng", "long", "longitude", "x", "经度", "东经", "wgs84_lon", "gcj02_lon")
LAT_NAMES = ("lat", "latitude", "y", "纬度", "北纬", "wgs84_lat", "gcj02_lat")
#: Encodings tried in order for text tables (GB18030 is the superset of GBK that 2005+ systems use).
ENCODINGS = ("utf-8-sig", "utf-8", "gbk", "gb18030")
#: Extra Chinese/English headers seen in bureau registries, per canonical field.
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("编号", "编码", "代码", "序号", "fid", "identifier"),
    "name": ("名称", "机构名称", "设施名称", "场所名称", "单位名称", "name_zh"),
    "address": ("地址", "详细地址", "地点"),
    "beds": ("床位", "床位数", "床位数量", "核定床位"),
    "floor_area_m2": ("建筑面积", "面积", "用房面积", "floor_area"),
    "effective_area_m2": ("有效避难面积", "有效面积", "避难面积", "effective_area"),
    "capacity_persons": ("可容纳人数", "容纳人数", "避难人数", "capacity"),
    "population": ("人口", "常住人口", "人口数", "总人口"),
    "aged_60_plus": ("60岁及以上人口", "60岁以上人口", "老年人口", "老年人数"),
    "households": ("户数", "总户数"),
    "admin_code": ("所属行政区划代码", "行政区划代码", "区划代码", "社区代码"),
    "adcode": ("行政区划代码", "区划代码", "code"),
    "status": ("状态", "运行状态"),
    "category": ("类别", "类型", "机构类型"),
    "shelter_class": ("场所类别", "避难场所类别", "类别"),
    "level": ("级别", "层级"),
}
_TABLE_SUFFIXES = {".csv", ".txt", ".tsv"}
_EXCEL_SUFFIXES = {".xlsx", ".xlsm", ".xls"}
_UNIT_SUFFIX = re.compile(r"\s*[（(\[【].*?[)）\]】]\s*$")


def _norm(name: object) -> str:
    """Header normalised for matching: stripped, unit suffix such as '(m²)' removed, lower case."""
    return _UNIT_SUFFIX.sub("", str(name).strip().lstrip("\ufeff")).strip().lower()


# --------------------------------------------------------------------------------------------
# Encodings and raw reading
# --------------------------------------------------------------------------------------------


def detect_encoding(data: bytes, *, candidates: tuple[str, ...] = ENCODINGS) -> str:
    """The first of ``candidates`` that decodes ``data`` strictly.

    A UTF-8 byte-order mark gives 'utf-8-sig'. Chinese text in GBK is almost never valid UTF-8,
    so trying UTF-8 first and GBK/GB18030 next is reliable for the encodings bureaus use.
    """
    for encoding in candidates:
        if encoding == "utf-8-sig" and not data.startswith(b"\xef\xbb\xbf"):
            continue
        try:
            data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return encoding
    msg = f"cannot decode the file as any of {', '.join(candidates)}; pass encoding=..."
    raise ValueError(msg)


def _read_text_table(path: Path, encoding: str | None) -> tuple[pd.DataFrame, str]:
    data = path.read_bytes()
    encoding = encoding or detect_encoding(data)
    text = data.decode(encoding)
    first_line = text.split("\n", 1)[0]
    sep = max((",", "\t", ";", "|"), key=first_line.count)
    frame = pd.read_csv(
        _stdio.StringIO(text),
        sep=sep,
        dtype=str,
        keep_default_na=False,
        na_values=[""],
        skipinitialspace=True,
    )
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame, encoding


def _read_excel(path: Path, sheet: str | int | None) -> pd.DataFrame:
    frame = pd.read_excel(path, sheet_name=sheet if sheet is not None else 0, dtype=object)
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


def _pick_layer(path: Path, layer_name: str | None, layer_id: str | None) -> str | None:
    """The layer to read from a multi-layer file; the error lists the layers it has."""
    names = [str(row[0]) for row in pyogrio.list_layers(path)]
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
    return next((by_norm[n] for n in names if n in by_norm), None)


def _points_from_table(
    frame: pd.DataFrame,
    *,
    source: Path,
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
        raise LayerValidationError(source.name, [problem])
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
        GBK, GB18030) and reported in ``gdf.attrs["encoding"]``.
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
    """
    spec = get_kind(kind)
    path = Path(source)
    if not path.exists():
        msg = f"layer file not found: {path}"
        raise FileNotFoundError(msg)
    suffix = path.suffix.lower()
    layer_id = layer
    layer = layer or layer_name or path.stem
    read_problems: list[Problem] = []
    first_row = 1
    if suffix in _TABLE_SUFFIXES or suffix in _EXCEL_SUFFIXES:
        first_row = 2
        if suffix in _TABLE_SUFFIXES:
            frame, used_encoding = _read_text_table(path, encoding)
        else:
            frame, used_encoding = _read_excel(path, layer_name), "xlsx"
        gdf, read_problems = _points_from_table(
            frame, source=path, lon_field=lon_field, lat_field=lat_field, first_row=first_row
        )
        declared = source_crs if source_crs is not None else gm_crs.WGS84
    else:
        gdf, used_encoding = _read_vector(path, layer_name, encoding, layer_id)
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
        "first_row": first_row,
        "read_problems": read_problems,
    }
    if validate:
        problems = gm_validation.validate(gdf, spec, layer=layer)
        if problems:
            raise LayerValidationError(layer, problems)
    return gdf


def validate_file(path: str | Path, *, kind: str, **read_kwargs: Any) -> list[Problem]:
    """Read ``path`` as a layer of ``kind`` and return every problem (``geo-minzheng validate``).

    Reading errors that stop the file from being read at all (unknown format, no CRS) are raised;
    problems with records are returned, never raised. ``read_kwargs`` go to :func:`read_layer`
    (source_crs, layer_name, field_map, ...).
    """
    gdf = read_layer(path, kind=kind, validate=False, **read_kwargs)
    return gm_validation.validate(gdf, kind, layer=gdf.attrs.get("layer"))


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
