"""The pairing listener and its client: plaintext gRPC, open only while an invite is.

Plaintext because the joiner has nothing to pin yet (a Python gRPC client can neither skip
nor read the server's certificate); the exchange itself authenticates both sides with the
invite code and encrypts what matters. The listener accepts one exchange at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import grpc
from google.protobuf.message import DecodeError

from mesh.core.errors import LocalError, PeerUnavailableError, ProtocolError
from mesh.core.pairing import PairingFrame
from mesh.transport.peer_client import target
from mesh.v1 import pairing_pb2, pairing_pb2_grpc
from mesh.wire.pairing import frame_from_wire, frame_to_wire

_OPTIONS = [
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", 8 << 20),
    ("grpc.max_send_message_length", 8 << 20),
]
_ERRORS = (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError)


class ListenerBusyError(PeerUnavailableError):
    """The pairing listener runs another exchange right now (it takes one at a time)."""


def _broke(peer: str, exc: Exception) -> PeerUnavailableError:
    if isinstance(exc, grpc.aio.AioRpcError):
        if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return ListenerBusyError(f"{peer} is busy with another joiner")
        return PeerUnavailableError(f"pairing with {peer} broke: {exc.code().name.lower()}")
    return PeerUnavailableError(f"pairing with {peer} broke")


class PairingStream:
    def __init__(
        self,
        read: Callable[[], Awaitable[Any]],
        write: Callable[[pairing_pb2.PairingFrame], Awaitable[None]],
        peer: str,
    ) -> None:
        self._read = read
        self._write = write
        self.peer = peer

    async def send(self, frame: PairingFrame) -> None:
        try:
            await self._write(frame_to_wire(frame))
        except _ERRORS as exc:
            raise _broke(self.peer, exc) from exc

    async def recv(self) -> PairingFrame:
        """The next frame (ProtocolError if malformed, PeerUnavailableError if it ended)."""
        try:
            msg = await self._read()
        except _ERRORS as exc:
            raise _broke(self.peer, exc) from exc
        except DecodeError as exc:  # parsed as it is read: the peer's error, not ours
            raise ProtocolError(f"a malformed pairing message from {self.peer}") from exc
        if msg is grpc.aio.EOF or msg is None:
            raise PeerUnavailableError(f"{self.peer} ended the pairing")
        return frame_from_wire(msg)


class PairingHandler(Protocol):
    async def on_pair(self, stream: PairingStream) -> None: ...


class _Servicer(pairing_pb2_grpc.PairingServicer):
    def __init__(self, handler: PairingHandler) -> None:
        self._handler = handler

    async def Pair(self, request_iterator: Any, context: Any) -> None:  # type: ignore[override]  # noqa: N802
        await self._handler.on_pair(PairingStream(context.read, context.write, context.peer()))


class PairingServer:
    def __init__(self, handler: PairingHandler, host: str, port: int) -> None:
        self._server = grpc.aio.server(options=_OPTIONS, maximum_concurrent_rpcs=1)
        pairing_pb2_grpc.add_PairingServicer_to_server(_Servicer(handler), self._server)
        self._host = host
        self._requested = port
        self.port = 0

    async def start(self) -> int:
        address = target(self._host, self._requested)
        try:
            self.port = self._server.add_insecure_port(address)
        except RuntimeError:
            self.port = 0
        if not self.port and self._host == "::":
            self.port = self._server.add_insecure_port(f"0.0.0.0:{self._requested}")
        if not self.port:
            raise LocalError(
                f"cannot open the pairing listener on port {self._requested}: it is in use"
            )
        await self._server.start()
        return self.port

    async def stop(self) -> None:
        await self._server.stop(0.5)


class PairingClient:
    """The joiner's side: one Pair stream to host:port."""

    def __init__(self, host: str, port: int) -> None:
        self.address = target(host, port)
        self._channel = grpc.aio.insecure_channel(self.address, options=_OPTIONS)
        self._stub = pairing_pb2_grpc.PairingStub(self._channel)

    def open(self) -> PairingStream:
        call = self._stub.Pair(wait_for_ready=False)
        return PairingStream(call.read, call.write, self.address)

    async def close(self) -> None:
        await self._channel.close(grace=None)
