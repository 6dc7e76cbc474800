"""What a pull needs of the daemon (`PullHost`), and the space it reserves there: the
quota and free-space policy that single pulls and a folder's batches share."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol, TypeVar

from mesh.config import Settings
from mesh.core.ids import NodeId
from mesh.core.loans import refusal
from mesh.fs.borrowed import BorrowedFolder
from mesh.node.channels import Channels
from mesh.node.lending import Lending
from mesh.node.ratelimit import Limits

T = TypeVar("T")


class PullHost(Protocol):
    node_id: NodeId
    settings: Settings
    channels: Channels
    limits: Limits

    @property
    def lending(self) -> Lending: ...

    @property
    def borrowed(self) -> BorrowedFolder: ...

    async def store(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...


def reserve(
    host: PullHost,
    sizes: Mapping[bytes, int],
    *,
    replaced: int = 0,
    ours: Collection[bytes] = (),
) -> str:
    """Why this node may not take these pulls (binding key: size) now, or "" and their
    sizes are reserved: the pulls in progress count against the quota too, or loans
    arriving together would each fit and all of them would not. `replaced`: bytes of held
    copies the new ones replace; `ours`: keys of other pulls of the same work, not counted
    as in progress. On the store thread."""
    lending, s = host.lending, host.settings
    mine = set(sizes) | set(ours)
    pulling = sum(n for key, n in lending.pulling.items() if key not in mine)
    why = refusal(
        sum(sizes.values()),
        held_bytes=lending.book.held_bytes() - replaced + pulling,
        quota=s.quota,
        free=host.borrowed.free_bytes() - pulling,
        reserve=s.reserve,
    )
    if not why:
        lending.pulling.update(sizes)
    return why


__all__ = ["PullHost", "reserve"]
