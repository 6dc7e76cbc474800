"""Batches on the wire: the fast paths (envelopes sharing the batch's origin and epoch) give
the same bytes and the same checked values as encoding each envelope on its own."""

from __future__ import annotations

import dataclasses

import pytest

from mesh.core.clock_proof import ClockProof
from mesh.core.envelope import Envelope
from mesh.core.epoch import Epoch
from mesh.core.errors import ProtocolError
from mesh.core.gossip import Batch
from mesh.core.ids import NodeId
from mesh.core.records import Kind
from mesh.v1 import gossip_pb2 as pb
from mesh.v1 import records_pb2
from mesh.wire import envelope, gossip

ORIGIN, OTHER = NodeId(bytes(range(32))), NodeId(bytes(32))
EPOCH = Epoch(1_700_000_000_000, 77)


def env(seq: int, origin: NodeId = ORIGIN, epoch: Epoch = EPOCH, sig: bytes = b"") -> Envelope:
    return Envelope(
        origin=origin, epoch=epoch, seq=seq, kind=Kind.ENTRY, body=bytes([seq]), signature=sig
    )


def batch(*envelopes: Envelope) -> Batch:
    return Batch(
        origin=ORIGIN, epoch=EPOCH, after_seq=0, through_seq=9, envelopes=envelopes, batch_id=3
    )


def one_by_one(frame: Batch) -> bytes:
    """The batch as each envelope encoded on its own (the plain way)."""
    return pb.GossipFrame(
        batch=pb.Batch(
            origin=frame.origin.raw,
            epoch=records_pb2.Epoch(created_ms=EPOCH.created_ms, nonce=EPOCH.nonce),
            after_seq=frame.after_seq,
            through_seq=frame.through_seq,
            envelopes=[envelope.to_wire(e) for e in frame.envelopes],
            batch_id=frame.batch_id,
        )
    ).SerializeToString(deterministic=True)


def test_a_batch_encodes_as_its_envelopes_one_by_one() -> None:
    frame = batch(env(1), env(2, sig=b"s" * 64), env(5))
    assert gossip.to_wire(frame).SerializeToString(deterministic=True) == one_by_one(frame)


def test_an_envelope_of_another_origin_or_epoch_keeps_its_own() -> None:
    # Not a valid batch (the replica refuses it), but nothing may be silently rewritten.
    frame = batch(env(1), env(2, origin=OTHER), env(3, epoch=Epoch(1, 1)))
    data = gossip.to_wire(frame).SerializeToString(deterministic=True)
    assert data == one_by_one(frame)
    back = gossip.from_wire(pb.GossipFrame.FromString(data))
    assert back == frame
    assert isinstance(back, Batch)
    assert [(e.origin, e.epoch) for e in back.envelopes] == [
        (ORIGIN, EPOCH),
        (OTHER, EPOCH),
        (ORIGIN, Epoch(1, 1)),
    ]


def test_an_envelope_with_seq_zero_is_refused_in_a_batch_too() -> None:
    msg = gossip.to_wire(batch(env(1)))
    msg.batch.envelopes[0].seq = 0
    with pytest.raises(ProtocolError):
        gossip.from_wire(msg)


def test_a_clock_proof_travels_with_its_batch_and_only_of_the_batchs_epoch() -> None:
    proof = ClockProof(epoch=EPOCH, seq=12, signature=b"p" * 71)
    frame = dataclasses.replace(batch(env(1)), proof=proof)
    assert gossip.from_wire(gossip.to_wire(frame)) == frame
    # A proof of another epoch says nothing of this batch: it is not sent.
    elsewhere = dataclasses.replace(frame, proof=dataclasses.replace(proof, epoch=Epoch(1, 1)))
    assert gossip.from_wire(gossip.to_wire(elsewhere)) == batch(env(1))


def test_a_clock_proof_with_an_oversized_signature_is_refused() -> None:
    msg = gossip.to_wire(batch(env(1)))
    msg.batch.proof.seq = 3
    msg.batch.proof.signature = b"s" * (envelope.MAX_SIGNATURE + 1)
    with pytest.raises(ProtocolError, match="clock proof"):
        gossip.from_wire(msg)
