"""FetchFiles against nodes that predate it or its packs: real TLS gRPC servers that serve
Fetch only, or FetchFiles one file per message, as older meshes do. The caller learns
the first as UnsupportedError (and a folder batch falls back to one Fetch per file), not
as the peer being unavailable, and reads the second's files one message each."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from mesh.core.errors import UnsupportedError
from mesh.core.transfer import FetchFilesRequest
from mesh.security.identity import Identity, generate
from mesh.transport.peer_client import PeerChannel
from mesh.transport.tls import TrustStore
from mesh.wire import transfer as wire

Handler = Callable[[bytes, grpc.aio.ServicerContext[Any, Any]], Awaitable[None]]


@contextlib.asynccontextmanager
async def older_peer(handlers: dict[str, Handler]) -> AsyncIterator[tuple[Identity, PeerChannel]]:
    """A TLS server of `handlers` (raw messages) and a channel to it."""
    older, me = generate(), generate()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                wire.FETCH_SERVICE,
                {k: grpc.unary_stream_rpc_method_handler(h) for k, h in handlers.items()},
            ),
        )
    )
    port = server.add_secure_port(
        "127.0.0.1:0", TrustStore(older, [me.cert_der]).server_credentials()
    )
    await server.start()
    channel = PeerChannel(
        me, older.node_id, older.cert_der, "127.0.0.1", port, keepalive_s=1, ping_timeout_s=1
    )
    try:
        yield older, channel
    finally:
        await channel.close()
        await server.stop(0)


async def test_a_peer_without_fetch_files_is_unsupported_not_unavailable() -> None:
    async def fetch(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.write(b"chunk")

    async with older_peer({"Fetch": fetch}) as (older, channel):
        request = FetchFilesRequest(lender=older.node_id, hashes=(b"\1" * 16,))
        with pytest.raises(UnsupportedError):
            _ = [item async for item in channel.fetch_files(request)]


async def test_a_peer_that_does_not_pack_is_read_one_file_per_message() -> None:
    async def fetch_files(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        for data in (b"first", b"", b"third"):  # the second is not served
            await context.write(data)

    async with older_peer({"FetchFiles": fetch_files}) as (older, channel):
        request = FetchFilesRequest(lender=older.node_id, hashes=(b"\1" * 16,) * 3, pack=1 << 20)
        got = [item async for item in channel.fetch_files(request)]
    assert got == [[(0, b"first")], [(2, b"third")]]
