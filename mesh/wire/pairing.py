"""The pairing payload on the wire (sent sealed under the key both sides derived)."""

from __future__ import annotations

from google.protobuf.message import DecodeError

from mesh.core.errors import ProtocolError
from mesh.core.pairing import (
    InvitationState,
    MemberInfo,
    PairingFrame,
    PairingPayload,
    Refusal,
)
from mesh.v1 import pairing_pb2 as pb
from mesh.wire import checks
from mesh.wire.records import MAX_CERTIFICATE

MAX_MEMBERS = 1024
MAX_RECORDS = 16384


def payload_to_bytes(p: PairingPayload) -> bytes:
    msg = pb.PairingPayload(
        certificate=p.certificate,
        name=p.name,
        members=[
            pb.MemberInfo(node_id=m.node_id.raw, certificate=m.certificate, name=m.name)
            for m in p.members
        ],
        records=list(p.records),
        protocol_version=p.protocol_version,
        refusal=p.refusal,
        hosts=list(p.hosts),
        port=p.port,
        root=p.root.raw if p.root is not None else b"",
    )
    return msg.SerializeToString(deterministic=True)


def payload_from_bytes(data: bytes) -> PairingPayload:
    try:
        msg = pb.PairingPayload.FromString(data)
    except (DecodeError, RecursionError) as exc:
        raise ProtocolError("malformed pairing payload") from exc
    if len(msg.members) > MAX_MEMBERS or len(msg.records) > MAX_RECORDS:
        raise ProtocolError("a pairing payload too large")
    if len(msg.certificate) > MAX_CERTIFICATE:
        raise ProtocolError("a certificate too large")
    members = []
    for m in msg.members:
        if len(m.certificate) > MAX_CERTIFICATE:
            raise ProtocolError("a member certificate too large")
        members.append(
            MemberInfo(
                node_id=checks.node_id(m.node_id),
                certificate=m.certificate,
                name=checks.node_name(m.name),
            )
        )
    return PairingPayload(
        certificate=msg.certificate,
        name=checks.node_name(msg.name) if msg.name else "",
        protocol_version=msg.protocol_version,
        members=tuple(members),
        records=tuple(msg.records),
        refusal=checks.text(msg.refusal, "refusal"),
        hosts=tuple(checks.host(h) for h in msg.hosts),
        port=checks.count(msg.port, "port", 65535),
        root=checks.node_id(msg.root, "mesh root") if msg.root else None,
    )


MAX_SPAKE = 256
MAX_SEALED = 4 << 20


_REFUSALS = {
    Refusal.OTHER: pb.PAIRING_REFUSAL_UNSPECIFIED,
    Refusal.WRONG_CODE: pb.PAIRING_REFUSAL_WRONG_CODE,
    Refusal.CLOSED: pb.PAIRING_REFUSAL_CLOSED,
    Refusal.OTHER_CODE: pb.PAIRING_REFUSAL_OTHER_CODE,
}
_CLOSURES = {
    InvitationState.OPEN: pb.INVITATION_CLOSURE_UNSPECIFIED,
    InvitationState.USED: pb.INVITATION_CLOSURE_USED,
    InvitationState.EXPIRED: pb.INVITATION_CLOSURE_EXPIRED,
    InvitationState.CANCELLED: pb.INVITATION_CLOSURE_CANCELLED,
    InvitationState.REPLACED: pb.INVITATION_CLOSURE_REPLACED,
    InvitationState.LOCKED: pb.INVITATION_CLOSURE_LOCKED,
}
_REFUSALS_BACK = {v: k for k, v in _REFUSALS.items()}
_CLOSURES_BACK = {v: k for k, v in _CLOSURES.items()}
MAX_NAMEPLATE = 999
MAX_TRIES = 100
_LATEST_MS = 4_102_444_800_000  # 2100-01-01: a later "closed at" is nonsense, shown as none


def frame_to_wire(frame: PairingFrame) -> pb.PairingFrame:
    if frame.spake:
        msg = pb.PairingFrame(spake=frame.spake)
        if frame.nameplate is not None:
            msg.nameplate = frame.nameplate
        return msg
    if frame.confirm:
        return pb.PairingFrame(confirm=frame.confirm)
    if frame.sealed:
        return pb.PairingFrame(sealed=frame.sealed)
    return pb.PairingFrame(
        error=frame.error or "error",
        refusal=_REFUSALS[frame.refusal],
        tries_left=frame.tries_left,
        closed=_CLOSURES[frame.closed],
        closed_ms=frame.closed_ms,
    )


def frame_from_wire(msg: pb.PairingFrame) -> PairingFrame:
    which = msg.WhichOneof("frame")
    if which == "spake" and 0 < len(msg.spake) <= MAX_SPAKE:
        nameplate = msg.nameplate if msg.HasField("nameplate") else None
        if nameplate is not None and nameplate > MAX_NAMEPLATE:
            raise ProtocolError(f"a pairing nameplate out of range ({nameplate})")
        return PairingFrame(spake=msg.spake, nameplate=nameplate)
    if which == "confirm" and len(msg.confirm) == 32:
        return PairingFrame(confirm=msg.confirm)
    if which == "sealed" and 0 < len(msg.sealed) <= MAX_SEALED:
        return PairingFrame(sealed=msg.sealed)
    if which == "error":
        return PairingFrame(
            error=checks.text(msg.error, "pairing error") or "error",
            # Kinds a newer inviter adds read as plain errors: the text still says it.
            refusal=_REFUSALS_BACK.get(msg.refusal, Refusal.OTHER),
            tries_left=min(msg.tries_left, MAX_TRIES),
            closed=_CLOSURES_BACK.get(msg.closed, InvitationState.OPEN),
            closed_ms=msg.closed_ms if msg.closed_ms <= _LATEST_MS else 0,
        )
    raise ProtocolError(f"a malformed pairing message ({which or 'empty'})")
