"""Dialling a member: one pinned mutual-TLS channel per peer, and its Gossip stream."""

from __future__ import annotations

import grpc

from mesh.core.ids import NodeId
from mesh.security.identity import Identity
from mesh.transport import options
from mesh.transport.gossip_stream import GossipStream
from mesh.transport.tls import client_credentials
from mesh.v1 import mesh_pb2_grpc


def target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class PeerChannel:
    """A channel to one member that accepts nothing but that member's certificate."""

    def __init__(
        self,
        identity: Identity,
        peer: NodeId,
        peer_cert_der: bytes,
        host: str,
        port: int,
        *,
        keepalive_s: float,
        ping_timeout_s: float,
    ) -> None:
        self.peer = peer
        self.host = host
        self.port = port
        self._self_id = identity.node_id
        self._channel = grpc.aio.secure_channel(
            target(host, port),
            client_credentials(identity, peer_cert_der),
            options=options.channel_options(keepalive_s, ping_timeout_s),
        )
        self._stub = mesh_pb2_grpc.MeshStub(self._channel)

    def gossip(self) -> GossipStream:
        call = self._stub.Gossip()
        return GossipStream(
            peer=self.peer,
            initiator=self._self_id,
            read=call.read,
            write=call.write,
            close=call.cancel,
            address=self.host,
        )

    async def close(self) -> None:
        await self._channel.close(grace=None)
