"""The replica's store on SQLite: every query is indexed by origin and sequence number, so
its cost follows what it returns, not how many records the mesh holds.

This node's own library entries are not copied into the records table: the local index
(`entries`, numbered from the same clock) is their record, and their envelopes are made
when a peer asks for them. Encoding is deterministic, so the bytes are the same every time,
and a scan of 100k files writes one table instead of two.

Records are stored without the origin they would repeat (schema 0011): origins are
numbered in `origins`, and a row holds its key past the kind and origin, which are columns
of their own; the full key is kind || origin || that rest. An origin's number is looked up
by a subquery in each statement, never cached: a number taken in a transaction that rolls
back may be given to another origin later.
"""

from __future__ import annotations

import heapq
import itertools
import operator
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from mesh.core.clock_proof import COVERED_KINDS, ClockProof
from mesh.core.entries import LibraryEntry
from mesh.core.envelope import Envelope, envelope, envelopes
from mesh.core.epoch import Epoch
from mesh.core.ids import NodeId
from mesh.core.records import MEMBERSHIP_KINDS, Kind, entry_key, split_key
from mesh.core.replica_store import Changes, Put
from mesh.core.vector import Clock, VersionVector
from mesh.store.database import Database

# The SQL below spells out the membership kinds (admission 7, removal 8).
assert {int(k) for k in MEMBERSHIP_KINDS} == {7, 8}
# Rows of one origin, known to the caller (so no origin is read back per row).
_SELECT_OF = "SELECT epoch_ms, epoch_nonce, seq, kind, body, signature FROM records "
# Rows of any origin, with it.
_SELECT_ANY = (
    "SELECT o.origin, r.epoch_ms, r.epoch_nonce, r.seq, r.kind, r.body, r.signature "
    "FROM records AS r JOIN origins AS o ON o.id = r.origin_id "
)
_ORIGIN_ID = "(SELECT id FROM origins WHERE origin = ?)"
_UPSERT_HEAD = (
    "INSERT INTO records (kind, origin_id, key, epoch_ms, epoch_nonce, seq, body, signature, "
    "deleted) VALUES "
)
_UPSERT_TAIL = (
    " ON CONFLICT (kind, origin_id, key) DO UPDATE "
    "SET epoch_ms = excluded.epoch_ms, epoch_nonce = excluded.epoch_nonce, seq = excluded.seq, "
    "body = excluded.body, signature = excluded.signature, deleted = excluded.deleted"
)
_ROW_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
_UPSERT = _UPSERT_HEAD + _ROW_VALUES + _UPSERT_TAIL
# Rows upserted by one statement: executemany runs a statement per row (binding, a step
# with the GIL let go and taken back, a reset), and a syncing receiver's store thread spent
# a quarter of its CPU there; one statement of many rows binds them all at once and steps
# once (0.52 -> 0.40 CPU seconds for 100k entries). 9,000 values: under SQLite's default
# limit of 32,766 since 3.32 (an older one's 999 is checked for in `_upsert`).
_UPSERT_ROWS = 1000
_UPSERT_VALUES = 9 * _UPSERT_ROWS
_UPSERT_MANY = _UPSERT_HEAD + ", ".join([_ROW_VALUES] * _UPSERT_ROWS) + _UPSERT_TAIL
# An origin's records of one (covered) kind through a seq, by the key index (kind and
# origin first): SQLite chose the by-origin index for this and read every record of the
# origin up to the seq, each row to test its kind, to find the few of covered kinds (12%
# of a receiver's store thread in a sync of 200k entries, and O(n) in every origin's proof).
COVERED = (
    "SELECT key, epoch_ms, epoch_nonce, seq, kind, body, signature FROM records "
    "INDEXED BY records_by_key WHERE kind = ? "
    "AND origin_id = (SELECT id FROM origins WHERE origin = ?) "
    "AND epoch_ms = ? AND epoch_nonce = ? AND seq <= ?"
)
_ENTRY_SELECT = "SELECT seq, library, path, size, mtime_ns, hash, chunk_root, deleted FROM entries "


