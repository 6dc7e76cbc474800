"""The server every node runs for its members: the Mesh service over mutual TLS.

The servicer only translates and hands over: who is calling (from the TLS session), the
decoded request, and a stream object go to the node's handlers; no policy lives here.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol
from urllib.parse import unquote

import grpc

from mesh.core.errors import LocalError, NotFoundError, ProtocolError, RefusedError
from mesh.core.ids import NodeId
from mesh.core.transfer import Chunk, FetchFilesRequest, FetchRequest, Manifest, ManifestRequest
from mesh.transport import options
from mesh.transport.auth import CallRegistry, Guard
from mesh.transport.gossip_stream import GossipStream
from mesh.transport.tls import TrustStore
from mesh.v1 import gossip_pb2, mesh_pb2_grpc, transfer_pb2
from mesh.wire import transfer as wire

log = logging.getLogger(__name__)


class PeerHandlers(Protocol):
    """What the node does with its members' calls."""

    def is_member(self, node_id: NodeId) -> bool: ...

    async def farewell(self, node_id: NodeId) -> Sequence[bytes]:
        """For a removed node: the serialized membership records that show its removal."""
        ...

    async def on_gossip(self, peer: NodeId, stream: GossipStream) -> None: ...

    async def manifest(self, peer: NodeId, request: ManifestRequest) -> Manifest: ...

    def fetch(self, peer: NodeId, request: FetchRequest) -> AsyncIterator[Chunk]: ...

    def fetch_files(self, peer: NodeId, request: FetchFilesRequest) -> AsyncIterator[list[bytes]]:
        """Each file asked, in order: its bytes, or b"" where it is not served; in groups
        of consecutive files of at most `request.pack` bytes (at least one file), each
        group one message of the answer (one message per file when it is 0)."""
        ...


async def _abort_for(context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> None:
    """A refused, unknown or malformed transfer request, as the status the puller expects."""
    if isinstance(exc, RefusedError):
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
    if isinstance(exc, NotFoundError):
        await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
    if isinstance(exc, ProtocolError):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))


