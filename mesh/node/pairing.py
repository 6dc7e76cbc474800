"""Joining a mesh: invitations, the inviter's pairing desk, and the joiner's exchange.

Theory of operation. `mesh invite` asks the daemon for an `Invitation`: a fresh code whose
number is a public nameplate (see security/invite_code.py), a count of failed attempts and
an expiry. The node's `PairingDesk` is its pairing listener (plaintext, its own port). It
opens with the first invitation and answers every exchange: for the open invitation whose
nameplate the joiner names, the exchange proper; for an invitation that closed, why it
closed (used, expired, cancelled, replaced, locked) and when; for a code with another number,
"another code", which costs nobody a try. After the last invitation closed it lingers a while
(answering only why), then closes. One exchange runs at a time.

An exchange: the inviter checks the joiner's key confirmation before sending anything
derived from the key; a wrong code costs one attempt and the answer says how many are left;
the fifth closes the invitation. With the code proven, the joiner sends its certificate and
name; the inviter refuses a name already taken (the invitation stays open for a retry under
another name), otherwise writes the signed admission and answers with its own certificate,
addresses and every membership record.

Closing an invitation is synchronous (state, time, `closed` event): whatever ends it, even
the exchange that used it, the LAN announcement is withdrawn at once by whoever waits on
`closed`, never after a listener's shutdown that could cancel the closer midway.

The joiner tries the places its invitation may be in turn (what mDNS found for its nameplate,
or the address given and the port after it), skipping those that do not answer or hold
another code, and stops at the first real answer.

States of an invitation: OPEN -> USED | EXPIRED | CANCELLED | REPLACED | LOCKED.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from mesh.core.envelope import Envelope
from mesh.core.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    LocalError,
    MeshError,
    PeerUnavailableError,
    ProtocolError,
    RefusedError,
)
from mesh.core.gossip import COMPATIBLE_VERSIONS, PROTOCOL_VERSION
from mesh.core.ids import NodeId
from mesh.core.names import check_node_name
from mesh.core.pairing import (
    InvitationState,
    MemberInfo,
    PairingFrame,
    PairingPayload,
    Refusal,
)
from mesh.security import invite_code
from mesh.security.pairing import Inviter, Joiner, WrongCodeError
from mesh.transport.pairing import (
    ListenerBusyError,
    PairingClient,
    PairingServer,
    PairingStream,
)
from mesh.transport.peer_client import target
from mesh.wire import envelope as wire_envelope
from mesh.wire.pairing import payload_from_bytes, payload_to_bytes

log = logging.getLogger(__name__)

MAX_FAILURES = 5
DEFAULT_TTL_S = 600.0
LINGER_S = 600.0  # after the last invitation closed, the desk still says why for this long
_STEP_S = 15.0  # a person is not typing any more: each message must come within this
_HISTORY = 16  # closed invitations the desk remembers, to say why a code no longer works


@dataclass(frozen=True, kw_only=True, slots=True)
class Admitted:
    """What the inviter's node answers a joiner with once it admitted it."""

    certificate: bytes
    name: str
    root: NodeId
    records: tuple[Envelope, ...]  # every membership record, admitters first
    members: tuple[MemberInfo, ...]
    hosts: tuple[str, ...]
    port: int


# Called with the joiner's certificate and name; raises AlreadyExistsError for a taken name.
AdmitFn = Callable[[bytes, str], Awaitable[Admitted]]


class InvitationClosedError(RefusedError):
    """The joiner's code belongs to an invitation that closed; the message says why."""


