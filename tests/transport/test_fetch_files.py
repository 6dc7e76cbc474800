"""FetchFiles against a node that predates it: a real TLS gRPC server that serves Fetch
only, as an older mesh does. The caller learns it as UnsupportedError (and a folder batch
falls back to one Fetch per file), not as the peer being unavailable."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from mesh.core.errors import UnsupportedError
from mesh.core.transfer import FetchFilesRequest
from mesh.security.identity import generate
from mesh.transport.peer_client import PeerChannel
from mesh.transport.tls import TrustStore
from mesh.wire import transfer as wire


async def test_a_peer_without_fetch_files_is_unsupported_not_unavailable() -> None:
    older, me = generate(), generate()

    async def fetch(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.write(b"chunk")

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                wire.FETCH_SERVICE,
                {"Fetch": grpc.unary_stream_rpc_method_handler(fetch)},
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
        request = FetchFilesRequest(lender=older.node_id, hashes=(b"\1" * 16,))
        with pytest.raises(UnsupportedError):
            _ = [item async for item in channel.fetch_files(request)]
    finally:
        await channel.close()
        await server.stop(0)
