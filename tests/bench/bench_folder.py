"""Folder-loan benchmark: a folder of many files lent as one loan between two `mesh up`
processes over mutual TLS on 127.0.0.1, against `rsync -a` from an rsync daemon in the
same run, interleaved round by round.

    python -m tests.bench.bench_folder [--files 10000] [--rounds 2] [--quick]
        [--profile PREFIX] [--strace PREFIX] [--log FILE]

  mesh   `mesh lend FOLDER --to laptop` on the tower; the time until the laptop says the
         loan is held, by its log line, then its ledger (every file pulled, verified
         chunk by chunk and as a whole, fsynced and placed).
  rsync  an rsync daemon on 127.0.0.1 serving the folder, pulled with `rsync -a` into an
         empty folder; and with `rsync -a --fsync`, which like mesh has every file on
         disk when it is done (`rsync -a` leaves the writing to the kernel's flusher).

Files are 1 KiB-1 MiB, log-uniform (mean ~150 KB: 10,000 files are ~1.5 GB), 100 to a
subfolder. Target: mesh at most 1.4x rsync's time. Medians over the rounds, (min-max) after.
`--quick` is a smoke run (1,000 files, one round). Each round also prints the CPU
seconds each daemon (and the rsync client) used: steadier than times on a busy machine.
`--profile` samples both daemons with py-spy (`pip install py-spy`) in the first mesh
round, `--strace` counts their system calls (strace -c -f); the borrower's CPU is also
printed by thread (user+system seconds; "main" is the event loop).
MESH_BENCH_UP_ARGS adds arguments to `mesh up` (e.g. `--log-level debug`).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench_fetch import MeshPair, Node, Rsync, spread

KiB, MiB = 1 << 10, 1 << 20


def make_folder(root: Path, files: int, seed: int = 20) -> int:
    """`files` files of 1 KiB-1 MiB under `root`, 100 to a subfolder; their total size."""
    rng = random.Random(seed)
    total = 0
    block = rng.randbytes(MiB)
    for i in range(files):
        size = int(math.exp(rng.uniform(math.log(KiB), math.log(MiB))))
        folder = root / f"part-{i // 100:03}"
        folder.mkdir(parents=True, exist_ok=True)
        # Distinct content per file (a shared block, with the file's number in front).
        data = i.to_bytes(8, "big") + block[: size - 8]
        (folder / f"file-{i:05}.bin").write_bytes(data)
        total += size
    return total


def cpu_s(node: Node) -> tuple[float, float]:
    """CPU seconds (user, system) a node's daemon used so far."""
    if node.proc is None:
        return 0.0, 0.0
    fields = Path(f"/proc/{node.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def thread_cpu(node: Node) -> dict[str, tuple[float, float]]:
    """CPU seconds (user, system) of a daemon's threads so far, by thread."""
    out: dict[str, tuple[float, float]] = {}
    if node.proc is None:
        return out
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{node.proc.pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        name = "main" if task.name == str(node.proc.pid) else f"{name}/{task.name}"
        out[name] = (int(fields[11]) / tick, int(fields[12]) / tick)
    return out


def mesh_round(
    pair: MeshPair, folder: Path, profile: str | None = None, strace: str | None = None
) -> float:
    tracers = (
        []
        if not strace
        else [
            subprocess.Popen(
                ["strace", "-c", "-f", "-o", f"{strace}-{node.name}.txt", "-p", str(node.proc.pid)]
                if not strace.startswith("perf:")
                else [
                    "perf",
                    "record",
                    "-g",
                    "-o",
                    f"{strace[5:]}-{node.name}.data",
                    "-p",
                    str(node.proc.pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for node in (pair.tower, pair.laptop)
            if node.proc is not None
        ]
    )
    spies = (
        []
        if not profile
        else [
            subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("py-spy")),
                    "record",
                    "--gil",  # what holds the GIL: the daemon's Python work
                    "-r",
                    "50",
                    "-f",
                    "raw",
                    "-o",
                    f"{profile}-{node.name}.txt",
                    "-p",
                    str(node.proc.pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for node in (pair.tower, pair.laptop)
            if node.proc is not None
        ]
    )
    cpu = {node.name: cpu_s(node) for node in (pair.tower, pair.laptop)}
    threads = thread_cpu(pair.laptop)
    began = time.monotonic()
    out = pair.tower.mesh("lend", str(folder), "--to", "laptop")
    loan = out.split("loan ")[-1].split(",")[0].split()[0]
    client = pair.laptop.client()
    try:
        # The laptop logs the moment it writes the loan's held status: waiting for that
        # line costs the daemon nothing, where polling its ledger would (a folder's
        # aggregate is made for each call); the ledger is checked after.
        held = f"holding the folder Bench/{folder.name}/ from tower"
        done = pair.laptop.wait_log(held, began, timeout=1800)
        deadline = time.monotonic() + 60
        while True:
            found = [x for x in client.loans() if x.id == loan]
            if found and found[0].phase == "held":
                break
            assert time.monotonic() < deadline, f"not held: {found}"
            time.sleep(0.1)
    finally:
        client.close()
        for spy in [*spies, *tracers]:
            spy.send_signal(signal.SIGINT)
            spy.wait()
    print(
        "  cpu: "
        + ", ".join(
            f"{n} {sum(cpu_s(node)) - sum(cpu[n]):.2f} s (system {cpu_s(node)[1] - cpu[n][1]:.2f})"
            for n, node in (("tower", pair.tower), ("laptop", pair.laptop))
        ),
        file=sys.stderr,
    )
    # By thread: the borrower's busiest threads, (user, system) seconds in this round.
    used = {
        name: (u - threads.get(name, (0.0, 0.0))[0], s - threads.get(name, (0.0, 0.0))[1])
        for name, (u, s) in thread_cpu(pair.laptop).items()
    }
    busiest = sorted(used.items(), key=lambda x: -sum(x[1]))[:6]
    print(
        "  laptop threads: "
        + ", ".join(f"{name} {u:.2f}+{s:.2f}" for name, (u, s) in busiest if u + s >= 0.05),
        file=sys.stderr,
    )
    pair.tower.mesh("recall", loan)
    copy = pair.laptop.borrowed / "tower" / "Bench" / folder.name
    deadline = time.monotonic() + 600
    while copy.exists():
        assert time.monotonic() < deadline, "the recalled copy stayed"
        time.sleep(0.1)
    return done - began


def rsync_round(rsync: Rsync, folder: Path, out: Path, *, fsync: bool = False) -> float:
    shutil.rmtree(out, ignore_errors=True)
    began = time.monotonic()
    before = os.times()
    subprocess.run(
        [
            rsync.rsync,
            "-a",
            "-q",
            *(["--fsync"] if fsync else []),
            f"rsync://127.0.0.1:{rsync.port}/bench/{folder.name}/",
            str(out),
        ],
        check=True,
    )
    took = time.monotonic() - began
    after = os.times()
    used = after.children_user + after.children_system
    used -= before.children_user + before.children_system
    print(f"  cpu: rsync client {used:.2f} s", file=sys.stderr)
    shutil.rmtree(out, ignore_errors=True)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--log", help="write the borrower's log here")
    parser.add_argument(
        "--profile", help="py-spy the daemons in the first mesh round: PREFIX-NAME.txt"
    )
    parser.add_argument(
        "--strace",
        help="count the daemons' system calls in the first mesh round: PREFIX-NAME.txt "
        "(perf:PREFIX: `perf record -g` them instead, PREFIX-NAME.data)",
    )
    opts = parser.parse_args()
    files = 1000 if opts.quick else opts.files
    rounds = 1 if opts.quick else opts.rounds
    with tempfile.TemporaryDirectory(prefix="mesh-bench-folder-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        library = root / "library"
        folder = library / "folder"
        total = make_folder(folder, files)
        pair = MeshPair(root, library)
        pair.tower.mesh("scan", "Bench")
        rsync = Rsync(root, library)
        out = root / "rsync-out"
        times: dict[str, list[float]] = {"mesh": [], "rsync": [], "rsync --fsync": []}
        try:
            for r in range(rounds):
                order = list(times) if r % 2 == 0 else list(reversed(times))
                for name in order:
                    took = (
                        mesh_round(
                            pair,
                            folder,
                            opts.profile if r == 0 else None,
                            opts.strace if r == 0 else None,
                        )
                        if name == "mesh"
                        else rsync_round(rsync, folder, out, fsync=name != "rsync")
                    )
                    times[name].append(took)
                print(
                    f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                    file=sys.stderr,
                )
        finally:
            if opts.log:
                Path(opts.log).write_text(
                    "\n".join(f"{at:.3f} {line}" for at, line in pair.laptop.lines)
                )
            pair.close()
            rsync.close()
    gb = total / 1e9
    print(
        f"folder benchmark: {files} files, {gb:.2f} GB, {rounds} round(s), 127.0.0.1, "
        "mutual TLS for mesh"
    )
    for name, values in times.items():
        print(f"  {name:14} {spread(values)} s   {spread([gb / t for t in values])} GB/s")
    ratios = [m / r for m, r in zip(times["mesh"], times["rsync"], strict=True)]
    print(f"  mesh time / rsync time {spread(ratios)}x   (target <= 1.4x)")
    ratios = [m / r for m, r in zip(times["mesh"], times["rsync --fsync"], strict=True)]
    print(f"  mesh time / rsync --fsync time {spread(ratios)}x   (both on disk when done)")


if __name__ == "__main__":
    main()
