"""The database: WAL, migrations in order, newer schemas refused, whole transactions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mesh.core.errors import StoreError
from mesh.store.database import Database, migrations


def test_opens_in_wal_mode_with_every_migration(tmp_path: Path) -> None:
    db = Database(tmp_path / "m.db")
    try:
        (mode,) = db.conn.execute("PRAGMA journal_mode").fetchone()
        (version,) = db.conn.execute("PRAGMA user_version").fetchone()
        assert mode == "wal"
        assert version == migrations()[-1][0]
    finally:
        db.close()


def test_reopening_does_not_rerun_migrations(tmp_path: Path) -> None:
    Database(tmp_path / "m.db").close()
    db = Database(tmp_path / "m.db")
    db.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=999")
    conn.close()
    with pytest.raises(StoreError, match="newer mesh"):
        Database(path)


def test_a_damaged_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"damaged|not a database"):
        Database(path)


def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    db = Database(tmp_path / "m.db")
    try:
        with pytest.raises(RuntimeError), db.transaction() as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES ('a', 1)")
            raise RuntimeError("crash in the middle")
        assert db.read("SELECT * FROM meta WHERE key = 'a'") == []
        with db.transaction() as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES ('a', 1)")
        assert db.read("SELECT value FROM meta WHERE key = 'a'") == [(1,)]
    finally:
        db.close()


def test_sqlite_errors_become_store_errors(tmp_path: Path) -> None:
    db = Database(tmp_path / "m.db")
    try:
        with pytest.raises(StoreError), db.transaction() as conn:
            conn.execute("INSERT INTO no_such_table VALUES (1)")
    finally:
        db.close()
