"""Dialling a member: one pinned mutual-TLS channel per peer, and its Gossip stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from mesh.core.errors import PeerUnavailableError, ProtocolError, RefusedError, UnsupportedError
from mesh.core.ids import NodeId
from mesh.core.transfer import Chunk, FetchFilesRequest, FetchRequest, Manifest, ManifestRequest
from mesh.security.identity import Identity
from mesh.transport import options
from mesh.transport.gossip_stream import GossipStream
from mesh.transport.tls import client_credentials
from mesh.v1 import mesh_pb2_grpc, transfer_pb2
from mesh.wire import transfer as wire


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
        gossip: bool = False,
    ) -> None:
        """`gossip`: the channel of a gossip session (options.channel_options)."""
        self.peer = peer
        self.host = host
        self.port = port
        self._self_id = identity.node_id
        self._channel = grpc.aio.secure_channel(
            target(host, port),
            client_credentials(identity, peer_cert_der),
            options=options.channel_options(keepalive_s, ping_timeout_s, gossip=gossip),
        )
        self._stub = mesh_pb2_grpc.MeshStub(self._channel)
        # Raw chunks: no deserializer, each message arrives as the bytes gRPC received.
        self._fetch = self._channel.unary_stream(
            wire.FETCH_METHOD,
            request_serializer=transfer_pb2.FetchRequest.SerializeToString,
            response_deserializer=None,
        )
        self._fetch_files = self._channel.unary_stream(
            wire.FETCH_FILES_METHOD,
            request_serializer=transfer_pb2.FetchFilesRequest.SerializeToString,
            response_deserializer=None,
        )

    def gossip(self) -> GossipStream:
        call = self._stub.Gossip()
        return GossipStream(
            peer=self.peer,
            initiator=self._self_id,
            read=call.read,
            write=call.write,
            close=call.cancel,
            finish=call.done_writing,
            address=self.host,
        )

    async def ready(self, timeout_s: float) -> bool:
        """Whether the channel connects (TLS included) within `timeout_s`."""
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def manifest(self, request: ManifestRequest, timeout_s: float) -> Manifest:
        """The chunk list of a content; RefusedError if the peer may not serve it to us,
        PeerUnavailableError if it cannot be reached."""
        try:
            reply = await self._stub.Manifest(
                wire.manifest_request_to_wire(request), timeout=timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise _transfer_error(exc, self) from exc
        return wire.manifest_from_wire(reply)

    async def fetch(self, request: FetchRequest) -> AsyncIterator[Chunk]:
        """The chunks asked for, in order, as they arrive (errors as for `manifest`); the
        stream may end early (the caller checks how many came)."""
        call = self._fetch(wire.fetch_request_to_wire(request))
        index, end = request.first_chunk, request.first_chunk + request.count
        try:
            async for data in call:
                if index >= end:
                    raise ProtocolError(
                        f"{self.host} sent more than the {request.count} chunks asked"
                    )
                yield wire.chunk_from_wire(index, data)
                index += 1
        except grpc.aio.AioRpcError as exc:
            raise _transfer_error(exc, self) from exc
        finally:
            call.cancel()

    async def fetch_files(
        self, request: FetchFilesRequest
    ) -> AsyncIterator[list[tuple[int, bytes | memoryview]]]:
        """Per message of the answer, (place in the request, bytes) of each file it serves,
        in order, as they arrive (their hashes are checked by the caller): several files
        when the request asks for packs and the peer packs, one otherwise. UnsupportedError
        from a peer that predates the call, other errors as for `manifest`."""
        call = self._fetch_files(wire.fetch_files_request_to_wire(request))
        index = 0
        try:
            packed = request.pack > 0 and wire.PACKED[0] in await call.initial_metadata()
            async for data in call:
                left = len(request.hashes) - index
                if left <= 0:
                    raise ProtocolError(
                        f"{self.host} sent more than the {len(request.hashes)} files asked"
                    )
                files = wire.files_from_pack(data, left) if packed else [wire.file_from_wire(data)]
                got: list[tuple[int, bytes | memoryview]] = []
                for file in files:
                    if file is not None:
                        got.append((index, file))
                    index += 1
                if got:
                    yield got
        except grpc.aio.AioRpcError as exc:
            raise _transfer_error(exc, self) from exc
        finally:
            call.cancel()

    async def close(self) -> None:
        await self._channel.close(grace=None)


def _transfer_error(exc: grpc.aio.AioRpcError, channel: PeerChannel) -> Exception:
    where = target(channel.host, channel.port)
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return RefusedError(f"{where} refused: {details}")
    if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
        return RefusedError(f"{where} cannot serve it: {details}")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return UnsupportedError(f"{where} runs an older mesh: {details}")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return ProtocolError(f"{where} says the request is malformed: {details}")
    return PeerUnavailableError(f"{where}: {code.name.lower()}: {details}")
