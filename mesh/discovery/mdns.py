"""mDNS discovery with zeroconf's asyncio API: announce this node, browse for others.

Announced as `<name>._mesh._tcp.local.` with a TXT record of only the node id and the
protocol version, on the chosen interfaces' addresses. Browse callbacks only enqueue; a task
resolves what they found and hands each result on as a Hint. A peer that vanishes without
unregistering is noticed by its gRPC stream, never by mDNS lifetimes (zeroconf keeps a
killed node's records for about 20 minutes). An open invitation is announced separately as
`_mesh-pair._tcp.local.` while it lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from mesh.core.errors import InvalidArgumentError
from mesh.core.gossip import PROTOCOL_VERSION
from mesh.core.ids import NodeId
from mesh.discovery.hints import Hint, PairingHint
from mesh.discovery.interfaces import LocalAddress, addresses
from mesh.discovery.invitations import MAX_NODES_ASKED
from mesh.discovery.netlink import AddressWakeups

log = logging.getLogger(__name__)

SERVICE = "_mesh._tcp.local."
PAIR_SERVICE = "_mesh-pair._tcp.local."
_RESOLVE_MS = 3000
_NETLINK_POLL_S = 60.0
_RETRY_S = 2.0  # after a restart on new addresses failed
_SETTLE_S = 0.5  # after a netlink wake-up: DHCP removes the old address, then adds the new
_MORE_INVITATIONS_S = 0.3  # after one with the code's number: is there a second one?


def _packed(addrs: Sequence[LocalAddress]) -> list[bytes]:
    out = []
    for a in addrs:
        ip = a.ip.split("%", 1)[0]
        family = socket.AF_INET6 if a.version == 6 else socket.AF_INET
        out.append(socket.inet_pton(family, ip))
    return out


def _bind_addresses(addrs: Sequence[LocalAddress]) -> list[str]:
    # zeroconf joins the multicast group on these: only the chosen interfaces, never every
    # interface by default. Loopback when there is none yet keeps the instance usable until
    # the address watcher sees a real address and restarts it.
    return [a.ip for a in addrs if a.version == 4] or ["127.0.0.1"]


def _zeroconf(addrs: Sequence[LocalAddress]) -> AsyncZeroconf:
    return AsyncZeroconf(interfaces=_bind_addresses(addrs), ip_version=IPVersion.V4Only)


def _dialable(host: str) -> bool:
    """Whether an announced address can be dialled: a link-local IPv6 address needs the scope
    of the interface it was heard on, which zeroconf leaves out when it heard it over IPv4."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return "%" in host or not (ip.version == 6 and ip.is_link_local)


def parse_nameplate(properties: dict[bytes, bytes | None]) -> int | None:
    """The invitation's nameplate a pairing TXT record claims, or None."""
    raw = properties.get(b"n")
    if not raw or len(raw) > 3 or not raw.isdigit():
        return None
    return int(raw)


def parse_txt(properties: dict[bytes, bytes | None]) -> NodeId | None:
    """The node id a TXT record claims, or None if it is missing or malformed."""
    raw = properties.get(b"id")
    if not raw or len(raw) > 80:
        return None
    try:
        return NodeId.parse(raw.decode("ascii"))
    except (UnicodeDecodeError, InvalidArgumentError):
        return None


