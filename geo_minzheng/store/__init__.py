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
* ``gm_jobs``: analysis jobs of the service (status, progress, heartbeat, error, result as JSON
  text), so every worker process, and the service after a restart, answers for every job.

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

from pathlib import Path

from geo_minzheng._errors import StoreError
from geo_minzheng.store.base import (
    ACTIONS,
    JOB_STATES,
    MAX_FEATURE_ID_LENGTH,
    VERSION_COLUMN,
    AuditEntry,
    JobInfo,
    LayerInfo,
    Record,
    Store,
    check_feature_id,
)
from geo_minzheng.store.gpkg import GeoPackageStore, gpkg_blob, gpkg_wkb
from geo_minzheng.store.postgis import PostGISStore

__all__ = [
    "ACTIONS",
    "JOB_STATES",
    "MAX_FEATURE_ID_LENGTH",
    "VERSION_COLUMN",
    "AuditEntry",
    "GeoPackageStore",
    "JobInfo",
    "LayerInfo",
    "PostGISStore",
    "Record",
    "Store",
    "check_feature_id",
    "gpkg_blob",
    "gpkg_wkb",
    "open_store",
]


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
