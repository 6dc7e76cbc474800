"""The records table's upsert of many rows: whole statements of `_UPSERT_ROWS` rows and the
rest one by one store every put as the one-by-one upsert did, in order."""

from __future__ import annotations

from pathlib import Path

from mesh.core.envelope import Envelope
from mesh.core.epoch import Epoch
from mesh.core.ids import NodeId
from mesh.core.records import Kind, entry_key
from mesh.core.replica_store import Changes, Put
from mesh.store import records
from mesh.store.database import Database
from mesh.store.records import SqliteReplicaStore

A = NodeId(b"\xaa" * 32)
E1 = Epoch(1_700_000_000_000, 7)


def _put(i: int, seq: int, *, deleted: bool = False, signature: bytes = b"") -> Put:
    env = Envelope(
        origin=A,
        epoch=E1,
        seq=seq,
        kind=Kind.ENTRY,
        body=b"body-%d-%d" % (i, seq),
        signature=signature,
    )
    return Put(entry_key(A, "photos", f"{i:05d}.jpg"), env, deleted)


def test_puts_past_one_statement_are_all_stored_in_order(tmp_path: Path) -> None:
    db = Database(tmp_path / "node.db")
    try:
        store = SqliteReplicaStore(db)
        size = records._UPSERT_ROWS
        count = 2 * size + size // 2  # two whole statements and a rest
        puts = [
            _put(i, i + 1, deleted=i % 7 == 0, signature=bytes([i % 251])) for i in range(count)
        ]
        # Key 3 again, in the first statement and in the rest: the last put of a key wins,
        # as it did one row at a time.
        puts[size - 1] = _put(3, size)
        puts[-1] = _put(3, count)
        store.commit(Changes(puts=tuple(puts)))
        (rows,) = db.conn.execute("SELECT count(*) FROM records").fetchone()
        assert rows == count - 2
        got = store.envelopes(A, E1, 0, count, max_count=count, max_bytes=1 << 30)
        expected = {p.key: p for p in puts}  # the last of each key
        by_seq = sorted(expected.values(), key=lambda p: p.envelope.seq)
        assert list(got) == [p.envelope for p in by_seq]
        assert store.get(entry_key(A, "photos", "00003.jpg")) == puts[-1].envelope
        deleted = [p.key for p in by_seq if p.deleted]
        assert list(store.tombstones(A, E1, 0, count, max_count=count)) == deleted
    finally:
        db.close()
