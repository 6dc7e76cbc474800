"""Clock proofs: an origin's own signed word of how far its history goes.

A batch moves its receiver's clock of the batch's origin (to a newer epoch, or further in
the same one), and a clock that moved past what the origin wrote makes every node skip the
origin's later writes, or drop its records for an epoch it never started. So a clock moves
only as far as the origin itself signed: "my writes in `epoch` run through `seq`". The
origin signs its current clock when it sends its own records; every node keeps the latest
proof it verified of each origin and relays it unchanged with that origin's batches. One
signature covers any number of records and batches, where signing each record would cost
seconds for a large index.

The proof also names what the origin holds: a **digest** of its live records of the kinds
that grant something and are not membership records (bindings, borrow requests, denials,
addresses), up to `seq` in `epoch`. A relay passes the proof on unchanged, so it cannot leave
one of those records out (or keep back the newer version of one) without the receiver
noticing when its clock reaches the proof's seq: the receiver's own digest then differs, it
refuses the batch, moves its clock back to the last point it saw complete, and the records
come again from another member or the origin. A proof without a digest (v1, signed before
digests existed) still moves a clock, and covers nothing.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from mesh.core.envelope import Envelope
from mesh.core.epoch import Epoch
from mesh.core.ids import NodeId
from mesh.core.records import MEMBERSHIP_KINDS, SIGNED_KINDS

_SIGNING_DOMAIN = b"mesh clock v1\x00"  # never a prefix of a record's signed bytes
_SIGNING_DOMAIN_V2 = b"mesh clock v2\x00"
_DIGEST_DOMAIN = b"mesh granting records v1\x00"
DIGEST_BYTES = 32

# The kinds a proof's digest covers: those that grant something, membership apart (its
# records travel on their own, outside clocks, and are never dropped).
COVERED_KINDS = SIGNED_KINDS - MEMBERSHIP_KINDS


@dataclass(frozen=True, kw_only=True, slots=True)
class ClockProof:
    """The origin's signature that its writes in `epoch` reach at least `seq`."""

    epoch: Epoch
    seq: int
    signature: bytes
    digest: bytes = b""  # of the origin's covered records through seq; b"" in a v1 proof

    def covers(self, epoch: Epoch, seq: int) -> bool:
        return self.epoch == epoch and seq <= self.seq

    def newer_than(self, other: ClockProof | None) -> bool:
        return other is None or (self.epoch, self.seq) > (other.epoch, other.seq)


def proof_bytes(origin: NodeId, epoch: Epoch, seq: int, digest: bytes = b"") -> bytes:
    """What the origin signs: a fixed domain tag, its node id, the epoch, the seq and (v2)
    the digest of its covered records."""
    stamp = struct.pack(">QQQ", epoch.created_ms, epoch.nonce, seq)
    if not digest:
        return _SIGNING_DOMAIN + origin.raw + stamp
    return _SIGNING_DOMAIN_V2 + origin.raw + stamp + digest


def covered_digest(envelopes: Iterable[Envelope]) -> bytes:
    """The digest of an origin's live covered records (any order in, seq order hashed)."""
    h = hashlib.sha256(_DIGEST_DOMAIN)
    for env in sorted((e for e in envelopes if e.kind in COVERED_KINDS), key=lambda e: e.seq):
        h.update(struct.pack(">QB", env.seq, int(env.kind)))
        h.update(hashlib.sha256(env.body).digest())
    return h.digest()
