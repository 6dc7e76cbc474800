"""What discovery finds: hints that a node may be at some addresses. Nothing here is trusted:
the peer manager proves a hint with a TLS handshake against the members' certificates."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.core.ids import NodeId


@dataclass(frozen=True, kw_only=True, slots=True)
class Hint:
    hosts: tuple[str, ...]
    port: int
    node_id: NodeId | None  # what the announcement claims; only a TLS handshake proves it
    source: str  # "mdns", "static", "gossip"


@dataclass(frozen=True, kw_only=True, slots=True)
class PairingHint:
    """An open invitation announced on the LAN: where its pairing listener may be."""

    instance: str  # the announcement's name: tells two open invitations apart, nothing more
    hosts: tuple[str, ...]
    port: int
    nameplate: int | None = None  # the number of its code (None from a node before 0.2)
