"""Gossip frames on the wire."""

from __future__ import annotations

from mesh.core.errors import ProtocolError
from mesh.core.gossip import Ack, Batch, GossipError, GossipFrame, Hello, Ping, VectorFrame
from mesh.v1 import gossip_pb2 as pb
from mesh.wire import checks, envelope
from mesh.wire.records import vector_from_wire, vector_to_wire

MAX_BATCH_RECORDS = 4096


def to_wire(frame: GossipFrame) -> pb.GossipFrame:
    match frame:
        case Hello():
            return pb.GossipFrame(
                hello=pb.Hello(
                    node_id=frame.node_id.raw,
                    epoch=checks.epoch_to_wire(frame.epoch),
                    protocol_version=frame.protocol_version,
                    name=frame.name,
                )
            )
        case VectorFrame():
            return pb.GossipFrame(vector=vector_to_wire(frame.vector))
        case Batch():
            return pb.GossipFrame(
                batch=pb.Batch(
                    origin=frame.origin.raw,
                    epoch=checks.epoch_to_wire(frame.epoch),
                    after_seq=frame.after_seq,
                    through_seq=frame.through_seq,
                    envelopes=[envelope.to_wire(e) for e in frame.envelopes],
                    batch_id=frame.batch_id,
                )
            )
        case Ack():
            return pb.GossipFrame(
                ack=pb.Ack(
                    batch_id=frame.batch_id,
                    vector=vector_to_wire(frame.vector),
                    refused=frame.refused,
                    reason=frame.reason,
                )
            )
        case Ping():
            return pb.GossipFrame(ping=pb.Ping(nonce=frame.nonce, pong=frame.pong))
        case GossipError():
            return pb.GossipFrame(error=pb.GossipError(code=frame.code, message=frame.message))


def from_wire(msg: pb.GossipFrame) -> GossipFrame:
    which = msg.WhichOneof("frame")
    if which == "hello":
        h = msg.hello
        return Hello(
            node_id=checks.node_id(h.node_id),
            epoch=checks.epoch(h.epoch),
            protocol_version=h.protocol_version,
            name=checks.node_name(h.name) if h.name else "",
        )
    if which == "vector":
        return VectorFrame(vector=vector_from_wire(msg.vector))
    if which == "batch":
        b = msg.batch
        if len(b.envelopes) > MAX_BATCH_RECORDS:
            raise ProtocolError(f"a batch of {len(b.envelopes)} records")
        after = checks.count(b.after_seq, "after_seq")
        through = checks.count(b.through_seq, "through_seq")
        if through < after:
            raise ProtocolError(f"a batch through {through} after {after}")
        return Batch(
            origin=checks.node_id(b.origin, "origin"),
            epoch=checks.epoch(b.epoch),
            after_seq=after,
            through_seq=through,
            envelopes=tuple(envelope.from_wire(e) for e in b.envelopes),
            batch_id=checks.count(b.batch_id, "batch id"),
        )
    if which == "ack":
        a = msg.ack
        return Ack(
            batch_id=checks.count(a.batch_id, "batch id"),
            vector=vector_from_wire(a.vector),
            refused=a.refused,
            reason=checks.text(a.reason, "reason"),
        )
    if which == "ping":
        return Ping(nonce=msg.ping.nonce, pong=msg.ping.pong)
    if which == "error":
        return GossipError(
            code=checks.text(msg.error.code, "error code", 64),
            message=checks.text(msg.error.message, "error message"),
        )
    raise ProtocolError("an empty gossip frame")
