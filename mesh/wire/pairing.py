"""The pairing payload on the wire (sent sealed under the key both sides derived)."""

from __future__ import annotations

from google.protobuf.message import DecodeError

from mesh.core.errors import ProtocolError
from mesh.core.pairing import MemberInfo, PairingPayload
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
    )