class MdnsDiscovery:
    def __init__(
        self,
        *,
        node_id: NodeId,
        port: int,
        interfaces: Sequence[str],
        ipv6: bool = True,
        on_hint: Callable[[Hint], None],
        on_addresses_changed: Callable[[list[str]], None] | None = None,
        watch_interval_s: float = 5.0,
    ) -> None:
        self._node_id = node_id
        self._port = port
        self._interfaces = tuple(interfaces)
        self._ipv6 = ipv6  # False when the node listens on IPv4 only: announce no IPv6
        self._on_hint = on_hint
        self._on_addresses_changed = on_addresses_changed
        self._watch_interval_s = watch_interval_s
        self._found: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._pair_port: int | None = None
        self._pair_nameplate = 0
        self._pair_info: AsyncServiceInfo | None = None
        # zeroconf goes on announcing a registered service for ~0.5 s after registering it;
        # an announcement sent after the goodbye would show a withdrawn invitation for its
        # whole TTL, so the withdrawal stops it first (and waits for a registration still
        # probing: the lock).
        self._pair_broadcast: asyncio.Future[Any] | None = None
        self._pair_lock = asyncio.Lock()
        self._addresses: list[LocalAddress] = []
        self._wakeups = AddressWakeups()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def _label(self) -> str:
        return f"mesh-{self._node_id.short().lower()}"

    @property
    def instance(self) -> str:
        return f"{self._label}.{SERVICE}"

    def current_addresses(self) -> list[str]:
        return [a.ip for a in self._addresses]

    def _service_info(
        self, service: str, port: int, properties: dict[str, str]
    ) -> AsyncServiceInfo:
        return AsyncServiceInfo(
            service,
            f"{self._label}.{service}",
            addresses=_packed([a for a in self._addresses if self._ipv6 or a.version == 4]),
            port=port,
            properties=properties,
            server=f"{self._label}.local.",
        )

    async def start(self) -> None:
        self._addresses = addresses(self._interfaces)
        if not self._addresses:
            log.warning("mDNS: no usable interface addresses; discovery waits for one")
        await self._open()
        if self._wakeups.open():
            # Netlink says when addresses change: polling is only the safety net, and an
            # idle daemon need not walk its interfaces every few seconds.
            self._watch_interval_s = max(self._watch_interval_s, _NETLINK_POLL_S)
        self._tasks = [
            asyncio.create_task(self._resolve_found(), name="mdns resolve"),
            asyncio.create_task(self._watch_addresses(), name="mdns addresses"),
        ]
        log.info("mDNS: announcing on %s", ", ".join(self.current_addresses()) or "nothing")

    async def _open(self) -> None:
        zc = _zeroconf(self._addresses)
        self._zc = zc
        info = self._service_info(
            SERVICE, self._port, {"id": str(self._node_id), "v": str(PROTOCOL_VERSION)}
        )
        await zc.async_register_service(info, allow_name_change=True)
        self._browser = AsyncServiceBrowser(zc.zeroconf, SERVICE, handlers=[self._on_state_change])
        async with self._pair_lock:  # a withdrawal meanwhile waits, then finds it
            if self._pair_port is not None:
                await self._register_pairing(self._pair_port, self._pair_nameplate)

    async def _close(self) -> None:
        browser, zc = self._browser, self._zc
        self._browser = self._zc = None
        self._pair_info = None
        broadcast, self._pair_broadcast = self._pair_broadcast, None
        if broadcast is not None:
            broadcast.cancel()
        if browser is not None:
            await browser.async_cancel()
        if zc is not None:
            # Goodbye packets: other nodes drop this one's records within half a second.
            with contextlib.suppress(Exception):
                await zc.async_unregister_all_services()
            await zc.async_close()

    def _on_state_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        # Adapters only enqueue: resolving and deciding happen in our own task.
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            self._found.put_nowait((service_type, name))

    async def _resolve_found(self) -> None:
        while True:
            service_type, name = await self._found.get()
            if name == self.instance or self._zc is None:
                continue
            info = AsyncServiceInfo(service_type, name)
            try:
                ok = await info.async_request(self._zc.zeroconf, _RESOLVE_MS)
            except Exception as exc:
                log.debug("mDNS: cannot resolve %s: %s", name, exc)
                continue
            if not ok or not info.port:
                continue
            hosts = tuple(h for h in info.parsed_scoped_addresses() if _dialable(h))
            claimed = parse_txt(info.properties)
            if claimed == self._node_id or not hosts:
                continue
            self._on_hint(Hint(hosts=hosts, port=info.port, node_id=claimed, source="mdns"))

    async def _watch_addresses(self) -> None:
        """Re-announce when this machine's addresses change (new Wi-Fi, new lease, resume)."""
        failed = False  # the last restart failed: zeroconf is down until one works
        while True:
            # After a failed restart, try again soon: no event may come to say it would
            # work now (the address that vanished came back), and the next poll is a minute.
            wait_s = _RETRY_S if failed else self._watch_interval_s
            if await self._wakeups.wait(wait_s):
                await asyncio.sleep(_SETTLE_S)
            now = addresses(self._interfaces)
            if now == self._addresses and not failed:
                continue
            if now != self._addresses:
                log.info(
                    "mDNS: addresses changed from %s to %s",
                    ", ".join(a.ip for a in self._addresses) or "none",
                    ", ".join(a.ip for a in now) or "none",
                )
            try:
                await self._restart(now)
            except Exception as exc:  # an address that vanished again
                if not failed:
                    log.warning("mDNS: cannot announce on the new addresses yet: %s", exc)
                failed = True
                continue
            failed = False
            if self._on_addresses_changed is not None:
                self._on_addresses_changed(self.current_addresses())

    async def _restart(self, now: list[LocalAddress]) -> None:
        # zeroconf binds its sockets to addresses: new addresses need a new instance.
        await self._close()
        self._addresses = now
        await self._open()

    async def advertise_pairing(self, port: int, nameplate: int) -> None:
        """Announce an open invitation's pairing listener and its code's public number
        (until `withdraw_pairing`)."""
        async with self._pair_lock:
            await self._unregister_pairing()  # one invitation at a time: a new one replaces
            self._pair_port, self._pair_nameplate = port, nameplate
            if self._zc is not None:
                await self._register_pairing(port, nameplate)

    async def _register_pairing(self, port: int, nameplate: int) -> None:
        assert self._zc is not None
        info = self._service_info(
            PAIR_SERVICE, port, {"v": str(PROTOCOL_VERSION), "n": str(nameplate)}
        )
        announcing = await self._zc.async_register_service(info, allow_name_change=True)
        self._pair_broadcast = asyncio.ensure_future(announcing)
        self._pair_info = info

    async def withdraw_pairing(self) -> None:
        self._pair_port = None
        async with self._pair_lock:
            await self._unregister_pairing()

    async def _unregister_pairing(self) -> None:
        info, self._pair_info = self._pair_info, None
        broadcast, self._pair_broadcast = self._pair_broadcast, None
        if broadcast is not None and not broadcast.done():
            broadcast.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await broadcast
        if self._zc is not None and info is not None:
            with contextlib.suppress(Exception):
                await self._zc.async_unregister_service(info)

    async def invitations(self, wait_s: float, nameplate: int) -> list[PairingHint]:
        """Open invitations announced on the LAN, looked for until one with `nameplate`
        turns up or `wait_s` seconds passed."""
        if self._zc is None:
            return []
        own = f"{self._label}.{PAIR_SERVICE}"
        found = await _browse_invitations(self._zc, wait_s, nameplate, skip=own)
        return [hint for hint in found if hint.instance != own]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._wakeups.close()
        await self._close()


