"""Mount benchmark (issue 21): two daemons in this process over mutual TLS on 127.0.0.1,
the laptop mounting the mesh; reads by `dd` in its own process.

    python -m tests.bench.bench_mount [--size 1GiB] [--first 4GiB] [--rounds 3]

  first     the time from `open` to the first 4 KiB read through the mount, of a file of
            `--first` bytes the laptop does not hold (the borrow request, its answer, the
            manifest and the first chunk all inside it).
  pull      `mesh lend` of a fresh `--size` file to the laptop: until it is held.
  mount     `dd bs=1M` of another fresh `--size` file through the mount to /dev/null:
            from open to the last byte (borrowed on open, read while it arrives).
Rounds interleave pull and mount; medians, (min-max) after, and the ratio mount/pull
speed per round. Not the simulated LAN: loopback, so the figures are the CPU's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mesh.config import parse_size
from mesh.home import Home
from mesh.node.local import LocalNode, now_ms
from tests.faults.harness import write_file
from tests.node.conftest import NodeHandle, mesh_of


def _handle(root: Path, name: str) -> NodeHandle:
    from mesh.config import Settings

    home = Home.resolve(root / name)
    node, _ = LocalNode.init(home, name)
    node.close()
    return NodeHandle(home=home, name=name, settings=Settings.for_tests())


async def _dd(path: Path, *args: str) -> float:
    began = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        "dd", f"if={path}", "of=/dev/null", *args, "status=none"
    )
    assert await proc.wait() == 0
    return time.monotonic() - began


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--first", default="4GiB")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size, first_size = parse_size(args.size), parse_size(args.first)
    with tempfile.TemporaryDirectory(prefix="bench-mount-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        tower, laptop = _handle(root, "tower"), _handle(root, "laptop")
        mesh_of(tower, laptop)
        shared = root / "shared"
        shared.mkdir()
        names = [f"pull{i}.bin" for i in range(args.rounds)]
        names += [f"mount{i}.bin" for i in range(args.rounds)]
        for name in names:
            write_file(shared / name, size)
        write_file(shared / "first.bin", first_size)
        t = await tower.start(borrowed_folder=str(root / "tb"))
        lp = await laptop.start(borrowed_folder=str(root / "lb"), static_peers=(tower.address,))
        try:
            await t.store(t.local.share, str(shared), "M")
            async for _ in t.scan(["M"]):
                pass
            mnt = root / "mnt"
            await lp.mounting.mount(str(mnt))
            # Never touch the mount from this loop's thread: it is the loop that answers.
            while not await asyncio.to_thread((mnt / "tower" / "M" / "first.bin").exists):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            first = await _dd(mnt / "tower" / "M" / "first.bin", "bs=4096", "count=1")
            print(f"first 4 KiB of a {first_size / 2**30:.0f} GiB file: {first * 1000:.0f} ms")
            pulls, mounts = [], []
            for i in range(args.rounds):
                began = time.monotonic()
                await t.store(t.lending.lend, f"M/pull{i}.bin", "laptop", 0, now_ms())
                held = root / "lb" / "tower" / "M" / f"pull{i}.bin"
                while not held.exists():  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                pulls.append(size / (time.monotonic() - began) / 1e6)
                took = await _dd(mnt / "tower" / "M" / f"mount{i}.bin", "bs=1M")
                mounts.append(size / took / 1e6)
                print(
                    f"round {i + 1}: pull {pulls[-1]:.0f} MB/s, mount {mounts[-1]:.0f} MB/s,"
                    f" ratio {mounts[-1] / pulls[-1]:.2f}"
                )
            ratios = [m / p for m, p in zip(mounts, pulls, strict=True)]
            for label, values in (
                ("pull MB/s", pulls),
                ("mount MB/s", mounts),
                ("mount/pull", ratios),
            ):
                print(
                    f"{label}: median {statistics.median(values):.2f} "
                    f"({min(values):.2f}-{max(values):.2f})"
                )
        finally:
            await lp.mounting.unmount()
            await laptop.halt()
            await tower.halt()
    os.sync()


if __name__ == "__main__":
    asyncio.run(main())
