"""Channels for transfers: one pinned mutual-TLS channel per member, dialled on demand.

Gossip sessions come and go in either direction, so a puller cannot count on holding a
channel it dialled itself; this keeps one per member it pulls from, tried at each address
the member was reached at or announced, and dropped when it stops answering.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from mesh.config import Settings
from mesh.core.ids import NodeId
from mesh.security.identity import Identity
from mesh.transport.peer_client import PeerChannel, target

log = logging.getLogger(__name__)

Addresses = Callable[[NodeId], Awaitable[list[tuple[str, int]]]]


class Channels:
    def __init__(
        self,
        identity: Identity,
        settings: Settings,
        addresses: Addresses,
        certificate: Callable[[NodeId], bytes | None],
    ) -> None:
        self._identity = identity
        self._settings = settings
        self._addresses = addresses
        self._certificate = certificate
        self._open: dict[NodeId, PeerChannel] = {}

    async def get(self, node: NodeId) -> PeerChannel | None:
        """A connected channel to member `node`, or None if no address of it answers."""
        channel = self._open.get(node)
        if channel is not None:
            return channel
        certificate = self._certificate(node)
        if certificate is None:
            return None
        s = self._settings
        for host, port in await self._addresses(node):
            channel = PeerChannel(
                self._identity,
                node,
                certificate,
                host,
                port,
                keepalive_s=s.keepalive_s,
                ping_timeout_s=s.ping_timeout_s,
            )
            if await channel.ready(s.handshake_timeout_s):
                self._open[node] = channel
                return channel
            log.debug("%s does not answer at %s", node.short(), target(host, port))
            await channel.close()
        return None

    async def drop(self, node: NodeId) -> None:
        """Forget the channel to `node` (it failed, or `node` is no longer a member)."""
        channel = self._open.pop(node, None)
        if channel is not None:
            await channel.close()

    async def close(self) -> None:
        for node in list(self._open):
            await self.drop(node)
