"""The replica's store on SQLite: every query is indexed by origin and sequence number, so
its cost follows what it returns, not how many records the mesh holds."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from mesh.core.envelope import Envelope
from mesh.core.epoch import Epoch
from mesh.core.ids import NodeId
from mesh.core.records import MEMBERSHIP_KINDS, Kind
from mesh.core.replica_store import Changes
from mesh.core.vector import Clock, VersionVector
from mesh.store.database import Database

# The SQL below spells out the membership kinds (admission 7, removal 8) to match the
# partial index of the schema.
assert {int(k) for k in MEMBERSHIP_KINDS} == {7, 8}
_SELECT = "SELECT origin, epoch_ms, epoch_nonce, seq, kind, body, signature FROM records "


def _envelope(row: tuple[bytes, int, int, int, int, bytes, bytes]) -> Envelope:
    origin, ems, enonce, seq, kind, body, signature = row
    return Envelope(
        origin=NodeId(origin),
        epoch=Epoch(ems, enonce),
        seq=seq,
        kind=Kind(kind),
        body=body,
        signature=signature,
    )


class SqliteReplicaStore:
    """`ReplicaStore` on the node's database. Use from the store thread only."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def vector(self) -> VersionVector:
        rows = self._db.read("SELECT origin, epoch_ms, epoch_nonce, seq FROM clocks")
        return VersionVector({NodeId(o): Clock(Epoch(ms, n), s) for o, ms, n, s in rows})

    def clock(self, origin: NodeId) -> Clock | None:
        row = self._db.conn.execute(
            "SELECT epoch_ms, epoch_nonce, seq FROM clocks WHERE origin = ?", (origin.raw,)
        ).fetchone()
        return None if row is None else Clock(Epoch(row[0], row[1]), row[2])

    def get(self, key: bytes) -> Envelope | None:
        row = self._db.conn.execute(_SELECT + "WHERE key = ?", (key,)).fetchone()
        return None if row is None else _envelope(row)

    def envelopes(
        self,
        origin: NodeId,
        epoch: Epoch,
        after_seq: int,
        through_seq: int,
        *,
        max_count: int,
        max_bytes: int,
    ) -> Sequence[Envelope]:
        rows = self._db.conn.execute(
            _SELECT + "WHERE origin = ? AND epoch_ms = ? "
            "AND epoch_nonce = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            (origin.raw, epoch.created_ms, epoch.nonce, after_seq, through_seq, max(1, max_count)),
        )
        out: list[Envelope] = []
        total = 0
        for row in rows:
            env = _envelope(row)
            total += env.size
            if out and total > max_bytes:
                break
            out.append(env)
        return out

    def tombstones(
        self, origin: NodeId, epoch: Epoch, after_seq: int, through_seq: int, *, max_count: int
    ) -> Sequence[bytes]:
        rows = self._db.conn.execute(
            "SELECT key FROM records WHERE deleted = 1 AND origin = ? AND epoch_ms = ? "
            "AND epoch_nonce = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            (origin.raw, epoch.created_ms, epoch.nonce, after_seq, through_seq, max_count),
        )
        return [row[0] for row in rows]

    def membership(self) -> Sequence[Envelope]:
        rows = self._db.conn.execute(_SELECT + "WHERE kind IN (7, 8)")
        return [_envelope(row) for row in rows]

    def commit(self, changes: Changes) -> None:
        with self._db.transaction() as conn:
            self.write(conn, changes)

    def write(self, conn: sqlite3.Connection, changes: Changes) -> None:
        """Apply `changes` inside the caller's transaction (to join other writes)."""
        for drop in changes.drops:
            conn.execute(
                "DELETE FROM records WHERE origin = ? AND (epoch_ms, epoch_nonce) < (?, ?) "
                "AND kind NOT IN (7, 8)",
                (drop.origin.raw, drop.before.created_ms, drop.before.nonce),
            )
        conn.executemany("DELETE FROM records WHERE key = ?", [(k,) for k in changes.removes])
        conn.executemany(
            "INSERT INTO records (key, origin, epoch_ms, epoch_nonce, seq, kind, body, "
            "signature, deleted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE "
            "SET origin = excluded.origin, epoch_ms = excluded.epoch_ms, "
            "epoch_nonce = excluded.epoch_nonce, seq = excluded.seq, kind = excluded.kind, "
            "body = excluded.body, signature = excluded.signature, deleted = excluded.deleted",
            [
                (
                    p.key,
                    p.envelope.origin.raw,
                    p.envelope.epoch.created_ms,
                    p.envelope.epoch.nonce,
                    p.envelope.seq,
                    int(p.envelope.kind),
                    p.envelope.body,
                    p.envelope.signature,
                    int(p.deleted),
                )
                for p in changes.puts
            ],
        )
        conn.executemany(
            "INSERT INTO clocks (origin, epoch_ms, epoch_nonce, seq) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (origin) DO UPDATE SET epoch_ms = excluded.epoch_ms, "
            "epoch_nonce = excluded.epoch_nonce, seq = excluded.seq",
            [(o.raw, c.epoch.created_ms, c.epoch.nonce, c.seq) for o, c in changes.clocks],
        )
