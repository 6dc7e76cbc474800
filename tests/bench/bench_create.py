"""Micro-benchmark: what creating many small files costs, by where they are staged.

    python -m tests.bench.bench_create [--files 3000] [--rounds 2] [--deleted 10000] [--dir D]

Each way writes `--files` files of 1-64 KiB into 100 destination subfolders, in batches
of 256 as a folder loan's borrower does (create and write each, fsync all, then place all):
  a  one staging folder for everything, each file hard-linked into its subfolder and its
     staging name unlinked (mesh's way, fs/placing_batch.py);
  b  a staging folder inside each destination subfolder, linked and unlinked the same way;
  c  a temporary name inside the destination subfolder, renamed over (rsync's way);
  d  a fresh staging folder for each batch, removed after it;
  e  as d, inside a staging folder marked as the top of a hierarchy (`chattr +T`), so ext4
     places each batch's folder, and so its files' inodes, in a group with many free ones.
Before each way, `--deleted` files (100 to a subfolder) are made, synced and deleted in the
same parent folder, as happens before every timed run of bench_folder after the first (the
previous run's copy is recalled or removed); `--deleted 0` deletes nothing until the end;
`--own` deletes each way's own files of the round before (its staging folder kept), as
bench_folder's recall does to the next mesh round.
Prints each way's system CPU seconds (getrusage), the part spent in open(O_CREAT), and wall
time. Run it alone: another process deleting files on the same file system changes it.

Why the state matters: on ext4 without a journal (this VM's), a new inode is never one
freed in the last 60 s (300 s while its inode-table block is dirty): `find_inode_bit`
steps past each such inode in the group it searches, looking its inode-table block up in
the buffer cache (`recently_deleted`), on every create (perf: ~80% of open's time). Here
(2026-12-08, 3 runs, `--deleted`) a create cost 0.02-0.66 ms of system time from round to
round, on average 0.34 (a), 0.40 (b), 0.35 (c) and 0.42 ms (d): the group's recent
deletions decide, and the group is at or near the parent folder's for ways a-d. With
`--own` (4 rounds, 5,000 files) a and c cost 0.50-0.60 ms a create, d 0.06-0.71 ms and e
0.08-0.11 ms: e is what fs/staging_batch.py does.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable

_BATCH = 256
_FOLDERS = 100
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_GETFLAGS, _SETFLAGS, _TOPDIR = 0x80086601, 0x40086602, 0x00020000  # linux/fs.h


def _system() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


class _Clock:
    """System CPU seconds spent in open(O_CREAT)."""

    def __init__(self) -> None:
        self.creating = 0.0

    def create(self, path: str) -> int:
        began = _system()
        fd = os.open(path, _CREATE, 0o444)
        self.creating += _system() - began
        return fd


def _batch(
    clock: _Clock, data: list[bytes], start: int, staged: Callable[[int], str], base: str
) -> list[tuple[str, str]]:
    """Create, write and fsync one batch; its (staging path, destination path) pairs."""
    fds, moves = [], []
    for i in range(start, min(len(data), start + _BATCH)):
        path = staged(i)
        fd = clock.create(path)
        os.write(fd, data[i])
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        fds.append(fd)
        moves.append((path, f"{base}/d{i % _FOLDERS}/f{i}"))
    for fd in fds:
        os.fsync(fd)
        os.close(fd)
    return moves


def _link_all(moves: list[tuple[str, str]]) -> None:
    for staged, placed in moves:
        os.link(staged, placed)
    for staged, _ in moves:
        os.unlink(staged)


def way_a(clock: _Clock, data: list[bytes], base: str) -> None:
    os.makedirs(f"{base}/.staging", exist_ok=True)
    for start in range(0, len(data), _BATCH):
        _link_all(_batch(clock, data, start, lambda i: f"{base}/.staging/{i:064x}", base))


def way_b(clock: _Clock, data: list[bytes], base: str) -> None:
    for j in range(_FOLDERS):
        os.mkdir(f"{base}/d{j}/.staging")
    for start in range(0, len(data), _BATCH):
        _link_all(
            _batch(clock, data, start, lambda i: f"{base}/d{i % _FOLDERS}/.staging/{i:064x}", base)
        )


def way_c(clock: _Clock, data: list[bytes], base: str) -> None:
    for start in range(0, len(data), _BATCH):
        moves = _batch(clock, data, start, lambda i: f"{base}/d{i % _FOLDERS}/.f{i}.tmp", base)
        for staged, placed in moves:
            os.rename(staged, placed)


def way_d(clock: _Clock, data: list[bytes], base: str) -> None:
    for start in range(0, len(data), _BATCH):
        staging = f"{base}/.staging{start}"
        os.mkdir(staging)
        _link_all(_batch(clock, data, start, _in(staging), base))
        os.rmdir(staging)


def way_e(clock: _Clock, data: list[bytes], base: str) -> None:
    staging = f"{base}/.staging"
    os.makedirs(staging, exist_ok=True)
    _top_of_hierarchy(staging)
    for start in range(0, len(data), _BATCH):
        batch = f"{staging}/{start}"
        os.mkdir(batch)
        _link_all(_batch(clock, data, start, _in(batch), base))
        os.rmdir(batch)


def _top_of_hierarchy(folder: str) -> None:
    """`chattr +T`: ext4's Orlov allocator spreads the folder's subfolders over inode groups
    with more free inodes than average, instead of keeping them near their parent."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        flags = bytearray(4)
        fcntl.ioctl(fd, _GETFLAGS, flags)
        value = int.from_bytes(flags, sys.byteorder) | _TOPDIR
        fcntl.ioctl(fd, _SETFLAGS, value.to_bytes(4, sys.byteorder))
    finally:
        os.close(fd)


