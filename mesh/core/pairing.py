"""What two nodes exchange when one joins the other's mesh, once the code is proven."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.core.ids import NodeId


@dataclass(frozen=True, kw_only=True, slots=True)
class MemberInfo:
    node_id: NodeId
    certificate: bytes
    name: str


@dataclass(frozen=True, kw_only=True, slots=True)
class PairingPayload:
    certificate: bytes
    name: str
    protocol_version: int
    members: tuple[MemberInfo, ...] = ()
    records: tuple[bytes, ...] = ()  # serialized envelopes (membership, addresses)
    refusal: str = ""
    hosts: tuple[str, ...] = ()
    port: int = 0
    root: NodeId | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class PairingFrame:
    """One message of the pairing stream: exactly one field is set."""

    spake: bytes = b""
    confirm: bytes = b""
    sealed: bytes = b""
    error: str = ""