class Invitation:
    """One invitation: its code, its attempts, its expiry. The desk runs its exchanges."""

    def __init__(self, admit: AdmitFn, *, ttl_s: float) -> None:
        self.code = invite_code.generate()
        self.nameplate = invite_code.nameplate(self.code)
        self.state = InvitationState.OPEN
        self.failures = 0
        self.expires_ms = int(time.time() * 1000 + ttl_s * 1000)
        self.closed_ms = 0
        self.closed = asyncio.Event()
        self.joined: str | None = None
        self._ttl_s = ttl_s
        self._admit = admit
        self._timer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._timer = asyncio.create_task(self._expire(), name="invitation expiry")

    async def _expire(self) -> None:
        await asyncio.sleep(self._ttl_s)
        log.info("invitation %d-… expired", self.nameplate)
        self.close(InvitationState.EXPIRED)

    def close(self, state: InvitationState) -> None:
        """Close for `state` (once; a closed invitation stays as it closed)."""
        if self.state is not InvitationState.OPEN:
            return
        self.state = state
        self.closed_ms = int(time.time() * 1000)
        if self._timer is not None and self._timer is not asyncio.current_task():
            self._timer.cancel()
        self.closed.set()

    async def exchange(self, stream: PairingStream, first: PairingFrame) -> None:
        """The inviter's side of one attempt, from the joiner's first frame on."""
        try:
            await self._exchange(stream, first)
        except WrongCodeError:
            self.failures += 1
            left = max(0, MAX_FAILURES - self.failures)
            if left == 0:
                self.close(InvitationState.LOCKED)
                log.warning(
                    "pairing from %s: wrong code; the invitation is closed after %d wrong codes",
                    stream.peer,
                    MAX_FAILURES,
                )
            else:
                log.warning("pairing from %s: wrong code (%d tries left)", stream.peer, left)
            await _send_error(
                stream,
                PairingFrame(error="wrong code", refusal=Refusal.WRONG_CODE, tries_left=left),
            )
        except (ProtocolError, PeerUnavailableError, TimeoutError) as exc:
            log.warning("pairing from %s failed: %s", stream.peer, exc or "timed out")
            await _send_error(stream, PairingFrame(error="pairing failed"))
        except RefusedError as exc:
            # The joiner sent an error frame: it gave up. Nothing to answer.
            log.info("pairing from %s ended by the joiner: %s", stream.peer, exc)

    async def _exchange(self, stream: PairingStream, first: PairingFrame) -> None:
        inviter = Inviter(self.code)
        await stream.send(PairingFrame(spake=inviter.on_spake(first.spake)))
        confirm = await _recv(stream, "confirm")
        tag, channel = inviter.on_confirm(confirm.confirm)
        await stream.send(PairingFrame(confirm=tag))
        theirs = payload_from_bytes(channel.open((await _recv(stream, "sealed")).sealed))
        if theirs.protocol_version not in COMPATIBLE_VERSIONS:
            refusal = (
                f"incompatible protocol: the inviter speaks {PROTOCOL_VERSION}, "
                f"this node {theirs.protocol_version}; upgrade the older mesh"
            )
        else:
            refusal = ""
            try:
                check_node_name(theirs.name)
                admitted = await self._admit(theirs.certificate, theirs.name)
            except (AlreadyExistsError, InvalidArgumentError) as exc:
                refusal = str(exc)
        if refusal:
            reply = PairingPayload(
                certificate=b"", name="", protocol_version=PROTOCOL_VERSION, refusal=refusal
            )
            await stream.send(PairingFrame(sealed=channel.seal(payload_to_bytes(reply))))
            log.info("pairing refused: %s", refusal)
            return
        reply = PairingPayload(
            certificate=admitted.certificate,
            name=admitted.name,
            protocol_version=PROTOCOL_VERSION,
            members=admitted.members,
            records=tuple(wire_envelope.to_bytes(e) for e in admitted.records),
            hosts=admitted.hosts,
            port=admitted.port,
            root=admitted.root,
        )
        # Admitted is used even if the reply's send then fails (the joiner may hang up the
        # moment it has read it): the code must not let a second node in. Closed first, so
        # that the announcement goes whatever happens to this call.
        self.joined = theirs.name
        self.close(InvitationState.USED)
        log.info("%s joined the mesh", theirs.name)
        await stream.send(PairingFrame(sealed=channel.seal(payload_to_bytes(reply))))


