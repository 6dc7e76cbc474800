"""A Gossip session: one long-lived stream with one member, from hello to close.

Theory of operation. Both ends send a Hello (node id, epoch, protocol version, name) and
wait for the other's within the handshake timeout. The Hello's node id must be the one the
TLS session proved, and its protocol version one this node speaks; otherwise the session
ends with a GossipError that says why, logged on both sides. Then each end pings at the
keepalive interval and answers pings; a peer silent for longer than keepalive plus the ping
timeout is taken for dead (gRPC's own keepalive usually notices first). Later issues add
vectors, batches and acks to this same loop.

States: HANDSHAKE -> OPEN -> CLOSED. A frame the current state does not expect is a
protocol error that ends the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import time
from typing import Protocol

from mesh.core.epoch import Epoch
from mesh.core.errors import PeerUnavailableError, ProtocolError, RefusedError
from mesh.core.gossip import (
    COMPATIBLE_VERSIONS,
    PROTOCOL_VERSION,
    GossipError,
    GossipFrame,
    Hello,
    Ping,
)
from mesh.core.ids import NodeId
from mesh.transport.gossip_stream import GossipStream

log = logging.getLogger(__name__)


class State(enum.Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSED = "closed"


class SessionHost(Protocol):
    """What a session needs from its node."""

    node_id: NodeId
    epoch: Epoch

    @property
    def name(self) -> str: ...

    def admit_session(self, session: Session) -> bool: ...

    def release(self, session: Session) -> None: ...


class _ClosedHereError(Exception):
    """close() was called: end the session's tasks without an error."""


class Session:
    def __init__(
        self,
        host: SessionHost,
        stream: GossipStream,
        *,
        keepalive_s: float,
        timeout_s: float,
        version: int = PROTOCOL_VERSION,
        compatible: range = COMPATIBLE_VERSIONS,
    ) -> None:
        self.host = host
        self.version = version
        self.compatible = compatible
        self.stream = stream
        self.peer = stream.peer
        self.initiator = stream.initiator
        self.address = stream.address
        self.keepalive_s = keepalive_s
        self.timeout_s = timeout_s
        self.state = State.HANDSHAKE
        self.peer_hello: Hello | None = None
        self.last_heard = time.monotonic()
        self.rtt_s: float | None = None
        self.closed = asyncio.Event()
        self._stop = asyncio.Event()
        self._nonces = itertools.count(1)
        self._pings: dict[int, float] = {}

    @property
    def peer_name(self) -> str:
        return (
            self.peer_hello.name if self.peer_hello and self.peer_hello.name else self.peer.short()
        )

    async def run(self) -> None:
        """Handshake, then serve the stream until it ends (by either side or by close())."""
        try:
            await self._handshake()
            if not self.host.admit_session(self):
                await self._refuse("duplicate", "a stream between these nodes is already open")
                return
            try:
                log.info("gossip stream with %s open", self.peer_name)
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._pinger())
                    tg.create_task(self._reader())
                    tg.create_task(self._until_closed())
            finally:
                self.host.release(self)
        except* _ClosedHereError:
            log.info("gossip stream with %s closed by this node", self.peer_name)
        except* PeerUnavailableError as group:
            self._log_end(group.exceptions[0])
        except* ProtocolError as group:
            log.warning("protocol error from %s: %s", self.peer_name, group.exceptions[0])
            await self._refuse("protocol", str(group.exceptions[0]))
        except* RefusedError as group:
            log.warning("%s", group.exceptions[0])
        finally:
            self.state = State.CLOSED
            self.stream.close()
            self.closed.set()

    def close(self) -> None:
        """End the session from this side (removal, shutdown, a duplicate)."""
        self._stop.set()

    async def _until_closed(self) -> None:
        await self._stop.wait()
        raise _ClosedHereError

    def _log_end(self, exc: BaseException) -> None:
        if self.state is State.OPEN:
            log.info("gossip stream with %s closed: %s", self.peer_name, exc)
        else:
            log.debug("gossip stream with %s failed: %s", self.peer_name, exc)

    async def _refuse(self, code: str, message: str) -> None:
        with contextlib.suppress(PeerUnavailableError, TimeoutError):
            await asyncio.wait_for(self.stream.send(GossipError(code=code, message=message)), 1)

    async def _handshake(self) -> None:
        host = self.host
        await self.stream.send(
            Hello(
                node_id=host.node_id,
                epoch=host.epoch,
                protocol_version=self.version,
                name=host.name,
            )
        )
        try:
            frame = await asyncio.wait_for(self.stream.recv(), self.timeout_s)
        except TimeoutError as exc:
            raise PeerUnavailableError(f"{self.peer.short()} sent no hello in time") from exc
        if isinstance(frame, GossipError):
            raise RefusedError(f"{self.peer.short()} refused the stream: {frame.message}")
        if not isinstance(frame, Hello):
            raise ProtocolError(f"expected a hello, got {type(frame).__name__}")
        if frame.node_id != self.peer:
            raise ProtocolError("the hello names another node than the TLS certificate")
        if frame.protocol_version not in self.compatible:
            message = (
                f"incompatible protocol: this node speaks {self.version}, "
                f"{frame.name or self.peer.short()} speaks {frame.protocol_version}; "
                "upgrade the older mesh"
            )
            await self._refuse("incompatible", message)
            raise RefusedError(message)
        self.peer_hello = frame
        self.state = State.OPEN
        self.last_heard = time.monotonic()

    async def _pinger(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_s)
            silent = time.monotonic() - self.last_heard
            if silent > self.keepalive_s + self.timeout_s:
                raise PeerUnavailableError(f"{self.peer_name} silent for {silent:.1f} s")
            nonce = next(self._nonces)
            self._pings[nonce] = time.monotonic()
            await self.stream.send(Ping(nonce=nonce))

    async def _reader(self) -> None:
        while True:
            frame = await self.stream.recv()
            if frame is None:
                raise PeerUnavailableError(f"{self.peer_name} ended the stream")
            self.last_heard = time.monotonic()
            await self._handle(frame)

    async def _handle(self, frame: GossipFrame) -> None:
        match frame:
            case Ping(pong=False):
                await self.stream.send(Ping(nonce=frame.nonce, pong=True))
            case Ping(pong=True):
                sent = self._pings.pop(frame.nonce, None)
                if sent is not None:
                    self.rtt_s = time.monotonic() - sent
            case GossipError():
                raise RefusedError(f"{self.peer_name} ended the stream: {frame.message}")
            case Hello():
                raise ProtocolError("a second hello")
            case _:
                # Vectors, batches and acks: handled once the replica is on the wire.
                log.debug("ignoring %s from %s", type(frame).__name__, self.peer_name)
