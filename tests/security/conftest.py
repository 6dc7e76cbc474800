"""Helpers of the security battery: a bare peer server, and the node fixtures it reuses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import pytest

from mesh.core.errors import PeerUnavailableError
from mesh.core.gossip import Ping
from mesh.core.ids import NodeId
from mesh.core.transfer import Chunk, FetchFilesRequest, FetchRequest, Manifest, ManifestRequest
from mesh.security.identity import Identity
from mesh.transport.gossip_stream import GossipStream
from mesh.transport.peer_client import PeerChannel
from mesh.transport.peer_server import PeerServer
from mesh.transport.tls import TrustStore
from tests.cli.conftest import mesh  # noqa: F401 - fixtures, for this folder's tests
from tests.node.conftest import nodes  # noqa: F401


class PingHandlers:
    """Serves its members one ping per gossip stream, and no transfers."""

    def __init__(self, members: Iterable[NodeId]) -> None:
        self.members = set(members)
        self.calls: list[NodeId] = []

    def is_member(self, node_id: NodeId) -> bool:
        return node_id in self.members

    async def farewell(self, node_id: NodeId) -> list[bytes]:
        return []  # nobody here was removed

    async def on_gossip(self, peer: NodeId, stream: GossipStream) -> None:
        self.calls.append(peer)
        await stream.send(Ping(nonce=7))
        while await stream.recv() is not None:
            pass

    async def manifest(self, peer: NodeId, request: ManifestRequest) -> Manifest:
        raise AssertionError("not used")

    def fetch(self, peer: NodeId, request: FetchRequest) -> AsyncIterator[Chunk]:
        raise AssertionError("not used")

    def fetch_files(self, peer: NodeId, request: FetchFilesRequest) -> AsyncIterator[list[bytes]]:
        raise AssertionError("not used")


Serve = Callable[[Identity, Iterable[Identity]], Awaitable[tuple[PeerServer, PingHandlers]]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start a real PeerServer on 127.0.0.1 as `identity`, trusting `members`."""
    servers: list[PeerServer] = []

    async def start(
        identity: Identity, members: Iterable[Identity]
    ) -> tuple[PeerServer, PingHandlers]:
        members = list(members)
        handlers = PingHandlers(m.node_id for m in members)
        trust = TrustStore(identity, [m.cert_der for m in members])
        server = PeerServer(
            handlers, trust, host="127.0.0.1", port=0, keepalive_s=1, ping_timeout_s=1
        )
        await server.start()
        servers.append(server)
        return server, handlers

    yield start
    for server in servers:
        await server.stop(0)


async def first_frame(client: Identity, pinned: Identity, port: int) -> object:
    """Dial 127.0.0.1:port as `client`, pinning `pinned`'s certificate: the first frame the
    server sends, or the PeerUnavailableError the attempt ended with."""
    channel = PeerChannel(
        client, pinned.node_id, pinned.cert_der, "127.0.0.1", port, keepalive_s=1, ping_timeout_s=1
    )
    try:
        stream = channel.gossip()
        try:
            return await stream.recv()
        except PeerUnavailableError as exc:
            return exc
        finally:
            stream.close()
    finally:
        await channel.close()
