"""GeoPackage backend: one file through the standard library's sqlite3 (the embedded default).

Feature tables are registered in ``gpkg_contents``/``gpkg_geometry_columns`` with standard
GeoPackage geometry blobs, so QGIS and GDAL open the file as ordinary layers. WAL lets readers run
while one writer writes; ``BEGIN IMMEDIATE`` takes the write lock before a version is checked.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import struct
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from geo_minzheng._errors import StoreError
from geo_minzheng.kinds import LayerKind
from geo_minzheng.store.base import (
    JOB_FIELDS,
    WGS84_SRS_ID,
    LayerMeta,
    Row,
    Store,
    check_layer_id,
    iso_utc,
    utc_now,
)
from geo_minzheng.validation import list_items

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
    """CREATE TABLE IF NOT EXISTS gm_jobs (
        job_id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL,
        progress REAL NOT NULL DEFAULT 0, message TEXT NOT NULL DEFAULT '',
        created TEXT NOT NULL, finished TEXT, heartbeat TEXT NOT NULL, error TEXT, result TEXT)""",
    "CREATE INDEX IF NOT EXISTS gm_jobs_active ON gm_jobs (status, heartbeat)",
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
    return '"' + check_layer_id(identifier) + '"'


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
    def _load_meta(self, layer_id: str) -> LayerMeta | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT kind, title, editable, editable_fields FROM gm_layers WHERE layer_id = ?",
                (layer_id,),
            ).fetchone()
        if row is None:
            return None
        return LayerMeta(row[0], row[1], bool(row[2]), tuple(json.loads(row[3])))

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
        self, tx: sqlite3.Connection, layer_id: str, meta: LayerMeta, *, replace: bool, exists: bool
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
                utc_now(),
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
    def _row(record: tuple) -> Row:
        fid, version, props, blob = record
        return Row(fid, int(version), json.loads(props), gpkg_wkb(blob))

    def _lock_row(self, tx: sqlite3.Connection, layer_id: str, fid: str) -> Row | None:
        # BEGIN IMMEDIATE already holds the database write lock, so this read cannot go stale.
        record = tx.execute(
            f"SELECT feature_id, version, properties, geom FROM {_q(layer_id)} "
            "WHERE feature_id = ?",
            (fid,),
        ).fetchone()
        return None if record is None else self._row(record)

    def _write_row(self, tx: sqlite3.Connection, layer_id: str, row: Row, *, new: bool) -> None:
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
                utc_now(),
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

    # -- jobs ------------------------------------------------------------------------------------
    # Timestamps are ISO 8601 UTC text of one format, so text order is time order.
    def _job_insert(self, tx: sqlite3.Connection, job_id: str, kind: str, now: dt.datetime) -> None:
        stamp = iso_utc(now)
        tx.execute(
            "INSERT INTO gm_jobs (job_id, kind, status, created, heartbeat) "
            "VALUES (?, ?, 'queued', ?, ?)",
            (job_id, kind, stamp, stamp),
        )

    def _job_count_active(self, tx: sqlite3.Connection, cutoff: dt.datetime) -> int:
        row = tx.execute(
            "SELECT count(*) FROM gm_jobs WHERE status IN ('queued', 'running') AND heartbeat >= ?",
            (iso_utc(cutoff),),
        ).fetchone()
        return int(row[0])

    def _job_set(
        self, tx: sqlite3.Connection, job_id: str, values: dict[str, Any], now: dt.datetime
    ) -> int:
        columns, params = ["heartbeat = ?"], [iso_utc(now)]
        for name in JOB_FIELDS:  # a fixed list of column names, never caller input
            if name in values:
                value = values[name]
                columns.append(f"{name} = ?")
                params.append(json.dumps(value, ensure_ascii=False) if name == "error" else value)
        if values.get("status") in ("succeeded", "failed"):
            columns.append("finished = ?")
            params.append(iso_utc(now))
        cursor = tx.execute(
            f"UPDATE gm_jobs SET {', '.join(columns)} "
            "WHERE job_id = ? AND status IN ('queued', 'running')",
            [*params, job_id],
        )
        return int(cursor.rowcount)

    def _job_fail_stale(
        self, tx: sqlite3.Connection, cutoff: dt.datetime, now: dt.datetime, error: dict[str, Any]
    ) -> int:
        cursor = tx.execute(
            "UPDATE gm_jobs SET status = 'failed', finished = ?, error = ? "
            "WHERE status IN ('queued', 'running') AND heartbeat < ?",
            (iso_utc(now), json.dumps(error, ensure_ascii=False), iso_utc(cutoff)),
        )
        return int(cursor.rowcount)

    def _job_touch(self, tx: sqlite3.Connection, job_ids: Sequence[str], now: dt.datetime) -> None:
        tx.executemany(
            "UPDATE gm_jobs SET heartbeat = ? WHERE job_id = ? AND status IN ('queued', 'running')",
            [(iso_utc(now), job_id) for job_id in job_ids],
        )

    def _job_prune(self, tx: sqlite3.Connection, keep: int) -> None:
        tx.execute(
            "DELETE FROM gm_jobs WHERE status IN ('succeeded', 'failed') AND job_id NOT IN "
            "(SELECT job_id FROM gm_jobs WHERE status IN ('succeeded', 'failed') "
            "ORDER BY finished DESC LIMIT ?)",
            (keep,),
        )

    def _job_row(self, job_id: str) -> tuple | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT job_id, kind, status, progress, message, created, finished, heartbeat, "
                "error, result IS NOT NULL FROM gm_jobs WHERE job_id = ?",
                (job_id,),
            ).fetchone()
        if row is None:
            return None
        error = None if row[8] is None else json.loads(row[8])
        return (*row[:3], float(row[3]), *row[4:8], error, bool(row[9]))

    def _job_result(self, job_id: str) -> str | None:
        with self._read() as conn:
            row = conn.execute("SELECT result FROM gm_jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else row[0]

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
                for item in list_items(value):
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
    ) -> tuple[list[Row], int]:
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
            rows: list[Row] = []
            for start in range(0, len(page_fids), 500):  # stay under SQLite's variable limit
                chunk = page_fids[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                sql = f"SELECT {columns} FROM {table} WHERE fid IN ({marks}) ORDER BY fid"
                rows.extend(self._row(r) for r in conn.execute(sql, chunk).fetchall())
            return rows, len(fids)

    # -- inspections (append-only) ---------------------------------------------------------------
    _INSPECTIONS_SCHEMA = (
        """CREATE TABLE IF NOT EXISTS gm_inspections (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, inspection_id TEXT NOT NULL,
            marker_id TEXT NOT NULL, line_id TEXT NOT NULL, inspected_on TEXT NOT NULL,
            team TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL, moved_m REAL,
            note TEXT, photo BLOB, photo_type TEXT, recorded_at TEXT NOT NULL,
            actor TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS gm_inspections_marker ON gm_inspections (marker_id)",
        "CREATE INDEX IF NOT EXISTS gm_inspections_line ON gm_inspections (line_id)",
        # append-only: the history is never rewritten, whoever connects to the file
        """CREATE TRIGGER IF NOT EXISTS gm_inspections_no_update BEFORE UPDATE ON gm_inspections
            BEGIN SELECT RAISE(ABORT, 'gm_inspections is append-only'); END""",
        """CREATE TRIGGER IF NOT EXISTS gm_inspections_no_delete BEFORE DELETE ON gm_inspections
            BEGIN SELECT RAISE(ABORT, 'gm_inspections is append-only'); END""",
        # an attribute table in the GeoPackage's contents, so GDAL and QGIS list it
        """INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, description)
            VALUES ('gm_inspections', 'attributes', 'gm_inspections',
                    '界桩检查记录（只增不改）/ boundary-marker inspections (append-only)')""",
    )
    _INSPECTION_COLUMNS = (
        "seq, inspection_id, marker_id, line_id, inspected_on, team, kind, status, moved_m, "
        "note, photo_type, recorded_at, actor"
    )

    def _inspections_schema(self, tx: sqlite3.Connection) -> None:
        if getattr(self, "_inspections_ready", False):
            return
        for statement in self._INSPECTIONS_SCHEMA:
            tx.execute(statement)
        self._inspections_ready = True

    def _has_inspections(self, conn: sqlite3.Connection) -> bool:
        row = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'gm_inspections'"
        ).fetchone()
        return row is not None

    def _inspection_insert(self, tx: sqlite3.Connection, values: dict[str, Any]) -> int:
        # the keys are the store's fixed field list (base.INSPECTION_FIELDS + stamp), never input
        columns = ", ".join(values)
        marks = ", ".join("?" * len(values))
        sql = f"INSERT INTO gm_inspections ({columns}) VALUES ({marks})"
        return int(tx.execute(sql, tuple(values.values())).lastrowid or 0)

    def _inspection_rows(
        self, where: dict[str, Any], seqs: list[int] | None, limit: int | None
    ) -> list[tuple]:
        clauses: list[str] = ["1 = 1"]
        params: list[Any] = []
        for name in ("marker_id", "line_id"):  # a fixed list of column names
            if name in where:
                clauses.append(f"{name} = ?")
                params.append(str(where[name]))
        if seqs is not None:
            if not seqs:
                return []
            clauses.append(f"seq IN ({', '.join('?' * len(seqs))})")
            params.extend(seqs)
        sql = (
            f"SELECT {self._INSPECTION_COLUMNS} FROM gm_inspections WHERE {' AND '.join(clauses)} "
            "ORDER BY inspected_on DESC, seq DESC LIMIT ?"
        )
        with self._read() as conn:
            if not self._has_inspections(conn):
                return []
            return [tuple(r) for r in conn.execute(sql, [*params, -1 if limit is None else limit])]

    def _inspection_photo(self, seq: int) -> tuple[bytes | None, str | None] | None:
        with self._read() as conn:
            if not self._has_inspections(conn):
                return None
            row = conn.execute(
                "SELECT photo, photo_type FROM gm_inspections WHERE seq = ?", (seq,)
            ).fetchone()
        return None if row is None else (row[0], row[1])

    def _inspection_tail(self) -> int | None:
        with self._read() as conn:
            if not self._has_inspections(conn):
                return None
            return conn.execute("SELECT max(seq) FROM gm_inspections").fetchone()[0]
