# ruff: noqa: F811 - pytest fixtures imported from tests.test_store
"""Inspection records in the store, on both backends: appended with the checked rows of real
demo markers, listed newest first, photos kept byte for byte, and never changed or deleted
(the database itself refuses an UPDATE, a DELETE and, in PostGIS, a TRUNCATE)."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest

from geo_minzheng import boundaries
from geo_minzheng._errors import StoreError
from geo_minzheng.store import Store
from tests.test_store import demo_markers, postgis_server, store, store_url  # noqa: F401

TODAY = dt.date(2026, 12, 3)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def _rows(day: str, items: list[dict], *, kind: str = "joint") -> list[dict]:
    inspection = {"inspected_on": day, "team": "南关—朝阳联检组", "kind": kind, "items": items}
    return boundaries.check_inspection(inspection, demo_markers(), today=TODAY)


def test_append_list_newest_first_and_photo(store: Store) -> None:
    assert store.inspections() == [] and store.inspection_revision() == 0
    first = store.append_inspections(
        _rows("2025-05-01", [{"marker_id": "JZ-000", "status": "intact"},
                             {"marker_id": "JZ-001", "status": "damaged", "note": "碑体开裂"}]),
        actor="zhang.editor",
    )  # fmt: skip
    later = store.append_inspections(
        _rows("2026-06-30", [{"marker_id": "JZ-001", "status": "moved", "moved_m": 4.2,
                              "photo": PNG}], kind="routine"),
        actor="li.editor",
    )  # fmt: skip
    earlier = store.append_inspections(
        _rows("2024-09-10", [{"marker_id": "JZ-001", "status": "intact"}]), actor="wang"
    )
    assert [r.seq for r in first] == [1, 2] and later[0].seq == 3 and earlier[0].seq == 4
    assert first[0].inspection_id == first[1].inspection_id != later[0].inspection_id
    history = store.inspections(marker_id="JZ-001")
    # newest inspection first, whatever order they were stored in
    assert [r.inspected_on for r in history] == ["2026-06-30", "2025-05-01", "2024-09-10"]
    assert history[0].status == "moved" and history[0].moved_m == pytest.approx(4.2)
    assert history[0].kind == "routine" and history[0].actor == "li.editor"
    assert history[1].note == "碑体开裂" and history[1].line_id == "220102-220104"
    assert store.inspection_photo(history[0].seq) == (PNG, "image/png")
    assert [r.marker_id for r in store.inspections(line_id="220102-220104", limit=2)] == [
        "JZ-001",
        "JZ-001",
    ]
    assert len(store.inspections()) == 4 and store.inspection_revision() == 4
    # the core reads them as records: latest state per marker, joint dates per line
    frame = boundaries.inspections_frame(store.inspections())
    assert frame["seq"].tolist() == [3, 2, 1, 4]  # same day: the later stored first


def test_records_cannot_be_changed_or_deleted(store: Store, store_url: str) -> None:
    store.append_inspections(
        _rows("2026-01-05", [{"marker_id": "JZ-002", "status": "intact"}]), actor="a"
    )
    statements = [
        "UPDATE gm_inspections SET status = 'missing'",
        "DELETE FROM gm_inspections",
    ]
    if store_url.startswith("gpkg://"):
        with sqlite3.connect(store_url.removeprefix("gpkg://")) as conn:
            for sql in statements:
                with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                    conn.execute(sql)
    else:
        import psycopg

        for sql in [*statements, "TRUNCATE gm_inspections"]:
            with psycopg.connect(store_url) as conn, pytest.raises(psycopg.Error, match="append"):
                conn.execute(sql)
    assert [r.status for r in store.inspections()] == ["intact"]


def test_incomplete_rows_store_nothing(store: Store) -> None:
    good = _rows("2026-02-01", [{"marker_id": "JZ-003", "status": "intact"}])[0]
    with pytest.raises(StoreError, match="row 2: team"):
        store.append_inspections([good, {**good, "team": ""}], actor="a")
    assert store.inspections() == []
