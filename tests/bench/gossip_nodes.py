"""Nodes, records and counters the gossip benchmarks share (tests/bench/bench_gossip.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from mesh.config import Settings
from mesh.core.gossip import Batch
from mesh.core.ids import NodeId
from mesh.core.vector import VersionVector
from mesh.home import Home
from mesh.node.daemon import Daemon
from mesh.node.local import LocalNode
from mesh.store.index import FileRow, ScanBatch
from mesh.v1 import gossip_pb2
from mesh.wire import gossip as wire_gossip
from mesh.wire.gossip import MAX_BATCH_RECORDS
from tests.node.conftest import NodeHandle

LIBRARY = "photos"
PAGE_BYTES = 1 << 20
# No pings during a measurement: they are a few dozen bytes a second that (c) would count.
# No watching: the benchmark writes its nodes' indexes itself.
QUIET = {
    "keepalive_s": 30.0,
    "ping_timeout_s": 10.0,
    "maintenance_interval_s": 3600.0,
    "watch": False,
}


# -- nodes ---------------------------------------------------------------------------------


class Node(NodeHandle):
    """A real daemon in this process (tests/node/conftest.py), as the benchmark drives it."""

    @property
    def d(self) -> Daemon:
        assert self.daemon is not None
        return self.daemon


def make_node(root: Path, name: str) -> Node:
    home = Home.resolve(root / name)
    node, _ = LocalNode.init(home, name)
    node.close()
    return Node(home=home, name=name, settings=Settings.for_tests())


def row(i: int, version: int = 0) -> FileRow:
    """A plausible photo entry: (path, size, mtime_ns, inode, hash, chunk root)."""
    return (
        f"2024/{i // 1000:03d}/IMG_{i:06d}.jpg",
        3_000_000 + i + version,
        1_700_000_000_000_000_000 + i * 1_000_000 + version,
        1_000_000 + i,
        (i * 2 + 1 + version * 7919).to_bytes(16, "big"),
        (i * 3 + 2 + version * 7919).to_bytes(16, "big"),
    )


def seed(node: Node, folder: Path, entries: int) -> None:
    """Share a library and write `entries` entries into its index before the daemon runs:
    each takes the node's next sequence number, as a scan's would, so it is a real record."""
    folder.mkdir(parents=True, exist_ok=True)
    with node.local() as local:
        local.share(str(folder), LIBRARY)
        step = 20_000
        for start in range(0, entries, step):
            rows = [row(i) for i in range(start, min(entries, start + step))]
            local.index.apply(LIBRARY, ScanBatch(new=rows))
    # The entries have no files behind them: with the folder there, the scan a node makes of
    # its libraries at start would find them all gone and sync deletions instead (it did,
    # in one round of three, racing the sync). A missing root is left as it is indexed.
    folder.rmdir()


async def write_entry(node: Node, i: int, version: int) -> int:
    """Write (or rewrite) entry `i` on a running node; returns the seq it took."""
    d = node.d
    rows = [row(i, version)]

    def work() -> int:
        d.local.index.apply(LIBRARY, ScanBatch(changed=rows))
        clock = d.local.replica.clock(d.node_id)
        assert clock is not None
        return clock.seq

    return await d.store(work)


async def until(
    condition: Callable[[], Any], within: float, what: str, every: float = 0.002
) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(every)


async def until_holds(node: Node, origin: NodeId, seq: int, within: float) -> float:
    """Wait until `node` holds `origin`'s records through `seq`; returns when (monotonic).

    Woken by the node's change signal (every store write bumps it), so no polling delay."""
    d = node.d
    deadline = time.monotonic() + within
    while True:
        version = d.changes.version
        clock = await d.store(d.local.replica.clock, origin)
        if clock is not None and clock.seq >= seq:
            return time.monotonic()
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{node.name} never got {origin.short()} through {seq}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(d.changes.wait(version), min(left, 0.05))


# -- bytes on the wire ---------------------------------------------------------------------


