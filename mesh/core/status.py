"""What a node reports about itself."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.core.ids import NodeId


@dataclass(frozen=True, kw_only=True, slots=True)
class LibraryInfo:
    name: str
    root: str
    open: bool
    files: int
    bytes: int
    last_seq: int


@dataclass(frozen=True, kw_only=True, slots=True)
class NodeStatus:
    name: str
    node_id: NodeId
    home: str
    port: int
    running: bool  # whether this came from a running daemon
    uptime_s: float
    pid: int
    version: str
    libraries: tuple[LibraryInfo, ...]
    addresses: tuple[str, ...] = ()
