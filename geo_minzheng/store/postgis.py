"""PostGIS backend: PostgreSQL with PostGIS through psycopg 3 and a connection pool.

For several users and processes. psycopg is imported only when a PostGIS store is used (it is an
optional dependency: ``pip install geo-minzheng[postgis]``). Geometries are
``geometry(Geometry, 4326)`` with a GiST index; ``SELECT ... FOR UPDATE`` guards versions.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from geo_minzheng._errors import ConflictError, StoreError
from geo_minzheng.kinds import LayerKind
from geo_minzheng.store.base import JOB_FIELDS, LayerMeta, Row, Store, check_layer_id, iso_utc
from geo_minzheng.validation import list_items

_PG_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS gm_layers (
        layer_id text PRIMARY KEY, kind text NOT NULL, title text NOT NULL,
        editable boolean NOT NULL DEFAULT false, editable_fields jsonb NOT NULL DEFAULT '[]',
        created_at timestamptz NOT NULL DEFAULT now(), seq bigserial)""",
    """CREATE TABLE IF NOT EXISTS gm_audit (
        seq bigserial PRIMARY KEY, layer_id text NOT NULL, fid text, action text NOT NULL,
        actor text NOT NULL, at timestamptz NOT NULL DEFAULT now(),
        version_before integer, version_after integer, before jsonb, after jsonb)""",
    "CREATE INDEX IF NOT EXISTS gm_audit_record ON gm_audit (layer_id, fid)",
    """CREATE TABLE IF NOT EXISTS gm_jobs (
        job_id text PRIMARY KEY, kind text NOT NULL, status text NOT NULL,
        progress double precision NOT NULL DEFAULT 0, message text NOT NULL DEFAULT '',
        created timestamptz NOT NULL, finished timestamptz, heartbeat timestamptz NOT NULL,
        error jsonb, result text)""",
    "CREATE INDEX IF NOT EXISTS gm_jobs_active ON gm_jobs (status, heartbeat)",
)
#: Advisory lock held while the extension and the tables are created (several starting processes).
_SCHEMA_LOCK = 4707
#: Advisory lock held while a job is counted and queued, so processes share one queue bound.
_JOBS_LOCK = 4708


def _where(url: str) -> str:
    """The database of ``url`` in words (host, port, database, user; never the password)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(url)
    except Exception:  # an unparsable URL: psycopg.connect reports it below
        return "database (unparsable URL)"
    host, port = info.get("host") or "localhost", info.get("port") or "5432"
    name, user = info.get("dbname") or "?", info.get("user") or "?"
    return f"database '{name}' at {host}:{port} (user '{user}')"


def _reason(exc: BaseException) -> str:
    """The first line of a driver error, without psycopg's 'connection failed:' prefix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.removeprefix("connection failed: ")


def _check_database(url: str) -> None:
    """Reach the server and make sure the database has PostGIS; StoreError in one line if not.

    Start-up is where a wrong URL, a stopped server or a database without PostGIS shows, so
    each gets one sentence that says what to do instead of a driver traceback.
    """
    import psycopg

    where = _where(url)
    try:
        conn = psycopg.connect(url, connect_timeout=10, autocommit=True)
    except psycopg.Error as exc:
        msg = f"cannot connect to the PostgreSQL {where}: {_reason(exc)}"
        raise StoreError(msg) from None
    with conn:
        try:
            if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'postgis'").fetchone():
                return
            available = conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'"
            ).fetchone()
        except psycopg.Error as exc:
            msg = f"the PostgreSQL {where} cannot be queried: {_reason(exc)}"
            raise StoreError(msg) from None
        if not available:
            msg = (
                f"the PostgreSQL server of the {where} has no PostGIS extension: install PostGIS "
                "on that server (Debian: apt-get install postgresql-<version>-postgis-3), then "
                "run CREATE EXTENSION postgis in the database"
            )
            raise StoreError(msg)
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        except psycopg.Error as exc:
            msg = (
                f"PostGIS is installed on the server but not enabled in the {where}, and this "
                f"user may not enable it ({_reason(exc)}): ask the database administrator to "
                "run CREATE EXTENSION postgis in that database"
            )
            raise StoreError(msg) from None


