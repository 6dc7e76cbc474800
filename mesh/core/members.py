"""A member of the mesh, as the rest of the node uses it."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.core.ids import NodeId


@dataclass(frozen=True, kw_only=True, slots=True)
class Member:
    node_id: NodeId
    certificate: bytes  # DER; its SHA-256 is node_id
    name: str
    since_ms: int
    admitted_by: NodeId | None = None
