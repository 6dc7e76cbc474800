"""Envelopes on the wire. The body stays the bytes the origin wrote."""

from __future__ import annotations

from google.protobuf.message import DecodeError

from mesh.core.envelope import Envelope
from mesh.core.errors import ProtocolError
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


def from_wire(msg: pb.Envelope) -> Envelope:
    kind = int(msg.kind)
    if kind not in Kind._value2member_map_:
        raise ProtocolError(f"unknown record kind {kind}")
    if len(msg.body) > MAX_BODY:
        raise ProtocolError(f"a record body of {len(msg.body)} bytes, over {MAX_BODY}")
    if len(msg.signature) > MAX_SIGNATURE:
        raise ProtocolError("a signature too long to be ECDSA P-256")
    seq = checks.count(msg.seq, "seq")
    if seq == 0:
        raise ProtocolError("sequence numbers start at 1")
    return Envelope(
        origin=checks.node_id(msg.origin, "origin"),
        epoch=checks.epoch(msg.epoch),
        seq=seq,
        kind=Kind(kind),
        body=msg.body,
        signature=msg.signature,
    )


def to_bytes(envelope: Envelope) -> bytes:
    return to_wire(envelope).SerializeToString(deterministic=True)


def from_bytes(data: bytes) -> Envelope:
    try:
        msg = pb.Envelope.FromString(data)
    except (DecodeError, RecursionError) as exc:
        raise ProtocolError("malformed envelope") from exc
    return from_wire(msg)
