"""What a server-side gossip stream's write raises when the call is already over: the
session sees the stream as gone (PeerUnavailableError), never grpc's own exception.

A node stopping says goodbye on each gossip stream; a write racing the server's stop raised
cygrpc's `_ServerStoppedError`, which ended the session's task with "Task exception was
never retrieved" and a traceback in the log (the README walkthrough's log check caught it
once in CI). The error types are grpc's own; the write is a stand-in for the servicer
context's, which is how peer_server.py builds the stream."""

from __future__ import annotations

import asyncio

import pytest
from grpc._cython import cygrpc

from mesh.core.errors import PeerUnavailableError
from mesh.core.gossip import Ping
from mesh.core.ids import NodeId
from mesh.transport.gossip_stream import GossipStream
from mesh.v1 import gossip_pb2


@pytest.mark.parametrize(
    "error",
    [
        cygrpc._ServerStoppedError("Server already stopped."),
        cygrpc.ExecuteBatchError("Failed grpc_call_start_batch()"),
    ],
    ids=["server stopped", "call finished"],
)
def test_a_write_after_the_call_ended_is_a_gone_peer(error: Exception) -> None:
    async def write(message: gossip_pb2.GossipFrame) -> None:
        raise error

    async def read() -> None:
        return None

    stream = GossipStream(
        peer=NodeId(bytes(32)),
        initiator=NodeId(bytes(32)),
        read=read,
        write=write,
        close=lambda: None,
    )
    with pytest.raises(PeerUnavailableError, match="broke"):
        asyncio.run(stream.send(Ping(nonce=1)))
