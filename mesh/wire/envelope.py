"""Envelopes on the wire. The body stays the bytes the origin wrote."""

from __future__ import annotations

from google.protobuf.message import DecodeError

from mesh.core.envelope import Envelope
from mesh.core.epoch import Epoch
from mesh.core.errors import ProtocolError
from mesh.core.ids import NodeId
from mesh.core.records import Kind
from mesh.v1 import records_pb2 as pb
from mesh.wire import checks

MAX_BODY = 64 * 1024
MAX_SIGNATURE = 128


def to_wire(envelope: Envelope) -> pb.Envelope:
    return pb.Envelope(
        origin=envelope.origin.raw,
        epoch=checks.epoch_to_wire(envelope.epoch),
        seq=envelope.seq,
        kind=int(envelope.kind),  # type: ignore[arg-type]
        body=envelope.body,
        signature=envelope.signature,
    )


KINDS = {int(k): k for k in Kind}


def from_wire(
    msg: pb.Envelope, origin: NodeId | None = None, epoch: Epoch | None = None
) -> Envelope:
    """The checked envelope. A caller that has checked `msg`'s origin and epoch already (a
    batch's envelopes share them) passes them in, so they are not made again per record."""
    kind = KINDS.get(msg.kind)
    if kind is None:
        raise ProtocolError(f"unknown record kind {int(msg.kind)}")
    body, signature = msg.body, msg.signature
    if len(body) > MAX_BODY:
        raise ProtocolError(f"a record body of {len(body)} bytes, over {MAX_BODY}")
    if len(signature) > MAX_SIGNATURE:
        raise ProtocolError("a signature too long to be ECDSA P-256")
    seq = msg.seq
    if not 0 < seq <= checks.U63:
        raise ProtocolError(f"seq {seq} is not in 1..{checks.U63} (sequence numbers start at 1)")
    return Envelope(
        origin=origin if origin is not None else checks.node_id(msg.origin, "origin"),
        epoch=epoch if epoch is not None else checks.epoch(msg.epoch),
        seq=seq,
        kind=kind,
        body=body,
        signature=signature,
    )


def to_bytes(envelope: Envelope) -> bytes:
    return to_wire(envelope).SerializeToString(deterministic=True)


def from_bytes(data: bytes) -> Envelope:
    try:
        msg = pb.Envelope.FromString(data)
    except (DecodeError, RecursionError) as exc:
        raise ProtocolError("malformed envelope") from exc
    return from_wire(msg)