class PostGISStore(Store):
    """Store in a PostgreSQL database with PostGIS, for several users and processes."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        super().__init__()
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError:
            msg = "a PostGIS store needs psycopg 3: pip install 'geo-minzheng[postgis]'"
            raise StoreError(msg) from None

        self.url = url
        _check_database(url)
        self._pool = ConnectionPool(
            url, min_size=min_size, max_size=max_size, open=False, kwargs={"autocommit": False}
        )
        try:
            self._pool.open(wait=True, timeout=15.0)
        except Exception as exc:
            self._pool.close()
            msg = f"cannot connect to the PostGIS store: {type(exc).__name__}"
            raise StoreError(msg) from None
        try:
            with self._pool.connection() as conn, conn.transaction():
                # one creator at a time when several processes start against an empty database
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                for statement in _PG_SCHEMA:
                    conn.execute(statement)
        except psycopg.Error as exc:
            self._pool.close()
            msg = f"cannot create the store's tables in the {_where(url)}: {_reason(exc)}"
            raise StoreError(msg) from None

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

        return sql.Identifier(check_layer_id(layer_id))

    def _sql(self, template: str, layer_id: str) -> Any:
        from psycopg import sql

        return sql.SQL(template).format(table=self._ident(layer_id))

    # -- metadata --------------------------------------------------------------------------------
    def _load_meta(self, layer_id: str) -> LayerMeta | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT kind, title, editable, editable_fields FROM gm_layers WHERE layer_id = %s",
                (layer_id,),
            ).fetchone()
        if row is None:
            return None
        return LayerMeta(row[0], row[1], bool(row[2]), tuple(row[3]))

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
        self, tx: Any, layer_id: str, meta: LayerMeta, *, replace: bool, exists: bool
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
    def _lock_row(self, tx: Any, layer_id: str, fid: str) -> Row | None:
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
        return Row(record[0], int(record[1]), dict(record[2]), _bytes(record[3]))

    def _write_row(self, tx: Any, layer_id: str, row: Row, *, new: bool) -> None:
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

    # -- jobs ------------------------------------------------------------------------------------
    def _job_insert(self, tx: Any, job_id: str, kind: str, now: dt.datetime) -> None:
        tx.execute(
            "INSERT INTO gm_jobs (job_id, kind, status, created, heartbeat) "
            "VALUES (%s, %s, 'queued', %s, %s)",
            (job_id, kind, now, now),
        )

    def _job_count_active(self, tx: Any, cutoff: dt.datetime) -> int:
        tx.execute("SELECT pg_advisory_xact_lock(%s)", (_JOBS_LOCK,))  # count + insert, atomic
        row = tx.execute(
            "SELECT count(*) FROM gm_jobs WHERE status IN ('queued', 'running') "
            "AND heartbeat >= %s",
            (cutoff,),
        ).fetchone()
        return int(row[0])

    def _job_set(self, tx: Any, job_id: str, values: dict[str, Any], now: dt.datetime) -> int:
        from psycopg import sql
        from psycopg.types.json import Jsonb

        columns: list[sql.Composable] = [sql.SQL("heartbeat = %s")]
        params: list[Any] = [now]
        for name in JOB_FIELDS:  # a fixed list of column names, never caller input
            if name in values:
                columns.append(sql.SQL("{} = %s").format(sql.Identifier(name)))
                params.append(Jsonb(values[name]) if name == "error" else values[name])
        if values.get("status") in ("succeeded", "failed"):
            columns.append(sql.SQL("finished = %s"))
            params.append(now)
        query = sql.SQL(
            "UPDATE gm_jobs SET {} WHERE job_id = %s AND status IN ('queued', 'running')"
        ).format(sql.SQL(", ").join(columns))
        return int(tx.execute(query, [*params, job_id]).rowcount)

    def _job_fail_stale(
        self, tx: Any, cutoff: dt.datetime, now: dt.datetime, error: dict[str, Any]
    ) -> int:
        from psycopg.types.json import Jsonb

        cursor = tx.execute(
            "UPDATE gm_jobs SET status = 'failed', finished = %s, error = %s "
            "WHERE status IN ('queued', 'running') AND heartbeat < %s",
            (now, Jsonb(error), cutoff),
        )
        return int(cursor.rowcount)

    def _job_touch(self, tx: Any, job_ids: Sequence[str], now: dt.datetime) -> None:
        tx.execute(
            "UPDATE gm_jobs SET heartbeat = %s "
            "WHERE job_id = ANY(%s) AND status IN ('queued', 'running')",
            (now, list(job_ids)),
        )

    def _job_prune(self, tx: Any, keep: int) -> None:
        tx.execute(
            "DELETE FROM gm_jobs WHERE status IN ('succeeded', 'failed') AND job_id NOT IN "
            "(SELECT job_id FROM gm_jobs WHERE status IN ('succeeded', 'failed') "
            "ORDER BY finished DESC LIMIT %s)",
            (keep,),
        )

    def _job_row(self, job_id: str) -> tuple | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT job_id, kind, status, progress, message, created, finished, heartbeat, "
                "error, result IS NOT NULL FROM gm_jobs WHERE job_id = %s",
                (job_id,),
            ).fetchone()
        if row is None:
            return None
        job, kind, status, progress, message, created, finished, heartbeat, error, done = row
        return (
            job,
            kind,
            status,
            float(progress),
            message,
            iso_utc(created),
            None if finished is None else iso_utc(finished),
            iso_utc(heartbeat),
            error,
            bool(done),
        )

    def _job_result(self, job_id: str) -> str | None:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT result FROM gm_jobs WHERE job_id = %s", (job_id,)).fetchone()
        return None if row is None else row[0]

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
    ) -> tuple[list[Row], int]:
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
                for item in list_items(value):
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
        rows = [Row(r[0], int(r[1]), dict(r[2]), _bytes(r[3])) for r in records]
        return rows, int(total)

    # -- inspections (append-only) ---------------------------------------------------------------
    _INSPECTIONS_SCHEMA = (
        """CREATE TABLE IF NOT EXISTS gm_inspections (
            seq bigserial PRIMARY KEY, inspection_id text NOT NULL, marker_id text NOT NULL,
            line_id text NOT NULL, inspected_on date NOT NULL, team text NOT NULL,
            kind text NOT NULL, status text NOT NULL, moved_m double precision, note text,
            photo bytea, photo_type text, recorded_at text NOT NULL, actor text NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS gm_inspections_marker ON gm_inspections (marker_id)",
        "CREATE INDEX IF NOT EXISTS gm_inspections_line ON gm_inspections (line_id)",
        # append-only: updates, deletes and truncation are refused in the database itself
        """CREATE OR REPLACE FUNCTION gm_inspections_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'gm_inspections is append-only'; END $$""",
        "DROP TRIGGER IF EXISTS gm_inspections_no_change ON gm_inspections",
        """CREATE TRIGGER gm_inspections_no_change BEFORE UPDATE OR DELETE ON gm_inspections
            FOR EACH ROW EXECUTE FUNCTION gm_inspections_append_only()""",
        "DROP TRIGGER IF EXISTS gm_inspections_no_truncate ON gm_inspections",
        """CREATE TRIGGER gm_inspections_no_truncate BEFORE TRUNCATE ON gm_inspections
            FOR EACH STATEMENT EXECUTE FUNCTION gm_inspections_append_only()""",
    )
    _INSPECTION_COLUMNS = (
        "seq, inspection_id, marker_id, line_id, to_char(inspected_on, 'YYYY-MM-DD'), team, "
        "kind, status, moved_m, note, photo_type, recorded_at, actor"
    )

    def _inspections_schema(self, tx: Any) -> None:
        if getattr(self, "_inspections_ready", False):
            return
        row = tx.execute("SELECT to_regclass('gm_inspections') IS NOT NULL").fetchone()
        if not (row and row[0]):
            # one creator at a time when several processes append to a new database
            tx.execute("SELECT pg_advisory_xact_lock(4708)")
            for statement in self._INSPECTIONS_SCHEMA:
                tx.execute(statement)
        self._inspections_ready = True

    def _inspection_insert(self, tx: Any, values: dict[str, Any]) -> int:
        # the keys are the store's fixed field list (base.INSPECTION_FIELDS + stamp), never input
        columns = ", ".join(values)
        marks = ", ".join(["%s"] * len(values))
        sql = f"INSERT INTO gm_inspections ({columns}) VALUES ({marks}) RETURNING seq"
        row = tx.execute(sql, tuple(values.values())).fetchone()
        return int(row[0])

    def _inspection_rows(
        self, where: dict[str, Any], seqs: list[int] | None, limit: int | None
    ) -> list[tuple]:
        clauses: list[str] = ["true"]
        params: list[Any] = []
        for name in ("marker_id", "line_id"):  # a fixed list of column names
            if name in where:
                clauses.append(f"{name} = %s")
                params.append(str(where[name]))
        if seqs is not None:
            if not seqs:
                return []
            clauses.append("seq = ANY(%s)")
            params.append(list(seqs))
        sql = (
            f"SELECT {self._INSPECTION_COLUMNS} FROM gm_inspections WHERE {' AND '.join(clauses)} "
            "ORDER BY inspected_on DESC, seq DESC LIMIT %s"
        )
        with self._pool.connection() as conn:
            if not self._has_inspections(conn):
                return []
            return [tuple(r) for r in conn.execute(sql, [*params, limit]).fetchall()]

    @staticmethod
    def _has_inspections(conn: Any) -> bool:
        row = conn.execute("SELECT to_regclass('gm_inspections') IS NOT NULL").fetchone()
        return bool(row and row[0])

    def _inspection_photo(self, seq: int) -> tuple[bytes | None, str | None] | None:
        with self._pool.connection() as conn:
            if not self._has_inspections(conn):
                return None
            row = conn.execute(
                "SELECT photo, photo_type FROM gm_inspections WHERE seq = %s", (seq,)
            ).fetchone()
        return None if row is None else (_bytes(row[0]), row[1])

    def _inspection_tail(self) -> int | None:
        with self._pool.connection() as conn:
            if not self._has_inspections(conn):
                return None
            row = conn.execute("SELECT max(seq) FROM gm_inspections").fetchone()
        return None if row is None else row[0]


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)
