"""(a) of the gossip benchmark with each node in a process of its own: the figures of issue
19 (time, wire bytes, control answers during the sync, the receiver's peak RSS)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from mesh.config import Settings
from mesh.core.ids import NodeId
from mesh.home import Home
from mesh.wire import envelope as wire_envelope
from tests.bench.gossip_nodes import (
    QUIET,
    Node,
    Traffic,
    codec_seconds,
    make_node,
    med,
    own_batches_running,
    seed,
    serve_node,
    spread,
    tcp_counters,
    until_holds,
    verdict,
)
from tests.node.conftest import mesh_of


def receive_node(home: str, holder: str, origin: bytes, seq: int, conn: Connection) -> None:
    """A child process's whole life as the receiving node: start fresh, dial `holder`,
    tell the parent when it started and when it held `origin`'s records through `seq`
    (monotonic clock, which is the same in every process), then wait to be told to stop."""
    logging.basicConfig(level="ERROR")

    async def life() -> None:
        node = Node(home=Home.resolve(Path(home)), name="b", settings=Settings.for_tests())
        started = time.monotonic()
        await node.start(static_peers=(holder,), **QUIET)
        conn.send(("started", started))
        done = await until_holds(node, NodeId(origin), seq, within=600)
        conn.send(("done", done, await taken_and_held(node, NodeId(origin))))
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await node.halt()

    asyncio.run(life())


async def taken_and_held(node: Node, origin: NodeId) -> tuple[int, int]:
    """(records taken from gossip over all of `node`'s sessions, records of `origin` its
    store holds): a session's own count ends with it, so summing the open ones missed
    what a stream replaced during the sync had taken ("983,040 of 1,000,002" at 1M)."""
    d = node.d

    def held() -> int:
        (count,) = d.local.db.conn.execute(
            "SELECT count(*) FROM records WHERE origin_id = "
            "(SELECT id FROM origins WHERE origin = ?)",
            (origin.raw,),
        ).fetchone()
        return int(count)

    return d.records_applied, await d.store(held)


def served_records(database: Path, origin: NodeId) -> int:
    """Records a running holder serves of its own: its entries and its other records."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        (entries,) = conn.execute("SELECT count(*) FROM entries").fetchone()
        (others,) = conn.execute(
            "SELECT count(*) FROM records WHERE origin_id = "
            "(SELECT id FROM origins WHERE origin = ?)",
            (origin.raw,),
        ).fetchone()
    finally:
        conn.close()
    return int(entries) + int(others)


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """Each thread's CPU time so far, by thread id, from /proc: which stage of a pipeline
    (event loop, store thread, the workers reading batches) is the busy one."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # a thread that ended
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def busy_threads(before: dict[int, float], after: dict[int, float]) -> str:
    spent = {tid: after[tid] - before.get(tid, 0.0) for tid in sorted(after)}
    return " ".join(f"{tid}:{s:.2f}" for tid, s in spent.items() if s >= 0.01)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def control_latencies(socket: Path, stop: Callable[[], bool]) -> list[float]:
    """Status calls on a control socket, one after another, until `stop()`: each's time."""
    from mesh.transport.control_client import ControlClient

    client = ControlClient(socket)
    took: list[float] = []
    try:
        while not stop():
            started = time.monotonic()
            client.status()
            took.append(time.monotonic() - started)
            time.sleep(0.01)
    finally:
        client.close()
    return took


@dataclass
class ApartResult:
    seconds: float
    wire: Traffic
    records: int
    held: int  # records of the holder the receiver's store holds at the end
    expected: int  # records the holder serves
    peak_rss_mb: float
    control_s: list[float]  # Status calls to the receiver during the sync
    cpu_s: tuple[float, float]  # CPU seconds of the holder and the receiver during the sync


