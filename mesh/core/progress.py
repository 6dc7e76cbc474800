"""Progress of long local work, as values the CLI can draw and the daemon can stream."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ScanProgress:
    """Running totals of a scan, over every library it covers."""

    files_seen: int = 0
    files_to_hash: int = 0
    files_hashed: int = 0
    bytes_to_hash: int = 0
    bytes_hashed: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    warnings: list[str] = field(default_factory=list)
    done: bool = False
