"""The address watch (discovery/mdns.py): a restart of mDNS on new addresses that fails is
tried again soon, not at the next poll a minute later, and the mesh is told once it works.

Nothing is sent: the interfaces and the restart are the test's, so no zeroconf runs here."""

from __future__ import annotations

import asyncio

import pytest

from mesh.core.ids import NodeId
from mesh.discovery import mdns
from mesh.discovery.interfaces import LocalAddress

OLD = [LocalAddress(interface="eth0", ip="10.0.0.3", version=4)]
NEW = [LocalAddress(interface="eth0", ip="10.0.0.200", version=4)]


async def test_a_failed_restart_on_new_addresses_is_retried_and_then_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mdns, "_RETRY_S", 0.05)
    monkeypatch.setattr(mdns, "_SETTLE_S", 0.0)
    now = [OLD]
    monkeypatch.setattr(mdns, "addresses", lambda *a, **k: now[0])
    told: list[list[str]] = []
    was_told = asyncio.Event()

    def tell(now: list[str]) -> None:
        told.append(now)
        was_told.set()

    watch = mdns.MdnsDiscovery(
        node_id=NodeId(b"\x01" * 32),
        port=6374,
        interfaces=("eth0",),
        on_hint=lambda hint: None,
        on_addresses_changed=tell,
        watch_interval_s=3600.0,  # only events and retries wake it
    )
    watch._addresses = OLD
    tries: list[list[LocalAddress]] = []

    async def restart(addrs: list[LocalAddress]) -> None:
        tries.append(addrs)
        watch._addresses = addrs
        if len(tries) < 3:
            raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(watch, "_restart", restart)
    task = asyncio.create_task(watch._watch_addresses())
    try:
        now[0] = NEW
        watch._wakeups._event.set()  # what netlink does when the address changes
        async with asyncio.timeout(5):
            await was_told.wait()
    finally:
        task.cancel()
    assert tries == [NEW, NEW, NEW]
    assert told == [["10.0.0.200"]]
