"""Joining a mesh: the inviter's listener and the joiner's exchange, over the pairing stream.

Theory of operation. `mesh invite` asks the daemon for an `Invitation`: a fresh code, a
pairing listener (plaintext, its own port) that stays open for the invitation's lifetime,
and a count of failed attempts. One exchange runs at a time. The inviter checks the
joiner's key confirmation before sending anything derived from the key; a wrong code costs
one attempt, and the fifth closes the invitation. With the code proven, the joiner sends its
certificate and name; the inviter refuses a name already taken (the invitation stays open
for a retry under another name), otherwise writes the signed admission and answers with
its own certificate, addresses and every membership record. A used, expired or cancelled
invitation closes its listener and is gone.

States of an invitation: OPEN -> USED | EXPIRED | CANCELLED | LOCKED (5 failures).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from mesh.core.envelope import Envelope
from mesh.core.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    MeshError,
    PeerUnavailableError,
    ProtocolError,
    RefusedError,
)
from mesh.core.gossip import COMPATIBLE_VERSIONS, PROTOCOL_VERSION
from mesh.core.ids import NodeId
from mesh.core.names import check_node_name
from mesh.core.pairing import MemberInfo, PairingFrame, PairingPayload
from mesh.security import invite_code
from mesh.security.pairing import Inviter, Joiner, WrongCodeError
from mesh.transport.pairing import PairingClient, PairingServer, PairingStream
from mesh.wire import envelope as wire_envelope
from mesh.wire.pairing import payload_from_bytes, payload_to_bytes

log = logging.getLogger(__name__)

MAX_FAILURES = 5
DEFAULT_TTL_S = 600.0
_STEP_S = 15.0  # a person is not typing any more: each message must come within this


class State(enum.Enum):
    OPEN = "open"
    USED = "used"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    LOCKED = "locked"


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


class Invitation:
    """One open invitation: its code, its listener, its attempts."""

    def __init__(self, admit: AdmitFn, *, ttl_s: float, host: str, port: int) -> None:
        self.code = invite_code.generate()
        self.state = State.OPEN
        self.failures = 0
        self.expires_ms = int(time.time() * 1000 + ttl_s * 1000)
        self._ttl_s = ttl_s
        self._admit = admit
        self._server = PairingServer(self, host, port)
        self._busy = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.joined: str | None = None

    @property
    def port(self) -> int:
        return self._server.port

    async def start(self) -> None:
        await self._server.start()
        self._timer = asyncio.create_task(self._expire(), name="invitation expiry")

    async def _expire(self) -> None:
        await asyncio.sleep(self._ttl_s)
        log.info("invitation expired")
        await self.close(State.EXPIRED)

    async def close(self, state: State) -> None:
        if self.state is not State.OPEN:
            return
        self.state = state
        if self._timer is not None and self._timer is not asyncio.current_task():
            self._timer.cancel()
        await self._server.stop()
        self.closed.set()

    async def on_pair(self, stream: PairingStream) -> None:
        """The inviter's side of one exchange (one at a time)."""
        async with self._busy:
            if self.state is not State.OPEN:
                await _send_error(stream, f"the invitation is {self.state.value}")
                return
            try:
                await self._exchange(stream)
            except WrongCodeError:
                self.failures += 1
                left = MAX_FAILURES - self.failures
                log.warning("pairing from %s: wrong code (%d attempts left)", stream.peer, left)
                await _send_error(stream, "wrong code")
                if left <= 0:
                    log.warning("invitation locked after %d wrong codes", MAX_FAILURES)
                    await self.close(State.LOCKED)
            except (ProtocolError, PeerUnavailableError, TimeoutError) as exc:
                log.warning("pairing from %s failed: %s", stream.peer, exc)
                await _send_error(stream, "pairing failed")
            except RefusedError as exc:
                # The joiner sent an error frame: it gave up. Nothing to answer.
                log.info("pairing from %s ended by the joiner: %s", stream.peer, exc)

    async def _exchange(self, stream: PairingStream) -> None:
        inviter = Inviter(self.code)
        first = await _recv(stream, "spake")
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
        try:
            await stream.send(PairingFrame(sealed=channel.seal(payload_to_bytes(reply))))
        finally:
            # Admitted is used, even if the reply's send then fails (the joiner may hang up
            # the moment it has read it): the code must not let a second node in.
            self.joined = theirs.name
            log.info("%s joined the mesh", theirs.name)
            await self.close(State.USED)


async def _recv(stream: PairingStream, want: str) -> PairingFrame:
    frame = await asyncio.wait_for(stream.recv(), _STEP_S)
    if frame.error:
        raise RefusedError(frame.error)
    if not getattr(frame, want):
        raise ProtocolError(f"expected {want} in the pairing exchange")
    return frame


async def _send_error(stream: PairingStream, message: str) -> None:
    with contextlib.suppress(MeshError, TimeoutError):
        await asyncio.wait_for(stream.send(PairingFrame(error=message)), 2)


@dataclass(frozen=True, kw_only=True, slots=True)
class Joined:
    inviter_name: str
    inviter_id: NodeId
    root: NodeId
    records: tuple[Envelope, ...]
    hosts: tuple[str, ...]
    port: int


async def join(code: str, host: str, port: int, *, certificate: bytes, name: str) -> Joined:
    """The joiner's side: prove the code, send who we are, receive the mesh."""
    code = invite_code.normalize(code)
    joiner = Joiner(code)
    client = PairingClient(host, port)
    try:
        stream = client.open()
        await stream.send(PairingFrame(spake=joiner.start()))
        reply = await _recv(stream, "spake")
        await stream.send(PairingFrame(confirm=joiner.on_spake(reply.spake)))
        try:
            channel = joiner.on_confirm((await _recv(stream, "confirm")).confirm)
        except RefusedError as exc:
            if str(exc) == "wrong code":
                raise WrongCodeError(
                    "wrong code: check it and try again (5 wrong tries close the invitation)"
                ) from exc
            raise
        mine = PairingPayload(certificate=certificate, name=name, protocol_version=PROTOCOL_VERSION)
        await stream.send(PairingFrame(sealed=channel.seal(payload_to_bytes(mine))))
        theirs = payload_from_bytes(channel.open((await _recv(stream, "sealed")).sealed))
    except TimeoutError as exc:
        raise PeerUnavailableError(f"the inviter at {client.address} stopped answering") from exc
    except PeerUnavailableError as exc:
        raise PeerUnavailableError(
            f"no open invitation at {client.address} (is `mesh invite` running there, "
            "and is the address right?)"
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
    )


def member_infos(members: Sequence[tuple[NodeId, bytes, str]]) -> tuple[MemberInfo, ...]:
    return tuple(MemberInfo(node_id=n, certificate=c, name=name) for n, c, name in members)
