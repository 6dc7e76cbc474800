"""Wake-ups when this machine's addresses change, from Linux's rtnetlink.

The address watcher polls; a netlink socket subscribed to address changes lets it look at
once when a lease changes or a laptop moves to another network, instead of at the next poll.
Where there is no netlink (macOS, Windows, a sandbox that forbids it) `open` says so and
polling alone does the work. Nothing is parsed: any message only means "look again".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

log = logging.getLogger(__name__)

# <linux/rtnetlink.h>: multicast groups of address (v4, v6) and link changes.
_RTMGRP_LINK = 0x1
_RTMGRP_IPV4_IFADDR = 0x10
_RTMGRP_IPV6_IFADDR = 0x100


class AddressWakeups:
    """An event set whenever the kernel reports an address or link change."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> bool:
        """Subscribe; False where netlink is unavailable (then callers poll)."""
        family = getattr(socket, "AF_NETLINK", None)
        if family is None:
            return False
        try:
            sock = socket.socket(family, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            sock.bind((0, _RTMGRP_LINK | _RTMGRP_IPV4_IFADDR | _RTMGRP_IPV6_IFADDR))
            sock.setblocking(False)
        except OSError as exc:
            log.debug("no netlink address events (%s); polling only", exc)
            return False
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)
        return True

    def _readable(self) -> None:
        assert self._sock is not None
        # Drain everything queued: one wake-up covers a burst (DHCP removes, then adds).
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while self._sock.recv(65536):
                pass
        self._event.set()

    async def wait(self, limit_s: float) -> bool:
        """Wait for a change or `limit_s` seconds; True if a change was reported."""
        try:
            # asyncio.timeout: Python 3.11's wait_for can swallow a cancellation.
            async with asyncio.timeout(limit_s):
                await self._event.wait()
        except TimeoutError:
            return False
        self._event.clear()
        return True

    def close(self) -> None:
        if self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
        self._sock = None
