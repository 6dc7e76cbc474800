"""Who is calling: the node id hashed from the TLS session's client certificate.

Never from a message field. Every handler of the peer service is wrapped so that a caller
that is not (or no longer) a member gets PERMISSION_DENIED before any of our code runs, even
on a connection that was opened while it still was one. Each call is also registered under
its caller, so a removal can cancel that node's open calls at once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc

from mesh.core.ids import NodeId
from mesh.security.identity import pem_to_der

log = logging.getLogger(__name__)
T = TypeVar("T")

# Trailing metadata of a refusal to a removed node: one membership record (a serialized
# envelope) per entry, the records that show the removal.
REMOVAL_KEY = "mesh-removal-bin"
# The membership records that show a caller removed, serialized; empty if it was not.
Farewell = Callable[[NodeId], Awaitable[Sequence[bytes]]]


async def _no_farewell(peer: NodeId) -> Sequence[bytes]:
    return ()


def caller_id(context: Any) -> NodeId | None:
    auth = context.auth_context()
    pems = auth.get("x509_pem_cert") if auth else None
    if not pems:
        return None
    try:
        return NodeId.of_certificate(pem_to_der(pems[0]))
    except ValueError:
        return None


class CallRegistry:
    """The open calls of each peer, so that a removal can end them together."""

    def __init__(self) -> None:
        self._calls: dict[NodeId, set[asyncio.Event]] = collections.defaultdict(set)

    def add(self, peer: NodeId) -> asyncio.Event:
        revoked = asyncio.Event()
        self._calls[peer].add(revoked)
        return revoked

    def discard(self, peer: NodeId, revoked: asyncio.Event) -> None:
        calls = self._calls.get(peer)
        if calls is not None:
            calls.discard(revoked)
            if not calls:
                del self._calls[peer]

    def cancel(self, peer: NodeId) -> int:
        calls = self._calls.pop(peer, set())
        for revoked in calls:
            revoked.set()
        return len(calls)

    def count(self, peer: NodeId) -> int:
        return len(self._calls.get(peer, ()))


class Guard:
    """Runs every handler of the peer service for an authorized member only.

    The handler's body runs as a task beside a watch on the caller's membership: when the
    caller is removed, the body is cancelled and the call ends with PERMISSION_DENIED, which
    the caller sees at once (cancelling the handler alone would leave its stream open).
    """

    def __init__(
        self,
        is_member: Callable[[NodeId], bool],
        calls: CallRegistry,
        farewell: Farewell = _no_farewell,
    ) -> None:
        self._is_member = is_member
        self.calls = calls
        self._farewell = farewell

    async def _refuse(self, context: Any, peer: NodeId | None, message: str) -> None:
        if peer is not None and (records := await self._farewell(peer)):
            log.info("told %s that it was removed from the mesh", peer.short())
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "this node was removed from the mesh",
                trailing_metadata=tuple((REMOVAL_KEY, r) for r in records),
            )
        who = peer.short() if peer else "a caller without a certificate"
        log.warning("refused a call from %s: not a member", who)
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, message)

    async def run(self, context: Any, body: Callable[[NodeId], Awaitable[T]]) -> T:
        peer = caller_id(context)
        if peer is None or not self._is_member(peer):
            await self._refuse(context, peer, "not a member of this mesh")
            raise AssertionError("abort returned")  # pragma: no cover - abort raises
        revoked = self.calls.add(peer)
        work = asyncio.ensure_future(body(peer))
        watch = asyncio.ensure_future(revoked.wait())
        try:
            await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.cancel()
            raise
        finally:
            watch.cancel()
            self.calls.discard(peer, revoked)
        if work.done():
            return work.result()
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        await self._refuse(context, peer, "no longer a member of this mesh")
        raise AssertionError("abort returned")  # pragma: no cover
