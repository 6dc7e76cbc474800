"""Schema 0011: records written under the old layout (the full key and the origin in every
row) read back the same after the migration, and the store keeps working on them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mesh.core.envelope import Envelope
from mesh.core.epoch import Epoch
from mesh.core.ids import NodeId
from mesh.core.records import Kind, entry_key
from mesh.core.replica_store import Changes, Put
from mesh.store.database import Database, migrations
from mesh.store.records import SqliteReplicaStore

A, B = NodeId(b"\xaa" * 32), NodeId(b"\xbb" * 32)
E1, E2 = Epoch(1_000, 1), Epoch(2_000, 2)


def _old_database(path: Path) -> None:
    """A database at schema 0010, with records of two origins written as that layout did."""
    conn = sqlite3.connect(path, isolation_level=None)
    for version, sql in migrations():
        if version > 10:
            break
        conn.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version={version};\nCOMMIT;")
    admission = bytes([int(Kind.ADMISSION)]) + A.raw + b"\x00\x00\x00\x20" + B.raw
    e1, e2 = (E1.created_ms, E1.nonce), (E2.created_ms, E2.nonce)
    entry, admit = int(Kind.ENTRY), int(Kind.ADMISSION)
    rows = [
        (entry_key(A, "photos", "a.jpg"), A.raw, *e1, 1, entry, b"body-a", b"", 0),
        (entry_key(A, "photos", "b.jpg"), A.raw, *e1, 2, entry, b"body-b", b"", 1),
        (admission, A.raw, *e1, 3, admit, b"admit-b", b"sig", 0),
        (entry_key(B, "music", "c.flac"), B.raw, *e2, 7, entry, b"body-c", b"", 0),
    ]
    conn.executemany(
        "INSERT INTO records (key, origin, epoch_ms, epoch_nonce, seq, kind, body, signature, "
        "deleted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.close()


def test_old_records_read_back_the_same_after_the_migration(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    _old_database(path)
    db = Database(path)
    try:
        (version,) = db.conn.execute("PRAGMA user_version").fetchone()
        assert version == migrations()[-1][0]
        store = SqliteReplicaStore(db)
        key_a = entry_key(A, "photos", "a.jpg")
        assert store.get(key_a) == Envelope(
            origin=A, epoch=E1, seq=1, kind=Kind.ENTRY, body=b"body-a"
        )
        seqs = [e.seq for e in store.envelopes(A, E1, 0, 99, max_count=9, max_bytes=1 << 20)]
        assert seqs == [1, 2, 3]
        assert list(store.tombstones(A, E1, 0, 99, max_count=9)) == [
            entry_key(A, "photos", "b.jpg")
        ]
        assert [e.body for e in store.live(Kind.ENTRY, A)] == [b"body-a"]
        assert [e.body for e in store.live(Kind.ENTRY)] == [b"body-a", b"body-c"]
        assert [(e.origin, e.signature) for e in store.membership()] == [(A, b"sig")]
        # Writing goes on: a key replaced in place, and an origin never seen numbered anew.
        c = NodeId(b"\xcc" * 32)
        newer = Envelope(origin=A, epoch=E1, seq=4, kind=Kind.ENTRY, body=b"body-a2")
        fresh = Envelope(origin=c, epoch=E1, seq=1, kind=Kind.ENTRY, body=b"body-d")
        store.commit(Changes(puts=(Put(key_a, newer), Put(entry_key(c, "photos", "d.jpg"), fresh))))
        assert store.get(key_a) == newer
        assert list(store.envelopes(c, E1, 0, 9, max_count=9, max_bytes=1 << 20)) == [fresh]
        (count,) = db.conn.execute("SELECT count(*) FROM records").fetchone()
        assert count == 5
    finally:
        db.close()
