"""PostGIS backend: PostgreSQL with PostGIS through psycopg 3 and a connection pool.

For several users and processes. psycopg is imported only when a PostGIS store is used (it is an
optional dependency: ``pip install geo-minzheng[postgis]``). Geometries are
``geometry(Geometry, 4326)`` with a GiST index; ``SELECT ... FOR UPDATE`` guards versions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from geo_minzheng._errors import ConflictError, StoreError
from geo_minzheng.kinds import LayerKind
from geo_minzheng.store.base import LayerMeta, Row, Store, check_layer_id
from geo_minzheng.validation import list_items

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


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)