class PairingDesk:
    """The inviter's pairing listener: the open invitation, and why closed ones closed."""

    def __init__(
        self, host: str, port: int, *, any_port: bool = False, linger_s: float = LINGER_S
    ) -> None:
        self._host = host
        self._requested = port
        self._any_port = any_port  # when `port` is taken, any free one will do
        self._linger_s = linger_s
        self._server: PairingServer | None = None
        self._current: Invitation | None = None
        self._history: collections.deque[Invitation] = collections.deque(maxlen=_HISTORY)
        self._busy = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        return self._server.port if self._server is not None else 0

    @property
    def current(self) -> Invitation | None:
        return self._current

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def open(self, invitation: Invitation) -> None:
        """Make `invitation` the open one (closing the one before as replaced)."""
        if self._current is not None:
            self._current.close(InvitationState.REPLACED)
            self._history.append(self._current)
        if self._server is None:
            server = PairingServer(self, self._host, self._requested)
            try:
                await server.start()
            except LocalError:
                if not self._any_port:
                    raise
                server = PairingServer(self, self._host, 0)
                await server.start()
            self._server = server
        self._current = invitation
        invitation.start()
        task = asyncio.create_task(self._linger(invitation), name="pairing desk linger")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _linger(self, invitation: Invitation) -> None:
        await invitation.closed.wait()
        await asyncio.sleep(self._linger_s)
        if self._current is invitation:  # no newer invitation: nobody needs the desk now
            await self._close_listener()

    async def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop()

    async def stop(self) -> None:
        """At shutdown: cancel the open invitation and close the listener."""
        if self._current is not None:
            self._current.close(InvitationState.CANCELLED)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._close_listener()

    def _for(self, nameplate: int | None) -> Invitation | None:
        current = self._current
        if nameplate is None:  # a joiner from before nameplates: the current one
            return current
        if current is not None and current.nameplate == nameplate:
            return current
        return next((i for i in reversed(self._history) if i.nameplate == nameplate), None)

    async def on_pair(self, stream: PairingStream) -> None:
        """One exchange (one at a time)."""
        async with self._busy:
            try:
                first = await _recv(stream, "spake")
            except (MeshError, TimeoutError) as exc:
                log.info("pairing from %s ended before it began: %s", stream.peer, exc)
                return
            invitation = self._for(first.nameplate)
            if invitation is None:
                await _send_error(
                    stream,
                    PairingFrame(
                        error="the invitation here is for another code",
                        refusal=Refusal.OTHER_CODE,
                    ),
                )
            elif invitation.state is not InvitationState.OPEN:
                await _send_error(
                    stream,
                    PairingFrame(
                        error=f"the invitation is {invitation.state.value}",
                        refusal=Refusal.CLOSED,
                        closed=invitation.state,
                        closed_ms=invitation.closed_ms,
                    ),
                )
            else:
                await invitation.exchange(stream, first)


async def _recv(stream: PairingStream, want: str) -> PairingFrame:
    frame = await asyncio.wait_for(stream.recv(), _STEP_S)
    if frame.error:
        raise _refusal(frame)
    if not getattr(frame, want):
        raise ProtocolError(f"expected {want} in the pairing exchange")
    return frame


async def _send_error(stream: PairingStream, frame: PairingFrame) -> None:
    with contextlib.suppress(MeshError, TimeoutError):
        await asyncio.wait_for(stream.send(frame), 2)


# -- the joiner ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Joined:
    inviter_name: str
    inviter_id: NodeId
    root: NodeId
    records: tuple[Envelope, ...]
    hosts: tuple[str, ...]
    port: int
    host: str  # where the inviter was reached


class _ElsewhereError(PeerUnavailableError):
    """Not the invitation's place: nothing answered there, or it holds another code."""


class _OtherCodeError(_ElsewhereError):
    pass


_CLOSED_WHY = {
    InvitationState.USED: "was used: a node joined with it",
    InvitationState.EXPIRED: "expired",
    InvitationState.CANCELLED: "was cancelled (`mesh invite --cancel`)",
    InvitationState.REPLACED: "was replaced by a newer `mesh invite` there",
    InvitationState.LOCKED: f"was closed after {MAX_FAILURES} wrong codes",
}


def _refusal(frame: PairingFrame) -> MeshError:
    """The joiner's error for an inviter's error frame (the inviter's side raises it too,
    when the joiner gives up)."""
    if frame.refusal is Refusal.WRONG_CODE:
        if frame.tries_left <= 0:
            return WrongCodeError(
                f"wrong code: that was the {MAX_FAILURES}th wrong try, so the invitation is now "
                "closed; run `mesh invite` on the other computer again for a new code"
            )
        tries = "1 try" if frame.tries_left == 1 else f"{frame.tries_left} tries"
        return WrongCodeError(
            f"wrong code: {tries} left before the invitation closes; check the code with the "
            "computer that ran `mesh invite`"
        )
    if frame.refusal is Refusal.CLOSED and frame.closed in _CLOSED_WHY:
        when = ""
        if frame.closed_ms:
            when = dt.datetime.fromtimestamp(frame.closed_ms / 1000).strftime(" at %H:%M")
        return InvitationClosedError(
            f"the invitation for this code {_CLOSED_WHY[frame.closed]}{when}; run `mesh invite` "
            "on the other computer for a new code"
        )
    if frame.refusal is Refusal.OTHER_CODE:
        return _OtherCodeError(frame.error)
    return RefusedError(frame.error)


_BUSY_WAITS_S = (0.5, 1.0, 2.0, None)  # then say so


def places_at(host: str, port: int) -> list[tuple[str, int]]:
    """Where `--at HOST:PORT` may mean: the pairing port itself, or the node's port (the one
    `mesh status` shows), whose pairing listener is the port after it."""
    return [(host, port)] + ([(host, port + 1)] if port < 65535 else [])


