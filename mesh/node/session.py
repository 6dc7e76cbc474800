"""A Gossip session: one long-lived stream with one member, from hello to close.

Theory of operation. Both ends send a Hello (node id, epoch, protocol version, name) and
wait for the other's within the handshake timeout. The Hello's node id must be the one the
TLS session proved, and its protocol version one this node speaks; otherwise the session
ends with a GossipError that says why, logged on both sides.

Then both ends send their version vector. Each sends the other what it lacks (Scuttlebutt
reconciliation): batches of records per origin, ascending, from the replica; then, once,
the loose membership records no vector can show; then, whenever the replica changes, what
changed. Every batch carries an id; the receiver applies it and answers with an Ack naming
its new vector (and a refusal and its reason, if any). Batches that arrived while the
previous ones were being applied are applied together, in one transaction, and acked
together once it is committed: a large sync then costs a few commits, not one per batch
(each rewrote the same pages of the records table). At most
`WINDOW` batches are unacknowledged at once, so a slow peer slows the sender instead of
making it buffer. What the sender believes the peer holds, and which origins it refused, is
kept by core/peer_holds.py: a record the peer will never take (a bad signature, say) is not
resent forever. A refused batch is logged with the peer and the reason; the stream goes on.

Both ends may dial at once. After the hellos each end asks its registry to admit the
stream; one that must yield is refused with a `duplicate` GossipError, and an open one that
a better stream replaces is ended with the same error. The peer's vector arrives only on a
stream the peer admitted, so "gossip stream with X open" is logged then, once per reunion:
a duplicate, whichever side ends it and however its transport ends, logs at debug level only.

A dead link is seen by gRPC's keepalive at both ends (HTTP/2 pings every keepalive, handled
inside gRPC's core: an idle link costs the Python side nothing; transport/options.py); the
stream then breaks at both ends within keepalive + ping timeout. The session pings too, as
a backstop, every BACKSTOP_PINGS keepalives: the end that dialled pings and the other
answers. The dialler takes a peer silent for longer than that period plus the ping timeout
for dead; the end that answers allows a period more (its timer drifts against the pings).
A peer speaking protocol 3 or less expects a ping every keepalive, and gets one.

States: HANDSHAKE -> OPEN -> CLOSED. A frame the current state does not expect is a
protocol error that ends the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import itertools
import logging
import time
from collections.abc import Sequence
from typing import Protocol

from mesh.core.epoch import Epoch
from mesh.core.errors import (
    MeshError,
    PeerUnavailableError,
    ProtocolError,
    RefusedError,
    RemovalNoticeError,
)
from mesh.core.gossip import (
    COLUMNAR_ENTRIES_VERSION,
    COMPATIBLE_VERSIONS,
    PROTOCOL_VERSION,
    SLIM_ACK_VERSION,
    TRANSPORT_LIVENESS_VERSION,
    Ack,
    Batch,
    GossipError,
    GossipFrame,
    Hello,
    Ping,
    VectorFrame,
    ack_vector,
)
from mesh.core.ids import NodeId
from mesh.core.liveness import PresenceFrame
from mesh.core.peer_holds import PeerHolds
from mesh.core.replica import ApplyResult, Outcome
from mesh.core.vector import VersionVector
from mesh.node.changes import ChangeSignal
from mesh.node.hello import exchange_hellos, refuse
from mesh.node.peer_log import peer_log
from mesh.transport.gossip_stream import GossipStream

log = logging.getLogger(__name__)


class State(enum.Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSED = "closed"


WINDOW = 8  # unacknowledged batches in flight per session
# With a protocol-4 peer the dialler pings every this many keepalives: gRPC's keepalive,
# at both ends, sees a dead link; these pings only catch a peer whose process still
# answers gRPC's pings but no longer serves its session (a wedged event loop).
BACKSTOP_PINGS = 10
_PAGE_BYTES = 1 << 20


class SessionHost(Protocol):
    """What a session needs from its node (the replica calls run on the store thread)."""

    node_id: NodeId
    epoch: Epoch
    changes: ChangeSignal
    stopping: bool  # the node is shutting down: it admits no new stream

    @property
    def name(self) -> str: ...

    def admit_session(self, session: Session) -> bool: ...

    def release(self, session: Session) -> bool:
        """Forget `session`; True if its end ends a reunion that was announced."""
        ...

    def announce(self, session: Session) -> bool: ...

    def on_presence(self, session: Session, frame: PresenceFrame) -> None: ...

    async def our_vector(self) -> VersionVector: ...

    async def batches_for(
        self, peer: VersionVector, max_bytes: int, most: int = 0
    ) -> list[Batch]: ...

    async def membership_for(self, peer: VersionVector) -> list[Batch]: ...

    async def apply_all(
        self, batches: Sequence[Batch], peer: NodeId
    ) -> tuple[list[ApplyResult], VersionVector]: ...


class _ClosedHereError(Exception):
    """close() was called: end the session's tasks without an error."""


