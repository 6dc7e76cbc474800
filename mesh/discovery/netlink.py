"""Wake-ups when this machine's addresses change, from Linux's rtnetlink.

The address watcher polls; a netlink socket subscribed to address changes lets it look at
once when a lease changes or a laptop moves to another network, instead of at the next poll.
Where there is no netlink (macOS, Windows, a sandbox that forbids it) `open` says so and
polling alone does the work. Nothing is parsed: any message only means "look again".

`LinkUps` listens to the same socket family for the network coming back with the same
addresses (a cable plugged in again, Wi-Fi back in range, `ip link set up`): a link that is
running again or a route that appears. Only the message headers are read, to tell those
from the network going away, which wakes nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct

log = logging.getLogger(__name__)

# <linux/rtnetlink.h>: multicast groups of address (v4, v6) and link changes.
_RTMGRP_LINK = 0x1
_RTMGRP_IPV4_IFADDR = 0x10
_RTMGRP_IPV6_IFADDR = 0x100
_RTMGRP_IPV4_ROUTE = 0x40
_RTMGRP_IPV6_ROUTE = 0x400
# Message types (<linux/rtnetlink.h>) and the link flags that say "carries traffic".
_RTM_NEWLINK = 16
_RTM_NEWADDR = 20
_RTM_NEWROUTE = 24
_IFF_UP = 0x1
_IFF_RUNNING = 0x40
_NLMSG = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change


def came_up(data: bytes) -> bool:
    """Whether a datagram of rtnetlink messages reports the network coming (back) up: a link
    up and running, an address or a route added. Removals and links going down do not."""
    offset = 0
    while offset + _NLMSG.size <= len(data):
        length, kind, _, _, _ = _NLMSG.unpack_from(data, offset)
        if length < _NLMSG.size:
            return False  # malformed: stop rather than loop
        body = offset + _NLMSG.size
        if kind in (_RTM_NEWADDR, _RTM_NEWROUTE):
            return True
        if kind == _RTM_NEWLINK and body + _IFINFO.size <= len(data):
            flags = _IFINFO.unpack_from(data, body)[3]
            if flags & (_IFF_UP | _IFF_RUNNING) == _IFF_UP | _IFF_RUNNING:
                return True
        offset += (length + 3) & ~3  # messages are 4-byte aligned
    return False


class AddressWakeups:
    """An event set whenever the kernel reports an address or link change."""

    _GROUPS = _RTMGRP_LINK | _RTMGRP_IPV4_IFADDR | _RTMGRP_IPV6_IFADDR

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> bool:
        """Subscribe; False where netlink is unavailable (then callers poll)."""
        try:
            sock = self._socket()
            if sock is None:
                return False
            sock.setblocking(False)
        except OSError as exc:
            log.debug("no netlink address events (%s); polling only", exc)
            return False
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)
        return True

    def _socket(self) -> socket.socket | None:
        family = getattr(socket, "AF_NETLINK", None)
        if family is None:
            return None
        sock = socket.socket(family, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            sock.bind((0, self._GROUPS))
        except OSError:
            sock.close()
            raise
        return sock

    def _readable(self) -> None:
        assert self._sock is not None
        # Drain everything queued: one wake-up covers a burst (DHCP removes, then adds).
        wanted = False
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while data := self._sock.recv(65536):
                wanted = wanted or self._wanted(data)
        if wanted:
            self._event.set()

    def _wanted(self, data: bytes) -> bool:
        return True

    async def wait(self, limit_s: float | None) -> bool:
        """Wait for a change or `limit_s` seconds (None: no limit); True if a change was
        reported."""
        try:
            # asyncio.timeout: Python 3.11's wait_for can swallow a cancellation.
            async with asyncio.timeout(limit_s):
                await self._event.wait()
        except TimeoutError:
            return False
        self._event.clear()
        return True

    def forget(self) -> None:
        """Forget the changes reported so far (they are part of a burst already acted on)."""
        self._event.clear()

    def close(self) -> None:
        if self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
        self._sock = None


class LinkUps(AddressWakeups):
    """An event set when the kernel reports the network coming up: a link running again, a
    route or an address added (see `came_up`)."""

    _GROUPS = AddressWakeups._GROUPS | _RTMGRP_IPV4_ROUTE | _RTMGRP_IPV6_ROUTE

    def _wanted(self, data: bytes) -> bool:
        return came_up(data)
