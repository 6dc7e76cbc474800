"""The SQLite connection: WAL mode, numbered migrations, explicit transactions.

Schema files live in `schema/` as `NNNN_name.sql` and run in order; `PRAGMA user_version`
records the last one applied. A database written by a newer mesh is refused rather than
guessed at. Every write happens inside `transaction()`, which maps SQLite's failures (a full
disk, a corrupt file, a lock held too long) to one-line StoreErrors and rolls back, so a
crash or an error never leaves half a change behind.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mesh.core.errors import StoreError

_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, str]]:
    """(version, SQL) of every schema file, in order."""
    found: list[tuple[int, str]] = []
    folder = importlib.resources.files("mesh.store.schema")
    for item in folder.iterdir():
        if m := _MIGRATION.match(item.name):
            found.append((int(m.group(1)), item.read_text(encoding="utf-8")))
    found.sort()
    for expected, (version, _) in enumerate(found, start=1):
        if version != expected:
            raise RuntimeError(f"schema migrations skip from {expected - 1} to {version}")
    return found


def _describe(exc: sqlite3.Error, path: Path) -> str:
    text = str(exc)
    if "disk is full" in text or "database or disk is full" in text:
        return f"the disk holding {path} is full"
    if "not a database" in text or "malformed" in text:
        return f"{path} is damaged ({text}); move it aside to start over"
    if "locked" in text:
        return f"{path} is locked by another process"
    return f"database error in {path}: {text}"


class Database:
    """One connection to the node's database, used by one thread at a time.

    `readonly`: a second connection beside the writer's, for reads that must not wait for
    its transactions (WAL lets readers go on during a write: each sees the last commit).
    It takes the schema as the writer left it and refuses every write.
    """

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        try:
            self.conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            if readonly:
                self.conn.execute("PRAGMA query_only=ON")
            else:
                self.conn.execute("PRAGMA journal_mode=WAL")
                # FULL: a change is on disk before the call that made it returns, so what
                # a peer is told was applied survives a power cut, not just a crash. (A
                # large sync commits a few times, so the fsyncs cost little.)
                self.conn.execute("PRAGMA synchronous=FULL")
                self.conn.execute("PRAGMA foreign_keys=ON")
                self._migrate()
        except sqlite3.Error as exc:
            raise StoreError(_describe(exc, path)) from exc
        self._depth = 0
        # Transactions rolled back so far: what a cache of a table wrote in one is undone.
        self.rollbacks = 0

    def _migrate(self) -> None:
        (current,) = self.conn.execute("PRAGMA user_version").fetchone()
        steps = migrations()
        latest = steps[-1][0] if steps else 0
        if current > latest:
            raise StoreError(
                f"{self.path} was written by a newer mesh (schema {current}, this one knows "
                f"{latest}); upgrade mesh"
            )
        for version, sql in steps:
            if version <= current:
                continue
            # executescript commits on its own; wrap the step so it lands whole or not at all.
            self.conn.executescript(
                f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version={version};\nCOMMIT;"
            )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error. Nested calls join the outer."""
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(_describe(exc, self.path)) from exc
        self._depth = 1
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException as exc:
            self.rollbacks += 1
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(_describe(exc, self.path)) from exc
            raise
        finally:
            self._depth = 0

    def read(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(self.conn.execute(sql, params))
        except sqlite3.Error as exc:
            raise StoreError(_describe(exc, self.path)) from exc

    def close(self) -> None:
        self.conn.close()