async def join(
    code: str, places: Sequence[tuple[str, int]], *, certificate: bytes, name: str
) -> Joined:
    """The joiner's side: find the invitation among `places`, prove the code, send who we
    are, receive the mesh."""
    code = invite_code.normalize(code)
    elsewhere: list[tuple[str, _ElsewhereError]] = []
    closed: InvitationClosedError | None = None
    for host, port in places:
        for wait_s in _BUSY_WAITS_S:
            try:
                return await _join_at(code, host, port, certificate=certificate, name=name)
            except InvitationClosedError as exc:
                # Said unless another place (the same number announced twice) holds it open.
                closed = closed or exc
                break
            except ListenerBusyError as exc:
                if wait_s is None:
                    raise PeerUnavailableError(
                        f"the inviter at {target(host, port)} is busy with another joiner; "
                        "try again in a moment"
                    ) from exc
                await asyncio.sleep(wait_s)  # another joiner's exchange takes a second
            except _ElsewhereError as exc:
                elsewhere.append((target(host, port), exc))
                break
    raise closed or _nowhere(code, elsewhere)


async def join_announced_or_closed(
    code: str,
    find: Callable[[], Awaitable[list[tuple[str, int]]]],
    find_desks: Callable[[], Awaitable[list[tuple[str, int]]]],
    *,
    certificate: bytes,
    name: str,
) -> Joined:
    """`mesh join CODE` without an address: the invitations announced for the code's
    number; when none is, the pairing desks of the nodes on the LAN, one of which may say
    that the code's invitation closed and why (or hold it open, its announcement missed)."""
    try:
        places = await find()
    except PeerUnavailableError as nothing:
        try:
            return await join(code, await find_desks(), certificate=certificate, name=name)
        except (InvitationClosedError, WrongCodeError):
            raise
        except MeshError:
            raise nothing from None
    return await join(code, places, certificate=certificate, name=name)


def _nowhere(code: str, tried: list[tuple[str, _ElsewhereError]]) -> MeshError:
    others = [where for where, exc in tried if isinstance(exc, _OtherCodeError)]
    if others:
        return RefusedError(
            f"the invitation at {', '.join(others)} is for another code than {code}: check "
            "the code, or the computer"
        )
    where = " or ".join(dict.fromkeys(w for w, _ in tried)) or "the address given"
    return PeerUnavailableError(
        f"no open invitation at {where} (is `mesh invite` running there, and is the address right?)"
    )


async def _join_at(code: str, host: str, port: int, *, certificate: bytes, name: str) -> Joined:
    joiner = Joiner(code)
    client = PairingClient(host, port)
    answered = False
    try:
        stream = client.open()
        await stream.send(PairingFrame(spake=joiner.start(), nameplate=invite_code.nameplate(code)))
        reply = await _recv(stream, "spake")
        answered = True
        await stream.send(PairingFrame(confirm=joiner.on_spake(reply.spake)))
        channel = joiner.on_confirm((await _recv(stream, "confirm")).confirm)
        mine = PairingPayload(certificate=certificate, name=name, protocol_version=PROTOCOL_VERSION)
        await stream.send(PairingFrame(sealed=channel.seal(payload_to_bytes(mine))))
        theirs = payload_from_bytes(channel.open((await _recv(stream, "sealed")).sealed))
    except (_ElsewhereError, ListenerBusyError):
        raise
    except TimeoutError as exc:
        raise PeerUnavailableError(f"the inviter at {client.address} stopped answering") from exc
    except PeerUnavailableError as exc:
        if not answered:
            raise _ElsewhereError(str(exc)) from exc
        raise PeerUnavailableError(
            f"the inviter at {client.address} broke off the exchange: {exc}"
        ) from exc
    finally:
        await client.close()
    if theirs.refusal:
        raise RefusedError(f"the inviter refused: {theirs.refusal}")
    if theirs.root is None or not theirs.certificate:
        raise ProtocolError("the inviter's answer is incomplete")
    records = tuple(wire_envelope.from_bytes(r) for r in theirs.records)
    return Joined(
        inviter_name=theirs.name,
        inviter_id=NodeId.of_certificate(theirs.certificate),
        root=theirs.root,
        records=records,
        hosts=theirs.hosts,
        port=theirs.port,
        host=host,
    )


def member_infos(members: Sequence[tuple[NodeId, bytes, str]]) -> tuple[MemberInfo, ...]:
    return tuple(MemberInfo(node_id=n, certificate=c, name=name) for n, c, name in members)
