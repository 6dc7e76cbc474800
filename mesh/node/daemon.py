"""The daemon: `mesh up`. Composition root of a running node.

It owns the task group every long-lived task belongs to, the store thread (SQLite is used
from that one thread only, so the event loop never blocks on disk and there is one writer),
the peer server, the control server and the peer manager. Shutdown stops accepting, drains
for a short grace period, then cancels, and closes the store last, all within a few seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import dataclasses
import ipaddress
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from mesh.config import Settings
from mesh.core.entries import IndexedEntry, Library
from mesh.core.epoch import Epoch
from mesh.core.errors import (
    InvalidArgumentError,
    MeshError,
)
from mesh.core.gossip import Batch
from mesh.core.ids import NodeId
from mesh.core.liveness import PresenceFrame
from mesh.core.membership import Member, Membership
from mesh.core.progress import ScanProgress
from mesh.core.replica import ApplyResult
from mesh.core.status import (
    MemberView,
    NodeStatus,
    PeerCheck,
    RemovalPlan,
)
from mesh.core.transfer import Chunk, FetchFilesRequest, FetchRequest, Manifest, ManifestRequest
from mesh.core.vector import VersionVector
from mesh.discovery.interfaces import addresses as local_addresses
from mesh.fs.borrowed import BorrowedFolder
from mesh.fs.lender_links import settle_lender_folders
from mesh.fs.scanner import Scope
from mesh.home import Home, HomeLock
from mesh.node import applying, member_changes, removal, roster
from mesh.node.agent import Agent
from mesh.node.cache import Cache
from mesh.node.changes import ChangeSignal
from mesh.node.channels import Channels
from mesh.node.control import ControlHandlers
from mesh.node.discovery import LanDiscovery
from mesh.node.early_control import EarlyControl
from mesh.node.joining import Joining
from mesh.node.lending import Lending
from mesh.node.liveness import Liveness
from mesh.node.local import LocalNode
from mesh.node.mount import Mounting
from mesh.node.opened import OpenedFiles
from mesh.node.overlay import Overlay
from mesh.node.peer_log import peer_log
from mesh.node.peers import PeerManager, SessionRegistry
from mesh.node.ratelimit import Limits
from mesh.node.reading import ReadSide
from mesh.node.scanning import Scanning
from mesh.node.serving import Serving
from mesh.node.session import Session
from mesh.node.watching import LibraryWatch
from mesh.security.identity import Identity
from mesh.transport.control_server import ControlServer
from mesh.transport.gossip_stream import GossipStream
from mesh.transport.peer_client import target
from mesh.transport.peer_server import PeerServer
from mesh.transport.tls import TrustStore
from mesh.wire.gossip import MAX_BATCH_RECORDS

if TYPE_CHECKING:
    from mesh.node.stream import Streams

log = logging.getLogger(__name__)
T = TypeVar("T")
_BATCHES_PER_PAGE = 4  # the session reads the next page while this one is sent


class Daemon:
    """A running node. Create, then `await run(stop)`; `started` is set once it listens."""

    def __init__(
        self,
        home: Home,
        settings: Settings,
        *,
        control: EarlyControl | None = None,
        lock: HomeLock | None = None,
    ) -> None:
        self.home = home
        self.settings = settings
        # `mesh up` opens the control socket before it builds the daemon, holding the
        # home's lock already (node/early_control.py); tests and others leave it to `run`.
        self._early = control
        self._held = lock
        self.started = asyncio.Event()
        self.changes = ChangeSignal()
        self.stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop `run` runs on
        self._store = cf.ThreadPoolExecutor(1, "mesh-store")
        self._reads = ReadSide()  # control calls' reads, beside the store thread's writes
        self._membership = Membership(root=NodeId(bytes(32)))
        self.started_at = time.monotonic()
        self.port = 0
        self._group: asyncio.TaskGroup | None = None
        self.acked: dict[NodeId, VersionVector] = {}
        # Records that became live here from gossip, over every session this daemon held (a
        # session's own count ends with it: a stream replaced mid-sync took its count along).
        self.records_applied = 0
        # When each member whose session ended was last heard from (wall clock ms).
        self.last_heard_ms: dict[NodeId, int] = {}
        self.local: LocalNode
        self.identity: Identity
        self.node_id: NodeId
        self.epoch: Epoch
        self._name = ""
        self.sessions: SessionRegistry
        self.trust: TrustStore
        self.server: PeerServer
        self.peers: PeerManager
        self.discovery = LanDiscovery(self)
        self.joining = Joining(self)
        self.scanning = Scanning(self)
        # Made here, not in _serve: sessions may open as soon as the server listens, and
        # `mesh status` may ask about the watch as soon as the control socket does.
        self.agent = Agent(self)
        self.watch = LibraryWatch(self, exclude=[str(settings.borrowed_path)])

    # -- store access --------------------------------------------------------------------

    async def store(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` on the store thread; if it wrote records, wake the gossip sessions."""
        loop = asyncio.get_running_loop()
        result, wrote = await loop.run_in_executor(self._store, self._counting, fn, args, kwargs)
        if wrote:
            self.changes.bump()
        return result

    def _counting(
        self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[T, bool]:
        records = getattr(getattr(self, "local", None), "records", None)
        before = records.writes if records is not None else 0
        result = fn(*args, **kwargs)
        records = getattr(getattr(self, "local", None), "records", None)
        return result, records is not None and records.writes != before

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(node, ...)` with a read-only `LocalNode` on the read thread (node/reading.py):
        for control calls, which must not wait behind the store thread's batches."""
        return await self._reads.run(fn, *args, **kwargs)

    def store_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the store thread from another worker thread, waiting for it."""
        result, wrote = self._store.submit(self._counting, fn, args, {}).result()
        if wrote:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self.changes.bump)
        return result

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        lock = self._held or HomeLock(self.home, "daemon")
        if self._held is None:
            lock.acquire_as_daemon()
        try:
            self.local = await self.store(LocalNode.open, self.home)
            try:
                await self._reads.open(self.home, self.local.identity, lambda: self._membership)
                try:
                    await self._serve(stop)
                finally:
                    await self._reads.close()
            finally:
                await self.store(self.local.close)
        finally:
            self._store.shutdown(wait=True)
            if self._held is None:
                lock.release()

    async def _serve(self, stop: asyncio.Event) -> None:
        s = self.settings
        self.identity = self.local.identity
        self.node_id = self.identity.node_id
        self.epoch = await self.store(lambda: self.local.state.epoch)
        self._name = await self.store(lambda: self.local.name)
        self.sessions = SessionRegistry(self.node_id)
        self.overlay = Overlay(
            self,
            grace_s=2 * s.handshake_timeout_s + s.keepalive_s,
            hold_s=max(s.reconnect_max_s, 2 * s.handshake_timeout_s),
            period_s=s.keepalive_s,
        )
        self.liveness = Liveness(self)
        self._membership = await self.store(lambda: self.local.membership)
        self.trust = TrustStore(self.identity, self._certificates())
        self.server = PeerServer(
            self,
            self.trust,
            host=s.listen,
            port=s.port,
            keepalive_s=s.keepalive_s,
            ping_timeout_s=s.ping_timeout_s,
        )
        self.port = await self.server.start()
        self.peers = PeerManager(self, s)
        self._lending = Lending(self.local)
        self._borrowed = await asyncio.to_thread(BorrowedFolder, s.borrowed_path)
        copies = await self.store(self._lending.book.copies)
        names = {m.node_id: m.name for m in self._membership.members.values()}
        lenders = [(c.lender_name, c.lender) for c in copies]
        await asyncio.to_thread(settle_lender_folders, s.borrowed_path, lenders, names)
        self.channels = Channels(self.identity, s, self.addresses_of, self.certificate_of)
        self.limits = Limits(s.limit)
        self.serving = Serving(self)
        # The mesh as a folder and streams (issue 21): opened files, the cache, the mount.
        self.opened = OpenedFiles(self)
        self.cache = Cache(self)
        self.mounting = Mounting(self)
        self.streams: Streams | None = None  # made at the first `mesh stream`
        # The handlers last: a call waiting at the gate may use any part (`loans`, the cache).
        control: ControlServer | EarlyControl
        if self._early is not None:
            control = self._early
            self._early.gate.attach(ControlHandlers(self))
        else:
            self.home.ensure()
            control = ControlServer(ControlHandlers(self), self.home.control_socket)
            await control.start()
        log.info(
            "node %s (%s) listening on port %d; control socket %s",
            self._name,
            self.node_id.short(),
            self.port,
            self.home.control_socket,
        )
        try:
            await self.publish_addresses()
            known = await self.store(self.local.addresses.all)
            gossiped = await self.store(self.local.gossiped_addresses)
            async with asyncio.TaskGroup() as tg:
                self._group = tg
                removed = await self.store(self.local.removal)
                if removed is None:
                    dial = [(h, p) for n, h, p in [*known, *gossiped] if self.is_member(n)]
                    self.peers.start(tg, dial, self.agent.peer_back)
                else:
                    log.warning("%s; not dialling the members", removal.describe(*removed))
                maintenance = tg.create_task(self._maintain(), name="maintenance")
                overlay = tg.create_task(self.overlay.run(), name="partial view")
                agent = tg.create_task(self.agent.run(), name="lending agent")
                watch = tg.create_task(self.watch.run(), name="library watch")
                cache = tg.create_task(self.cache.run(), name="cache of opened copies")
                await self.mounting.start()
                self.discovery.start()
                self.started.set()
                applying.freeze_heap()
                await stop.wait()
                log.info("stopping")
                maintenance.cancel()
                overlay.cancel()
                agent.cancel()
                watch.cancel()
                cache.cancel()
                await self.mounting.unmount(forget=False)
                if self.streams is not None:
                    await self.streams.stop()
                await self.discovery.stop()  # goodbyes first: the LAN forgets us at once
                await self.joining.close()
                self.scanning.cancel_all()
                await control.stop(s.shutdown_grace_s)
                await self._part_from_peers(s.shutdown_grace_s)
                await self.server.stop(s.shutdown_grace_s)
                await self.peers.stop()
                await self.channels.close()
        finally:
            await self.discovery.stop()  # idempotent; here for a crash inside the group
            if hasattr(self, "mounting"):
                await self.mounting.unmount(forget=False)  # idempotent too
            log.info("stopped")

    async def _part_from_peers(self, grace: float) -> None:
        """End every gossip stream from this side, telling each peer that this node stops,
        before the server stops: no call is left for gRPC to abort ("Aborting method ...
        due to server stop"), and no peer sees a broken stream."""
        self.peers.stop_dialling()
        self.stopping = True  # a member that dials now is told so at its hello
        sessions = self.sessions.all()
        for session in sessions:
            session.close(stopping=True)
        for name in self.sessions.unclosed():
            log.info("gossip stream with %s closed by this node", name)
        if sessions:
            await asyncio.wait(
                [asyncio.create_task(s.closed.wait()) for s in sessions], timeout=grace
            )

    # -- membership ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def membership(self) -> Membership:
        return self._membership

    def is_member(self, node_id: NodeId) -> bool:
        return node_id != self.node_id and self._membership.is_member(node_id)

    def was_removed(self, node_id: NodeId) -> bool:
        return node_id in self._membership.removed

    def member(self, node_id: NodeId) -> Member | None:
        return self._membership.members.get(node_id) if node_id != self.node_id else None

    def adopt(self, membership: Membership) -> None:
        """Hold `membership` as the mesh's now, and trust its certificates."""
        self._membership = membership
        self.trust.update(self._certificates())

    def _certificates(self) -> list[bytes]:
        # Removed nodes too: their handshake succeeds so that every call they make can be
        # refused with the records of their removal (node/removal.py), not a TLS error.
        m = self._membership
        removed = [m.certificates[n] for n in m.removed if n in m.certificates]
        return [*(member.certificate for member in m.members.values()), *removed]

    def session(self, node_id: NodeId) -> Session | None:
        return self.sessions.get(node_id)

    def member_ids(self) -> list[NodeId]:
        return list(self._membership.members)

    def open_sessions(self) -> list[Session]:
        return self.sessions.all()

    def remember_address(self, node_id: NodeId, host: str, port: int) -> None:
        """Note where a member was reached, so a restart finds it again (in the background)."""

        def write() -> None:
            self.local.remember_address(node_id, host, port, "reached")

        self._background(self.store(write))

    def _background(self, work: Awaitable[object]) -> None:
        async def run() -> None:
            try:
                await work
            except MeshError as exc:
                log.warning("%s", exc)

        if self._group is not None:
            self._group.create_task(run())

    async def reload_members(self) -> None:
        """Take the membership the records now say (node/member_changes.py)."""
        await member_changes.reload(self)

    async def admit(self, certificate: bytes, name: str) -> None:
        """Admit a node to the mesh (a signed admission record), and trust it now."""
        await self.store(self.local.admit, certificate, name)
        await self.reload_members()

    async def farewell(self, node_id: NodeId) -> list[bytes]:
        return await member_changes.farewell(self, node_id)

    async def on_removal_notice(self, records: tuple[bytes, ...], by: NodeId) -> None:
        await member_changes.learn_removal(self, records, by)

    async def check_member(self) -> None:
        """RemovedFromMeshError if this node was removed (for what needs the mesh)."""
        await self.store(removal.check_member, self.local)

    async def remove(self, node_id: NodeId) -> None:
        """Remove a member (a signed removal record): its open calls end now."""
        await self.store(self.local.remove_member, node_id)
        await self.reload_members()

    # -- joining -----------------------------------------------------------------------

    def advertised_hosts(self) -> tuple[str, ...]:
        """Where other nodes can reach this one (what invitations and records announce)."""
        listen = ipaddress.ip_address(self.settings.listen)
        if not listen.is_unspecified:
            return (str(listen),)
        # An IPv4 listener ("0.0.0.0") cannot be reached at this node's IPv6 addresses.
        found = local_addresses(self.settings.interfaces)
        return tuple(a.ip for a in found if listen.version == 6 or a.version == 4)

    async def publish_addresses(self) -> None:
        """Tell the mesh where this node listens (a record, written only if it changed), and
        claim its name if it has not yet (nodes that joined before claims existed)."""
        if await self.store(self.local.claim_name):
            await self.reload_members()
        await self.store(self.local.publish_addresses, self.advertised_hosts(), self.port)

    async def members(self) -> tuple[NodeId, list[MemberView]]:
        return await roster.member_views(self)

    async def browse(self, node: str | None, pattern: str | None) -> list[IndexedEntry]:
        return await self.read(LocalNode.browse, node, pattern)

    async def add_peer(self, host: str, port: int) -> PeerCheck:
        return await member_changes.add_peer(self, host, port)

    async def remove_named(
        self, name: str, keep: Sequence[str] = (), *, dry_run: bool = False
    ) -> RemovalPlan:
        return await member_changes.remove_named(self, name, keep, dry_run=dry_run)

    # -- gossip ------------------------------------------------------------------------

    async def our_vector(self) -> VersionVector:
        # Looked up at call time: joining a mesh replaces the replica.
        return await self.store(lambda: self.local.replica.vector())  # noqa: PLW0108

    async def batches_for(self, peer: VersionVector, max_bytes: int, most: int = 0) -> list[Batch]:
        def page() -> list[Batch]:
            batches = self.local.replica.missing(
                peer, max_bytes, relay_membership=False, max_records=MAX_BATCH_RECORDS
            )
            return list(itertools.islice(batches, most or _BATCHES_PER_PAGE))

        return await self.store(page)

    async def membership_for(self, peer: VersionVector) -> list[Batch]:
        return await self.store(lambda: list(self.local.replica.loose_membership(peer)))

    async def apply_all(
        self, batches: Sequence[Batch], peer: NodeId
    ) -> tuple[list[ApplyResult], VersionVector]:
        """Apply batches received from `peer`, in order, a few to a transaction
        (node/applying.py); the vector once all are committed."""
        results, vector, addresses = await self.store(
            applying.apply_in_groups, self.local, batches, peer
        )
        self.records_applied += sum(len(result.stored) for result in results)
        if any(result.membership_changed for result in results):
            await self.reload_members()
        for node_id, host, port in addresses:
            if self.is_member(node_id):
                self.peers.add_address(host, port)
        return results, vector

    async def _maintain(self) -> None:
        """Now and then: publish our vector if it lets tombstones go, and purge them; and
        summarize the peer log lines held back."""
        while True:
            await asyncio.sleep(self.settings.maintenance_interval_s)

            def work() -> int:
                self.local.replica.publish_vector()
                return len(self.local.replica.purge())

            purged = await self.store(work)
            peer_log.flush()  # the "N more like this" of floods that have stopped
            if purged:
                log.info("purged %d tombstones every member has seen", purged)

    # -- lending -------------------------------------------------------------------------

    @property
    def lending(self) -> Lending:
        return self._lending

    @property
    def borrowed(self) -> BorrowedFolder:
        return self._borrowed

    def certificate_of(self, node_id: NodeId) -> bytes | None:
        member = self.member(node_id)
        return member.certificate if member is not None else None

    async def addresses_of(self, node_id: NodeId) -> list[tuple[str, int]]:
        """Where to dial a member: gossiped addresses first, then where it was reached."""
        local = self.local

        def work() -> list[tuple[str, int]]:
            found = list(self.peers.addresses_of(node_id))  # answered as that node lately
            found += [(h, p) for n, h, p in local.gossiped_addresses() if n == node_id]
            found += [(h, p) for n, h, p in local.addresses.all() if n == node_id]
            return list(dict.fromkeys(found))

        return await self.store(work)

    async def manifest(self, peer: NodeId, request: ManifestRequest) -> Manifest:
        return await self.serving.manifest(peer, request)

    def fetch(self, peer: NodeId, request: FetchRequest) -> AsyncIterator[Chunk]:
        return self.serving.fetch(peer, request)

    def fetch_files(self, peer: NodeId, request: FetchFilesRequest) -> AsyncIterator[list[bytes]]:
        return self.serving.fetch_files(peer, request)

    def rescan_soon(self, library: str) -> None:
        """A lent file changed under us: index it again (in the background)."""

        async def rescan() -> None:
            async for _ in self.scan([library]):
                pass

        self._background(rescan())

    # -- sessions ------------------------------------------------------------------------

    def admit_session(self, session: Session) -> bool:
        if self.stopping or not self.is_member(session.peer) or not self.sessions.admit(session):
            return False
        self.agent.peer_back()
        self.overlay.admitted(session)
        return True

    def announce(self, session: Session) -> bool:
        news = self.sessions.announce(session)
        self.liveness.session_opened(session)
        self.overlay.sessions_changed()
        return news

    def on_presence(self, session: Session, frame: PresenceFrame) -> None:
        self.liveness.on_presence(session, frame)

    def release(self, session: Session) -> bool:
        if session.peer_vector is not None:
            # What it holds, for `mesh peers` while it is away.
            self.acked[session.peer] = session.acked
            quiet_s = time.monotonic() - session.last_heard
            self.last_heard_ms[session.peer] = int((time.time() - quiet_s) * 1000)
        ends_reunion = self.sessions.release(session)
        self.liveness.sessions_changed()
        self.overlay.sessions_changed()
        return ends_reunion

    async def on_gossip(self, peer: NodeId, stream: GossipStream) -> None:
        s = self.settings
        session = Session(self, stream, keepalive_s=s.keepalive_s, timeout_s=s.handshake_timeout_s)
        await session.run()

    # -- local work ----------------------------------------------------------------------

    async def status(self) -> NodeStatus:
        uptime = time.monotonic() - self.started_at
        found = await self.read(LocalNode.status, port=self.port, uptime_s=uptime, running=True)
        watched, polled = self.watch.watched(), self.watch.polled
        rescans = "rescans" if self.settings.rescan_interval_s > 0 else ""
        return dataclasses.replace(
            found,
            addresses=tuple(target(h, self.port) for h in self.advertised_hosts()),
            libraries=tuple(
                dataclasses.replace(
                    lib,
                    watch="polling"
                    if lib.name in polled
                    else "events"
                    if lib.name in watched and self.settings.watch
                    else rescans,
                )
                for lib in found.libraries
            ),
        )

    async def stream(self, spec: str) -> str:
        """`mesh stream NODE:LIBRARY/PATH`: a URL on 127.0.0.1 that serves the file."""
        listed = await self.mounting.listed(spec)
        if self.streams is None:
            try:
                from mesh.node.stream import Streams
            except ImportError as exc:
                raise InvalidArgumentError(
                    "streaming needs aiohttp: `pip install 'mesh[mount]'`"
                ) from exc
            self.streams = Streams(self.opened)
        return await self.streams.url_for(listed)

    async def libraries(self) -> list[Library]:
        return await self.store(self.local.index.libraries)

    async def scan_quietly(self, scopes: dict[str, Scope]) -> ScanProgress:
        return await self.scanning.scan_quietly(scopes)

    def scan(
        self, names: list[str], scopes: dict[str, Scope] | None = None
    ) -> AsyncIterator[ScanProgress]:
        return self.scanning.scan(names, scopes)


__all__ = ["Daemon"]
