"""Copies kept for the mount and streams: which opened copies are cached, which pinned,
and when each was last read (issue 21). The copies themselves are loans (store/loans.py);
this only says why this node keeps them and for how long."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.core.ids import NodeId
from mesh.store.database import Database


@dataclass(frozen=True, kw_only=True, slots=True)
class Kept:
    lender: NodeId
    library: str
    path: str
    pinned: bool
    last_read_ms: int


class KeptCopies:
    def __init__(self, db: Database) -> None:
        self._db = db

    def all(self) -> list[Kept]:
        rows = self._db.read("SELECT lender, library, path, pinned, last_read_ms FROM kept_copies")
        return [
            Kept(
                lender=NodeId(bytes(lender)),
                library=str(library),
                path=str(path),
                pinned=bool(pinned),
                last_read_ms=int(last),
            )
            for lender, library, path, pinned, last in rows
        ]

    def get(self, lender: NodeId, library: str, path: str) -> Kept | None:
        rows = self._db.read(
            "SELECT pinned, last_read_ms FROM kept_copies "
            "WHERE lender = ? AND library = ? AND path = ?",
            (lender.raw, library, path),
        )
        if not rows:
            return None
        pinned, last = rows[0]
        return Kept(
            lender=lender, library=library, path=path, pinned=bool(pinned), last_read_ms=int(last)
        )

    def keep(self, lender: NodeId, library: str, path: str, now_ms: int, *, pin: bool) -> None:
        """Note a copy opened (cached) or pinned; a pinned one stays pinned when opened."""
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO kept_copies (lender, library, path, pinned, last_read_ms) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (lender, library, path) DO UPDATE SET "
                "pinned = max(pinned, excluded.pinned), last_read_ms = excluded.last_read_ms",
                (lender.raw, library, path, int(pin), now_ms),
            )

    def unpin(self, lender: NodeId, library: str, path: str, now_ms: int) -> bool:
        """A pinned copy becomes a cached one (read now); False if it was not pinned."""
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE kept_copies SET pinned = 0, last_read_ms = ? "
                "WHERE lender = ? AND library = ? AND path = ? AND pinned = 1",
                (now_ms, lender.raw, library, path),
            )
            return cursor.rowcount > 0

    def forget(self, lender: NodeId, library: str, path: str) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "DELETE FROM kept_copies WHERE lender = ? AND library = ? AND path = ?",
                (lender.raw, library, path),
            )


__all__ = ["Kept", "KeptCopies"]
