"""Gossip frames on the wire."""

from __future__ import annotations

from mesh.core.clock_proof import DIGEST_BYTES, ClockProof
from mesh.core.envelope import Envelope
from mesh.core.envelope import envelope as core_envelope
from mesh.core.errors import ProtocolError
from mesh.core.gossip import (
    Ack,
    Batch,
    DecodedEntries,
    GossipError,
    GossipFrame,
    Hello,
    Ping,
    VectorFrame,
)
from mesh.core.ids import NodeId
from mesh.core.liveness import MAX_PEERS, MAX_REPORTS, Presence, PresenceFrame
from mesh.core.records import Kind, entry_keys
from mesh.v1 import gossip_pb2 as pb
from mesh.wire import checks, envelope, records
from mesh.wire.records import vector_from_wire, vector_to_wire

MAX_BATCH_RECORDS = 4096
# Batches of more records than this have their entries decoded as they are read.
_DECODE_AHEAD = 64


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
            return pb.GossipFrame(batch=_batch_to_wire(frame))
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
        case PresenceFrame():
            msg = pb.GossipFrame()
            for report in frame.reports:
                msg.presence.reports.add(
                    origin=report.origin.raw,
                    version=report.version,
                    peers=sorted(p.raw for p in report.peers),
                )
            return msg


def _batch_to_wire(frame: Batch) -> pb.Batch:
    # Envelopes are added in place (`add`), sharing one epoch message: building each as a
    # message of its own and copying it into the batch cost twice as much (100k entries,
    # bench_gossip). The bytes are the same.
    epoch = checks.epoch_to_wire(frame.epoch)
    msg = pb.Batch(
        origin=frame.origin.raw,
        epoch=epoch,
        after_seq=frame.after_seq,
        through_seq=frame.through_seq,
        batch_id=frame.batch_id,
    )
    proof = frame.proof
    # The proof's epoch is the batch's on the wire: a proof of another epoch proves nothing
    # about this batch, so it is not sent.
    if proof is not None and proof.epoch == frame.epoch:
        msg.proof.seq = proof.seq
        msg.proof.signature = proof.signature
        msg.proof.digest = proof.digest
    add = msg.envelopes.add
    raw, stamp = frame.origin.raw, frame.epoch
    for e in frame.envelopes:
        if e.origin.raw == raw and (e.epoch is stamp or e.epoch == stamp):
            add(
                origin=e.origin.raw,
                epoch=epoch,
                seq=e.seq,
                kind=int(e.kind),
                body=e.body,
                signature=e.signature,
            )
        else:  # not a valid batch, but a test may send one to see it refused
            msg.envelopes.append(envelope.to_wire(e))
    return msg


def _batch_from_wire(b: pb.Batch, decode_entries: bool = True) -> Batch:
    if len(b.envelopes) > MAX_BATCH_RECORDS:
        raise ProtocolError(f"a batch of {len(b.envelopes)} records")
    after = checks.count(b.after_seq, "after_seq")
    through = checks.count(b.through_seq, "through_seq")
    if through < after:
        raise ProtocolError(f"a batch through {through} after {after}")
    origin = checks.node_id(b.origin, "origin")
    epoch = checks.epoch(b.epoch)
    raw, created_ms, nonce = origin.raw, epoch.created_ms, epoch.nonce
    kinds, max_body, max_signature, u63 = (
        envelope.KINDS,
        envelope.MAX_BODY,
        envelope.MAX_SIGNATURE,
        checks.U63,
    )
    envelopes: list[Envelope] = []
    append, make = envelopes.append, core_envelope
    for e in b.envelopes:
        # An envelope of the batch's origin and epoch (all of them, in a valid batch) shares
        # the batch's checked values instead of making and checking its own, and passes
        # envelope.from_wire's checks inline: per record, that was most of the cost of
        # reading a batch, on the event loop. Any other envelope is read in full (and the
        # replica refuses the batch), as is one that fails a check (which says why).
        stamp, kind, body, signature, seq = e.epoch, kinds.get(e.kind), e.body, e.signature, e.seq
        if (
            e.origin == raw
            and stamp.created_ms == created_ms
            and stamp.nonce == nonce
            and kind is not None
            and len(body) <= max_body
            and len(signature) <= max_signature
            and 0 < seq <= u63
        ):
            append(make(origin, epoch, seq, kind, body, signature))
        else:
            append(envelope.from_wire(e))
    proof = None
    if b.HasField("proof"):
        if len(b.proof.signature) > envelope.MAX_SIGNATURE:
            raise ProtocolError("a clock proof's signature too long to be ECDSA P-256")
        if len(b.proof.digest) not in (0, DIGEST_BYTES):
            raise ProtocolError(f"a clock proof's digest of {len(b.proof.digest)} bytes")
        proof = ClockProof(
            epoch=epoch,
            seq=checks.count(b.proof.seq, "proof seq"),
            signature=b.proof.signature,
            digest=b.proof.digest,
        )
    return Batch(
        origin=origin,
        epoch=epoch,
        after_seq=after,
        through_seq=through,
        envelopes=tuple(envelopes),
        batch_id=checks.count(b.batch_id, "batch id"),
        proof=proof,
        decoded=_decoded_entries(origin, envelopes) if decode_entries else None,
    )


def _decoded_entries(origin: NodeId, envelopes: list[Envelope]) -> DecodedEntries | None:
    """The keys and tombstone flags of a batch of library entries, decoded here (on the
    thread reading the batch, see transport/gossip_stream.py) so that the store thread
    need not; None for a small batch, one holding other kinds, or one whose bodies do not
    decode (the replica then decodes them one by one and names the record at fault)."""
    if len(envelopes) <= _DECODE_AHEAD or any(env.kind is not Kind.ENTRY for env in envelopes):
        return None
    try:
        facts = records.decode_entries([env.body for env in envelopes])
    except ProtocolError:
        return None
    return DecodedEntries(
        keys=entry_keys(origin, facts), deleted=[deleted for _, _, deleted in facts]
    )


def from_wire(msg: pb.GossipFrame, *, decode_entries: bool = True) -> GossipFrame:
    """The frame in `msg`, checked (ProtocolError). A batch's library entries are decoded
    too, unless `decode_entries` is false (the benchmark's baseline reads frames alone)."""
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
        return _batch_from_wire(msg.batch, decode_entries)
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
    if which == "presence":
        return _presence_from_wire(msg.presence)
    raise ProtocolError("an empty gossip frame")


def _presence_from_wire(msg: pb.Presences) -> PresenceFrame:
    if len(msg.reports) > MAX_REPORTS:
        raise ProtocolError(f"a presence frame of {len(msg.reports)} reports")
    reports = []
    for r in msg.reports:
        if len(r.peers) > MAX_PEERS:
            raise ProtocolError(f"a presence report of {len(r.peers)} sessions")
        reports.append(
            Presence(
                origin=checks.node_id(r.origin, "origin"),
                version=checks.count(r.version, "presence version"),
                peers=frozenset(checks.node_id(p, "peer") for p in r.peers),
            )
        )
    return PresenceFrame(reports=tuple(reports))