async def initial_sync_apart(root: Path, entries: int, tag: str) -> ApartResult:
    """(a) with each node in a process of its own, as two machines would be: the holder
    serves, the receiver starts fresh and syncs, while this process asks the receiver's
    control socket for its status over and over and reads its peak RSS from /proc."""
    a, b = make_node(root, f"a{tag}"), make_node(root, f"b{tag}")
    mesh_of(a, b)
    seed(a, root / f"files-a{tag}", entries)
    with a.local() as local:
        a_id = local.node_id
    context = multiprocessing.get_context("spawn")
    loop = asyncio.get_running_loop()
    parent, child = context.Pipe()
    holder = context.Process(target=serve_node, args=(str(a.home.root), child))
    holder.start()
    receiver = None
    try:
        port, target_seq = await asyncio.wait_for(loop.run_in_executor(None, parent.recv), 60)
        expected = served_records(a.home.database, a_id)
        to_b, at_b = context.Pipe()
        receiver = context.Process(
            target=receive_node,
            args=(str(b.home.root), f"127.0.0.1:{port}", a_id.raw, target_seq, at_b),
        )
        receiver.start()
        _, started = await asyncio.wait_for(loop.run_in_executor(None, to_b.recv), 60)
        assert holder.pid is not None and receiver.pid is not None
        cpu_before = cpu_seconds(holder.pid), cpu_seconds(receiver.pid)
        finished = False
        asking = loop.run_in_executor(
            None, control_latencies, b.home.control_socket, lambda: finished
        )
        threads = thread_cpu_seconds(holder.pid), thread_cpu_seconds(receiver.pid)
        _, done, (received, held) = await loop.run_in_executor(None, to_b.recv)
        finished = True
        if os.environ.get("MESH_BENCH_TRACE"):
            print(
                "        CPU seconds by thread id: holder",
                busy_threads(threads[0], thread_cpu_seconds(holder.pid)),
                "| receiver",
                busy_threads(threads[1], thread_cpu_seconds(receiver.pid)),
            )
        cpu = (
            cpu_seconds(holder.pid) - cpu_before[0],
            cpu_seconds(receiver.pid) - cpu_before[1],
        )
        control_s = await asking
        assert receiver.pid is not None
        rss = peak_rss_mb(receiver.pid)
        counters = tcp_counters(port)
        wire = Traffic(sum(c[0] for c in counters.values()), sum(c[1] for c in counters.values()))
        to_b.send("stop")
        await loop.run_in_executor(None, receiver.join, 30)
    finally:
        parent.send("stop")
        await loop.run_in_executor(None, holder.join, 30)
        if receiver is not None and receiver.is_alive():
            receiver.kill()
    return ApartResult(
        seconds=done - started,
        wire=wire,
        records=received,
        held=held,
        expected=expected,
        peak_rss_mb=rss,
        control_s=control_s,
        cpu_s=cpu,
    )


async def apart_sync(
    root: Path, args: argparse.Namespace, codec_s: float | None, envelope_bytes: int | None
) -> bool:
    """(a) between two processes, the figures of issue 19 with their targets, beside the
    same run's baseline: the same batches serialized and parsed alone."""
    runs: list[ApartResult] = []
    codec: list[float] = [] if codec_s is None else [codec_s]
    for r in range(args.rounds):
        runs.append(await initial_sync_apart(root, args.entries, f"-apart-{r}"))
        if envelope_bytes is None:
            # Only this part runs: the baseline from the holder's records, read as it serves them.
            envelope_bytes, base = await batches_baseline(root / f"a-apart-{r}")
            codec.append(base)
    assert envelope_bytes is not None
    times = [x.seconds for x in runs]
    wire = [x.wire.total / envelope_bytes for x in runs]
    slowest = [max(x.control_s, default=0.0) for x in runs]
    rss = [x.peak_rss_mb for x in runs]
    time_target = 1.0 if args.entries <= 100_000 else 10.0 * args.entries / 1_000_000
    print(
        f"    two processes  {med(times):7.3f} s{spread(times)}   (each node in a process of "
        f"its own; records taken {runs[0].records:,}, held {runs[0].held:,} of "
        f"{runs[0].expected:,})   target <= {time_target:g} s: "
        f"{verdict(med(times) <= time_target)}"
    )
    print(
        f"      baseline     {med(codec):7.3f} s   serialize + parse the same batches alone; "
        f"ratio sync/baseline {med(times) / med(codec):.2f}"
    )
    print(
        f"      wire         {med(wire):.3f}x the envelopes{spread(wire)}   target <= 1.05x: "
        f"{verdict(med(wire) <= 1.05)}"
    )
    typical = [med(x.control_s) if x.control_s else 0.0 for x in runs]
    print(
        f"      control      slowest Status answer during the sync {med(slowest) * 1000:.0f} ms"
        f"{spread(slowest, 1000, ' ms')}, median {med(typical) * 1000:.0f} ms "
        f"({sum(len(x.control_s) for x in runs)} calls)   "
        f"target <= 100 ms: {verdict(max(slowest) <= 0.1)}"
    )
    if os.environ.get("MESH_BENCH_TRACE"):
        for x in runs:
            print("        answers (ms):", " ".join(f"{s * 1000:.0f}" for s in x.control_s))
    held_cpu = [x.cpu_s[0] for x in runs]
    took_cpu = [x.cpu_s[1] for x in runs]
    print(
        f"      CPU          holder {med(held_cpu):.2f} s{spread(held_cpu, unit=' s')}, "
        f"receiver {med(took_cpu):.2f} s{spread(took_cpu, unit=' s')} during the sync "
        "(steadier than times on a shared machine)"
    )
    million = verdict(med(rss) <= 150) if args.entries >= 1_000_000 else "n/a"
    print(
        f"      receiver     peak RSS {med(rss):.0f} MB{spread(rss, unit=' MB')}   target "
        f"(1M entries) <= 150 MB: {million}"
    )
    return med(times) <= time_target and med(wire) <= 1.05 and max(slowest) <= 0.1


async def batches_baseline(home: Path) -> tuple[int, float]:
    """(envelope bytes, serialize + parse seconds) of the batches a node at `home` serves."""
    node = Node(home=Home.resolve(home), name="a", settings=Settings.for_tests())
    await node.start(**QUIET)
    try:
        frozen = await own_batches_running(node)
    finally:
        await node.halt()
    envs = [e for batch in frozen for e in batch.envelopes]
    return sum(len(wire_envelope.to_bytes(e)) for e in envs), codec_seconds(frozen)