_seq = operator.attrgetter("seq")


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


def _envelope_of(origin: NodeId, row: tuple[int, int, int, int, bytes, bytes]) -> Envelope:
    ems, enonce, seq, kind, body, signature = row
    return envelope(origin, Epoch(ems, enonce), seq, Kind(kind), body, signature)


def _where_key(key: bytes) -> tuple[int, bytes, bytes] | None:
    """(kind, origin, rest) of a full record key, as its row is found; None if `key` is
    too short to be one."""
    if len(key) < 33:
        return None
    return key[0], key[1:33], key[33:]


EncodeEntry = Callable[[LibraryEntry], bytes]
# The bodies of many entries at once, each given as (library, path, size, mtime_ns, hash,
# chunk root, deleted): the same bytes as EncodeEntry's, without a LibraryEntry each.
EncodeEntries = Callable[[Sequence[tuple[str, str, int, int, bytes, bytes, bool]]], list[bytes]]
# A page of entries is cut where its bodies would be twice the bytes asked for, by a
# guess made before encoding them: paths of many KiB must not make 4,096 envelopes a page.
_ENTRY_OVERHEAD = 64 + 48
_Row = tuple[int, int, bytearray, int, int, int, bytearray, bytearray, int]


def _rows(puts: Iterable[Put], me: NodeId | None, origin_id: Callable[[NodeId], int]) -> list[_Row]:
    """The records table's rows of `puts`, but for entries of `me` (this node's own
    entries live in the local index: a put of one, re-flagged because this node itself
    was removed, has nothing to add there). Blobs as bytearray, not bytes: sqlite3 binds
    it directly (see index.py's _write); a batch's puts share one origin, numbered once."""
    rows: list[_Row] = []
    append_row = rows.append
    origin: NodeId | None = None
    number = 0
    raw = b""
    mine = False
    entry = Kind.ENTRY
    for key, env, deleted in puts:
        if env.origin is not origin:
            origin = env.origin
            number = origin_id(origin)
            mine = origin == me
            raw = origin.raw
        if key[1:33] != raw:
            # Never: a key names its record's origin, and the row keeps only one of them.
            raise ValueError("a record key of another origin than its envelope's")
        if mine and env.kind is entry:
            continue
        epoch = env.epoch
        append_row(
            (
                int(env.kind),
                number,
                bytearray(key[33:]),
                epoch.created_ms,
                epoch.nonce,
                env.seq,
                bytearray(env.body),
                bytearray(env.signature),
                int(deleted),
            )
        )
    return rows


def _upsert(conn: sqlite3.Connection, rows: list[_Row]) -> None:
    """Upsert `rows` in order, `_UPSERT_ROWS` to a statement (see there), the rest one
    by one. (A key twice in one statement is upserted twice, in order, as apart.) An
    SQLite built with a lower limit of values (999 before 3.32) takes them one by one."""
    whole = len(rows) - len(rows) % _UPSERT_ROWS
    if conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) < _UPSERT_VALUES:
        whole = 0
    for start in range(0, whole, _UPSERT_ROWS):
        conn.execute(
            _UPSERT_MANY, list(itertools.chain.from_iterable(rows[start : start + _UPSERT_ROWS]))
        )
    conn.executemany(_UPSERT, rows[whole:])


def _numbering(conn: sqlite3.Connection) -> Callable[[NodeId], int]:
    """The number of an origin in `origins`, given one first if it has none (in the
    caller's transaction)."""

    def origin_id(origin: NodeId) -> int:
        conn.execute(
            "INSERT INTO origins (origin) VALUES (?) ON CONFLICT DO NOTHING", (origin.raw,)
        )
        (number,) = conn.execute(
            "SELECT id FROM origins WHERE origin = ?", (origin.raw,)
        ).fetchone()
        return int(number)

    return origin_id


