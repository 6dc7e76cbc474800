"""The network coming back wakes every redial loop at once (node/link_watch.py, node/peers.py).

Netlink is replaced by a datagram socket pair the test writes rtnetlink messages into; what
reads and classifies them, the watcher, and the peer manager's redial loop with its backoff
are the real ones. The "peer" is a loopback listener that refuses every TLS handshake, so
each dial is one accepted connection."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

from mesh.config import Settings
from mesh.discovery import netlink
from mesh.discovery.netlink import LinkUps, came_up
from mesh.node.changes import ChangeSignal
from mesh.node.link_watch import LinkWatch
from mesh.node.peers import PeerManager
from mesh.security import identity

RTM_NEWLINK, RTM_DELLINK, RTM_NEWROUTE, RTM_DELROUTE = 16, 17, 24, 25
UP_RUNNING, DOWN = 0x1 | 0x40, 0x0


def message(kind: int, flags: int = 0) -> bytes:
    """One rtnetlink message: a header and, for a link message, its ifinfomsg."""
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 1, 2, flags, 0xFFFFFFFF)
    if kind in (RTM_NEWROUTE, RTM_DELROUTE):
        body = bytes(12)  # an rtmsg; its fields are not read
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_only_the_network_coming_up_counts() -> None:
    assert came_up(message(RTM_NEWLINK, UP_RUNNING))
    assert came_up(message(RTM_NEWROUTE))
    assert came_up(message(RTM_DELLINK, DOWN) + message(RTM_NEWROUTE))  # one datagram, two
    assert not came_up(message(RTM_NEWLINK, 0x1))  # up but no carrier yet
    assert not came_up(message(RTM_NEWLINK, DOWN))
    assert not came_up(message(RTM_DELLINK, DOWN) + message(RTM_DELROUTE))
    assert not came_up(b"\x00" * 8)  # short, malformed: ignored


class FakeNetlink(LinkUps):
    """The kernel's end of netlink is the test's end of a socket pair."""

    def __init__(self) -> None:
        super().__init__()
        self.kernel, self._ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)

    def _socket(self) -> socket.socket:
        return self._ours


class Overlay:
    changed = ChangeSignal()

    async def wait(self, view: int) -> int:
        await asyncio.Event().wait()
        return view


class Host:
    def __init__(self) -> None:
        self.identity = identity.generate()
        self.overlay = Overlay()

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the redial loop asked for {name}")


async def test_a_link_coming_up_redials_at_once_once_per_burst() -> None:
    dials = asyncio.Queue[None]()

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        dials.put_nowait(None)
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # The backoff alone would wait at least an hour before the second dial.
    peers = PeerManager(Host(), Settings.for_tests(reconnect_min_s=3600.0, reconnect_max_s=3600.0))  # type: ignore[arg-type]
    fake = FakeNetlink()
    watch = LinkWatch(peers.network_up, fake)
    try:
        async with asyncio.timeout(20), asyncio.TaskGroup() as group:
            watcher = group.create_task(watch.run())
            peers.start(group, [("127.0.0.1", port)])
            await dials.get()  # the first dial failed: the loop waits out its backoff
            fake.kernel.send(message(RTM_NEWLINK, DOWN))  # the network going away wakes none
            # A burst: link up and running, its routes back, a second link message.
            for data in [RTM_NEWLINK, RTM_NEWROUTE, RTM_NEWROUTE, RTM_NEWLINK]:
                fake.kernel.send(message(data, UP_RUNNING))
            await dials.get()
            assert watch.bursts == 1
            assert dials.empty()
            # The next burst dials once more.
            fake.kernel.send(message(RTM_NEWROUTE))
            await dials.get()
            assert watch.bursts == 2
            await peers.stop()
            watcher.cancel()
    finally:
        server.close()
        fake.kernel.close()


def test_link_ups_listen_to_links_and_routes() -> None:
    groups = LinkUps._GROUPS
    assert groups & netlink._RTMGRP_LINK
    assert groups & netlink._RTMGRP_IPV4_ROUTE and groups & netlink._RTMGRP_IPV6_ROUTE


async def test_an_attempt_under_way_when_the_network_comes_back_is_made_again() -> None:
    """A dial begun while the network was away hangs on lost packets until its time limit;
    the network coming back ends it and dials again at once."""
    dials = asyncio.Queue[asyncio.StreamWriter]()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        dials.put_nowait(writer)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = Settings.for_tests(handshake_timeout_s=3600.0)  # the attempt would hang an hour
    peers = PeerManager(Host(), settings)  # type: ignore[arg-type]
    fake = FakeNetlink()
    watch = LinkWatch(peers.network_up, fake)
    held = []
    try:
        async with asyncio.timeout(20), asyncio.TaskGroup() as group:
            watcher = group.create_task(watch.run())
            peers.start(group, [("127.0.0.1", port)])
            held.append(await dials.get())  # the handshake waits for an answer
            fake.kernel.send(message(RTM_NEWLINK, UP_RUNNING))
            held.append(await dials.get())
            await peers.stop()
            watcher.cancel()
    finally:
        for writer in held:
            writer.close()
        server.close()
        fake.kernel.close()
