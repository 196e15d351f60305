"""The store's common part: public records, the audited :class:`Store` interface and its helpers.

Backends (:mod:`~geo_minzheng.store.gpkg`, :mod:`~geo_minzheng.store.postgis`) subclass
:class:`Store` and implement its backend hooks (transactions, row reads and writes, queries, the
audit table); everything a caller sees (validation, ID checks, versions, audit entries, frames)
is done here once, so both backends behave the same. The layout both share is described in
:mod:`geo_minzheng.store`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from geo_minzheng import validation
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
#: Longest record ID: every item route (``/collections/{id}/items/{fid}``) accepts this many.
MAX_FEATURE_ID_LENGTH = 200
#: Characters of a record ID: letters and digits of any script, '_', and ``- . : ~ ( ) + # @ ·``.
#: Nothing that splits or hides a URL path segment (``/``, ``\``, spaces, control characters).
_FEATURE_ID = re.compile(r"[\w\-.:~()+#@·]+")
#: Integers a store keeps exactly: 64-bit signed (SQLite INTEGER, PostgreSQL bigint).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
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


#: States of an analysis job; the last two are final.
JOB_STATES = ("queued", "running", "succeeded", "failed")
#: States of a job that is not finished.
JOB_ACTIVE = ("queued", "running")
#: Columns of ``gm_jobs`` that :meth:`Store.update_job` sets (composed into SQL: a fixed list).
JOB_FIELDS = ("status", "progress", "message", "error", "result")


@dataclass(frozen=True)
class JobInfo:
    """An analysis job as the store keeps it (without its result, which may be large).

    ``heartbeat`` is the last time the worker running the job said it was alive; a queued or
    running job whose heartbeat is old belongs to a process that stopped (see
    :meth:`Store.fail_stale_jobs`). Times are ISO 8601 UTC text with milliseconds.
    """

    id: str
    kind: str
    status: str
    progress: float
    message: str
    created: str
    finished: str | None
    heartbeat: str
    error: dict[str, Any] | None
    has_result: bool

    @property
    def active(self) -> bool:
        """True while the job is queued or running."""
        return self.status in JOB_ACTIVE


@dataclass
class Row:
    """A feature row as a backend reads and writes it inside a transaction (WKB geometry)."""

    fid: str
    version: int
    properties: dict[str, Any]
    wkb: bytes | None


@dataclass
class LayerMeta:
    """One layer's metadata as a backend stores it in ``gm_layers`` (cached by :class:`Store`)."""

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


def check_layer_id(layer_id: str) -> str:
    """``layer_id`` if it is a safe table name; ValueError otherwise.

    Layer IDs are the only identifiers composed into SQL, so every backend checks them here.
    """
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


def check_feature_id(fid: str, *, layer: str) -> str:
    """``fid`` if it can be a record ID; LayerValidationError naming the rule otherwise.

    Checked before anything is written, so that every stored record can be read, changed and
    deleted through its item URL: at most :data:`MAX_FEATURE_ID_LENGTH` characters, letters,
    digits and ``_ - . : ~ ( ) + # @ ·`` only, not only dots (``.``/``..`` are path steps).
    """
    expected = (
        f"an ID of 1-{MAX_FEATURE_ID_LENGTH} letters, digits and _ - . : ~ ( ) + # @ · "
        "(no '/', '\\', spaces or control characters; not only dots)"
    )
    text = fid if isinstance(fid, str) else str(fid)
    ok = (
        0 < len(text) <= MAX_FEATURE_ID_LENGTH
        and _FEATURE_ID.fullmatch(text) is not None
        and text.strip(".") != ""
    )
    if not ok:
        shown = repr(text[:40]) + (f"... ({len(text)} characters)" if len(text) > 40 else "")
        problem = Problem(f"record {shown}", "id", expected, shown, "bad_id")
        raise LayerValidationError(layer, [problem])
    return text