class _DuplicateError(Exception):
    """The peer ended this stream because another one between the same nodes wins."""


class _PrunedError(Exception):
    """The peer ended this stream: its partial view no longer holds this node (PRUNED), or
    it holds too many sessions (CROWDED, the argument)."""


DUPLICATE = "duplicate"  # the GossipError code of a stream that yields to another
STOPPING = "stopping"  # ... of a node that stops: the peer logs it as such, not as a break
PRUNED = "pruned"  # ... of a stream its dialler's partial view dropped (node/overlay.py)
CROWDED = "crowded"  # ... of one its acceptor ended to keep its bound (core/overlay.py)
_PARTING_S = 1.0  # how long a closing end waits for the peer to close its end first


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
        self.heard = asyncio.Event()  # set by every frame; one who asks the peer clears it
        self.rtt_s: float | None = None
        self.closed = asyncio.Event()
        self._stop = asyncio.Event()
        # A stream that yields to another between the same nodes (either end decided).
        self.duplicate = False
        self._stopping = False  # close() because this node stops: say so to the peer
        self.pruned = False  # closed because a partial view dropped it: no news either
        self.crowded = False  # ... because its acceptor held too many sessions
        self._closed_here = False
        # The peer admitted it too (its vector came) and it was no duplicate then: its end
        # is news. Its opening is news unless it took over from another (host.announce).
        self.announced = False
        # Its end ends a reunion that was announced, maybe by a stream it took over from
        # (the host says so when it releases it): that end is news even if this stream
        # was not announced yet.
        self._ends_reunion = False
        self._nonces = itertools.count(1)
        self._pings: dict[int, float] = {}
        # Gossip state.
        self.peer_vector: VersionVector | None = None  # the vector the peer opened with
        self._vector_heard = asyncio.Event()
        self.holds = PeerHolds(self.peer)  # what the peer holds, as the sender believes
        self._window = asyncio.Semaphore(WINDOW)
        self._in_flight: dict[int, Batch] = {}
        self._batch_ids = itertools.count(1)
        # Batches received, not yet applied: at most a window's worth from a sender that
        # keeps to it; the reader waits when it is full, as it waited on each apply before.
        self._inbox: asyncio.Queue[Batch] = asyncio.Queue(WINDOW)
        self.records_sent = 0
        self.records_received = 0
        # The peer refused us as removed from the mesh; the dialler acts on it.
        self.removal: RemovalNoticeError | None = None

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
                if self.host.stopping:
                    await self._part(STOPPING, "is stopping")
                else:
                    self.duplicate = True
                    await self._part(DUPLICATE, "a stream between these nodes is already open")
                return
            try:
                await self.stream.send(VectorFrame(vector=await self.host.our_vector()))
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._pinger())
                    tg.create_task(self._reader())
                    tg.create_task(self._sender())
                    tg.create_task(self._applier())
                    tg.create_task(self._until_closed())
            finally:
                self._ends_reunion = self.host.release(self)
        except* _ClosedHereError:
            self._closed_here = True  # said below; a peer's parting met on the way is not
            # Each line before the parting: a node that stops may cancel a session still
            # parting (its grace is over), and the end would then go unsaid.
            if self.duplicate:
                await self._part(DUPLICATE, "another stream between these nodes replaced it")
                log.debug("duplicate gossip stream with %s closed", self.peer_name)
            elif self.pruned or self.crowded:
                why = "the partial view moved on" if self.pruned else "too many sessions here"
                self._log(
                    logging.INFO if self._news else logging.DEBUG,
                    "closed",
                    "gossip stream with %s closed: %s",
                    self.peer_name,
                    why,
                )
                await self._part(PRUNED if self.pruned else CROWDED, why)
            else:
                level = logging.INFO if self._news else logging.DEBUG
                self._log(
                    level, "closed", "gossip stream with %s closed by this node", self.peer_name
                )
                if self._stopping:
                    await self._part(STOPPING, "is stopping")
        except* _DuplicateError:
            self.duplicate = True
            log.debug("%s ended a duplicate gossip stream", self.peer_name)
        except* _PrunedError as group:
            crowded = group.exceptions[0].args == (CROWDED,)
            self.crowded, self.pruned = crowded, not crowded
            self._log(
                logging.INFO if self._news else logging.DEBUG,
                "closed",
                "gossip stream with %s closed by it: %s",
                self.peer_name,
                "it holds too many sessions" if crowded else "its partial view moved on",
            )
        except* PeerUnavailableError as group:
            self._log_end(group.exceptions[0])
        except* RemovalNoticeError as group:
            self.removal = group.exceptions[0]  # type: ignore[assignment]
        except* ProtocolError as group:
            self._log(
                logging.WARNING,
                "protocol error",
                "protocol error from %s: %s",
                self.peer_name,
                group.exceptions[0],
            )
            await refuse(self.stream, "protocol", str(group.exceptions[0]))
        except* RefusedError as group:
            self._log(logging.WARNING, "refused", "%s", group.exceptions[0])
        finally:
            self.state = State.CLOSED
            try:
                # Shielded: a cancelled session still closes its stream, within the bound.
                await asyncio.shield(self.stream.aclose(_PARTING_S))
            finally:
                self.stream.close()
                self.closed.set()

    @property
    def _news(self) -> bool:
        """Whether this stream's end is worth an INFO line: it was announced, or it ends
        a reunion that was."""
        return self.announced or self._ends_reunion

    @property
    def _slim_acks(self) -> bool:
        hello = self.peer_hello
        return hello is not None and hello.protocol_version >= SLIM_ACK_VERSION

    def _log(self, level: int, kind: str, msg: str, *args: object) -> None:
        """A line this peer's doing: rate limited per peer and kind (node/peer_log.py)."""
        # Counted by node id: the name in the hello is the peer's to choose.
        peer_log.log(log, level, self.peer, self.peer_name, kind, msg, *args)

    def close(
        self,
        *,
        duplicate: bool = False,
        stopping: bool = False,
        pruned: bool = False,
        crowded: bool = False,
    ) -> None:
        """End the session from this side: a removal; `stopping`, this node stops;
        `duplicate`, another stream with the same peer replaces it; `pruned`, this node's
        partial view no longer holds the peer; or `crowded`, this node holds more sessions
        than its bound. The peer is told which of the last four."""
        self.duplicate = self.duplicate or duplicate
        self.pruned = self.pruned or pruned
        self.crowded = self.crowded or crowded
        self._stopping = self._stopping or stopping
        self._stop.set()

    async def tell(self, frame: GossipFrame) -> None:
        """Send a frame that is not the session's own doing (presence, node/liveness.py);
        a stream that is closing just does not get it."""
        if self.state is State.OPEN:
            with contextlib.suppress(MeshError):
                await self.stream.send(frame)

    async def _until_closed(self) -> None:
        await self._stop.wait()
        raise _ClosedHereError

    def _log_end(self, exc: BaseException) -> None:
        if self._closed_here:
            log.debug("gossip stream with %s also ended: %s", self.peer_name, exc)
        elif self._news and not self.duplicate:
            self._log(
                logging.INFO, "closed", "gossip stream with %s closed: %s", self.peer_name, exc
            )
        else:
            # Never announced (the peer had not admitted it, or it was a duplicate): its
            # end is no news, whatever gRPC said about it.
            log.debug("gossip stream with %s ended before it opened: %s", self.peer_name, exc)

    async def _part(self, code: str, message: str) -> None:
        """Tell the peer why this end closes, then let it close its end first (within
        `_PARTING_S`): frames are ordered, so it reads the reason before anything breaks,
        and neither end logs a broken stream."""
        with contextlib.suppress(MeshError, TimeoutError):
            async with asyncio.timeout(_PARTING_S):
                await self.stream.send(GossipError(code=code, message=message))
                while True:
                    frame = await self.stream.recv()
                    # The end, or the peer parting at the same moment (both stop, or
                    # both drop the same duplicate): then nobody would close first.
                    if frame is None or isinstance(frame, GossipError):
                        break

    async def _handshake(self) -> None:
        host = self.host
        self.peer_hello = await exchange_hellos(
            self.stream,
            Hello(
                node_id=host.node_id,
                epoch=host.epoch,
                protocol_version=self.version,
                name=host.name,
            ),
            compatible=self.compatible,
            timeout_s=self.timeout_s,
        )
        spoken = min(self.version, self.peer_hello.protocol_version)
        self.stream.columnar = spoken >= COLUMNAR_ENTRIES_VERSION
        self.state = State.OPEN
        self.last_heard = time.monotonic()
        # Our vector goes out once the registry admits the stream (see run()).

    def _ping_period(self) -> float:
        """How often the dialler pings: a backstop only with a peer whose gRPC keepalive
        watches the link (protocol 4), every keepalive with an older one, which expects
        that."""
        hello = self.peer_hello
        if hello is not None and hello.protocol_version >= TRANSPORT_LIVENESS_VERSION:
            return self.keepalive_s * BACKSTOP_PINGS
        return self.keepalive_s

    async def _pinger(self) -> None:
        period = self._ping_period()
        # The dialler hears a pong soon after each ping it sends. The end that answers
        # keeps its own timer, whose phase drifts against the dialler's as each loop wakes
        # late: it allows a whole period more, or a quiet link would be taken for dead
        # after some hours of drift.
        dialler = self.initiator == self.host.node_id
        allowed = period + self.timeout_s + (0 if dialler else period)
        pinging: asyncio.Task[None] | None = None
        try:
            while True:
                await asyncio.sleep(period)
                silent = time.monotonic() - self.last_heard
                if silent > allowed:
                    raise PeerUnavailableError(f"{self.peer_name} silent for {silent:.1f} s")
                if not dialler:
                    continue  # the dialler pings, this end answers: each hears the other
                if pinging is not None:
                    if not pinging.done():
                        # Still queued behind a batch on a full link: the check above,
                        # not this ping, decides whether the peer is gone.
                        continue
                    pinging.result()  # a broken stream ends the session here
                nonce = next(self._nonces)
                self._pings = {nonce: time.monotonic()}  # earlier ones will not be answered
                pinging = asyncio.ensure_future(self.stream.send(Ping(nonce=nonce)))
        finally:
            if pinging is not None:
                if pinging.done():
                    if not pinging.cancelled():
                        pinging.exception()  # heard already, or no longer news
                else:
                    pinging.cancel()

    async def _reader(self) -> None:
        while True:
            frame = await self.stream.recv()
            if frame is None:
                raise PeerUnavailableError(f"{self.peer_name} ended the stream")
            self.last_heard = time.monotonic()
            self.heard.set()
            await self._handle(frame)

    # -- sending what the peer lacks ---------------------------------------------------

    async def _sender(self) -> None:
        await self._vector_heard.wait()
        assert self.peer_vector is not None
        self.holds.start(self.peer_vector)
        first = True
        while True:
            version = self.host.changes.version
            ahead: asyncio.Task[list[Batch]] | None = None
            ahead_refusals = 0
            try:
                while True:
                    if ahead is not None and self.holds.refusals == ahead_refusals:
                        batches = await ahead
                    else:
                        # One batch first: the stream starts while the next page is read
                        # (the first page of four held a sync's start back by its reading).
                        batches = await self._next_page(most=1)
                    ahead = None
                    if not batches:
                        break
                    # Read the next page while this one goes out, assuming it arrives: the
                    # store thread reads and encodes while the stream sends (one page at a
                    # time left the stream idle for most of a large initial sync). A refusal
                    # in the meantime makes the guess wrong: the page is read again.
                    ahead_refusals = self.holds.refusals
                    ahead = asyncio.create_task(self._next_page(batches))
                    for batch in batches:
                        await self._send_batch(batch)
                        self.holds.sent_batch(batch)
            finally:
                if ahead is not None:
                    ahead.cancel()
            if first:
                # Membership records of retired epochs: no vector shows them, so once a stream.
                for batch in await self.host.membership_for(self.holds.sent):
                    await self._send_batch(batch)
                first = False
            await self.host.changes.wait(version)

    async def _next_page(self, going: Sequence[Batch] = (), *, most: int = 0) -> list[Batch]:
        """The next batches the peer lacks (at most `most`; 0: a page's worth), once
        `going` (being sent) has reached it."""
        ours = await self.host.our_vector() if self.holds.stuck else None
        return await self.host.batches_for(self.holds.offer(ours, going), _PAGE_BYTES, most)

    async def _send_batch(self, batch: Batch) -> None:
        await self._window.acquire()
        batch_id = next(self._batch_ids)
        sized = dataclasses.replace(batch, batch_id=batch_id)
        self._in_flight[batch_id] = sized
        await self.stream.send(sized)
        self.records_sent += len(batch.envelopes)

    def _on_ack(self, ack: Ack) -> None:
        batch = self._in_flight.pop(ack.batch_id, None)
        if batch is None:
            raise ProtocolError(f"an ack of batch {ack.batch_id}, which was not sent")
        self._window.release()
        self.holds.answered(batch, ack, slim=self._slim_acks)
        if ack.refused:
            self._log(
                logging.WARNING,
                "refusal",
                "%s refused records of %s (%d-%d): %s",
                self.peer_name,
                batch.origin.short(),
                batch.after_seq + 1,
                batch.through_seq,
                ack.reason,
            )

    def unacked(self, ours: VersionVector) -> int:
        """How many of our records the peer has not acknowledged (as far as seqs tell)."""
        return self.holds.unacked(ours)

    @property
    def acked(self) -> VersionVector:
        """The peer's vector as its last ack told it."""
        return self.holds.acked

    # -- receiving ---------------------------------------------------------------------

    async def _applier(self) -> None:
        while True:
            batches = [await self._inbox.get()]
            while not self._inbox.empty():
                batches.append(self._inbox.get_nowait())
            await self._on_batches(batches)

    async def _on_batches(self, batches: list[Batch]) -> None:
        results, vector = await self.host.apply_all(batches, self.peer)
        for batch, result in zip(batches, results, strict=True):
            refused = result.outcome is Outcome.REFUSED
            if refused:
                self._log(
                    logging.WARNING,
                    "refused records",
                    "refused records of %s from %s: %s",
                    batch.origin.short(),
                    self.peer_name,
                    result.reason,
                )
            self.records_received += len(result.stored)
            self.holds.received(batch)
            told = ack_vector(vector, batch.origin, slim=self._slim_acks)
            await self.stream.send(
                Ack(batch_id=batch.batch_id, vector=told, refused=refused, reason=result.reason)
            )

    async def _handle(self, frame: GossipFrame) -> None:
        match frame:
            case VectorFrame():
                if self.peer_vector is not None:
                    raise ProtocolError("a second vector")
                self.peer_vector = frame.vector
                self._vector_heard.set()
                # The peer admitted this stream: both ends hold it.
                if not self.duplicate:
                    self.announced = True
                    if self.host.announce(self):
                        self._log(
                            logging.INFO, "open", "gossip stream with %s open", self.peer_name
                        )
            case Batch():
                if self.peer_vector is None:
                    raise ProtocolError("a batch before the vector")
                await self._inbox.put(frame)
            case Ack():
                self._on_ack(frame)
            case Ping(pong=False):
                await self.stream.send(Ping(nonce=frame.nonce, pong=True))
            case Ping(pong=True):
                sent = self._pings.pop(frame.nonce, None)
                if sent is not None:
                    self.rtt_s = time.monotonic() - sent
            case GossipError(code=code) if code == STOPPING:
                raise PeerUnavailableError(f"{self.peer_name} is stopping")
            case PresenceFrame():
                self.host.on_presence(self, frame)
            case GossipError(code=code) if code in (PRUNED, CROWDED):
                raise _PrunedError(code)
            case GossipError(code=code) if code == DUPLICATE:
                self.duplicate = True  # before the registry releases it (run's finally)
                raise _DuplicateError
            case GossipError():
                raise RefusedError(f"{self.peer_name} ended the stream: {frame.message}")
            case Hello():
                raise ProtocolError("a second hello")
