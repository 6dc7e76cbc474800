"""LAN discovery for the daemon: mDNS hints go to the peer manager, invitations are announced.

Theory of operation. With mDNS on (setting `node.mdns`, off with `mesh up --no-mdns` and in
the test preset), the daemon starts an `MdnsDiscovery` once its peer server listens. Every
announcement found is a hint: "a node that claims id X may be at these addresses". A claim of
a member's id goes to the peer manager, which proves it with a TLS handshake against the
member's certificate before it trusts anything. A claim of any other id is held, not dialled
(strangers on the LAN cost nothing), and looked at again when the replica changes: that node
may be joining right now. When this node's own addresses change, the mDNS side re-announces
and this re-gossips the addresses record; sessions over the old address end by keepalive and
the peer manager dials again. An open invitation is announced as `_mesh-pair._tcp` while it
is open, so that `mesh join CODE` finds it without an address.

With mDNS off, or when it cannot start, every method is a no-op and `find_invitation` says
how to give the address instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

from mesh.config import Settings
from mesh.core.errors import InvalidArgumentError, MeshError
from mesh.core.ids import NodeId
from mesh.discovery import invitations
from mesh.discovery.hints import Hint
from mesh.discovery.mdns import MdnsDiscovery
from mesh.node.changes import ChangeSignal
from mesh.node.peers import PeerManager

log = logging.getLogger(__name__)

_MAX_WAITING = 256  # claims of non-members held at once: a hostile LAN cannot grow it
_STOP_S = 2.0
_START_S = 10.0


class DiscoveryHost(Protocol):
    node_id: NodeId
    port: int
    settings: Settings
    changes: ChangeSignal
    peers: PeerManager

    def is_member(self, node_id: NodeId) -> bool: ...

    async def publish_addresses(self) -> None: ...


class LanDiscovery:
    def __init__(self, host: DiscoveryHost) -> None:
        self._host = host
        self._mdns: MdnsDiscovery | None = None
        self._waiting: dict[NodeId, Hint] = {}
        self._announced: dict[NodeId, Hint] = {}  # every node heard of, members or not
        self._tasks: set[asyncio.Task[None]] = set()
        self._pairing = 0  # which invitation is announced: a late withdrawal spares a newer one
        self._started = asyncio.Event()  # set once starting succeeded or failed

    @property
    def running(self) -> bool:
        return self._mdns is not None

    def start(self) -> None:
        """Start in the background: zeroconf takes about a second to set up, and the node
        serves its peers and the CLI meanwhile."""
        if not self._host.settings.mdns:
            log.info("mDNS is off: only static, remembered and gossiped addresses are dialled")
            return
        self._spawn(self._start(), "discovery: start")

    async def _start(self) -> None:
        try:
            await self._start_mdns()
        finally:
            self._started.set()

    async def _ready(self) -> MdnsDiscovery | None:
        """The running discovery, once it started (an invitation made at once waits for it)."""
        if self._host.settings.mdns:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._started.wait(), _START_S)
        return self._mdns

    async def _start_mdns(self) -> None:
        s = self._host.settings
        mdns = MdnsDiscovery(
            node_id=self._host.node_id,
            port=self._host.port,
            interfaces=s.interfaces,
            ipv6=ipaddress.ip_address(s.listen).version == 6,
            on_hint=self._on_hint,
            on_addresses_changed=self._on_addresses_changed,
        )
        try:
            await mdns.start()
        except asyncio.CancelledError:  # stopped while starting: withdraw what went out
            with contextlib.suppress(Exception):
                await asyncio.wait_for(mdns.stop(), _STOP_S)
            raise
        except Exception as exc:  # zeroconf's errors are OSErrors and its own tree
            log.warning(
                "mDNS cannot start (%s): other nodes will not find this one on the LAN; "
                "`mesh doctor` says more",
                exc,
            )
            with contextlib.suppress(Exception):
                await mdns.stop()
            return
        self._mdns = mdns
        self._spawn(self._recheck_waiting(), "discovery: joining nodes")

    async def stop(self) -> None:
        """Withdraw the announcements (others see it within half a second) and stop."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        mdns, self._mdns = self._mdns, None
        if mdns is not None:
            try:
                await asyncio.wait_for(mdns.stop(), _STOP_S)
            except Exception as exc:
                log.warning("mDNS did not stop cleanly: %s", exc)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        # Owned here, not by the daemon's task group: `stop` cancels them before the
        # announcements go, and one that fails is logged, never taking the daemon down.
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("discovery: %s failed: %s", task.get_name(), exc)

    # -- hints -------------------------------------------------------------------------

    def _on_hint(self, hint: Hint) -> None:
        if hint.node_id is None:
            log.debug("mDNS: %s announces no node id; ignored", ", ".join(hint.hosts))
            return
        if hint.node_id in self._announced or len(self._announced) < _MAX_WAITING:
            self._announced[hint.node_id] = hint
        if not self._host.is_member(hint.node_id):
            if hint.node_id in self._waiting or len(self._waiting) < _MAX_WAITING:
                self._waiting[hint.node_id] = hint
            log.debug("mDNS: %s is not a member (yet); not dialled", hint.node_id.short())
            return
        self._dial(hint)

    def _dial(self, hint: Hint) -> None:
        log.debug("mDNS: %s may be at %s", hint.node_id, ", ".join(hint.hosts))
        for host in hint.hosts:
            self._host.peers.add_address(host, hint.port)

    async def _recheck_waiting(self) -> None:
        changes = self._host.changes
        version = changes.version
        while True:
            version = await changes.wait(version)
            for node_id, hint in list(self._waiting.items()):
                if self._host.is_member(node_id):
                    del self._waiting[node_id]
                    self._dial(hint)

    def _on_addresses_changed(self, now: list[str]) -> None:
        log.info("this node's addresses are now %s; telling the mesh", ", ".join(now) or "none")
        self._spawn(self._publish(), "discovery: publish addresses")

    async def _publish(self) -> None:
        try:
            await self._host.publish_addresses()
        except MeshError as exc:
            log.warning("cannot publish the new addresses: %s", exc)

    # -- invitations -------------------------------------------------------------------

    async def invitation_opened(self, port: int, nameplate: int, closed: asyncio.Event) -> bool:
        """Announce an invitation's pairing listener and its code's number until `closed`
        is set; whether it is announced."""
        mdns = await self._ready()
        if mdns is None or closed.is_set():
            return False
        self._pairing += 1
        try:
            await mdns.advertise_pairing(port, nameplate)
        except Exception as exc:
            log.warning("cannot announce the invitation on the LAN (%s); use --at", exc)
            return False
        self._spawn(self._withdraw_when(closed, self._pairing), "discovery: invitation")
        return True

    async def _withdraw_when(self, closed: asyncio.Event, token: int) -> None:
        await closed.wait()
        if self._mdns is not None and self._pairing == token:
            await self._mdns.withdraw_pairing()

    async def find_invitation(self, nameplate: int) -> list[tuple[str, int]]:
        """Where the open invitations for a code with this number listen, best first
        (`mesh join` without `--at`)."""
        mdns = await self._ready()
        if mdns is None:
            why = "is off on this node" if not self._host.settings.mdns else "could not start"
            raise InvalidArgumentError(
                f"mDNS {why}, so the invitation cannot be found on the LAN; give the inviting "
                "computer's address: mesh join CODE --at HOST"
            )
        found = await mdns.invitations(invitations.FIND_WAIT_S, nameplate)
        return invitations.places(found, nameplate)

    def desks(self) -> list[tuple[str, int]]:
        """Where the nodes heard of on the LAN would answer for a closed invitation."""
        return invitations.desks(list(self._announced.values()))
