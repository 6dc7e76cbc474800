"""What the replica needs from persistence: a `ReplicaStore`, and the `Changes` it commits.

The store holds, for every origin, its clock (epoch and last seq held) and the live envelope
of each key, with a tombstone flag. A key is made by `core/records.key_of`: it begins with
its record's kind and its envelope's origin, which a store may keep apart from the rest.
Every operation is meant to be an indexed query whose cost follows what it returns or
changes, never the store's size. In SQLite terms (store/records.py): envelopes are rows
(kind, origin number, rest of the key, epoch created_ms, epoch nonce, seq, body, signature,
deleted) with a unique index on (kind, origin, rest of the key) for `get`, `live` and
`membership`, an index on (origin, epoch created_ms, epoch nonce, seq) for `envelopes` and
drops, and a partial one on it WHERE deleted for `tombstones`; clocks are a table keyed by
origin, and so are the origins' clock proofs (which the store keeps to relay them, checked
already).

Everything an apply or a local write changes goes to `commit` as one `Changes` value, applied
atomically (one transaction): a crash leaves either all of a batch or none of it, and a
clock is never ahead of the records it promises. The store checks nothing: the replica has.
Bounds may be as large as `MAX_SEQ` (which fits a SQLite INTEGER).

tests/core/fakes.py has an in-memory implementation, and tests/core/test_replica.py the
contract tests every implementation must pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from mesh.core.clock_proof import ClockProof
from mesh.core.envelope import Envelope
from mesh.core.epoch import Epoch
from mesh.core.ids import NodeId
from mesh.core.vector import Clock, VersionVector

MAX_SEQ = (1 << 63) - 1


class Put(NamedTuple):
    """Make `envelope` the live record of `key`, replacing whatever was stored under it
    (which may be of another seq or epoch, or the same envelope with another flag).

    A named tuple, not a dataclass: an initial sync makes one per record (100k and more),
    and a tuple costs a third as much to make and is no work for the cyclic GC."""

    key: bytes
    envelope: Envelope
    deleted: bool = False  # a tombstone: listed by `tombstones` until removed or re-put


@dataclass(frozen=True, kw_only=True, slots=True)
class EpochDrop:
    """Forget `origin`'s records of every epoch older than `before`, except membership ones."""

    origin: NodeId
    before: Epoch


@dataclass(frozen=True, kw_only=True, slots=True)
class Changes:
    """One atomic commit. Applied as if in field order: forget first, then write."""

    drops: tuple[EpochDrop, ...] = ()
    removes: tuple[bytes, ...] = ()  # keys whose live record goes (purged tombstones)
    puts: tuple[Put, ...] = ()
    clocks: tuple[tuple[NodeId, Clock], ...] = ()  # set as given
    proofs: tuple[tuple[NodeId, ClockProof], ...] = ()  # set as given (replacing the held one)

    def __bool__(self) -> bool:
        return bool(self.drops or self.removes or self.puts or self.clocks or self.proofs)


class ReplicaStore(Protocol):
    """The replica's persistence. Clocks and envelopes change only through `commit`."""

    def vector(self) -> VersionVector:
        """Every origin's clock."""
        ...

    def clock(self, origin: NodeId) -> Clock | None:
        """`origin`'s clock, None if nothing of it was ever applied."""
        ...

    def proof(self, origin: NodeId) -> ClockProof | None:
        """The latest clock proof of `origin` committed, None if none was."""
        ...

    def get(self, key: bytes) -> Envelope | None:
        """The live envelope stored under `key`."""
        ...

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
        """Live envelopes of (origin, epoch) with after_seq < seq <= through_seq, ascending,
        tombstones included, whatever the clock says (membership records can be held past
        it).

        Stops after `max_count` (>= 1), and before the envelope that would take the sum of
        `Envelope.size` over `max_bytes`; but returns the first one whatever its size.
        """
        ...

    def covered(
        self, origin: NodeId, epoch: Epoch, through_seq: int
    ) -> Sequence[tuple[bytes, Envelope]]:
        """(key, envelope) of the stored records of (origin, epoch) with seq <= through_seq
        whose kinds a clock proof's digest covers (core/clock_proof.COVERED_KINDS), any
        order, tombstones included. Few per origin: read by kind, not by seq range."""
        ...

    def tombstones(
        self, origin: NodeId, epoch: Epoch, after_seq: int, through_seq: int, *, max_count: int
    ) -> Sequence[bytes]:
        """Keys of the tombstones (puts with deleted=True) of (origin, epoch) with
        after_seq < seq <= through_seq, ascending by seq, at most `max_count`."""
        ...

    def membership(self) -> Sequence[Envelope]:
        """Every live admission and removal envelope, of any origin and epoch, any order."""
        ...

    def commit(self, changes: Changes) -> None:
        """Apply `changes` atomically."""
        ...
