"""Watch benchmark: how long a running node takes to index a file dropped into a library.

    python tests/bench/bench_watch.py [--files 100000] [--rounds 5]

Shares FILES files of 100 bytes in 200 folders with a real daemon (default settings: a
half-second settle), then drops new files into one of those folders and into the library's
root and times, from the end of each write, until the index holds the file. What is
counted: the settle delay, the partial scan (listing that one folder) and its commit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mesh.config import Settings
from mesh.home import Home
from mesh.node.daemon import Daemon
from mesh.node.local import LocalNode


async def until(check: Callable[[], bool]) -> None:
    while True:
        if check():
            return
        await asyncio.sleep(0.05)


async def bench(files: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        home = Home.resolve(tmp / "home")
        node, _ = LocalNode.init(home, "bench")
        node.close()
        lib = tmp / "lib"
        per_folder = max(1, files // 200)
        for d in range(200):
            sub = lib / f"d{d:03}"
            sub.mkdir(parents=True)
            for f in range(per_folder):
                (sub / f"f{f}").write_bytes(b"x" * 100)
        settings = Settings(port=0, listen="127.0.0.1", mdns=False, borrowed_folder=str(tmp / "B"))
        daemon = Daemon(home, settings)
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        await daemon.started.wait()
        await daemon.store(daemon.local.share, str(lib), "lib")
        async for _ in daemon.scan(["lib"]):
            pass
        daemon.watch.libraries_changed()
        await until(lambda: "lib" in daemon.watch.watched())
        await asyncio.sleep(1)  # the watches in place, the daemon idle
        for where in ("d100", ""):
            took = []
            for i in range(rounds):
                rel = f"{where}/new{i}" if where else f"new{i}"
                (lib / rel).write_bytes(os.urandom(1000))
                began = time.monotonic()
                while True:
                    if await daemon.store(daemon.local.index.file_state, "lib", rel):
                        break
                    await asyncio.sleep(0.005)
                took.append(time.monotonic() - began)
            print(
                f"{200 * per_folder} files, a new file in {where or 'the root'}: "
                f"median {statistics.median(took):.3f} s, max {max(took):.3f} s"
            )
        stop.set()
        await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(bench(args.files, args.rounds))


if __name__ == "__main__":  # the scanner's worker processes import this module
    main()
