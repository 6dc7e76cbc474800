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
import logging
import socket
from collections.abc import Callable, Sequence

from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from mesh.core.errors import InvalidArgumentError
from mesh.core.gossip import PROTOCOL_VERSION
from mesh.core.ids import NodeId
from mesh.discovery.hints import Hint
from mesh.discovery.interfaces import LocalAddress, addresses

log = logging.getLogger(__name__)

SERVICE = "_mesh._tcp.local."
PAIR_SERVICE = "_mesh-pair._tcp.local."
_RESOLVE_MS = 3000


def _packed(addrs: Sequence[LocalAddress]) -> list[bytes]:
    out = []
    for a in addrs:
        ip = a.ip.split("%", 1)[0]
        family = socket.AF_INET6 if a.version == 6 else socket.AF_INET
        out.append(socket.inet_pton(family, ip))
    return out


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
        on_hint: Callable[[Hint], None],
        on_addresses_changed: Callable[[list[str]], None] | None = None,
        watch_interval_s: float = 5.0,
    ) -> None:
        self._node_id = node_id
        self._port = port
        self._interfaces = tuple(interfaces)
        self._on_hint = on_hint
        self._on_addresses_changed = on_addresses_changed
        self._watch_interval_s = watch_interval_s
        self._found: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._pair_info: AsyncServiceInfo | None = None
        self._addresses: list[LocalAddress] = []
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def instance(self) -> str:
        return f"mesh-{self._node_id.short().lower()}.{SERVICE}"

    def current_addresses(self) -> list[str]:
        return [a.ip for a in self._addresses]

    def _service_info(self) -> AsyncServiceInfo:
        return AsyncServiceInfo(
            SERVICE,
            self.instance,
            addresses=_packed(self._addresses),
            port=self._port,
            properties={"id": str(self._node_id), "v": str(PROTOCOL_VERSION)},
            server=f"mesh-{self._node_id.short().lower()}.local.",
        )

    async def start(self) -> None:
        self._addresses = addresses(self._interfaces)
        if not self._addresses:
            log.warning("mDNS: no usable interface addresses; discovery waits for one")
        bind = [a.ip.split("%", 1)[0] for a in self._addresses if a.version == 4]
        # Only the chosen interfaces' addresses: never every interface by default.
        self._zc = AsyncZeroconf(interfaces=bind or ["127.0.0.1"], ip_version=IPVersion.V4Only)
        self._info = self._service_info()
        await self._zc.async_register_service(self._info, allow_name_change=True)
        self._browser = AsyncServiceBrowser(
            self._zc.zeroconf, SERVICE, handlers=[self._on_state_change]
        )
        self._tasks = [
            asyncio.create_task(self._resolve_found(), name="mdns resolve"),
            asyncio.create_task(self._watch_addresses(), name="mdns addresses"),
        ]
        log.info("mDNS: announcing on %s", ", ".join(self.current_addresses()) or "nothing")

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
            hosts = tuple(info.parsed_scoped_addresses())
            claimed = parse_txt(info.properties)
            if claimed == self._node_id or not hosts:
                continue
            self._on_hint(Hint(hosts=hosts, port=info.port, node_id=claimed, source="mdns"))

    async def _watch_addresses(self) -> None:
        """Re-announce when this machine's addresses change (new Wi-Fi, new lease, resume)."""
        while True:
            await asyncio.sleep(self._watch_interval_s)
            now = addresses(self._interfaces)
            if now == self._addresses or self._zc is None:
                continue
            log.info(
                "mDNS: addresses changed from %s to %s",
                ", ".join(a.ip for a in self._addresses) or "none",
                ", ".join(a.ip for a in now) or "none",
            )
            await self._restart(now)
            if self._on_addresses_changed is not None:
                self._on_addresses_changed(self.current_addresses())

    async def _restart(self, now: list[LocalAddress]) -> None:
        # zeroconf binds its sockets to addresses: a new address needs a new instance.
        browser, zc = self._browser, self._zc
        self._browser = self._zc = None
        if browser is not None:
            await browser.async_cancel()
        if zc is not None:
            with contextlib.suppress(Exception):
                await zc.async_unregister_all_services()
            await zc.async_close()
        self._addresses = now
        bind = [a.ip.split("%", 1)[0] for a in now if a.version == 4]
        self._zc = AsyncZeroconf(interfaces=bind or ["127.0.0.1"], ip_version=IPVersion.V4Only)
        self._info = self._service_info()
        await self._zc.async_register_service(self._info, allow_name_change=True)
        self._browser = AsyncServiceBrowser(
            self._zc.zeroconf, SERVICE, handlers=[self._on_state_change]
        )
        if self._pair_info is not None:
            port = self._pair_info.port or 0
            self._pair_info = None
            await self.advertise_pairing(port)

    async def advertise_pairing(self, port: int) -> None:
        """Announce an open invitation's pairing listener (until `withdraw_pairing`)."""
        if self._zc is None:
            return
        self._pair_info = AsyncServiceInfo(
            PAIR_SERVICE,
            f"mesh-{self._node_id.short().lower()}.{PAIR_SERVICE}",
            addresses=_packed(self._addresses),
            port=port,
            properties={"v": str(PROTOCOL_VERSION)},
            server=f"mesh-{self._node_id.short().lower()}.local.",
        )
        await self._zc.async_register_service(self._pair_info, allow_name_change=True)

    async def withdraw_pairing(self) -> None:
        if self._zc is not None and self._pair_info is not None:
            with contextlib.suppress(Exception):
                await self._zc.async_unregister_service(self._pair_info)
        self._pair_info = None

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._browser is not None:
            await self._browser.async_cancel()
        if self._zc is not None:
            with contextlib.suppress(Exception):
                await self._zc.async_unregister_all_services()
            await self._zc.async_close()
        self._zc = None


async def find_pairing(interfaces: Sequence[str], wait_s: float) -> list[tuple[str, int]]:
    """Open invitations announced on the LAN: (host, port) of each pairing listener."""
    local = addresses(interfaces)
    bind = [a.ip.split("%", 1)[0] for a in local if a.version == 4]
    zc = AsyncZeroconf(interfaces=bind or ["127.0.0.1"], ip_version=IPVersion.V4Only)
    names: asyncio.Queue[str] = asyncio.Queue()

    def found(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Added:
            names.put_nowait(name)

    browser = AsyncServiceBrowser(zc.zeroconf, PAIR_SERVICE, handlers=[found])
    results: list[tuple[str, int]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while not results and loop.time() < deadline:
            try:
                name = await asyncio.wait_for(names.get(), deadline - loop.time())
            except TimeoutError:
                break
            info = AsyncServiceInfo(PAIR_SERVICE, name)
            if await info.async_request(zc.zeroconf, _RESOLVE_MS) and info.port:
                results.extend((h, info.port) for h in info.parsed_scoped_addresses())
    finally:
        await browser.async_cancel()
        await zc.async_close()
    return results