def _in(folder: str) -> Callable[[int], str]:
    return lambda i: f"{folder}/{i:064x}"


WAYS = {"a": way_a, "b": way_b, "c": way_c, "d": way_d, "e": way_e}


def _delete_many(parent: str, count: int) -> None:
    gone = f"{parent}/gone"
    os.mkdir(gone)
    for j in range(_FOLDERS):
        os.mkdir(f"{gone}/d{j}")
    for i in range(count):
        os.close(os.open(f"{gone}/d{i % _FOLDERS}/{i}", _CREATE, 0o644))
    os.sync()
    shutil.rmtree(gone)
    os.sync()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--deleted", type=int, default=10000)
    parser.add_argument("--dir", default="/var/tmp", help="on the benchmark's file system")
    parser.add_argument(
        "--own",
        action="store_true",
        help="delete each way's own files of the round before instead of --deleted others",
    )
    parser.add_argument("--ways", default="".join(WAYS), help="which ways, e.g. ade")
    opts = parser.parse_args()
    rng = random.Random(20)
    data = [os.urandom(rng.choice([1, 4, 16, 64]) << 10) for _ in range(opts.files)]
    root = tempfile.mkdtemp(prefix="mesh-bench-create-", dir=opts.dir)
    try:
        for r in range(opts.rounds):
            names = list(opts.ways) if r % 2 == 0 else list(reversed(opts.ways))
            for name in names:
                base = f"{root}/{name}"
                if opts.own:
                    # The way's own copy from the round before is deleted, as bench_folder's
                    # recall does; its staging folder (if any) stays, as mesh's does.
                    for j in range(_FOLDERS):
                        shutil.rmtree(f"{base}/d{j}", ignore_errors=True)
                    os.sync()
                elif opts.deleted:
                    _delete_many(root, opts.deleted)
                    shutil.rmtree(base, ignore_errors=True)
                # Made after the deletion, as a borrower remakes them after a recall.
                os.makedirs(base, exist_ok=True)
                for j in range(_FOLDERS):
                    os.mkdir(f"{base}/d{j}")
                clock = _Clock()
                began, wall = _system(), time.monotonic()
                WAYS[name](clock, data, base)
                used = _system() - began
                print(
                    f"round {r + 1} way {name}: system {used:.2f} s, of which creating "
                    f"{clock.creating:.2f} s ({clock.creating / opts.files * 1e3:.3f} ms a "
                    f"file); wall {time.monotonic() - wall:.2f} s",
                    flush=True,
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
