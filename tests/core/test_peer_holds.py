"""What a gossip peer holds, as the sender believes it (core/peer_holds.py): advanced by what
goes out and what comes in, set back by a refusal, and a refused origin held back until
this node has more of it."""

from __future__ import annotations

import hashlib

from mesh.core.envelope import Envelope
from mesh.core.epoch import Epoch
from mesh.core.gossip import Ack, Batch
from mesh.core.ids import NodeId
from mesh.core.peer_holds import PeerHolds
from mesh.core.records import Kind
from mesh.core.vector import Clock, VersionVector

PEER, A, B = (NodeId(hashlib.sha256(bytes([i])).digest()) for i in range(3))
E = Epoch(1, 1)


def batch(origin: NodeId, after: int, through: int, kind: Kind = Kind.ENTRY) -> Batch:
    envs = tuple(
        Envelope(origin=origin, epoch=E, seq=s, kind=kind, body=b"")
        for s in range(after + 1, through + 1)
    )
    return Batch(origin=origin, epoch=E, after_seq=after, through_seq=through, envelopes=envs)


def test_what_goes_out_is_offered_no_more_and_a_page_read_ahead_assumes_it_arrives() -> None:
    holds = PeerHolds(PEER)
    holds.start(VersionVector({A: Clock(E, 2)}))
    going = batch(A, 2, 5)
    assert holds.offer(None, [going]) == VersionVector({A: Clock(E, 5)})
    assert holds.offer(None) == VersionVector({A: Clock(E, 2)})
    holds.sent_batch(going)
    assert holds.offer(None) == VersionVector({A: Clock(E, 5)})
    # Acks lag behind what was sent: `mesh peers` counts the difference.
    ours = VersionVector({A: Clock(E, 5)})
    assert holds.unacked(ours) == 3
    holds.answered(going, Ack(batch_id=1, vector=VersionVector({A: Clock(E, 5)})), slim=True)
    assert holds.unacked(ours) == 0


def test_a_refused_origin_is_held_back_until_this_node_has_more_of_it() -> None:
    holds = PeerHolds(PEER)
    holds.start(VersionVector({A: Clock(E, 2)}))
    refused = batch(A, 2, 5)
    holds.sent_batch(refused)
    told = VersionVector({A: Clock(E, 2)})
    holds.answered(refused, Ack(batch_id=1, vector=told, refused=True, reason="bad"), slim=True)
    assert holds.refusals == 1 and holds.stuck
    assert holds.sent == VersionVector({A: Clock(E, 2)})
    # Still at 5 here: offered as held through 5, so the same records are not resent.
    assert holds.offer(VersionVector({A: Clock(E, 5)})) == VersionVector({A: Clock(E, 5)})
    # This node has more of A now: tried again from what the peer acked.
    assert holds.offer(VersionVector({A: Clock(E, 6)})) == VersionVector({A: Clock(E, 2)})
    assert not holds.stuck


def test_what_the_peer_sent_is_not_offered_back_except_a_loose_membership_record() -> None:
    holds = PeerHolds(PEER)
    holds.start(VersionVector())
    holds.received(batch(B, 0, 4))
    assert holds.offer(None) == VersionVector({B: Clock(E, 4)})
    assert holds.unacked(VersionVector({B: Clock(E, 4)})) == 0
    # One admission outside the peer's clock says nothing about the rest of A.
    holds.received(batch(A, 6, 7, Kind.ADMISSION))
    assert A not in holds.offer(None)
