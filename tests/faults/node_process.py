"""A node's daemon for the fault tests, in its own process: what `mesh up` runs, with the
test preset's timings (Settings.for_tests) and settings given as JSON, so a test can SIGKILL
it, restart it, and run it inside a namespace of a simulated LAN.

`--die-at STEP` is the fault-injection hook of the test build: the process exits at once
(exit code 17, no cleanup of any kind, as after SIGKILL) when placing a borrowed file
reaches STEP (mesh/fs/borrowed.py names its steps).

    python -m tests.faults.node_process HOME '{"listen": "10.1.2.3"}' [--die-at synced]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from pathlib import Path

from mesh.config import Settings
from mesh.fs import borrowed
from mesh.home import Home
from mesh.node import allocator, logs
from mesh.node.daemon import Daemon
from mesh.node.local import LocalNode

DIED = 17  # the exit code of a process stopped by --die-at


def _die_at(step: str) -> None:
    def hook(at: str) -> None:
        if at == step:
            os._exit(DIED)

    borrowed._fault_hook = hook


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
    logs.setup(name, settings.log_level)
    allocator.tune_for_transfers()
    asyncio.run(_serve(Daemon(home, settings)))


if __name__ == "__main__":
    main()
