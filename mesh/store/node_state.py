"""This node's own state: its name, its epoch, and the root of the mesh it belongs to."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mesh.core.epoch import Epoch
from mesh.core.errors import NotInitializedError
from mesh.core.ids import NodeId
from mesh.store.database import Database


def _get(conn: sqlite3.Connection, key: str) -> object | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def _put(conn: sqlite3.Connection, key: str, value: object) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


class NodeState:
    def __init__(self, db: Database) -> None:
        self._db = db

    def initialize(self, name: str, epoch: Epoch) -> None:
        """Record name and a fresh epoch (sequence numbers restart at 1)."""
        with self._db.transaction() as conn:
            _put(conn, "name", name)
            _put(conn, "epoch_created_ms", epoch.created_ms)
            _put(conn, "epoch_nonce", epoch.nonce)

    @staticmethod
    def present(path: Path) -> bool:
        """Whether the database at `path` holds a node (without creating it)."""
        if not path.exists():
            return False
        db = Database(path)
        try:
            return NodeState(db).initialized()
        finally:
            db.close()

    def initialized(self) -> bool:
        return _get(self._db.conn, "name") is not None

    @property
    def name(self) -> str:
        value = _get(self._db.conn, "name")
        if value is None:
            raise NotInitializedError("this node's database holds no name; run `mesh init`")
        return str(value)

    def rename(self, name: str) -> None:
        with self._db.transaction() as conn:
            _put(conn, "name", name)

    @property
    def epoch(self) -> Epoch:
        created = _get(self._db.conn, "epoch_created_ms")
        nonce = _get(self._db.conn, "epoch_nonce")
        if not isinstance(created, int) or not isinstance(nonce, int):
            raise NotInitializedError("this node's database holds no epoch; run `mesh init`")
        return Epoch(created, nonce)

    def root(self) -> NodeId | None:
        """The node that founded this node's mesh (None: this node, a mesh of its own)."""
        value = _get(self._db.conn, "root")
        return NodeId(value) if isinstance(value, bytes) else None

    def set_root(self, conn: sqlite3.Connection, root: NodeId) -> None:
        _put(conn, "root", root.raw)
