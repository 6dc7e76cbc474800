"""Clock proofs: an origin's own signed word of how far its history goes.

A batch moves its receiver's clock of the batch's origin (to a newer epoch, or further in
the same one), and a clock that moved past what the origin wrote makes every node skip the
origin's later writes, or drop its records for an epoch it never started. So a clock moves
only as far as the origin itself signed: "my writes in `epoch` run through `seq`". The
origin signs its current clock when it sends its own records; every node keeps the latest
proof it verified of each origin and relays it unchanged with that origin's batches. One
signature covers any number of records and batches, where signing each record would cost
seconds for a large index.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mesh.core.epoch import Epoch
from mesh.core.ids import NodeId

_SIGNING_DOMAIN = b"mesh clock v1\x00"  # never a prefix of a record's signed bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class ClockProof:
    """The origin's signature that its writes in `epoch` reach at least `seq`."""

    epoch: Epoch
    seq: int
    signature: bytes

    def covers(self, epoch: Epoch, seq: int) -> bool:
        return self.epoch == epoch and seq <= self.seq

    def newer_than(self, other: ClockProof | None) -> bool:
        return other is None or (self.epoch, self.seq) > (other.epoch, other.seq)


def proof_bytes(origin: NodeId, epoch: Epoch, seq: int) -> bytes:
    """What the origin signs: a fixed domain tag, its node id, the epoch and the seq."""
    return _SIGNING_DOMAIN + origin.raw + struct.pack(">QQQ", epoch.created_ms, epoch.nonce, seq)
