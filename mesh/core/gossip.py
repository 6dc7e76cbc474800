"""The frames of a Gossip stream, as values: hello, vector, batch, ack, ping, error."""

from __future__ import annotations

from dataclasses import dataclass, field

from mesh.core.clock_proof import ClockProof
from mesh.core.envelope import Envelope
from mesh.core.epoch import Epoch
from mesh.core.ids import NodeId
from mesh.core.liveness import PresenceFrame
from mesh.core.vector import Clock, VersionVector

# 2: batches carry their origin's clock proof, and a clock moves only as far as one proves;
#    Fetch answers with raw chunks on /mesh.v1.Transfer/Fetch.
# 3: presence frames (core/liveness.py), sent only to peers that speak 3; an ack names
#    only the acked batch's origin in its vector (`ack_vector`), not the whole vector.
# 4: the link's liveness is gRPC's keepalive at both ends; the session pings only rarely,
#    as a backstop (node/session.py). A peer speaking 3 or less still expects (and sends)
#    a session ping every keepalive.
# 5: a batch of library entries only travels as columns (their bodies in one blob, their
#    seqs packed) instead of an envelope each (wire/gossip.py), to a peer that speaks 5.
#    A node holding more sessions than its bound ends one another member dialled with the
#    error code "crowded" (core/overlay.py's `to_evict`); the dialler picks another member
#    for a while. A peer speaking 4 or less is never evicted (it would only redial).
PROTOCOL_VERSION = 5
PRESENCE_VERSION = 3
SLIM_ACK_VERSION = 3
TRANSPORT_LIVENESS_VERSION = 4
COLUMNAR_ENTRIES_VERSION = 5
EVICTION_VERSION = 5
# A peer speaking a version in this range is understood; outside it, both sides say so.
COMPATIBLE_VERSIONS = range(2, 6)


@dataclass(frozen=True, kw_only=True, slots=True)
class Hello:
    node_id: NodeId
    epoch: Epoch
    protocol_version: int
    name: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class VectorFrame:
    vector: VersionVector


@dataclass(frozen=True, kw_only=True, slots=True)
class Batch:
    """Records of one origin and epoch covering (after_seq, through_seq], ascending, with
    the origin's proof that its writes in that epoch reach at least through_seq (if the
    sender holds one)."""

    origin: NodeId
    epoch: Epoch
    after_seq: int
    through_seq: int
    envelopes: tuple[Envelope, ...]
    batch_id: int = 0
    proof: ClockProof | None = None
    # Not a part of the batch: what reading it off the wire already made of its envelopes.
    decoded: DecodedEntries | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class DecodedEntries:
    """A batch's envelopes, every one a library entry, decoded and checked (the same decode
    and checks the replica makes) on the thread that read the batch off the wire: each
    one's key and whether it is a tombstone, in order. The replica takes them instead of
    decoding the bodies again on the store thread, where a sync's receiver was busiest."""

    keys: list[bytes]
    deleted: list[bool]


@dataclass(frozen=True, kw_only=True, slots=True)
class Ack:
    batch_id: int
    vector: VersionVector
    refused: bool = False
    reason: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Ping:
    nonce: int
    pong: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class GossipError:
    code: str
    message: str


GossipFrame = Hello | VectorFrame | Batch | Ack | Ping | GossipError | PresenceFrame


def ack_vector(vector: VersionVector, origin: NodeId, *, slim: bool) -> VersionVector:
    """The vector an ack of a batch of `origin` carries: the receiver's whole vector for a
    peer of protocol 2; for a later one just the origin's clock (none if it holds nothing
    of it). A whole vector per delivered batch was most of what a change cost on a LAN of
    thirty nodes, and the sender needs the origin's entry only."""
    if not slim:
        return vector
    clock = vector.get(origin)
    return VersionVector({origin: clock} if clock is not None else {})


def acked_vector(
    acked: VersionVector, told: VersionVector, origin: NodeId, *, slim: bool
) -> VersionVector:
    """What the sender believes the receiver holds once an ack telling `told` of a batch of
    `origin` arrives (see `ack_vector`)."""
    if not slim:
        return told
    items: dict[NodeId, Clock] = dict(acked.items())
    items.update(told.items())
    if origin not in told:
        items.pop(origin, None)
    return VersionVector(items)
