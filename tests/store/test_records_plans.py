"""The records table's queries follow what they return, not how many records are held:
checked on SQLite's query plans, which a sync of a million records would otherwise show
only as time."""

from __future__ import annotations

from pathlib import Path

from mesh.store.database import Database
from mesh.store.records import COVERED


def test_an_origins_covered_records_are_found_by_kind_not_by_reading_all_of_its_records(
    tmp_path: Path,
) -> None:
    db = Database(tmp_path / "mesh.db")
    try:
        plan = " ".join(
            str(row[3])
            for row in db.conn.execute("EXPLAIN QUERY PLAN " + COVERED, (3, b"o" * 32, 1, 2, 9))
        )
    finally:
        db.close()
    assert "records_by_key (kind=? AND origin_id=?)" in plan
    assert "records_by_origin" not in plan
