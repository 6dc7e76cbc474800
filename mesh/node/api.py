"""What the CLI asks of a node: the same calls whether the daemon runs or not.

`LocalNode` answers them on the store directly (the CLI holds the home's lock) and
`ControlClient` answers them through the running daemon.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from mesh.core.entries import IndexedEntry
from mesh.core.ids import NodeId
from mesh.core.progress import ScanProgress
from mesh.core.status import LibraryInfo, MemberView, NodeStatus, RemovalPlan


class NodeApi(Protocol):
    def status(self) -> NodeStatus: ...

    def share(
        self,
        root: str,
        name: str | None = None,
        *,
        open_to_mesh: bool | None = None,
        borrowers: Sequence[str] | None = None,
        ask: bool | None = None,
    ) -> LibraryInfo: ...

    def unshare(self, name: str) -> int: ...

    def scan(
        self,
        names: Sequence[str] = (),
        on_progress: Callable[[ScanProgress], None] | None = None,
    ) -> ScanProgress: ...

    def entries(
        self, *, include_deleted: bool = False, libraries: Sequence[str] = ()
    ) -> list[IndexedEntry]: ...

    def members(self) -> tuple[NodeId, list[MemberView]]: ...

    def remove(
        self, name: str, keep: Sequence[str] = (), *, dry_run: bool = False
    ) -> RemovalPlan: ...

    def browse(self, node: str | None = None, pattern: str | None = None) -> list[IndexedEntry]: ...