def _number_problem(value: Any, spec_type: str | None) -> str | None:
    """Why a number cannot be stored (a non-finite float, an integer outside int64), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)) and not INT64_MIN <= int(value) <= INT64_MAX:
        return f"an integer between {INT64_MIN} and {INT64_MAX}"
    if isinstance(value, (float, np.floating)) and not math.isfinite(float(value)):
        return "a finite number" if spec_type in ("int", "float") else "a finite number or text"
    return None


def utc_now() -> str:
    """The current UTC time as ISO 8601 text with milliseconds (audit and layer timestamps)."""
    return iso_utc(_utc())


def _utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso_utc(moment: dt.datetime) -> str:
    """``moment`` as ISO 8601 UTC text with milliseconds (the store's text timestamps)."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds")


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
    """JSON-safe attributes with the kind's fields coerced to their types (启用 -> 'open').

    A value the store cannot keep as given (an infinity, an integer outside 64 bits, text that
    is not valid Unicode) raises LayerValidationError instead of being stored as null or
    rounded; NaN stays what pandas means by it, a missing value.
    """
    out: dict[str, Any] = {}
    problems: list[Problem] = []
    names = {f.name for f in kind.fields}
    for name, raw in properties.items():
        spec_type = kind.field(name).type if name in names else None
        nan = isinstance(raw, (float, np.floating)) and math.isnan(float(raw))
        why = None if nan else _number_problem(raw, spec_type)
        value = _jsonable(raw)
        if value is not None and name in names:
            with contextlib.suppress(ValueError):  # validation reports what cannot be coerced
                value = validation.coerce_value(value, kind.field(name))
        why = why or _number_problem(value, spec_type) or _text_problem(value)
        if why is not None:
            shown = repr(raw) if not isinstance(raw, str) else ascii(raw[:80])
            problems.append(Problem(f"{kind.name} '{fid}'", str(name), why, shown, "unstorable"))
            continue
        out[str(name)] = _jsonable(value)
    if problems:
        raise LayerValidationError(layer, problems)
    out.pop(kind.id_field, None)
    return out


def _text_problem(value: Any) -> str | None:
    """Why text (also inside lists and mappings) cannot be stored as UTF-8, or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "valid Unicode text (no lone surrogates such as \\ud800)"
        return None
    if isinstance(value, Mapping):
        value = [*value.keys(), *value.values()]
    if isinstance(value, (list, tuple)):
        return next((p for p in map(_text_problem, value) if p is not None), None)
    return None


def _validate_record(
    kind: LayerKind,
    layer: str,
    fid: str,
    properties: Mapping[str, Any],
    geometry: BaseGeometry | None,
) -> None:
    """Refuse a record that breaks its kind's rules, listing every problem (validation.py)."""
    row = {kind.id_field: fid, **properties}
    gdf = gpd.GeoDataFrame([row], geometry=[geometry], crs="EPSG:4326")
    problems = validation.validate(gdf, kind, layer=layer)
    if problems:
        raise LayerValidationError(layer, problems)


def _filter_value(kind: LayerKind, layer: str, name: str, raw: Any) -> Any:
    """A filter value converted to its field's type; LayerValidationError when it cannot be."""
    try:
        spec = kind.field(name)
    except KeyError:
        return str(raw)  # an extra column: compare as text
    try:
        value = validation.coerce_value(raw, spec)
    except ValueError:
        problem = Problem(f"filter '{name}'", name, f"a {spec.type}", repr(raw), "bad_type")
        raise LayerValidationError(layer, [problem]) from None
    why = _number_problem(value, spec.type)
    if why is None and spec.type == "list" and not validation.list_items(value):
        why = "at least one value (an empty list would match every record)"
    if why is not None:
        problem = Problem(f"filter '{name}'", name, why, repr(raw), "bad_value")
        raise LayerValidationError(layer, [problem])
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
        self._meta_cache: dict[str, LayerMeta] = {}
        self._meta_lock = threading.Lock()

    # -- backend hooks ---------------------------------------------------------------------------
    @abstractmethod
    def _transaction(self) -> contextlib.AbstractContextManager[Any]:
        """A write transaction (exclusive for writers); yields a backend cursor wrapper."""

    @abstractmethod
    def _read(self) -> contextlib.AbstractContextManager[Any]:
        """A read-only snapshot connection."""

    @abstractmethod
    def _load_meta(self, layer_id: str) -> LayerMeta | None: ...

    @abstractmethod
    def _create_layer_table(
        self, tx: Any, layer_id: str, meta: LayerMeta, *, replace: bool, exists: bool
    ) -> None: ...

    @abstractmethod
    def _insert_rows(self, tx: Any, layer_id: str, rows: list[tuple[str, dict, bytes | None]]): ...

    @abstractmethod
    def _lock_row(self, tx: Any, layer_id: str, fid: str) -> Row | None: ...

    @abstractmethod
    def _write_row(self, tx: Any, layer_id: str, row: Row, *, new: bool) -> None: ...

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
    ) -> tuple[list[Row], int]: ...

    @abstractmethod
    def _layer_rows(self) -> list[tuple[str, str, str, bool, list[str]]]: ...

    @abstractmethod
    def _layer_stats(
        self, layer_id: str
    ) -> tuple[int, tuple[float, float, float, float] | None]: ...

    @abstractmethod
    def _history_rows(self, layer_id: str | None, fid: str | None, limit: int | None) -> list: ...

    @abstractmethod
    def _job_insert(self, tx: Any, job_id: str, kind: str, now: dt.datetime) -> None: ...

    @abstractmethod
    def _job_count_active(self, tx: Any, cutoff: dt.datetime) -> int: ...

    @abstractmethod
    def _job_set(self, tx: Any, job_id: str, values: dict[str, Any], now: dt.datetime) -> int: ...

    @abstractmethod
    def _job_fail_stale(
        self, tx: Any, cutoff: dt.datetime, now: dt.datetime, error: dict[str, Any]
    ) -> int: ...

    @abstractmethod
    def _job_touch(self, tx: Any, job_ids: Sequence[str], now: dt.datetime) -> None: ...

    @abstractmethod
    def _job_prune(self, tx: Any, keep: int) -> None: ...

    @abstractmethod
    def _job_row(self, job_id: str) -> tuple | None:
        """The job's row as the fields of :class:`JobInfo`, in order (None when unknown)."""

    @abstractmethod
    def _job_result(self, job_id: str) -> str | None: ...

    @abstractmethod
    def close(self) -> None:
        """Release connections and files."""

    # -- metadata --------------------------------------------------------------------------------
    def _meta(self, layer_id: str) -> LayerMeta:
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
        check_layer_id(layer_id)
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
        meta = LayerMeta(kind, title or spec.label_zh, bool(editable), tuple(editable_fields))
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
        geom_name = gdf.geometry.name
        columns = [c for c in gdf.columns if c != geom_name]
        wkbs = shapely.to_wkb(np.asarray(gdf.geometry.values), byte_order=1, output_dimension=2)
        rows = []
        records = gdf[columns].to_dict(orient="records")
        bad_ids: list[Problem] = []
        for record, wkb in zip(records, wkbs, strict=True):
            fid = validation.to_str(record[spec.id_field])
            try:  # every record must stay reachable through its item URL
                check_feature_id(fid, layer=layer_id)
            except LayerValidationError as exc:
                bad_ids.extend(exc.problems)
                continue
            props = _coerce_properties(spec, record, layer=layer_id, fid=fid)
            rows.append((fid, props, None if wkb is None else bytes(wkb)))
        if bad_ids:
            raise LayerValidationError(layer_id, bad_ids)
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
    ) -> tuple[list[Row], int]:
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
    def _record(layer_id: str, row: Row) -> Record:
        geometry = None if row.wkb is None else shapely.from_wkb(row.wkb)
        return Record(layer_id, row.fid, row.version, dict(row.properties), geometry)

    @staticmethod
    def _frame(layer_id: str, kind: LayerKind, rows: list[Row]) -> gpd.GeoDataFrame:
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
        fid = check_feature_id(str(raw_id).strip(), layer=layer_id)
        props = _coerce_properties(kind, properties, layer=layer_id, fid=fid)
        _validate_record(kind, layer_id, fid, props, geometry)
        wkb = _to_wkb(geometry)
        with self._transaction() as tx:
            if self._lock_row(tx, layer_id, fid) is not None:
                msg = f"layer '{layer_id}' already has a feature '{fid}'"
                raise ConflictError(msg)
            row = Row(fid, 1, props, wkb)
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
            row = Row(fid, current.version + 1, merged, wkb)
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

    def _locked(self, tx: Any, layer_id: str, fid: str, expected_version: int) -> Row:
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
        layer_id: str, fid: str, action: str, actor: str, before: Row | None, after: Row | None
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

    # -- jobs ------------------------------------------------------------------------------------
    # Analysis jobs live in ``gm_jobs`` so that every worker process of the service (and the
    # service after a restart) answers for every job. A job's worker refreshes its heartbeat
    # while it runs; one whose heartbeat is older than ``stale_after_s`` has lost its process.
    def add_job(
        self,
        job_id: str,
        kind: str,
        *,
        max_active: int | None = None,
        stale_after_s: float = 60.0,
        keep: int = 100,
    ) -> bool:
        """Queue a new job unless ``max_active`` jobs are already queued or running.

        The count and the insert are one write transaction, so worker processes sharing the
        store never queue more than ``max_active`` together. Jobs whose heartbeat is older than
        ``stale_after_s`` do not count. Finished jobs beyond the newest ``keep`` are dropped.

        Returns
        -------
        bool
            True when the job was queued, False when the queue is full.
        """
        now = _utc()
        with self._transaction() as tx:
            if max_active is not None:
                cutoff = now - dt.timedelta(seconds=stale_after_s)
                if self._job_count_active(tx, cutoff) >= max_active:
                    return False
            self._job_insert(tx, str(job_id), str(kind), now)
            self._job_prune(tx, max(0, int(keep)))
        return True

    def update_job(
        self,
        job_id: str,
        *,
        status: str | None = None,
        progress: float | None = None,
        message: str | None = None,
        error: dict[str, Any] | None = None,
        result: str | None = None,
    ) -> None:
        """Record a job's progress, or its end (``status`` succeeded/failed with result/error).

        ``result`` is the job's result as JSON text (served as is); the heartbeat is refreshed.
        A job that is already finished is left as it is (a late update cannot revive it).
        """
        if status is not None and status not in JOB_STATES:
            msg = f"job '{job_id}': status must be one of {', '.join(JOB_STATES)}, got {status!r}"
            raise ValueError(msg)
        given = {"status": status, "progress": progress, "message": message, "error": error,
                 "result": result}  # fmt: skip
        values = {k: v for k, v in given.items() if v is not None}
        with self._transaction() as tx:
            self._job_set(tx, str(job_id), values, _utc())

    def touch_jobs(self, job_ids: Sequence[str]) -> None:
        """Refresh the heartbeat of ``job_ids`` (the caller's queued and running jobs)."""
        if job_ids:
            with self._transaction() as tx:
                self._job_touch(tx, list(job_ids), _utc())

    def fail_stale_jobs(self, *, stale_after_s: float, error: dict[str, Any]) -> int:
        """Mark failed, with ``error``, every active job silent for ``stale_after_s``; how many."""
        now = _utc()
        with self._transaction() as tx:
            return self._job_fail_stale(tx, now - dt.timedelta(seconds=stale_after_s), now, error)

    def job(self, job_id: str) -> JobInfo:
        """The job ``job_id`` (UnknownIdError when the store has no such job)."""
        row = self._job_row(str(job_id))
        if row is None:
            msg = f"unknown job '{job_id}' (finished jobs are kept until newer ones replace them)"
            raise UnknownIdError(msg)
        return JobInfo(*row)

    def job_result(self, job_id: str) -> str | None:
        """The JSON text of a succeeded job's result (None while it has none)."""
        self.job(job_id)
        return self._job_result(str(job_id))

    # -- inspections (append-only) ---------------------------------------------------------------
    # Boundary-marker inspection records (行政区域界线联合检查) live in ``gm_inspections``: rows
    # are appended, never updated or deleted (the backends refuse both with triggers), so the
    # full history of every marker and line is kept. The table is created on first use.
    def append_inspections(
        self, rows: Sequence[Mapping[str, Any]], *, actor: str
    ) -> list[InspectionRecord]:
        """Append inspection rows (one per marker visited) in one transaction; return them stored.

        Each row has the keys of :data:`INSPECTION_FIELDS` (``photo`` bytes or None); the rows
        are checked by :func:`geo_minzheng.boundaries.check_inspection` first. Either all rows
        are stored or none.
        """
        missing = [
            f"row {i + 1}: {key}"
            for i, row in enumerate(rows)
            for key in INSPECTION_FIELDS[:7]
            if not row.get(key)
        ]
        if missing:
            msg = f"inspection rows lack required values: {'; '.join(missing[:10])}"
            raise StoreError(msg)
        stamp = {"recorded_at": utc_now(), "actor": actor}
        with self._transaction() as tx:
            self._inspections_schema(tx)
            seqs = [
                self._inspection_insert(tx, {**{k: row.get(k) for k in INSPECTION_FIELDS}, **stamp})
                for row in rows
            ]
        found = {r.seq: r for r in self.inspections(seqs=seqs)}
        return [found[s] for s in seqs]

    def inspections(
        self,
        *,
        marker_id: str | None = None,
        line_id: str | None = None,
        seqs: Sequence[int] | None = None,
        limit: int | None = None,
    ) -> list[InspectionRecord]:
        """Inspection records, newest first (by inspection date, then by when they were stored).

        Filters: one marker, one line, or given sequence numbers; ``limit`` the most returned.
        """
        if limit is not None and limit < 0:
            msg = f"limit must be >= 0, got {limit}"
            raise ValueError(msg)
        where = {"marker_id": marker_id, "line_id": line_id}
        rows = self._inspection_rows(
            {k: v for k, v in where.items() if v is not None},
            None if seqs is None else [int(s) for s in seqs],
            limit,
        )
        return [InspectionRecord(*row) for row in rows]

    def inspection_photo(self, seq: int) -> tuple[bytes, str]:
        """The photo of inspection row ``seq`` and its type (UnknownIdError when there is none)."""
        found = self._inspection_photo(int(seq))
        if found is None or found[0] is None:
            msg = f"inspection record {seq} has no photo"
            raise UnknownIdError(msg)
        return bytes(found[0]), str(found[1])

    def inspection_revision(self) -> int:
        """The newest inspection row's sequence number (0 when there is none): grows on append."""
        return int(self._inspection_tail() or 0)

    def _inspections_schema(self, tx: Any) -> None:
        raise NotImplementedError

    def _inspection_insert(self, tx: Any, values: dict[str, Any]) -> int:
        raise NotImplementedError

    def _inspection_rows(
        self, where: dict[str, Any], seqs: list[int] | None, limit: int | None
    ) -> list[tuple]:
        raise NotImplementedError

    def _inspection_photo(self, seq: int) -> tuple[bytes | None, str | None] | None:
        raise NotImplementedError

    def _inspection_tail(self) -> int | None:
        raise NotImplementedError

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Values of one inspection row as a caller gives them to :meth:`Store.append_inspections`.
#: The first seven are required.
INSPECTION_FIELDS = (
    "inspection_id",
    "marker_id",
    "line_id",
    "inspected_on",
    "team",
    "kind",
    "status",
    "moved_m",
    "note",
    "photo",
    "photo_type",
)


@dataclass(frozen=True)
class InspectionRecord:
    """One stored inspection row: a marker's state seen on one day by one team (never changed).

    ``seq`` orders rows as stored; ``inspection_id`` groups the rows of one inspection;
    ``recorded_at`` (UTC) and ``actor`` say when and by whose key it was stored.
    """

    seq: int
    inspection_id: str
    marker_id: str
    line_id: str
    inspected_on: str
    team: str
    kind: str
    status: str
    moved_m: float | None
    note: str | None
    photo_type: str | None
    recorded_at: str
    actor: str

    @property
    def has_photo(self) -> bool:
        """True when a photo was stored with the row."""
        return self.photo_type is not None