def tcp_counters(port: int) -> dict[tuple[int, int], tuple[int, int]]:
    """(bytes sent, bytes received) of every established TCP socket whose local port is
    `port` (the server side of each connection into it), keyed by (local, remote) port."""
    out = subprocess.run(
        ["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found: dict[tuple[int, int], tuple[int, int]] = {}
    blocks = re.split(r"\n(?=\S)", out.strip())
    for block in blocks:
        head = re.match(r"\s*\d+\s+\d+\s+\S+:(\d+)\s+\S+:(\d+)", block)
        if head is None:
            continue
        sent = re.search(r"bytes_sent:(\d+)", block)
        received = re.search(r"bytes_received:(\d+)", block)
        found[int(head[1]), int(head[2])] = (
            int(sent[1]) if sent else 0,
            int(received[1]) if received else 0,
        )
    return found


@dataclass(frozen=True)
class Traffic:
    a_to_b: int
    b_to_a: int

    @property
    def total(self) -> int:
        return self.a_to_b + self.b_to_a


def traffic(a: Node, b: Node) -> Traffic:
    """TCP payload bytes between two nodes, over the connections either dialled (as seen from
    each one's listening side: nothing else connects to them in this benchmark)."""
    a_to_b = b_to_a = 0
    for sent, received in tcp_counters(a.d.port).values():
        a_to_b, b_to_a = a_to_b + sent, b_to_a + received
    for sent, received in tcp_counters(b.d.port).values():
        a_to_b, b_to_a = a_to_b + received, b_to_a + sent
    return Traffic(a_to_b, b_to_a)


def delta(after: Traffic, before: Traffic) -> Traffic:
    return Traffic(after.a_to_b - before.a_to_b, after.b_to_a - before.b_to_a)


async def settled(a: Node, b: Node, within: float = 10.0, quiet_s: float = 0.3) -> Traffic:
    """Wait until no byte has moved between `a` and `b` for `quiet_s`; the counters then."""
    deadline = time.monotonic() + within
    last, since = traffic(a, b), time.monotonic()
    while time.monotonic() - since < quiet_s:
        if time.monotonic() > deadline:
            raise TimeoutError(f"traffic between {a.name} and {b.name} never settled")
        await asyncio.sleep(0.05)
        now = traffic(a, b)
        if now != last:
            last, since = now, time.monotonic()
    return last


def codec_seconds(batches: list[Batch]) -> float:
    """Serialize every batch as a gossip frame and parse it back into core values (the
    envelopes, not what their bodies hold): the protobuf work any sync of these records
    over this wire format cannot skip."""
    started = time.perf_counter()
    for batch in batches:
        data = wire_gossip.to_wire(batch).SerializeToString()
        frame = wire_gossip.from_wire(gossip_pb2.GossipFrame.FromString(data), decode_entries=False)
        assert isinstance(frame, Batch)
    return time.perf_counter() - started


def serve_node(home: str, conn: Connection) -> None:
    """A child process's whole life: run the node at `home` until told to stop, after
    telling the parent its port and its own clock's seq."""
    logging.basicConfig(level="ERROR")

    async def life() -> None:
        node = Node(home=Home.resolve(Path(home)), name="a", settings=Settings.for_tests())
        d = await node.start(**QUIET)
        conn.send((d.port, (await d.our_vector())[d.node_id].seq))
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await node.halt()

    asyncio.run(life())


# -- report --------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float], scale: float = 1.0, unit: str = "") -> str:
    if len(values) < 2:
        return ""
    return f" [{min(values) * scale:.3g}-{max(values) * scale:.3g}{unit}]"


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


async def own_batches_running(node: Node) -> list[Batch]:
    d = node.d

    def work() -> list[Batch]:
        return list(
            d.local.replica.missing(
                VersionVector(), PAGE_BYTES, relay_membership=False, max_records=MAX_BATCH_RECORDS
            )
        )

    return await d.store(work)