class _MeshServicer(mesh_pb2_grpc.MeshServicer):
    def __init__(self, handlers: PeerHandlers, guard: Guard) -> None:
        self._handlers = handlers
        self._guard = guard

    async def Gossip(  # type: ignore[override]  # noqa: N802 - the gRPC method name
        self, request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        async def body(peer: NodeId) -> None:
            stream = GossipStream(
                peer=peer,
                initiator=peer,
                read=context.read,
                write=context.write,
                close=lambda: None,
                address=_address(context.peer()),
            )
            await self._handlers.on_gossip(peer, stream)

        await self._guard.run(context, body)

    async def Manifest(  # type: ignore[override]  # noqa: N802 - bytes in, parsed here
        self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> transfer_pb2.Manifest:
        async def body(peer: NodeId) -> transfer_pb2.Manifest:
            try:
                decoded = wire.manifest_request_from_bytes(request)
                manifest = await self._handlers.manifest(peer, decoded)
            except (RefusedError, NotFoundError, ProtocolError, LocalError) as exc:
                await _abort_for(context, exc)
                raise AssertionError("unreachable") from exc
            return wire.manifest_to_wire(manifest)

        return await self._guard.run(context, body)


def _mesh_handler(servicer: _MeshServicer) -> grpc.GenericRpcHandler:
    """The Mesh service as mesh_pb2_grpc registers it, except that Manifest takes bytes: a
    request that does not parse is answered INVALID_ARGUMENT by the handler, where gRPC's
    own deserializer would end the call UNKNOWN and log a traceback for each."""
    return grpc.method_handlers_generic_handler(
        "mesh.v1.Mesh",
        {
            "Gossip": grpc.stream_stream_rpc_method_handler(
                servicer.Gossip,
                request_deserializer=gossip_pb2.GossipFrame.FromString,
                response_serializer=gossip_pb2.GossipFrame.SerializeToString,
            ),
            "Manifest": grpc.unary_unary_rpc_method_handler(
                servicer.Manifest,
                request_deserializer=None,
                response_serializer=transfer_pb2.Manifest.SerializeToString,
            ),
        },
    )


class _TransferServicer:
    """/mesh.v1.Transfer/Fetch and FetchFiles: chunks and files as raw messages (see
    mesh.proto)."""

    def __init__(self, handlers: PeerHandlers, guard: Guard) -> None:
        self._handlers = handlers
        self._guard = guard

    async def fetch(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        async def body(peer: NodeId) -> None:
            try:
                decoded = wire.fetch_request_from_bytes(request)
                async for chunk in self._handlers.fetch(peer, decoded):
                    await context.write(chunk.data)
            except (RefusedError, NotFoundError, ProtocolError, LocalError) as exc:
                await _abort_for(context, exc)

        await self._guard.run(context, body)

    async def fetch_files(
        self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        async def body(peer: NodeId) -> None:
            try:
                decoded = wire.fetch_files_request_from_bytes(request)
                if decoded.pack:
                    await context.send_initial_metadata((wire.PACKED,))
                async for files in self._handlers.fetch_files(peer, decoded):
                    if decoded.pack:
                        await context.write(wire.pack_files(files))
                    else:
                        for data in files:
                            await context.write(data)
            except (RefusedError, NotFoundError, ProtocolError, LocalError) as exc:
                await _abort_for(context, exc)

        await self._guard.run(context, body)

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            wire.FETCH_SERVICE,
            {
                "Fetch": grpc.unary_stream_rpc_method_handler(
                    self.fetch,
                    request_deserializer=None,  # parsed in the handler: a bad one is ours
                    response_serializer=None,
                ),
                "FetchFiles": grpc.unary_stream_rpc_method_handler(
                    self.fetch_files, request_deserializer=None, response_serializer=None
                ),
            },
        )


def _address(peer: str) -> str:
    """gRPC's name of a peer -> its host, as mesh shows and dials it: 'ipv4:10.0.0.2:51514'
    -> '10.0.0.2'; 'ipv6:%5Bfe80::1%252%5D:51514' (URL-encoded, the zone an interface
    index) -> 'fe80::1%eth0'."""
    _, _, rest = unquote(peer).partition(":")
    host, _, _port = rest.rpartition(":")
    host = host.strip("[]")
    address, zoned, zone = host.partition("%")
    if zoned and zone.isdigit():
        with contextlib.suppress(OSError, OverflowError):
            host = f"{address}%{socket.if_indextoname(int(zone))}"
    return host or peer


class PeerServer:
    """The grpc.aio server for peers on a TCP port, trust following the members."""

    def __init__(
        self,
        handlers: PeerHandlers,
        trust: TrustStore,
        *,
        host: str,
        port: int,
        keepalive_s: float,
        ping_timeout_s: float,
    ) -> None:
        self.calls = CallRegistry()
        self._server = grpc.aio.server(options=options.server_options(keepalive_s, ping_timeout_s))
        guard = Guard(handlers.is_member, self.calls, handlers.farewell)
        self._server.add_generic_rpc_handlers((_mesh_handler(_MeshServicer(handlers, guard)),))
        self._server.add_generic_rpc_handlers((_TransferServicer(handlers, guard).handler(),))
        self._host = host
        self._port = port
        self._address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._credentials = trust.server_credentials()
        self.port = 0

    def _bind(self, address: str) -> tuple[int, BaseException | None]:
        try:
            return self._server.add_secure_port(address, self._credentials), None
        except RuntimeError as exc:
            return 0, exc

    async def start(self) -> int:
        self.port, cause = self._bind(self._address)
        if not self.port and self._host == "::":
            # A machine or namespace without IPv6: every IPv4 address instead.
            self._address = f"0.0.0.0:{self._port}"
            self.port, cause = self._bind(self._address)
        if not self.port:
            raise LocalError(
                f"cannot listen on {self._address}: the port is in use or not allowed "
                "(another mesh on this machine? pick one with --port)"
            ) from cause
        await self._server.start()
        return self.port

    def cancel_peer(self, peer: NodeId) -> int:
        """End every open call of `peer` now (it stopped being a member)."""
        return self.calls.cancel(peer)

    async def stop(self, grace: float) -> None:
        await self._server.stop(grace)


__all__ = ["PeerHandlers", "PeerServer", "gossip_pb2"]
