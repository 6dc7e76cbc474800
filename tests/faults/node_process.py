"""A node's daemon for the fault tests, in its own process: what `mesh up` runs, with the
test preset's timings (Settings.for_tests) and settings given as JSON, so a test can SIGKILL
it, restart it, and run it inside a namespace of a simulated LAN.

The fault-injection hooks of the test build make the process exit at once (exit code 17,
no cleanup of any kind, as after SIGKILL) at a chosen point:
`--die-at STEP[:NAME]`: when placing a borrowed file (named NAME) reaches STEP
(mesh/fs/borrowed.py names the steps);
`--die-in-scan-commit N`: in the Nth commit of a scan, its rows written, before COMMIT;
`--die-in-gossip-batch N`: likewise in the Nth applied write of a gossip batch of at least
`BIG_BATCH` records (smaller writes are the node's own bookkeeping). So that a few thousand
files make several of those, `--scan-commit-every N` (files) and `--gossip-batch-bytes N`
shrink the scanner's commits and the gossip batches this node sends.

    python -m tests.faults.node_process HOME '{"listen": "10.1.2.3"}' [--die-at synced]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mesh.config import Settings
from mesh.fs import borrowed, scanner
from mesh.home import Home
from mesh.node import allocator, logs, session
from mesh.node.daemon import Daemon
from mesh.node.local import LocalNode
from mesh.store.index import LibraryIndex
from mesh.store.records import SqliteReplicaStore

DIED = 17  # the exit code of a process stopped by a hook
BIG_BATCH = 50


def _die_at(where: str) -> None:
    step, _, name = where.partition(":")
    placing = threading.local()  # the file whose placing runs in this thread
    original = borrowed.BorrowedFolder.place

    def place(self: borrowed.BorrowedFolder, key: str, parts: Any, *args: Any, **kw: Any) -> Any:
        placing.name = parts[-1]
        try:
            return original(self, key, parts, *args, **kw)
        finally:
            placing.name = None

    def hook(at: str) -> None:
        if at == step and name in ("", getattr(placing, "name", None)):
            os._exit(DIED)

    borrowed.BorrowedFolder.place = place  # type: ignore[method-assign]
    borrowed._fault_hook = hook


def _die_in(cls: Any, method: str, n: int, counts: Callable[..., bool]) -> None:
    """Exit inside the `n`th call of `cls.method` that `counts`, after it returns (its
    writes are in the open transaction) and before the caller commits."""
    original = getattr(cls, method)
    seen = 0

    def dying(*args: Any, **kwargs: Any) -> Any:
        nonlocal seen
        result = original(*args, **kwargs)
        if counts(*args, **kwargs):
            seen += 1
            if seen == n:
                os._exit(DIED)
        return result

    setattr(cls, method, dying)


async def _serve(daemon: Daemon) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await daemon.run(stop)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("home")
    parser.add_argument("settings", help="Settings fields as a JSON object")
    parser.add_argument("--die-at", default="")
    parser.add_argument("--die-in-scan-commit", type=int, default=0)
    parser.add_argument("--die-in-gossip-batch", type=int, default=0)
    parser.add_argument("--scan-commit-every", type=int, default=0)
    parser.add_argument("--gossip-batch-bytes", type=int, default=0)
    args = parser.parse_args()
    fields = json.loads(args.settings)
    fields["static_peers"] = tuple(fields.get("static_peers", ()))
    settings = Settings.for_tests(**fields)
    home = Home.resolve(Path(args.home))
    node = LocalNode.open(home)
    name = node.name
    node.close()
    if args.die_at:
        _die_at(args.die_at)
    if args.scan_commit_every:
        scanner._COMMIT_EVERY = args.scan_commit_every
    if args.gossip_batch_bytes:
        session._PAGE_BYTES = args.gossip_batch_bytes
    if args.die_in_scan_commit:
        _die_in(LibraryIndex, "_write", args.die_in_scan_commit, lambda *_: True)
    if args.die_in_gossip_batch:
        _die_in(
            SqliteReplicaStore,
            "write",
            args.die_in_gossip_batch,
            lambda _self, _conn, changes: len(changes.puts) >= BIG_BATCH,
        )
    logs.setup(name, settings.log_level)
    allocator.tune_for_transfers()
    asyncio.run(_serve(Daemon(home, settings)))


if __name__ == "__main__":
    main()
