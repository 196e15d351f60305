"""Persistence of layers: GeoPackage (embedded default) and PostGIS behind one interface, audited.

``open_store(url)`` picks the backend from a settings URL: ``gpkg:///path/store.gpkg`` (or a path
ending in ``.gpkg``) opens a single-file GeoPackage through the standard library's sqlite3;
``postgresql://user@host/db`` opens PostGIS through psycopg 3 with a connection pool.

Layout, the same in both backends
---------------------------------
* one feature table per layer, named after the layer ID: ``fid`` (integer key, insertion order),
  ``feature_id`` (the record's own ID, unique), ``version`` (1 on create, +1 on every update),
  ``properties`` (JSON object with the record's attributes) and the geometry (WGS84). In the
  GeoPackage the table is registered in ``gpkg_contents``/``gpkg_geometry_columns`` with standard
  GeoPackage geometry blobs, so QGIS and GDAL open it as an ordinary layer; in PostGIS the geometry
  is ``geometry(Geometry, 4326)`` with a GiST index.
* ``gm_layers``: layer ID, kind, title, editability.
* ``gm_audit``: one row per write (who, when, action, version before/after, record before/after).

Why JSON properties rather than one column per field: a layer may carry extra columns beyond its
kind's fields, edits never need DDL (so a write never takes a schema lock), and both backends
filter on JSON with bound parameters (``json_extract`` / ``jsonb``).

Every write runs in one transaction together with its audit row: either both are stored or
neither (a writer killed mid-transaction leaves the previous state, tested with SIGKILL).
Updates and deletes carry the version the client read; a stale version raises ConflictError
(GeoPackage: ``BEGIN IMMEDIATE`` takes the write lock before the version check; PostGIS:
``SELECT ... FOR UPDATE``). All values go to SQL as bound parameters; the only identifiers
composed into SQL are layer IDs, which must match ``[a-z][a-z0-9_]{0,47}`` (and are quoted).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import re
import sqlite3
import struct
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from geo_minzheng._errors import (
    ConflictError,
    LayerValidationError,
    Problem,
    StoreError,
    UnknownIdError,
)
from geo_minzheng.kinds import LayerKind, get_kind

#: Column of :meth:`Store.features` frames holding each record's version (for If-Match / ETag).
VERSION_COLUMN = "_version"
WGS84_SRS_ID = 4326
_LAYER_ID = re.compile(r"[a-z][a-z0-9_]{0,47}")
_RESERVED_PREFIXES = ("gpkg_", "gm_", "rtree_", "sqlite_", "pg_", "spatial_ref_sys", "geometry_")
#: Actions recorded in the audit history.
ACTIONS = ("import", "create", "update", "delete")


# ------------------------------------------------------------------------------------------------
# Public records
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerInfo:
    """A layer in the store: its kind, title, size, extent and whether staff may edit it."""

    id: str
    kind: str
    title: str
    count: int
    bbox: tuple[float, float, float, float] | None
    editable: bool = False
    editable_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Record:
    """One stored feature: its ID, version, attributes (without the ID) and WGS84 geometry."""

    layer: str
    fid: str
    version: int
    properties: dict[str, Any]
    geometry: BaseGeometry | None

    def to_geojson(self, *, id_field: str = "id") -> dict[str, Any]:
        """The record as a GeoJSON Feature (RFC 7946) with the ID also among the properties."""
        return {
            "type": "Feature",
            "id": self.fid,
            "geometry": None if self.geometry is None else mapping(self.geometry),
            "properties": {id_field: self.fid, **self.properties},
        }


@dataclass(frozen=True)
class AuditEntry:
    """One write in the audit history: who did what, when, and the record before and after."""

    seq: int
    layer: str
    fid: str | None
    action: str
    actor: str
    at: str
    version_before: int | None
    version_after: int | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass
class _Row:
    """A feature row as read inside a transaction."""

    fid: str
    version: int
    properties: dict[str, Any]
    wkb: bytes | None


@dataclass
class _Meta:
    """Cached metadata of one layer."""

    kind: str
    title: str
    editable: bool
    editable_fields: tuple[str, ...] = field(default_factory=tuple)


# ------------------------------------------------------------------------------------------------
# Value conversion
# ------------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """A JSON-safe copy of ``value``: numpy scalars to Python, NaN to None, dates to ISO text."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(float(value)) or math.isinf(float(value)) else float(value)
    if isinstance(value, (pd.Timestamp, dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    return value if isinstance(value, str) else str(value)


def _check_layer_id(layer_id: str) -> str:
    if not isinstance(layer_id, str) or not _LAYER_ID.fullmatch(layer_id):
        msg = (
            f"layer id must match [a-z][a-z0-9_]{{0,47}} (lower-case letters, digits, '_'), "
            f"got {layer_id!r}"
        )
        raise ValueError(msg)
    if layer_id.startswith(_RESERVED_PREFIXES):
        msg = f"layer id {layer_id!r} uses a reserved prefix ({', '.join(_RESERVED_PREFIXES)})"
        raise ValueError(msg)
    return layer_id


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _snapshot(properties: Mapping[str, Any], wkb: bytes | None) -> dict[str, Any]:
    """A record's state for the audit history: attributes and GeoJSON geometry."""
    geometry = None if wkb is None else mapping(shapely.from_wkb(wkb))
    return {"properties": dict(properties), "geometry": _jsonable(geometry)}


def _to_wkb(geometry: BaseGeometry | None) -> bytes | None:
    if geometry is None:
        return None
    if not isinstance(geometry, BaseGeometry):
        msg = f"geometry must be a shapely geometry, got {type(geometry).__name__}"
        raise TypeError(msg)
    return shapely.to_wkb(geometry, byte_order=1, output_dimension=2)


def _coerce_properties(
    kind: LayerKind, properties: Mapping[str, Any], *, layer: str, fid: str
) -> dict[str, Any]:
    """JSON-safe attributes with the kind's fields coerced to their types (启用 -> 'open')."""
    from geo_minzheng import validation

    out: dict[str, Any] = {}
    for name, raw in properties.items():
        value = _jsonable(raw)
        if value is not None and name in {f.name for f in kind.fields}:
            with contextlib.suppress(ValueError):  # validation reports what cannot be coerced
                value = validation.coerce_value(value, kind.field(name))
        out[str(name)] = _jsonable(value)
    out.pop(kind.id_field, None)
    return out


def _validate_record(
    kind: LayerKind,
    layer: str,
    fid: str,
    properties: Mapping[str, Any],
    geometry: BaseGeometry | None,
) -> None:
    """Refuse a record that breaks its kind's rules, listing every problem (validation.py)."""
    from geo_minzheng import validation

    row = {kind.id_field: fid, **properties}
    gdf = gpd.GeoDataFrame([row], geometry=[geometry], crs="EPSG:4326")
    problems = validation.validate(gdf, kind, layer=layer)
    if problems:
        raise LayerValidationError(layer, problems)


def _filter_value(kind: LayerKind, layer: str, name: str, raw: Any) -> Any:
    """A filter value converted to its field's type; LayerValidationError when it cannot be."""
    from geo_minzheng import validation

    try:
        spec = kind.field(name)
    except KeyError:
        return str(raw)  # an extra column: compare as text
    try:
        value = validation.coerce_value(raw, spec)
    except ValueError:
        problem = Problem(f"filter '{name}'", name, f"a {spec.type}", repr(raw), "bad_type")
        raise LayerValidationError(layer, [problem]) from None
    if spec.choices:
        items = validation.list_items(value) if spec.type == "list" else [str(value)]
        unknown = [item for item in items if item not in spec.choices]
        if unknown:
            expected = "one of: " + ", ".join(spec.choices)
            problem = Problem(f"filter '{name}'", name, expected, repr(raw), "unknown_value")
            raise LayerValidationError(layer, [problem])
    return value


# ------------------------------------------------------------------------------------------------
# The interface
# ------------------------------------------------------------------------------------------------


class Store(ABC):
    """A persistent, audited layer store. Make one with :func:`open_store`."""

    url: str

    def __init__(self) -> None:
        self._meta_cache: dict[str, _Meta] = {}
        self._meta_lock = threading.Lock()

    # -- backend hooks ---------------------------------------------------------------------------
    @abstractmethod
    def _transaction(self) -> contextlib.AbstractContextManager[Any]:
        """A write transaction (exclusive for writers); yields a backend cursor wrapper."""

    @abstractmethod
    def _read(self) -> contextlib.AbstractContextManager[Any]:
        """A read-only snapshot connection."""

    @abstractmethod
    def _load_meta(self, layer_id: str) -> _Meta | None: ...

    @abstractmethod
    def _create_layer_table(
        self, tx: Any, layer_id: str, meta: _Meta, *, replace: bool, exists: bool
    ) -> None: ...

    @abstractmethod
    def _insert_rows(self, tx: Any, layer_id: str, rows: list[tuple[str, dict, bytes | None]]): ...

    @abstractmethod
    def _lock_row(self, tx: Any, layer_id: str, fid: str) -> _Row | None: ...

    @abstractmethod
    def _write_row(self, tx: Any, layer_id: str, row: _Row, *, new: bool) -> None: ...

    @abstractmethod
    def _delete_row(self, tx: Any, layer_id: str, fid: str) -> None: ...

    @abstractmethod
    def _audit(self, tx: Any, entry: dict[str, Any]) -> None: ...

    @abstractmethod
    def _query(
        self,
        layer_id: str,
        kind: LayerKind,
        *,
        bbox: tuple[float, float, float, float] | None,
        filters: Mapping[str, Any],
        limit: int | None,
        offset: int,
    ) -> tuple[list[_Row], int]: ...

    @abstractmethod
    def _layer_rows(self) -> list[tuple[str, str, str, bool, list[str]]]: ...

    @abstractmethod
    def _layer_stats(
        self, layer_id: str
    ) -> tuple[int, tuple[float, float, float, float] | None]: ...

    @abstractmethod
    def _history_rows(self, layer_id: str | None, fid: str | None, limit: int | None) -> list: ...

    @abstractmethod
    def close(self) -> None:
        """Release connections and files."""

    # -- metadata --------------------------------------------------------------------------------
    def _meta(self, layer_id: str) -> _Meta:
        with self._meta_lock:
            meta = self._meta_cache.get(layer_id)
        if meta is None:
            if not isinstance(layer_id, str) or not _LAYER_ID.fullmatch(layer_id):
                meta = None
            else:
                meta = self._load_meta(layer_id)
            if meta is None:
                known = ", ".join(layer.id for layer in self.list_layers()) or "none"
                msg = f"unknown layer '{layer_id}'; layers in the store: {known}"
                raise UnknownIdError(msg)
            with self._meta_lock:
                self._meta_cache[layer_id] = meta
        return meta

    def kind_of(self, layer_id: str) -> LayerKind:
        """The layer kind of ``layer_id`` (UnknownIdError when there is no such layer)."""
        return get_kind(self._meta(layer_id).kind)

    def has_layer(self, layer_id: str) -> bool:
        """True when the store holds ``layer_id``."""
        try:
            self._meta(layer_id)
        except UnknownIdError:
            return False
        return True

    def list_layers(self) -> list[LayerInfo]:
        """Every layer in the store, in the order they were imported."""
        out = []
        for layer_id, kind, title, editable, fields in self._layer_rows():
            count, bbox = self._layer_stats(layer_id)
            out.append(LayerInfo(layer_id, kind, title, count, bbox, editable, tuple(fields)))
        return out

    def layer(self, layer_id: str) -> LayerInfo:
        """One layer's description (UnknownIdError when there is no such layer)."""
        meta = self._meta(layer_id)
        count, bbox = self._layer_stats(layer_id)
        return LayerInfo(
            layer_id, meta.kind, meta.title, count, bbox, meta.editable, meta.editable_fields
        )

    def revision(self) -> int:
        """A number that grows with every write (the last audit entry's sequence number).

        Caches of derived results (rendered maps, analyses) key on it to notice edits.
        """
        rows = self._history_tail()
        return int(rows or 0)

    def _history_tail(self) -> int | None:
        raise NotImplementedError

    def is_empty(self) -> bool:
        """True when the store holds no layer yet."""
        return not self._layer_rows()

    # -- import ----------------------------------------------------------------------------------
    def import_layer(
        self,
        layer_id: str,
        gdf: gpd.GeoDataFrame,
        *,
        kind: str,
        actor: str,
        title: str | None = None,
        editable: bool = False,
        editable_fields: Sequence[str] = (),
        replace: bool = False,
    ) -> LayerInfo:
        """Store ``gdf`` as layer ``layer_id`` in one transaction, with one audit entry.

        Parameters
        ----------
        layer_id
            The layer's ID (also its table name): ``[a-z][a-z0-9_]{0,47}``.
        gdf
            The layer with canonical fields (any CRS with a definition; stored in WGS84). It is
            validated against ``kind`` first and not modified.
        kind
            Layer kind name from :mod:`geo_minzheng.kinds`.
        actor
            Who imports (recorded in the audit history).
        title, editable, editable_fields
            Display title; whether staff may edit records and which fields.
        replace
            Replace an existing layer of that ID; otherwise an existing layer raises ConflictError.
        """
        from geo_minzheng import validation

        _check_layer_id(layer_id)
        spec = get_kind(kind)
        if gdf.crs is None:
            msg = f"layer '{layer_id}' has no CRS; set it before importing (e.g. EPSG:4326)"
            raise StoreError(msg)
        data = gdf.to_crs("EPSG:4326") if not gdf.crs.equals("EPSG:4326") else gdf
        validation.check(data, spec, layer=layer_id)
        unknown_fields = [f for f in editable_fields if f not in {s.name for s in spec.fields}]
        if unknown_fields:
            msg = (
                f"layer '{layer_id}': editable_fields must be fields of kind '{kind}', "
                f"got unknown {unknown_fields}"
            )
            raise StoreError(msg)
        rows = self._rows_from_frame(data, spec, layer_id)
        meta = _Meta(kind, title or spec.label_zh, bool(editable), tuple(editable_fields))
        with self._meta_lock:
            self._meta_cache.pop(layer_id, None)
        with self._transaction() as tx:
            exists = self._load_meta_tx(tx, layer_id)
            if exists and not replace:
                msg = f"layer '{layer_id}' already exists in the store; pass replace=True"
                raise ConflictError(msg)
            self._create_layer_table(tx, layer_id, meta, replace=replace, exists=exists)
            self._insert_rows(tx, layer_id, rows)
            self._audit(
                tx,
                {
                    "layer_id": layer_id,
                    "fid": None,
                    "action": "import",
                    "actor": actor,
                    "version_before": None,
                    "version_after": None,
                    "before": None,
                    "after": {"kind": kind, "count": len(rows), "replace": bool(replace)},
                },
            )
        with self._meta_lock:
            self._meta_cache.pop(layer_id, None)
        return self.layer(layer_id)

    def _load_meta_tx(self, tx: Any, layer_id: str) -> bool:
        return self._load_meta(layer_id) is not None

    @staticmethod
    def _rows_from_frame(
        gdf: gpd.GeoDataFrame, spec: LayerKind, layer_id: str
    ) -> list[tuple[str, dict, bytes | None]]:
        from geo_minzheng import validation

        geom_name = gdf.geometry.name
        columns = [c for c in gdf.columns if c != geom_name]
        wkbs = shapely.to_wkb(np.asarray(gdf.geometry.values), byte_order=1, output_dimension=2)
        rows = []
        records = gdf[columns].to_dict(orient="records")
        for record, wkb in zip(records, wkbs, strict=True):
            fid = validation._to_str(record[spec.id_field])
            props = _coerce_properties(spec, record, layer=layer_id, fid=fid)
            rows.append((fid, props, None if wkb is None else bytes(wkb)))
        return rows

    # -- reads -----------------------------------------------------------------------------------
    def features(
        self,
        layer_id: str,
        *,
        bbox: tuple[float, float, float, float] | None = None,
        filters: Mapping[str, Any] | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> tuple[gpd.GeoDataFrame, int]:
        """One page of a layer's features and the number of features matching in all.

        Parameters
        ----------
        bbox
            (min lon, min lat, max lon, max lat) in WGS84; features whose geometry intersects it.
        filters
            Field name -> value; all must hold (equality; for list fields, the list contains the
            value). Values are converted to the field's type (text from a URL is fine).
        limit, offset
            Page size (None: all) and start, in insertion order.

        Returns
        -------
        (GeoDataFrame, int)
            WGS84 frame with the kind's ID column, the attributes and ``_version``; attrs carry
            ``kind`` and ``layer``. The int is the total number of matching features.
        """
        kind = self.kind_of(layer_id)
        rows, total = self._rows(layer_id, bbox=bbox, filters=filters, limit=limit, offset=offset)
        return self._frame(layer_id, kind, rows), total

    def records(
        self,
        layer_id: str,
        *,
        bbox: tuple[float, float, float, float] | None = None,
        filters: Mapping[str, Any] | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> tuple[list[Record], int]:
        """Like :meth:`features` but as :class:`Record` objects (no frame: faster for the API)."""
        rows, total = self._rows(layer_id, bbox=bbox, filters=filters, limit=limit, offset=offset)
        wkbs = np.array([r.wkb for r in rows], dtype=object)
        geoms = shapely.from_wkb(wkbs) if rows else []
        records = [
            Record(layer_id, r.fid, r.version, r.properties, g)
            for r, g in zip(rows, geoms, strict=True)
        ]
        return records, total

    def _rows(
        self,
        layer_id: str,
        *,
        bbox: tuple[float, float, float, float] | None,
        filters: Mapping[str, Any] | None,
        limit: int | None,
        offset: int,
    ) -> tuple[list[_Row], int]:
        kind = self.kind_of(layer_id)
        if bbox is not None:
            minx, miny, maxx, maxy = (float(v) for v in bbox)
            if not (minx <= maxx and miny <= maxy) or not all(
                math.isfinite(v) for v in (minx, miny, maxx, maxy)
            ):
                msg = f"bbox must be min lon, min lat, max lon, max lat with min <= max, got {bbox}"
                raise ValueError(msg)
            bbox = (minx, miny, maxx, maxy)
        if limit is not None and limit < 0 or offset < 0:
            msg = f"limit and offset must be >= 0, got limit={limit}, offset={offset}"
            raise ValueError(msg)
        typed = self.coerce_filters(layer_id, filters or {})
        return self._query(layer_id, kind, bbox=bbox, filters=typed, limit=limit, offset=offset)

    def coerce_filters(self, layer_id: str, filters: Mapping[str, Any]) -> dict[str, Any]:
        """Filter values converted to their fields' types (LayerValidationError when invalid)."""
        kind = self.kind_of(layer_id)
        return {
            str(name): _filter_value(kind, layer_id, str(name), value)
            for name, value in filters.items()
        }

    def read_layer(self, layer_id: str) -> gpd.GeoDataFrame:
        """Every feature of ``layer_id`` (for analyses), without the version column."""
        gdf, _ = self.features(layer_id, limit=None)
        return gdf.drop(columns=[VERSION_COLUMN])

    def get(self, layer_id: str, fid: str) -> Record:
        """The record ``fid`` of ``layer_id`` (UnknownIdError names both when missing)."""
        kind = self.kind_of(layer_id)
        rows, _ = self._query(
            layer_id, kind, bbox=None, filters={kind.id_field: str(fid)}, limit=1, offset=0
        )
        if not rows:
            msg = f"layer '{layer_id}' has no feature '{fid}'"
            raise UnknownIdError(msg)
        return self._record(layer_id, rows[0])

    @staticmethod
    def _record(layer_id: str, row: _Row) -> Record:
        geometry = None if row.wkb is None else shapely.from_wkb(row.wkb)
        return Record(layer_id, row.fid, row.version, dict(row.properties), geometry)

    @staticmethod
    def _frame(layer_id: str, kind: LayerKind, rows: list[_Row]) -> gpd.GeoDataFrame:
        names = [f.name for f in kind.fields if f.name != kind.id_field]
        extra: list[str] = []
        for row in rows:
            extra.extend(k for k in row.properties if k not in names and k not in extra)
        columns = [kind.id_field, *names, *extra, VERSION_COLUMN]
        records = [{kind.id_field: r.fid, **r.properties, VERSION_COLUMN: r.version} for r in rows]
        frame = pd.DataFrame.from_records(records, columns=columns)
        present = [c for c in columns if c in frame.columns and (rows or c in (kind.id_field,))]
        frame = frame[[c for c in columns if c in present or c in (kind.id_field, VERSION_COLUMN)]]
        wkbs = np.array([r.wkb for r in rows], dtype=object)
        geoms = shapely.from_wkb(wkbs) if len(rows) else np.array([], dtype=object)
        gdf = gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(geoms, crs="EPSG:4326"))
        gdf.attrs = {"kind": kind.name, "layer": layer_id}
        return gdf

    # -- writes ----------------------------------------------------------------------------------
    def create(
        self,
        layer_id: str,
        properties: Mapping[str, Any],
        geometry: BaseGeometry | None,
        *,
        actor: str,
    ) -> Record:
        """Add a record, its ID taken from ``properties[kind.id_field]`` (ConflictError if used)."""
        kind = self.kind_of(layer_id)
        raw_id = properties.get(kind.id_field)
        if raw_id is None or str(raw_id).strip() == "":
            problem = Problem(
                f"new {kind.name} record", kind.id_field, "a non-empty ID", repr(raw_id), "missing"
            )
            raise LayerValidationError(layer_id, [problem])
        fid = str(raw_id).strip()
        props = _coerce_properties(kind, properties, layer=layer_id, fid=fid)
        _validate_record(kind, layer_id, fid, props, geometry)
        wkb = _to_wkb(geometry)
        with self._transaction() as tx:
            if self._lock_row(tx, layer_id, fid) is not None:
                msg = f"layer '{layer_id}' already has a feature '{fid}'"
                raise ConflictError(msg)
            row = _Row(fid, 1, props, wkb)
            self._write_row(tx, layer_id, row, new=True)
            self._audit(tx, self._entry(layer_id, fid, "create", actor, None, row))
        return self._record(layer_id, row)

    def update(
        self,
        layer_id: str,
        fid: str,
        *,
        properties: Mapping[str, Any] | None = None,
        geometry: BaseGeometry | None = None,
        expected_version: int,
        actor: str,
    ) -> Record:
        """Change some attributes and/or the geometry of a record read at ``expected_version``.

        Attributes not named in ``properties`` keep their values (a value of None clears one).
        Raises ConflictError when the record has changed since (its version differs), and
        LayerValidationError, listing every problem, when the result breaks the kind's rules.
        """
        kind = self.kind_of(layer_id)
        props_in = _coerce_properties(kind, properties or {}, layer=layer_id, fid=fid)
        if properties and kind.id_field in properties and str(properties[kind.id_field]) != fid:
            problem = Problem(
                f"{kind.name} '{fid}'",
                kind.id_field,
                f"unchanged ('{fid}'); IDs cannot be edited",
                repr(properties[kind.id_field]),
                "immutable",
            )
            raise LayerValidationError(layer_id, [problem])
        with self._transaction() as tx:
            current = self._locked(tx, layer_id, fid, expected_version)
            merged = {**current.properties, **props_in}
            merged = {k: v for k, v in merged.items() if v is not None}
            wkb = current.wkb if geometry is None else _to_wkb(geometry)
            _validate_record(
                kind, layer_id, fid, merged, None if wkb is None else shapely.from_wkb(wkb)
            )
            row = _Row(fid, current.version + 1, merged, wkb)
            self._write_row(tx, layer_id, row, new=False)
            self._audit(tx, self._entry(layer_id, fid, "update", actor, current, row))
        return self._record(layer_id, row)

    def delete(self, layer_id: str, fid: str, *, expected_version: int, actor: str) -> None:
        """Remove a record read at ``expected_version`` (ConflictError when stale)."""
        self.kind_of(layer_id)
        with self._transaction() as tx:
            current = self._locked(tx, layer_id, fid, expected_version)
            self._delete_row(tx, layer_id, fid)
            self._audit(tx, self._entry(layer_id, fid, "delete", actor, current, None))

    def _locked(self, tx: Any, layer_id: str, fid: str, expected_version: int) -> _Row:
        current = self._lock_row(tx, layer_id, fid)
        if current is None:
            msg = f"layer '{layer_id}' has no feature '{fid}'"
            raise UnknownIdError(msg)
        if int(expected_version) != current.version:
            msg = (
                f"feature '{fid}' of layer '{layer_id}' has changed: you edited version "
                f"{expected_version} but the stored version is {current.version}; "
                "reload the record and apply your change again"
            )
            raise ConflictError(msg)
        return current

    @staticmethod
    def _entry(
        layer_id: str, fid: str, action: str, actor: str, before: _Row | None, after: _Row | None
    ) -> dict[str, Any]:
        return {
            "layer_id": layer_id,
            "fid": fid,
            "action": action,
            "actor": actor,
            "version_before": None if before is None else before.version,
            "version_after": None if after is None else after.version,
            "before": None if before is None else _snapshot(before.properties, before.wkb),
            "after": None if after is None else _snapshot(after.properties, after.wkb),
        }

    # -- history ---------------------------------------------------------------------------------
    def history(
        self, layer_id: str | None = None, fid: str | None = None, *, limit: int | None = None
    ) -> list[AuditEntry]:
        """Audit entries, oldest first, of the store, one layer, or one record of a layer."""
        if layer_id is not None:
            self._meta(layer_id)
        return [AuditEntry(*row) for row in self._history_rows(layer_id, fid, limit)]

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------
# GeoPackage backend
# ------------------------------------------------------------------------------------------------

_GPKG_APPLICATION_ID = 0x47504B47  # 'GPKG'
_GPKG_USER_VERSION = 10400  # GeoPackage 1.4
_WGS84_WKT = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,'
    'AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,'
    'AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],'
    'AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]]'
)
_GPKG_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS gpkg_spatial_ref_sys (
        srs_name TEXT NOT NULL, srs_id INTEGER PRIMARY KEY, organization TEXT NOT NULL,
        organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL, description TEXT)""",
    """CREATE TABLE IF NOT EXISTS gpkg_contents (
        table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL,
        identifier TEXT UNIQUE, description TEXT DEFAULT '',
        last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER,
        CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id))""",
    """CREATE TABLE IF NOT EXISTS gpkg_geometry_columns (
        table_name TEXT NOT NULL, column_name TEXT NOT NULL, geometry_type_name TEXT NOT NULL,
        srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL,
        CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
        CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
        CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id))""",
    """CREATE TABLE IF NOT EXISTS gm_layers (
        layer_id TEXT PRIMARY KEY, kind TEXT NOT NULL, title TEXT NOT NULL,
        editable INTEGER NOT NULL DEFAULT 0, editable_fields TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS gm_audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, layer_id TEXT NOT NULL, fid TEXT,
        action TEXT NOT NULL, actor TEXT NOT NULL, at TEXT NOT NULL,
        version_before INTEGER, version_after INTEGER, before TEXT, after TEXT)""",
    "CREATE INDEX IF NOT EXISTS gm_audit_record ON gm_audit (layer_id, fid)",
)
_GPKG_SRS_ROWS = (
    ("Undefined cartesian SRS", -1, "NONE", -1, "undefined", "undefined cartesian"),
    ("Undefined geographic SRS", 0, "NONE", 0, "undefined", "undefined geographic"),
    ("WGS 84 geodetic", WGS84_SRS_ID, "EPSG", 4326, _WGS84_WKT, "longitude/latitude WGS 84"),
)
# GeoPackage geometry blob header: 'GP', version 0, flags, srs_id (int32); envelope size by code.
_ENVELOPE_BYTES = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}


def gpkg_blob(wkb: bytes | None) -> bytes | None:
    """A GeoPackage geometry blob (little-endian header with an XY envelope) around ``wkb``."""
    if wkb is None:
        return None
    geom = shapely.from_wkb(wkb)
    if geom.is_empty:
        flags = 0b0001_0001  # empty, no envelope, little endian
        return b"GP" + struct.pack("<BBi", 0, flags, WGS84_SRS_ID) + wkb
    minx, miny, maxx, maxy = geom.bounds
    flags = 0b0000_0011  # envelope code 1 (minx, maxx, miny, maxy), little endian
    header = b"GP" + struct.pack("<BBi4d", 0, flags, WGS84_SRS_ID, minx, maxx, miny, maxy)
    return header + wkb


def gpkg_wkb(blob: bytes | None) -> bytes | None:
    """The WKB inside a GeoPackage geometry blob."""
    if blob is None:
        return None
    if blob[:2] != b"GP":
        msg = "not a GeoPackage geometry blob (missing 'GP' magic)"
        raise StoreError(msg)
    flags = blob[3]
    return bytes(blob[8 + _ENVELOPE_BYTES[(flags >> 1) & 0b111] :])


def _q(identifier: str) -> str:
    """A validated layer ID quoted as an SQLite identifier."""
    return '"' + _check_layer_id(identifier) + '"'


class GeoPackageStore(Store):
    """Store in a single GeoPackage file (SQLite, WAL journal, synchronous=FULL)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path).expanduser().resolve()
        self.url = f"gpkg://{self.path}"
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        if not self.path.parent.is_dir():
            msg = f"folder of the GeoPackage store does not exist: {self.path.parent.name}/"
            raise StoreError(msg)
        try:
            self._create_schema()
        except sqlite3.DatabaseError as exc:
            msg = f"'{self.path.name}' is not a usable GeoPackage/SQLite file: {exc}"
            raise StoreError(msg) from None

    def _create_schema(self) -> None:
        with contextlib.closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            for statement in _GPKG_SCHEMA:
                conn.execute(statement)
            conn.executemany(
                "INSERT OR IGNORE INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)",
                _GPKG_SRS_ROWS,
            )
            conn.execute(f"PRAGMA application_id = {_GPKG_APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {_GPKG_USER_VERSION}")
            conn.execute("COMMIT")

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection (opened once: reads are the common case)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._conns_lock:
                self._readers.append(conn)
        return conn

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        conn = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        # WAL lets readers run while one writer writes; synchronous=FULL makes every commit
        # durable (fsync), so a crash after COMMIT loses nothing and before it loses everything.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")  # take the write lock before reading versions
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            msg = f"GeoPackage store write failed: {exc}"
            raise StoreError(msg) from None
        finally:
            conn.close()

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self._reader()
        conn.execute("BEGIN")  # one snapshot for the count and the page
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._conns_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        self._local = threading.local()
        with contextlib.closing(self._connect()) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- metadata --------------------------------------------------------------------------------
    def _load_meta(self, layer_id: str) -> _Meta | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT kind, title, editable, editable_fields FROM gm_layers WHERE layer_id = ?",
                (layer_id,),
            ).fetchone()
        if row is None:
            return None
        return _Meta(row[0], row[1], bool(row[2]), tuple(json.loads(row[3])))

    def _load_meta_tx(self, tx: sqlite3.Connection, layer_id: str) -> bool:
        row = tx.execute("SELECT 1 FROM gm_layers WHERE layer_id = ?", (layer_id,)).fetchone()
        return row is not None

    def _layer_rows(self) -> list[tuple[str, str, str, bool, list[str]]]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT layer_id, kind, title, editable, editable_fields FROM gm_layers "
                "ORDER BY created_at, rowid"
            ).fetchall()
        return [(r[0], r[1], r[2], bool(r[3]), json.loads(r[4])) for r in rows]

    def _layer_stats(self, layer_id: str) -> tuple[int, tuple[float, float, float, float] | None]:
        with self._read() as conn:
            count, minx, miny, maxx, maxy = conn.execute(
                f"SELECT count(*), min(minx), min(miny), max(maxx), max(maxy) FROM {_q(layer_id)}"
            ).fetchone()
        bbox = None if minx is None else (minx, miny, maxx, maxy)
        return int(count), bbox

    def _create_layer_table(
        self, tx: sqlite3.Connection, layer_id: str, meta: _Meta, *, replace: bool, exists: bool
    ) -> None:
        table = _q(layer_id)
        if exists:
            tx.execute(f"DROP TABLE IF EXISTS {table}")
            tx.execute("DELETE FROM gpkg_geometry_columns WHERE table_name = ?", (layer_id,))
            tx.execute("DELETE FROM gpkg_contents WHERE table_name = ?", (layer_id,))
            tx.execute("DELETE FROM gm_layers WHERE layer_id = ?", (layer_id,))
        tx.execute(
            f"""CREATE TABLE {table} (
                fid INTEGER PRIMARY KEY AUTOINCREMENT, geom BLOB,
                feature_id TEXT NOT NULL UNIQUE, version INTEGER NOT NULL,
                properties TEXT NOT NULL, minx REAL, miny REAL, maxx REAL, maxy REAL)"""
        )
        tx.execute(f'CREATE INDEX "{layer_id}_bbox" ON {table} (minx, maxx, miny, maxy)')
        tx.execute(
            "INSERT INTO gpkg_contents (table_name, data_type, identifier, description, srs_id) "
            "VALUES (?, 'features', ?, ?, ?)",
            (layer_id, layer_id, meta.title, WGS84_SRS_ID),
        )
        tx.execute(
            "INSERT INTO gpkg_geometry_columns VALUES (?, 'geom', 'GEOMETRY', ?, 0, 0)",
            (layer_id, WGS84_SRS_ID),
        )
        tx.execute(
            "INSERT INTO gm_layers VALUES (?, ?, ?, ?, ?, ?)",
            (
                layer_id,
                meta.kind,
                meta.title,
                int(meta.editable),
                json.dumps(list(meta.editable_fields)),
                _now(),
            ),
        )

    @staticmethod
    def _row_params(fid: str, version: int, props: dict, wkb: bytes | None) -> tuple:
        bounds: tuple[float | None, ...] = (None, None, None, None)
        if wkb is not None:
            geom = shapely.from_wkb(wkb)
            if not geom.is_empty:
                bounds = geom.bounds
        return (gpkg_blob(wkb), fid, version, json.dumps(props, ensure_ascii=False), *bounds)

    def _insert_rows(
        self, tx: sqlite3.Connection, layer_id: str, rows: list[tuple[str, dict, bytes | None]]
    ) -> None:
        tx.executemany(
            f"INSERT INTO {_q(layer_id)} (geom, feature_id, version, properties, "
            "minx, miny, maxx, maxy) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [self._row_params(fid, 1, props, wkb) for fid, props, wkb in rows],
        )
        minx, miny, maxx, maxy = tx.execute(
            f"SELECT min(minx), min(miny), max(maxx), max(maxy) FROM {_q(layer_id)}"
        ).fetchone()
        tx.execute(
            "UPDATE gpkg_contents SET min_x = ?, min_y = ?, max_x = ?, max_y = ? "
            "WHERE table_name = ?",
            (minx, miny, maxx, maxy, layer_id),
        )

    # -- rows ------------------------------------------------------------------------------------
    @staticmethod
    def _row(record: tuple) -> _Row:
        fid, version, props, blob = record
        return _Row(fid, int(version), json.loads(props), gpkg_wkb(blob))

    def _lock_row(self, tx: sqlite3.Connection, layer_id: str, fid: str) -> _Row | None:
        # BEGIN IMMEDIATE already holds the database write lock, so this read cannot go stale.
        record = tx.execute(
            f"SELECT feature_id, version, properties, geom FROM {_q(layer_id)} "
            "WHERE feature_id = ?",
            (fid,),
        ).fetchone()
        return None if record is None else self._row(record)

    def _write_row(self, tx: sqlite3.Connection, layer_id: str, row: _Row, *, new: bool) -> None:
        blob, fid, version, props, *bounds = self._row_params(
            row.fid, row.version, row.properties, row.wkb
        )
        if new:
            tx.execute(
                f"INSERT INTO {_q(layer_id)} (geom, feature_id, version, properties, "
                "minx, miny, maxx, maxy) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (blob, fid, version, props, *bounds),
            )
        else:
            tx.execute(
                f"UPDATE {_q(layer_id)} SET geom = ?, version = ?, properties = ?, "
                "minx = ?, miny = ?, maxx = ?, maxy = ? WHERE feature_id = ?",
                (blob, version, props, *bounds, fid),
            )
        tx.execute(
            "UPDATE gpkg_contents SET last_change = strftime('%Y-%m-%dT%H:%M:%fZ','now') "
            "WHERE table_name = ?",
            (layer_id,),
        )

    def _delete_row(self, tx: sqlite3.Connection, layer_id: str, fid: str) -> None:
        tx.execute(f"DELETE FROM {_q(layer_id)} WHERE feature_id = ?", (fid,))

    def _audit(self, tx: sqlite3.Connection, entry: dict[str, Any]) -> None:
        tx.execute(
            "INSERT INTO gm_audit (layer_id, fid, action, actor, at, version_before, "
            "version_after, before, after) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry["layer_id"],
                entry["fid"],
                entry["action"],
                entry["actor"],
                _now(),
                entry["version_before"],
                entry["version_after"],
                None
                if entry["before"] is None
                else json.dumps(entry["before"], ensure_ascii=False),
                None if entry["after"] is None else json.dumps(entry["after"], ensure_ascii=False),
            ),
        )

    def _history_tail(self) -> int | None:
        with self._read() as conn:
            return conn.execute("SELECT max(seq) FROM gm_audit").fetchone()[0]

    def _history_rows(self, layer_id: str | None, fid: str | None, limit: int | None) -> list:
        clauses: list[str] = ["1 = 1"]
        params: list[Any] = []
        if layer_id is not None:
            clauses.append("layer_id = ?")
            params.append(layer_id)
        if fid is not None:
            clauses.append("fid = ?")
            params.append(fid)
        sql = (
            "SELECT seq, layer_id, fid, action, actor, at, version_before, version_after, "
            f"before, after FROM gm_audit WHERE {' AND '.join(clauses)} ORDER BY seq"
        )
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._read() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [
            (
                *r[:8],
                None if r[8] is None else json.loads(r[8]),
                None if r[9] is None else json.loads(r[9]),
            )
            for r in rows
        ]

    # -- queries ---------------------------------------------------------------------------------
    def _where(self, kind: LayerKind, filters: Mapping[str, Any]) -> tuple[list[str], list[Any]]:
        clauses, params = ["1 = 1"], []
        for name, value in filters.items():
            if name == kind.id_field:
                clauses.append("feature_id = ?")
                params.append(str(value))
                continue
            path = "$." + json.dumps(name)  # a quoted JSON path key, bound as a parameter
            spec = next((f for f in kind.fields if f.name == name), None)
            if spec is not None and spec.type == "list":
                from geo_minzheng import validation

                for item in validation.list_items(value):
                    clauses.append("instr(';' || json_extract(properties, ?) || ';', ?) > 0")
                    params.extend([path, f";{item};"])
            else:
                clauses.append("json_extract(properties, ?) = ?")
                params.extend([path, value])
        return clauses, params

    def _query(
        self,
        layer_id: str,
        kind: LayerKind,
        *,
        bbox: tuple[float, float, float, float] | None,
        filters: Mapping[str, Any],
        limit: int | None,
        offset: int,
    ) -> tuple[list[_Row], int]:
        table = _q(layer_id)
        clauses, params = self._where(kind, filters)
        columns = "feature_id, version, properties, geom"
        with self._read() as conn:
            if bbox is None:
                where = " AND ".join(clauses)
                total = conn.execute(
                    f"SELECT count(*) FROM {table} WHERE {where}", params
                ).fetchone()[0]
                sql = f"SELECT {columns} FROM {table} WHERE {where} ORDER BY fid LIMIT ? OFFSET ?"
                page = conn.execute(sql, [*params, -1 if limit is None else limit, offset])
                return [self._row(r) for r in page.fetchall()], int(total)
            # envelope prefilter in SQL, exact intersection with shapely, then the page
            minx, miny, maxx, maxy = bbox
            clauses += ["minx <= ?", "maxx >= ?", "miny <= ?", "maxy >= ?"]
            params += [maxx, minx, maxy, miny]
            sql = f"SELECT fid, geom FROM {table} WHERE {' AND '.join(clauses)} ORDER BY fid"
            candidates = conn.execute(sql, params).fetchall()
            if not candidates:
                return [], 0
            wkbs = np.array([gpkg_wkb(blob) for _, blob in candidates], dtype=object)
            hits = shapely.intersects(shapely.from_wkb(wkbs), shapely.box(*bbox))
            fids = [fid for (fid, _), hit in zip(candidates, hits, strict=True) if hit]
            page_fids = fids[offset:] if limit is None else fids[offset : offset + limit]
            rows: list[_Row] = []
            for start in range(0, len(page_fids), 500):  # stay under SQLite's variable limit
                chunk = page_fids[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                sql = f"SELECT {columns} FROM {table} WHERE fid IN ({marks}) ORDER BY fid"
                rows.extend(self._row(r) for r in conn.execute(sql, chunk).fetchall())
            return rows, len(fids)


# ------------------------------------------------------------------------------------------------
# PostGIS backend
# ------------------------------------------------------------------------------------------------

_PG_SCHEMA = (
    "CREATE EXTENSION IF NOT EXISTS postgis",
    """CREATE TABLE IF NOT EXISTS gm_layers (
        layer_id text PRIMARY KEY, kind text NOT NULL, title text NOT NULL,
        editable boolean NOT NULL DEFAULT false, editable_fields jsonb NOT NULL DEFAULT '[]',
        created_at timestamptz NOT NULL DEFAULT now(), seq bigserial)""",
    """CREATE TABLE IF NOT EXISTS gm_audit (
        seq bigserial PRIMARY KEY, layer_id text NOT NULL, fid text, action text NOT NULL,
        actor text NOT NULL, at timestamptz NOT NULL DEFAULT now(),
        version_before integer, version_after integer, before jsonb, after jsonb)""",
    "CREATE INDEX IF NOT EXISTS gm_audit_record ON gm_audit (layer_id, fid)",
)


class PostGISStore(Store):
    """Store in a PostgreSQL database with PostGIS, for several users and processes."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        super().__init__()
        from psycopg_pool import ConnectionPool

        self.url = url
        self._pool = ConnectionPool(
            url, min_size=min_size, max_size=max_size, open=False, kwargs={"autocommit": False}
        )
        try:
            self._pool.open(wait=True, timeout=15.0)
        except Exception as exc:
            self._pool.close()
            msg = f"cannot connect to the PostGIS store: {type(exc).__name__}"
            raise StoreError(msg) from None
        with self._pool.connection() as conn, conn.transaction():
            # one creator at a time when several processes start against an empty database
            conn.execute("SELECT pg_advisory_xact_lock(4707)")
            for statement in _PG_SCHEMA:
                conn.execute(statement)

    def close(self) -> None:
        self._pool.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        import psycopg

        try:
            with self._pool.connection() as conn, conn.transaction():
                yield conn
        except psycopg.errors.UniqueViolation as exc:
            msg = f"PostGIS store refused a duplicate: {exc.diag.message_detail or 'unique key'}"
            raise ConflictError(msg) from None
        except psycopg.OperationalError as exc:
            msg = f"PostGIS store write failed: {type(exc).__name__}"
            raise StoreError(msg) from None

    @contextlib.contextmanager
    def _read(self) -> Iterator[Any]:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield conn

    @staticmethod
    def _ident(layer_id: str) -> Any:
        from psycopg import sql

        return sql.Identifier(_check_layer_id(layer_id))

    def _sql(self, template: str, layer_id: str) -> Any:
        from psycopg import sql

        return sql.SQL(template).format(table=self._ident(layer_id))

    # -- metadata --------------------------------------------------------------------------------
    def _load_meta(self, layer_id: str) -> _Meta | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT kind, title, editable, editable_fields FROM gm_layers WHERE layer_id = %s",
                (layer_id,),
            ).fetchone()
        if row is None:
            return None
        return _Meta(row[0], row[1], bool(row[2]), tuple(row[3]))

    def _load_meta_tx(self, tx: Any, layer_id: str) -> bool:
        # lock the layer's name so two importers of the same layer serialise
        tx.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (layer_id,))
        row = tx.execute("SELECT 1 FROM gm_layers WHERE layer_id = %s", (layer_id,)).fetchone()
        return row is not None

    def _layer_rows(self) -> list[tuple[str, str, str, bool, list[str]]]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT layer_id, kind, title, editable, editable_fields "
                "FROM gm_layers ORDER BY seq"
            ).fetchall()
        return [(r[0], r[1], r[2], bool(r[3]), list(r[4])) for r in rows]

    def _layer_stats(self, layer_id: str) -> tuple[int, tuple[float, float, float, float] | None]:
        stats_sql = self._sql(
            "SELECT count(*), ST_XMin(ST_Extent(geom)), ST_YMin(ST_Extent(geom)), "
            "ST_XMax(ST_Extent(geom)), ST_YMax(ST_Extent(geom)) FROM {table}",
            layer_id,
        )
        with self._pool.connection() as conn:
            row = conn.execute(stats_sql).fetchone()
        assert row is not None  # an aggregate always returns one row
        count, minx, miny, maxx, maxy = row
        if minx is None:
            return int(count), None
        return int(count), (float(minx), float(miny), float(maxx), float(maxy))

    def _create_layer_table(
        self, tx: Any, layer_id: str, meta: _Meta, *, replace: bool, exists: bool
    ) -> None:
        from psycopg.types.json import Jsonb

        if exists:
            tx.execute(self._sql("DROP TABLE IF EXISTS {table}", layer_id))
            tx.execute("DELETE FROM gm_layers WHERE layer_id = %s", (layer_id,))
        tx.execute(
            self._sql(
                "CREATE TABLE {table} (fid bigserial PRIMARY KEY, feature_id text NOT NULL UNIQUE, "
                "version integer NOT NULL, properties jsonb NOT NULL, "
                "geom geometry(Geometry, 4326))",
                layer_id,
            )
        )
        from psycopg import sql

        tx.execute(
            sql.SQL("CREATE INDEX {index} ON {table} USING gist (geom)").format(
                index=sql.Identifier(f"{layer_id}_geom_gist"), table=self._ident(layer_id)
            )
        )
        tx.execute(
            "INSERT INTO gm_layers (layer_id, kind, title, editable, editable_fields) "
            "VALUES (%s, %s, %s, %s, %s)",
            (layer_id, meta.kind, meta.title, meta.editable, Jsonb(list(meta.editable_fields))),
        )

    def _insert_rows(self, tx: Any, layer_id: str, rows: list[tuple[str, dict, bytes | None]]):
        from psycopg.types.json import Jsonb

        sql = self._sql(
            "INSERT INTO {table} (feature_id, version, properties, geom) "
            "VALUES (%s, 1, %s, ST_GeomFromWKB(%s, 4326))",
            layer_id,
        )
        with tx.cursor() as cur:
            cur.executemany(sql, [(fid, Jsonb(props), wkb) for fid, props, wkb in rows])

    # -- rows ------------------------------------------------------------------------------------
    def _lock_row(self, tx: Any, layer_id: str, fid: str) -> _Row | None:
        record = tx.execute(
            self._sql(
                "SELECT feature_id, version, properties, ST_AsBinary(geom) FROM {table} "
                "WHERE feature_id = %s FOR UPDATE",
                layer_id,
            ),
            (fid,),
        ).fetchone()
        if record is None:
            return None
        return _Row(record[0], int(record[1]), dict(record[2]), _bytes(record[3]))

    def _write_row(self, tx: Any, layer_id: str, row: _Row, *, new: bool) -> None:
        from psycopg.types.json import Jsonb

        if new:
            tx.execute(
                self._sql(
                    "INSERT INTO {table} (feature_id, version, properties, geom) "
                    "VALUES (%s, %s, %s, ST_GeomFromWKB(%s, 4326))",
                    layer_id,
                ),
                (row.fid, row.version, Jsonb(row.properties), row.wkb),
            )
        else:
            tx.execute(
                self._sql(
                    "UPDATE {table} SET version = %s, properties = %s, "
                    "geom = ST_GeomFromWKB(%s, 4326) WHERE feature_id = %s",
                    layer_id,
                ),
                (row.version, Jsonb(row.properties), row.wkb, row.fid),
            )

    def _delete_row(self, tx: Any, layer_id: str, fid: str) -> None:
        tx.execute(self._sql("DELETE FROM {table} WHERE feature_id = %s", layer_id), (fid,))

    def _audit(self, tx: Any, entry: dict[str, Any]) -> None:
        from psycopg.types.json import Jsonb

        tx.execute(
            "INSERT INTO gm_audit (layer_id, fid, action, actor, version_before, version_after, "
            "before, after) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                entry["layer_id"],
                entry["fid"],
                entry["action"],
                entry["actor"],
                entry["version_before"],
                entry["version_after"],
                None if entry["before"] is None else Jsonb(entry["before"]),
                None if entry["after"] is None else Jsonb(entry["after"]),
            ),
        )

    def _history_tail(self) -> int | None:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT max(seq) FROM gm_audit").fetchone()
        return None if row is None else row[0]

    def _history_rows(self, layer_id: str | None, fid: str | None, limit: int | None) -> list:
        clauses: list[str] = ["true"]
        params: list[Any] = []
        if layer_id is not None:
            clauses.append("layer_id = %s")
            params.append(layer_id)
        if fid is not None:
            clauses.append("fid = %s")
            params.append(fid)
        sql = (
            "SELECT seq, layer_id, fid, action, actor, "
            "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+00:00\"'), "
            f"version_before, version_after, before, after FROM gm_audit "
            f"WHERE {' AND '.join(clauses)} ORDER BY seq"
        )
        if limit is not None:
            sql += " LIMIT %s"
            params.append(int(limit))
        with self._pool.connection() as conn:
            return [tuple(r) for r in conn.execute(sql, params).fetchall()]

    # -- queries ---------------------------------------------------------------------------------
    def _query(
        self,
        layer_id: str,
        kind: LayerKind,
        *,
        bbox: tuple[float, float, float, float] | None,
        filters: Mapping[str, Any],
        limit: int | None,
        offset: int,
    ) -> tuple[list[_Row], int]:
        from psycopg import sql
        from psycopg.types.json import Jsonb

        clauses: list[Any] = [sql.SQL("true")]
        params: list[Any] = []
        for name, value in filters.items():
            if name == kind.id_field:
                clauses.append(sql.SQL("feature_id = %s"))
                params.append(str(value))
                continue
            spec = next((f for f in kind.fields if f.name == name), None)
            if spec is not None and spec.type == "list":
                from geo_minzheng import validation

                for item in validation.list_items(value):
                    clauses.append(sql.SQL("position(%s in ';' || (properties->>%s) || ';') > 0"))
                    params.extend([f";{item};", name])
            else:
                clauses.append(sql.SQL("properties @> %s"))
                params.append(Jsonb({name: value}))
        if bbox is not None:
            clauses.append(sql.SQL("geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326)"))
            clauses.append(sql.SQL("ST_Intersects(geom, ST_MakeEnvelope(%s, %s, %s, %s, 4326))"))
            params.extend([*bbox, *bbox])
        where = sql.SQL(" AND ").join(clauses)
        table = self._ident(layer_id)
        count_sql = sql.SQL("SELECT count(*) FROM {table} WHERE {where}").format(
            table=table, where=where
        )
        page_sql = sql.SQL(
            "SELECT feature_id, version, properties, ST_AsBinary(geom) FROM {table} "
            "WHERE {where} ORDER BY fid LIMIT %s OFFSET %s"
        ).format(table=table, where=where)
        with self._read() as conn:
            total = conn.execute(count_sql, params).fetchone()[0]
            records = conn.execute(page_sql, [*params, limit, offset]).fetchall()
        rows = [_Row(r[0], int(r[1]), dict(r[2]), _bytes(r[3])) for r in records]
        return rows, int(total)


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


# ------------------------------------------------------------------------------------------------
# Factory
# ------------------------------------------------------------------------------------------------


def open_store(url: str | Path) -> Store:
    """Open the store named by a settings URL.

    Parameters
    ----------
    url
        ``gpkg:///abs/path/store.gpkg``, ``gpkg://relative/store.gpkg`` or a path ending in
        ``.gpkg`` for the embedded GeoPackage (created when missing);
        ``postgresql://user:password@host:port/db`` (or ``postgres://``) for PostGIS.
    """
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        return PostGISStore(text)
    if text.startswith("gpkg://"):
        return GeoPackageStore(text.removeprefix("gpkg://"))
    if text.lower().endswith(".gpkg"):
        return GeoPackageStore(text)
    msg = (
        "store URL must start with 'gpkg://' (a GeoPackage file) or 'postgresql://' (PostGIS), "
        f"or be a path ending in .gpkg; got a value starting with {text[:12]!r}"
    )
    raise StoreError(msg)
