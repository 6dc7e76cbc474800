"""Gossip between real daemons over mutual TLS on 127.0.0.1: what one node shares reaches
the others through whoever is online, membership travels the same way, a returning node
catches up with only what changed, and a node that lost its database converges again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import xxhash

from mesh.core.entries import IndexedEntry
from mesh.core.ids import NodeId
from mesh.node.daemon import Daemon
from mesh.node.local import LocalNode
from tests.node.conftest import NodeHandle, mesh_of, wait_for

Make = Callable[[str], NodeHandle]


def running(h: NodeHandle) -> Daemon:
    assert h.daemon is not None
    return h.daemon


async def share_and_scan(h: NodeHandle, folder: Path, name: str = "lib") -> None:
    d = running(h)
    await d.store(d.local.share, str(folder), name)
    await scan(h, name)


async def scan(h: NodeHandle, name: str = "lib") -> None:
    async for _ in running(h).scan([name]):
        pass


async def browse(h: NodeHandle, node: str | None = None) -> list[IndexedEntry]:
    d = running(h)
    return await d.store(d.local.browse, node, None)


def known(entries: list[IndexedEntry]) -> dict[str, bytes]:
    return {f"{i.node}:{i.entry.library}/{i.entry.path}": i.entry.hash for i in entries}


def received(h: NodeHandle) -> int:
    return sum(s.records_received for s in running(h).sessions.all())


async def eventually(h: NodeHandle, what: str, check: Callable[[dict[str, bytes]], bool]) -> None:
    """Wait (with a deadline) until `h`'s view of the mesh passes `check`."""
    view: dict[str, bytes] = {}

    async def poll() -> bool:
        nonlocal view
        view = known(await browse(h))
        return check(view)

    deadline = time.monotonic() + 10
    while not await poll():
        assert time.monotonic() < deadline, f"{h.name}: {what}; it sees {sorted(view)}"
        await asyncio.sleep(0.05)


def chain(nodes: Make) -> tuple[NodeHandle, NodeHandle, NodeHandle]:
    """a admits b, b admits c (offline, as invite/join would): a has never heard of c."""
    a, b, c = nodes("a"), nodes("b"), nodes("c")
    mesh_of(a, b)
    with b.local() as node:
        node.admit(*c.identity())
        records = list(node.records.membership())
        root = node.membership.root
    with c.local() as node:
        node.join_mesh(root, records)
    return a, b, c


async def start_chain(a: NodeHandle, b: NodeHandle, c: NodeHandle) -> None:
    """c first, b knowing only c, a knowing only b."""
    await c.start()
    await b.start(static_peers=(c.address,))
    await a.start(static_peers=(b.address,))


async def test_a_file_shared_on_c_reaches_a_through_b(nodes: Make, tmp_path: Path) -> None:
    a, b, c = chain(nodes)
    await start_chain(a, b, c)
    c_id = running(c).node_id
    # a learns of c's admission (written by b) by gossip, and trusts c without a restart.
    await wait_for(lambda: running(a).is_member(c_id), what="a to learn that c is a member")
    folder = tmp_path / "c-files"
    folder.mkdir()
    (folder / "heat.mkv").write_bytes(os.urandom(300_000))
    await share_and_scan(c, folder)
    digest = xxhash.xxh3_128_digest((folder / "heat.mkv").read_bytes())
    await eventually(a, "c's file with its hash", lambda v: v.get("c:lib/heat.mkv") == digest)
    _, members = await running(a).members()
    assert {m.name for m in members} == {"a", "b", "c"}
    # c's gossiped addresses let a dial c directly: a holds sessions with both.
    await wait_for(lambda: running(a).session(c_id) is not None, what="a to reach c directly")


async def test_a_returning_node_catches_up_without_a_full_resend(
    nodes: Make, tmp_path: Path
) -> None:
    a, b, c = chain(nodes)
    await start_chain(a, b, c)
    folder = tmp_path / "b-files"
    folder.mkdir()
    for i in range(200):
        (folder / f"f{i:03}.bin").write_bytes(os.urandom(64))
    await share_and_scan(b, folder)
    await eventually(c, "b's 200 files", lambda v: sum(k.startswith("b:") for k in v) == 200)
    await c.halt()
    (folder / "f007.bin").write_bytes(b"changed while c was away")
    await scan(b)
    await c.start()
    digest = xxhash.xxh3_128_digest(b"changed while c was away")
    await eventually(c, "the changed file", lambda v: v.get("b:lib/f007.bin") == digest)
    # It was told what changed, not the 200 entries again (a few other records move too:
    # addresses, vectors).
    assert received(c) < 20, f"c received {received(c)} records to catch up"
    await eventually(a, "the changed file", lambda v: v.get("b:lib/f007.bin") == digest)


async def test_a_node_that_lost_its_database_rejoins_with_a_new_epoch(
    nodes: Make, tmp_path: Path
) -> None:
    a, b, c = chain(nodes)
    await start_chain(a, b, c)
    old = tmp_path / "c-old"
    old.mkdir()
    (old / "gone.txt").write_bytes(b"only the old epoch had this")
    await share_and_scan(c, old)
    await eventually(a, "c's first file", lambda v: "c:lib/gone.txt" in v)
    c_id = running(c).node_id
    await c.halt()
    old_epoch = await _epoch_seen(a, c_id)
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{c.home.database}{suffix}")
    node, result = LocalNode.init(c.home, "c")  # same identity, new store, new epoch
    node.close()
    assert result.node_id == c_id
    # It rejoins (as `mesh join` would, through b) and shares a folder again.
    records = await running(b).store(lambda: list(running(b).local.records.membership()))
    with c.local() as node:
        node.join_mesh(running(b).membership.root, records)
    await c.start(static_peers=(b.address,))
    new = tmp_path / "c-new"
    new.mkdir()
    (new / "kept.txt").write_bytes(b"the new epoch")
    await share_and_scan(c, new)

    def converged(view: dict[str, bytes]) -> bool:
        return "c:lib/kept.txt" in view and "c:lib/gone.txt" not in view

    for h in (a, b):
        await eventually(h, "c's new epoch only", converged)
    assert await _epoch_seen(a, c_id) > old_epoch


async def _epoch_seen(h: NodeHandle, origin: NodeId) -> object:
    vector = await running(h).our_vector()
    clock = vector.get(origin)
    assert clock is not None
    return clock.epoch