class SqliteReplicaStore:
    """`ReplicaStore` on the node's database. Use from the store thread only.

    Without `self_id`, a plain store of records (every origin alike).
    """

    def __init__(
        self,
        db: Database,
        *,
        self_id: NodeId | None = None,
        own_epoch: Epoch | None = None,
        encode_entry: EncodeEntry | None = None,
        encode_entries: EncodeEntries | None = None,
    ) -> None:
        self._db = db
        self._self = self_id
        self._own_epoch = own_epoch
        self._encode_entry = encode_entry
        self._encode_entries = encode_entries
        # Bumped by every write, so the daemon can tell whether a call changed anything.
        self.writes = 0

    # -- this node's entries, served from the local index -------------------------------

    def _own_entries(self, origin: NodeId, epoch: Epoch) -> bool:
        return origin == self._self and epoch == self._own_epoch

    def _entry_envelope(self, row: tuple[Any, ...]) -> Envelope:
        seq, library, path, size, mtime, content, root, deleted = row
        assert self._self is not None and self._own_epoch is not None
        assert self._encode_entry is not None
        entry = LibraryEntry(
            library=library,
            path=path,
            size=size,
            mtime_ns=mtime,
            hash=content,
            chunk_root=root,
            deleted=bool(deleted),
        )
        return Envelope(
            origin=self._self,
            epoch=self._own_epoch,
            seq=seq,
            kind=Kind.ENTRY,
            body=self._encode_entry(entry),
        )

    def _own_page(
        self, records: list[Envelope], rows: list[tuple[Any, ...]], limit: int, max_bytes: int
    ) -> list[Envelope]:
        """This node's entries of `rows` as envelopes, their bodies encoded all at once, with
        its other `records` of the same range in seq order; those past the last entry taken
        are left out when the entries were cut (the next page starts there)."""
        assert self._self is not None and self._own_epoch is not None
        assert self._encode_entries is not None
        cut = len(rows) >= limit
        guess = 0
        for i, row in enumerate(rows):
            guess += len(row[1]) + len(row[2]) + _ENTRY_OVERHEAD
            if guess > 2 * max_bytes and i:
                rows, cut = rows[:i], True
                break
        bodies = self._encode_entries([row[1:] for row in rows])
        own = envelopes(self._self, self._own_epoch, Kind.ENTRY, [row[0] for row in rows], bodies)
        if not records:
            return own
        if cut and own:
            records = [r for r in records if r.seq <= own[-1].seq]
        return sorted([*records, *own], key=_seq)

    def take_own_seqs(self, conn: sqlite3.Connection, count: int) -> int:
        """Reserve `count` of this node's sequence numbers in the caller's transaction."""
        assert self._self is not None and self._own_epoch is not None
        self.writes += 1
        epoch = self._own_epoch
        row = conn.execute(
            "SELECT epoch_ms, epoch_nonce, seq FROM clocks WHERE origin = ?", (self._self.raw,)
        ).fetchone()
        current = row[2] if row is not None and Epoch(row[0], row[1]) == epoch else 0
        conn.execute(
            "INSERT INTO clocks (origin, epoch_ms, epoch_nonce, seq) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (origin) DO UPDATE SET epoch_ms = excluded.epoch_ms, "
            "epoch_nonce = excluded.epoch_nonce, seq = excluded.seq",
            (self._self.raw, epoch.created_ms, epoch.nonce, current + count),
        )
        return current + 1

    def vector(self) -> VersionVector:
        rows = self._db.read("SELECT origin, epoch_ms, epoch_nonce, seq FROM clocks")
        return VersionVector({NodeId(o): Clock(Epoch(ms, n), s) for o, ms, n, s in rows})

    def clock(self, origin: NodeId) -> Clock | None:
        row = self._db.conn.execute(
            "SELECT epoch_ms, epoch_nonce, seq FROM clocks WHERE origin = ?", (origin.raw,)
        ).fetchone()
        return None if row is None else Clock(Epoch(row[0], row[1]), row[2])

    def proof(self, origin: NodeId) -> ClockProof | None:
        row = self._db.conn.execute(
            "SELECT epoch_ms, epoch_nonce, seq, signature, digest FROM clock_proofs "
            "WHERE origin = ?",
            (origin.raw,),
        ).fetchone()
        if row is None:
            return None
        return ClockProof(epoch=Epoch(row[0], row[1]), seq=row[2], signature=row[3], digest=row[4])

    def get(self, key: bytes) -> Envelope | None:
        own = self._own_entry_key(key)
        if own is not None:
            found = self._db.conn.execute(
                _ENTRY_SELECT + "WHERE library = ? AND path = ?", own
            ).fetchone()
            return None if found is None else self._entry_envelope(found)
        where = _where_key(key)
        if where is None:
            return None
        row = self._db.conn.execute(
            _SELECT_OF + "WHERE kind = ? AND origin_id = " + _ORIGIN_ID + " AND key = ?", where
        ).fetchone()
        return None if row is None else _envelope_of(NodeId(where[1]), row)

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
        limit = max(1, max_count)
        rows = self._db.conn.execute(
            _SELECT_OF + "WHERE origin_id = " + _ORIGIN_ID + " AND epoch_ms = ? "
            "AND epoch_nonce = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            (origin.raw, epoch.created_ms, epoch.nonce, after_seq, through_seq, limit),
        )
        records = [_envelope_of(origin, row) for row in rows]
        found: Iterable[Envelope] = records
        if self._own_entries(origin, epoch):
            entries = self._db.conn.execute(
                _ENTRY_SELECT + "WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                (after_seq, through_seq, limit),
            )
            if self._encode_entries is None:
                own: Iterable[Envelope] = map(self._entry_envelope, entries)
                # This node's few other records (library, addresses, ...) are merged in
                # only when there are any, and lazily: the loop below stops at
                # `max_bytes`, long before `limit` entries.
                found = heapq.merge(records, own, key=_seq) if records else own
            else:
                found = self._own_page(records, entries.fetchall(), limit, max_bytes)
        out: list[Envelope] = []
        total = 0
        for env in found:
            if len(out) >= limit:
                break
            total += env.size
            if out and total > max_bytes:
                break
            out.append(env)
        return out

    def live(self, kind: Kind, origin: NodeId | None = None) -> Iterable[Envelope]:
        """The live (not deleted) records of `kind`, of one origin or of all, in key order:
        a range of the key index, which begins with the kind and the origin. Not this
        node's own entries."""
        if origin is not None:
            rows = self._db.conn.execute(
                _SELECT_OF + "WHERE kind = ? AND origin_id = " + _ORIGIN_ID + " AND deleted = 0 "
                "ORDER BY key",
                (int(kind), origin.raw),
            )
            return (_envelope_of(origin, row) for row in rows)
        every = self._db.conn.execute(
            _SELECT_ANY + "WHERE r.kind = ? AND r.deleted = 0 ORDER BY o.origin, r.key",
            (int(kind),),
        )
        return (_envelope(row) for row in every)

    def covered(
        self, origin: NodeId, epoch: Epoch, through_seq: int
    ) -> Sequence[tuple[bytes, Envelope]]:
        found: list[tuple[bytes, Envelope]] = []
        for kind in sorted(COVERED_KINDS):
            head = bytes([int(kind)]) + origin.raw  # of each full key
            rows = self._db.conn.execute(
                COVERED, (int(kind), origin.raw, epoch.created_ms, epoch.nonce, through_seq)
            )
            found.extend((head + row[0], _envelope_of(origin, row[1:])) for row in rows)
        return found

    def tombstones(
        self, origin: NodeId, epoch: Epoch, after_seq: int, through_seq: int, *, max_count: int
    ) -> Sequence[bytes]:
        rows = self._db.conn.execute(
            "SELECT seq, kind, key FROM records WHERE deleted = 1 "
            "AND origin_id = (SELECT id FROM origins WHERE origin = ?) "
            "AND epoch_ms = ? AND epoch_nonce = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            (origin.raw, epoch.created_ms, epoch.nonce, after_seq, through_seq, max_count),
        )
        raw = origin.raw
        found: Iterable[tuple[int, bytes]] = (
            (seq, bytes([kind]) + raw + rest) for seq, kind, rest in rows
        )
        if self._own_entries(origin, epoch):
            assert self._self is not None
            me = self._self
            entries = self._db.conn.execute(
                "SELECT seq, library, path FROM entries WHERE deleted = 1 AND seq > ? "
                "AND seq <= ? ORDER BY seq LIMIT ?",
                (after_seq, through_seq, max_count),
            )
            own = ((seq, entry_key(me, lib, path)) for seq, lib, path in entries)
            found = heapq.merge(found, own)
        return [key for _, key in itertools.islice(found, max_count)]

    def membership(self) -> Sequence[Envelope]:
        rows = self._db.conn.execute(_SELECT_ANY + "WHERE r.kind IN (7, 8)")
        return [_envelope(row) for row in rows]

    def _own_entry_key(self, key: bytes) -> tuple[str, str] | None:
        """(library, path) if `key` is one of this node's entries, else None."""
        if self._self is None or not key or key[0] != Kind.ENTRY or key[1:33] != self._self.raw:
            return None
        _, _, fields = split_key(key)
        return fields[0].decode(), fields[1].decode()

    def commit(self, changes: Changes) -> None:
        with self._db.transaction() as conn:
            self.write(conn, changes)

    def write(self, conn: sqlite3.Connection, changes: Changes) -> None:
        """Apply `changes` inside the caller's transaction (to join other writes)."""
        self.writes += 1
        for drop in changes.drops:
            conn.execute(
                "DELETE FROM records WHERE origin_id = (SELECT id FROM origins WHERE origin = ?) "
                "AND (epoch_ms, epoch_nonce) < (?, ?) AND kind NOT IN (7, 8)",
                (drop.origin.raw, drop.before.created_ms, drop.before.nonce),
            )
        own = [(k, self._own_entry_key(k)) for k in changes.removes]
        conn.executemany(
            "DELETE FROM entries WHERE library = ? AND path = ? AND deleted = 1",
            [where for _, where in own if where is not None],
        )
        conn.executemany(
            "DELETE FROM records WHERE kind = ? "
            "AND origin_id = (SELECT id FROM origins WHERE origin = ?) AND key = ?",
            [found for k, where in own if where is None and (found := _where_key(k)) is not None],
        )
        _upsert(conn, _rows(changes.puts, self._self, _numbering(conn)))
        conn.executemany(
            "INSERT INTO clocks (origin, epoch_ms, epoch_nonce, seq) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (origin) DO UPDATE SET epoch_ms = excluded.epoch_ms, "
            "epoch_nonce = excluded.epoch_nonce, seq = excluded.seq",
            [(o.raw, c.epoch.created_ms, c.epoch.nonce, c.seq) for o, c in changes.clocks],
        )
        conn.executemany(
            "INSERT INTO clock_proofs (origin, epoch_ms, epoch_nonce, seq, signature, digest) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET "
            "epoch_ms = excluded.epoch_ms, epoch_nonce = excluded.epoch_nonce, "
            "seq = excluded.seq, signature = excluded.signature, digest = excluded.digest",
            [
                (o.raw, p.epoch.created_ms, p.epoch.nonce, p.seq, p.signature, p.digest)
                for o, p in changes.proofs
            ],
        )
