"""The address book: where each member was reached, most recent first."""

from __future__ import annotations

from mesh.core.ids import NodeId
from mesh.store.database import Database

_KEEP_PER_NODE = 16


class AddressBook:
    def __init__(self, db: Database) -> None:
        self._db = db

    def remember(self, node_id: NodeId, host: str, port: int, source: str, now_ms: int) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO addresses (node_id, host, port, source, seen_ms) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (node_id, host, port) DO UPDATE SET "
                "seen_ms = max(seen_ms, excluded.seen_ms), source = excluded.source",
                (node_id.raw, host, port, source, now_ms),
            )
            # Laptops collect addresses; the oldest ones are noise.
            conn.execute(
                "DELETE FROM addresses WHERE node_id = ? AND (host, port) NOT IN ("
                "SELECT host, port FROM addresses WHERE node_id = ? "
                "ORDER BY seen_ms DESC LIMIT ?)",
                (node_id.raw, node_id.raw, _KEEP_PER_NODE),
            )

    def all(self) -> list[tuple[NodeId, str, int]]:
        rows = self._db.read("SELECT node_id, host, port FROM addresses ORDER BY seen_ms DESC")
        return [(NodeId(n), h, p) for n, h, p in rows]

    def last_seen(self) -> dict[NodeId, tuple[str, int, int]]:
        """Each member's most recent address and when it was reached there (ms)."""
        rows = self._db.read("SELECT node_id, host, port, seen_ms FROM addresses ORDER BY seen_ms")
        return {NodeId(n): (h, p, ms) for n, h, p, ms in rows}

    def forget(self, node_id: NodeId) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM addresses WHERE node_id = ?", (node_id.raw,))