@dataclass(frozen=True, slots=True)
class _Found:
    name: str
    hosts: tuple[str, ...]
    port: int
    properties: dict[bytes, bytes | None]


async def _browse(
    zc: AsyncZeroconf,
    service: str,
    wait_s: float,
    *,
    enough: Callable[[_Found], bool],
    most: int = 256,
    skip: str = "",
) -> list[_Found]:
    """Browse `service` and resolve what turns up: what was found `wait_s` seconds later,
    or a moment after `enough` said so of one (a second one may follow), or `most` of them."""
    names: asyncio.Queue[str] = asyncio.Queue()

    def found(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            names.put_nowait(name)

    browser = AsyncServiceBrowser(zc.zeroconf, service, handlers=[found])
    results: dict[str, _Found] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    try:
        while (left := deadline - loop.time()) > 0 and len(results) < most:
            try:
                name = await asyncio.wait_for(names.get(), left)
            except TimeoutError:
                break
            if name == skip:
                continue
            info = AsyncServiceInfo(service, name)
            if not await info.async_request(zc.zeroconf, _RESOLVE_MS) or not info.port:
                continue
            hosts = tuple(h for h in info.parsed_scoped_addresses() if _dialable(h))
            if hosts:
                results[name] = one = _Found(name, hosts, info.port, dict(info.properties))
                if enough(one):
                    deadline = min(deadline, loop.time() + _MORE_INVITATIONS_S)
    finally:
        await browser.async_cancel()
    return list(results.values())


async def _browse_invitations(
    zc: AsyncZeroconf, wait_s: float, nameplate: int, skip: str = ""
) -> list[PairingHint]:
    """Browse `_mesh-pair._tcp`: what was found once an invitation for `nameplate` turned
    up (plus a moment, for a second one with the same number), or after `wait_s`."""
    found = await _browse(
        zc,
        PAIR_SERVICE,
        wait_s,
        enough=lambda f: parse_nameplate(f.properties) == nameplate,
        skip=skip,
    )
    return [
        PairingHint(
            instance=f.name, hosts=f.hosts, port=f.port, nameplate=parse_nameplate(f.properties)
        )
        for f in found
    ]


async def find_pairing(
    interfaces: Sequence[str], wait_s: float, nameplate: int
) -> list[PairingHint]:
    """Open invitations on the LAN, from a process that runs no discovery (the CLI)."""
    zc = _zeroconf(addresses(interfaces))
    try:
        return await _browse_invitations(zc, wait_s, nameplate)
    finally:
        await zc.async_close()


async def _browse_nodes(zc: AsyncZeroconf, wait_s: float) -> list[Hint]:
    """The nodes announced on the LAN within `wait_s` seconds (`_mesh._tcp`)."""
    found = await _browse(zc, SERVICE, wait_s, enough=lambda f: False, most=MAX_NODES_ASKED)
    return [
        Hint(hosts=f.hosts, port=f.port, node_id=parse_txt(f.properties), source="mdns")
        for f in found
    ]


async def find_nodes(interfaces: Sequence[str], wait_s: float) -> list[Hint]:
    """The nodes announced on the LAN, from a process that runs no discovery (the CLI)."""
    zc = _zeroconf(addresses(interfaces))
    try:
        return await _browse_nodes(zc, wait_s)
    finally:
        await zc.async_close()
