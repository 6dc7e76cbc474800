"""A Gossip call, from either end, as a stream of core frames.

The node's session code is the same whichever side dialled; it sees only `send`, `recv`
and `close`, core values and MeshErrors, never a protobuf message or a gRPC exception.

Reads and writes run as tasks of their own that the caller awaits through a shield: grpc.aio
cancels the whole call when a task awaiting `read()` or `write()` on the dialling side is
cancelled, and the session cancels its reader whenever it ends, so without the shield a
node could never say goodbye on a stream it dialled (the peer saw the call cancelled).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from mesh.core.errors import (
    MeshError,
    PeerUnavailableError,
    ProtocolError,
    RemovalNoticeError,
)
from mesh.core.gossip import GossipFrame
from mesh.core.ids import NodeId
from mesh.transport.auth import REMOVAL_KEY
from mesh.v1 import gossip_pb2
from mesh.wire import gossip

# A write to a call the server already finished raises cygrpc's ExecuteBatchError, and one
# racing the server's stop its _ServerStoppedError (neither exported; both BaseError): the
# stream is over, like the others. Unhandled, the second ended a stopping node's session
# task with a traceback in the log.
_BATCH_ERROR: type[Exception] = getattr(
    getattr(getattr(grpc, "_cython", None), "cygrpc", None), "BaseError", RuntimeError
)
_ERRORS = (
    grpc.aio.AioRpcError,
    grpc.aio.UsageError,
    asyncio.InvalidStateError,
    RuntimeError,
    _BATCH_ERROR,
)


# Batches of more records than this are decoded off the event loop (see recv), on the
# loop's default executor (whose threads end with the loop).
_DECODE_INLINE = 64


class GossipStream:
    def __init__(
        self,
        *,
        peer: NodeId,
        initiator: NodeId,
        read: Callable[[], Awaitable[Any]],
        write: Callable[[gossip_pb2.GossipFrame], Awaitable[None]],
        close: Callable[[], object],
        finish: Callable[[], Awaitable[None]] | None = None,
        address: str = "",
    ) -> None:
        self.peer = peer
        self.address = address  # where the peer is, as far as this end can tell
        self.initiator = initiator  # which side dialled: decides between duplicate streams
        # The peer reads a batch of library entries sent as columns (protocol 5): the
        # session sets it once the peer's hello says so.
        self.columnar = False
        self._read = read
        self._write = write
        self._close = close
        self._finish = finish  # the dialling side's half-close (done_writing)
        # gRPC allows one write in flight per call; pings and replies come from two tasks.
        self._writing = asyncio.Lock()
        # A read (and its decoding) outliving a cancelled recv.
        self._reading: asyncio.Future[GossipFrame | None] | None = None
        self._ended = False  # the peer ended its side (EOF read)
        # This end half-closed: no write may follow. One that did failed inside grpc, which
        # then took the call for finished and never cancelled it in its core, so the call
        # and its connection stayed open (and pinged) after the channel was closed.
        self._finished = False
        self.closed = False

    async def send(self, frame: GossipFrame) -> None:
        if self.closed or self._finished:
            raise PeerUnavailableError(f"stream to {self.peer.short()} is closed")
        message = gossip.to_wire(frame, columnar=self.columnar)
        writing = asyncio.ensure_future(self._write_one(message))
        writing.add_done_callback(_retrieve)
        try:
            await asyncio.shield(writing)
        except _ERRORS as exc:
            raise _removal(exc) or PeerUnavailableError(
                f"stream to {self.peer.short()} broke: {_why(exc)}"
            ) from exc

    async def _write_one(self, message: gossip_pb2.GossipFrame) -> None:
        async with self._writing:
            if self._finished:
                raise PeerUnavailableError(f"stream to {self.peer.short()} is closed")
            await self._write(message)

    async def recv(self) -> GossipFrame | None:
        """The next frame, or None when the peer ended the stream. ProtocolError if malformed."""
        if self._ended:
            return None
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._read_frame())
            self._reading.add_done_callback(_retrieve)
        reading = self._reading
        try:
            frame = await asyncio.shield(reading)
        except _ERRORS as exc:
            raise _removal(exc) or PeerUnavailableError(
                f"stream from {self.peer.short()} broke: {_why(exc)}"
            ) from exc
        except DecodeError as exc:
            # The server side parses as it reads: a frame that is not protobuf is the
            # peer's protocol error, not a crash of the session.
            raise ProtocolError(f"a malformed gossip frame from {self.peer.short()}") from exc
        finally:
            if reading.done():
                self._reading = None
        if frame is None:
            self._ended = True
        return frame

    async def _read_frame(self) -> GossipFrame | None:
        """Read and decode the next frame (None at the end): one task, which a cancelled
        recv leaves for the next to take, so no frame is lost."""
        msg = await self._read()
        if msg is grpc.aio.EOF or msg is None:
            return None
        if msg.WhichOneof("frame") == "batch" and _records(msg.batch) > _DECODE_INLINE:
            # A large batch is read into core values on a worker thread: thousands of
            # records held the event loop (and every control call waiting on it) for tens
            # of milliseconds a batch, hundreds on a loaded machine.
            return await asyncio.get_running_loop().run_in_executor(None, gossip.from_wire, msg)
        return gossip.from_wire(msg)

    async def aclose(self, within: float) -> None:
        """Close without breaking anything: the dialling side half-closes and waits (up to
        `within` s) for the peer to end its side, so the call ends with OK, not CANCELLED.
        (The answering side's call ends when its handler returns.)"""
        if not self.closed and self._finish is not None:
            # Whatever ends the wait ends it: the session has already heard why it ends.
            with contextlib.suppress(MeshError, TimeoutError, *_ERRORS):
                async with asyncio.timeout(within):
                    async with self._writing:  # the last write first, then the half-close
                        self._finished = True
                        await self._finish()
                    while await self.recv() is not None:
                        pass
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._close()
            if self._reading is not None and not self._reading.done():
                self._reading.cancel()
            # Let go of the call: a session ended is often kept a while longer in a
            # reference cycle (its tasks, an exception's frames), and a gRPC call that is
            # still referenced keeps its channel's connection open, and pinged, after the
            # channel was closed.
            self._read = self._write = self._after_close
            self._close = _nothing
            self._finish = None
            self._reading = None

    async def _after_close(self, *_: Any) -> Any:
        raise PeerUnavailableError(f"stream to {self.peer.short()} is closed")


def _records(batch: gossip_pb2.Batch) -> int:
    return len(batch.envelopes) or len(batch.entry_seqs)


def _nothing() -> None:
    return None


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Take a background read's or write's outcome, so asyncio does not log it as "never
    retrieved": whoever awaited it has heard already, or has gone."""
    if not task.cancelled():
        task.exception()


_MAX_RECORDS = 256  # more than any removal needs: the rest is not looked at


def _removal(exc: BaseException) -> RemovalNoticeError | None:
    """A member's refusal that says this node was removed, with the records that show it."""
    if not isinstance(exc, grpc.aio.AioRpcError):
        return None
    if exc.code() != grpc.StatusCode.PERMISSION_DENIED:
        return None
    records = tuple(
        value
        for key, value in (exc.trailing_metadata() or ())
        if key == REMOVAL_KEY and isinstance(value, bytes)
    )[:_MAX_RECORDS]
    if not records:
        return None
    return RemovalNoticeError(exc.details() or "removed from the mesh", records)


def _why(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name.lower()}: {exc.details()}"
    return str(exc) or type(exc).__name__
