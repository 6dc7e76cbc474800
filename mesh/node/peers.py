"""The peer manager: keeps one Gossip session open with every member it knows how to reach.

Theory of operation. For each address it knows (static peers from the config and `--peer`;
later gossiped and discovered ones) a task loops: read the certificate at that address with
a plain TLS handshake, hash it, and go on only if it is a member's (never this node's own);
if a session with that member is already open, wait for it to end; otherwise dial a
channel pinned to that certificate and run a session. Failures wait a jittered exponential
backoff; a session that opened resets it. Both ends may dial at once; the session registry
keeps the stream that the node with the lower id dialled, so both ends drop the same one.

Only members of the node's partial view are dialled (node/overlay.py): the loop of an
address whose owner the view does not hold parks, without a handshake, until the view
changes or the address is heard of anew. Members that dial this node are always served.

When this machine's network comes back (node/link_watch.py), every loop dials at once,
including one whose attempt was under way while the network was away.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

from mesh.config import Settings
from mesh.core.backoff import Backoff
from mesh.core.errors import PeerUnavailableError
from mesh.core.ids import NodeId
from mesh.core.membership import Member
from mesh.node.changes import ChangeSignal
from mesh.node.link_watch import LinkWatch
from mesh.node.overlay import Overlay
from mesh.node.session import Session, SessionHost
from mesh.security.identity import Identity
from mesh.transport.peer_client import PeerChannel, target
from mesh.transport.tls import probe_certificate

log = logging.getLogger(__name__)


class PeersHost(SessionHost, Protocol):
    identity: Identity
    overlay: Overlay

    def member(self, node_id: NodeId) -> Member | None: ...

    def was_removed(self, node_id: NodeId) -> bool: ...

    async def on_removal_notice(self, records: tuple[bytes, ...], by: NodeId) -> None: ...

    def session(self, node_id: NodeId) -> Session | None: ...

    def remember_address(self, node_id: NodeId, host: str, port: int) -> None: ...


# How long after a duplicate stream ended its replacement is expected: that one opens
# without a second "open" in the log.
_REPLACEMENT_S = 10.0


class SessionRegistry:
    """The open session with each peer; decides between two streams to the same peer.

    It also keeps the log honest about a dial race (members dial each other at once, and
    at each of their addresses): the peer's first stream to open is announced, and one
    that takes over from it, or follows a duplicate that ended, opens quietly, so a
    reunion reads as one "open".
    """

    def __init__(self, self_id: NodeId) -> None:
        self._self = self_id
        self._sessions: dict[NodeId, Session] = {}
        # Peers announced online -> until when (inf while a stream is open; for a while
        # after a duplicate ended, as its replacement is on its way).
        self._announced: dict[NodeId, float] = {}
        self._names: dict[NodeId, str] = {}  # as each announced peer's hello gave it

    def get(self, peer: NodeId) -> Session | None:
        return self._sessions.get(peer)

    def all(self) -> list[Session]:
        return list(self._sessions.values())

    def admit(self, session: Session) -> bool:
        """Register an opened session; False if it must yield to the one already open."""
        current = self._sessions.get(session.peer)
        if current is not None and current is not session:
            lower = min(self._self, session.peer)
            keep_new = session.initiator in (current.initiator, lower)
            if not keep_new:
                return False
            current.close(duplicate=True)
        self._sessions[session.peer] = session
        return True

    def announce(self, session: Session) -> bool:
        """Note that `session` is open at both ends; True if that is news to log."""
        if self._sessions.get(session.peer) is not session:
            return False
        due = self._announced.get(session.peer)
        self._announced[session.peer] = math.inf
        self._names[session.peer] = session.peer_name
        return due is None or time.monotonic() >= due

    def release(self, session: Session) -> bool:
        """Forget `session`; True if the peer was announced and this ends its reunion
        (the stream that was announced may have been replaced by this one, which was not
        announced yet: a node that stops then must still say the reunion closed)."""
        if self._sessions.get(session.peer) is not session:
            return False
        del self._sessions[session.peer]
        if session.peer not in self._announced:
            return False
        if session.duplicate:
            self._announced[session.peer] = time.monotonic() + _REPLACEMENT_S
            return False
        del self._announced[session.peer]
        return True

    def unclosed(self) -> list[str]:
        """Names of peers whose reunion was announced and has no stream now: the announced
        one ended as a duplicate and its replacement has not opened. A node that stops
        then closes their reunions in the log, as no session will."""
        return [
            self._names.get(peer, peer.short())
            for peer, due in self._announced.items()
            if peer not in self._sessions and due != math.inf
        ]

    def close(self, peer: NodeId) -> None:
        session = self._sessions.get(peer)
        if session is not None:
            session.close()


class PeerManager:
    def __init__(self, host: PeersHost, settings: Settings) -> None:
        self._host = host
        self._settings = settings
        self._addresses: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._channels: set[PeerChannel] = set()
        self._group: asyncio.TaskGroup | None = None
        self._stopping = False
        # Whose certificate answered at each address dialled (for transfer channels).
        self.owners: dict[tuple[str, int], NodeId] = {}
        self._wake: dict[tuple[str, int], asyncio.Event] = {}
        self._network = ChangeSignal()  # bumped when this machine's network comes back
        self._link_watch: asyncio.Task[None] | None = None

    def addresses_of(self, node: NodeId) -> list[tuple[str, int]]:
        return [address for address, owner in self.owners.items() if owner == node]

    def start(
        self,
        group: asyncio.TaskGroup,
        known: list[tuple[str, int]],
        also_on_network_up: Callable[[], None] = lambda: None,
    ) -> None:
        """Start dialling the static peers and the addresses members were reached at, and
        at once whenever the network comes back (then call `also_on_network_up` too)."""
        self._group = group
        for host, port in [*self._settings.peers(), *known]:
            self.add_address(host, port)

        def up() -> None:
            self.network_up()
            also_on_network_up()

        self._link_watch = group.create_task(LinkWatch(up).run(), name="network comes up")

    def network_up(self) -> None:
        """This machine's network came back: every loop waiting out a backoff dials now (what
        it backed off from was most likely the network's absence)."""
        self._network.bump()

    def add_address(self, host: str, port: int) -> None:
        """Keep dialling host:port; if it is already known, dial it again now (a hint from
        mDNS or gossip says it is there, so its backoff would only delay the reunion)."""
        key = (host, port)
        if key in self._addresses:
            self._wake.setdefault(key, asyncio.Event()).set()
            return
        if self._group is None or self._stopping:
            return
        self._addresses[key] = self._group.create_task(
            self._maintain(host, port), name=f"peer {target(host, port)}"
        )

    def stop_dialling(self) -> None:
        """Dial nothing more; each loop ends once its session does."""
        self._stopping = True

    async def stop(self) -> None:
        # The flag, not only the cancellation, ends the loops: in Python 3.11 a TaskGroup
        # whose child fails while it is being cancelled raises the child's error instead of
        # the cancellation, and a session handles that error and returns normally.
        self._stopping = True
        for task in self._addresses.values():
            task.cancel()
        if self._link_watch is not None:
            self._link_watch.cancel()
        for channel in list(self._channels):
            await channel.close()

    async def _maintain(self, host: str, port: int) -> None:
        s = self._settings
        backoff = Backoff(s.reconnect_min_s, s.reconnect_max_s)
        where = target(host, port)
        last_problem = ""
        overlay = self._host.overlay
        while not self._stopping:
            problem = ""
            view = overlay.changed.version
            ups = self._network.version
            owner = self.owners.get((host, port))
            if owner is not None and self._host.session(owner) is None and not overlay.wants(owner):
                await self._park(host, port, view, ups)
                continue
            try:
                der = await self._probe(host, port, ups)
                peer = NodeId.of_certificate(der)
                self.owners[(host, port)] = peer
                if peer == self._host.identity.node_id:
                    log.info("%s is this node itself; not dialling it", where)
                    return
                member = self._host.member(peer)
                if member is None and self._host.was_removed(peer):
                    # For good: the address is dialled again only if it is heard of anew
                    # (a new node there, say).
                    log.info(
                        "%s is %s, removed from the mesh; not dialling it", where, peer.short()
                    )
                    self._addresses.pop((host, port), None)
                    return
                if member is None:
                    problem = f"{where} is node {peer.short()}, which is not a member of this mesh"
                elif (existing := self._host.session(peer)) is not None:
                    # Only its event is kept: a loop that went on holding the session
                    # would keep its gRPC call, and so its connection, open long after
                    # it ended (a connection per extra address of each peer, pinged
                    # every keepalive).
                    ended = existing.closed
                    del existing
                    await ended.wait()
                    continue
                elif not overlay.wants(peer):
                    continue  # parks above
                elif await self._run_session(member, der, host, port):
                    backoff.reset()
                    continue
            except PeerUnavailableError as exc:
                # A member that is off, restarting or elsewhere: normal, and `mesh status`
                # and `mesh doctor` say so; the log would only cry wolf at every restart.
                if str(exc) != last_problem:
                    log.debug("%s (retrying)", exc)
                last_problem = str(exc)
            if self._stopping:
                return
            if problem and problem != last_problem:
                log.warning("%s (retrying)", problem)
                last_problem = problem
            if self._network.version != ups:
                backoff.reset()  # the network came back during the attempt: try again now
                continue
            await self._pause(host, port, view, ups, backoff.next())

    async def _probe(self, host: str, port: int, ups: int) -> bytes:
        """The certificate at host:port; given up on when the network comes back after
        `ups`: an attempt begun while it was away hangs on lost packets until its time
        limit, while one begun now would answer at once."""
        probe = asyncio.ensure_future(
            probe_certificate(host, port, self._settings.handshake_timeout_s)
        )
        back = asyncio.ensure_future(self._network.wait(ups))
        try:
            await asyncio.wait([probe, back], return_when=asyncio.FIRST_COMPLETED)
        finally:
            back.cancel()
            gave_up = not probe.done()
            if gave_up:
                probe.cancel()  # its thread ends at its own time limit; nobody waits for it
        if gave_up:
            raise PeerUnavailableError(f"{target(host, port)}: the network came back; again")
        return probe.result()

    async def _park(self, host: str, port: int, view: int, ups: int) -> None:
        """Until the partial view changes, the address is heard of anew or the network
        comes back."""
        await self._pause(host, port, view, ups, None)

    async def _pause(self, host: str, port: int, view: int, ups: int, delay: float | None) -> None:
        """Until `delay` s passed (None: no limit), the address is heard of anew, the
        partial view changed after `view`, or the network came back after `ups`."""
        wake = self._wake.setdefault((host, port), asyncio.Event())
        wake.clear()
        waits = [
            asyncio.ensure_future(wake.wait()),
            asyncio.ensure_future(self._host.overlay.wait(view)),
            asyncio.ensure_future(self._network.wait(ups)),
        ]
        try:
            await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    async def _run_session(self, member: Member, der: bytes, host: str, port: int) -> bool:
        """Dial and serve one session; True if it got past the handshake."""
        s = self._settings
        channel = PeerChannel(
            self._host.identity,
            member.node_id,
            der,
            host,
            port,
            keepalive_s=s.keepalive_s,
            ping_timeout_s=s.ping_timeout_s,
            gossip=True,
        )
        self._channels.add(channel)
        try:
            session = Session(
                self._host,
                channel.gossip(),
                keepalive_s=s.keepalive_s,
                timeout_s=s.handshake_timeout_s,
            )
            await session.run()
            if session.crowded:
                self._host.overlay.crowded_out(member.node_id, time.monotonic())
            if session.removal is not None:
                await self._host.on_removal_notice(session.removal.records, member.node_id)
                return False
            if session.peer_hello is None:
                return False
            self._host.remember_address(member.node_id, host, port)
            return True
        finally:
            self._channels.discard(channel)
            await channel.close()

    def halt(self) -> None:
        """Stop dialling anyone (this node was removed from the mesh); open channels end
        with their sessions."""
        self._stopping = True
        if self._link_watch is not None:
            self._link_watch.cancel()
        current = asyncio.current_task()
        for task in self._addresses.values():
            if task is not current:
                task.cancel()

    async def drop(self, peer: NodeId) -> None:
        """Close every channel to `peer` (it is no longer a member)."""
        for channel in [c for c in self._channels if c.peer == peer]:
            await channel.close()
