"""Scan benchmark: mesh's scanner against bare loops measured in the same run.

    python tests/bench/bench_scan.py [--files 100000] [--rounds 3] [--large 3]

Builds FILES files of 1-4 KiB in nested folders plus LARGE files of 256 MiB, then, in
interleaved rounds, times:
  first scan   `LocalNode.scan` on a fresh store (walk, hash, commit) vs a bare one-process
               loop that walks, reads and xxh3-128-hashes every file;
  rescan       a scan where nothing changed vs a bare `os.scandir` walk with stat;
  large files  hashing the large files vs `cat FILE > /dev/null`.
Ratios are baseline time / mesh time (higher is better for mesh), medians over the rounds.
Targets: first scan >= 1.25x the bare loop; rescan of 100k unchanged files <= 1 s.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import xxhash

from mesh.home import Home
from mesh.node.local import LocalNode


def build_tree(root: Path, files: int, large: int) -> None:
    rng = random.Random(42)
    payload = os.urandom(4096 + 64)
    for i in range(files):
        folder = root / f"d{i % 50:02d}" / f"e{(i // 50) % 40:02d}"
        if i < 2000:
            folder.mkdir(parents=True, exist_ok=True)
        size = rng.randint(1024, 4096)
        start = rng.randint(0, 64)
        (folder / f"f{i:06d}.dat").write_bytes(
            payload[start : start + size - 8] + i.to_bytes(8, "big")
        )
    for j in range(large):
        with (root / f"large{j}.bin").open("wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(256):
                f.write(block)


def bare_hash_loop(root: Path) -> int:
    n = 0
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.is_file(follow_symlinks=False) and not e.name.startswith("large"):
                    with open(e.path, "rb") as f:
                        xxhash.xxh3_128_digest(f.read())
                    n += 1
    return n


def bare_walk(root: Path) -> int:
    n = 0
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                else:
                    e.stat(follow_symlinks=False)
                    n += 1
    return n


def timed(fn: object, *args: object) -> float:
    start = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--large", type=int, default=3)
    parser.add_argument("--keep", help="build the tree here and keep it")
    args = parser.parse_args()

    work = Path(args.keep or tempfile.mkdtemp(prefix="mesh-bench-scan-"))
    small_root = work / "small"
    large_root = work / "large"
    try:
        if not small_root.exists():
            small_root.mkdir(parents=True)
            large_root.mkdir(parents=True)
            print(
                f"building {args.files} small files and {args.large} x 256 MiB in {work} ...",
                flush=True,
            )
            build_tree(small_root, args.files, 0)
            build_tree(large_root, 0, args.large)
        bare_hash_loop(small_root)  # warm the page cache once, for everybody
        first, bare, rescan, walk, large, cat = [], [], [], [], [], []
        for r in range(args.rounds):
            home = Home.resolve(work / f"home{r}")
            node, _ = LocalNode.init(home, "bench")
            node.share(str(small_root), "small")
            bare.append(timed(bare_hash_loop, small_root))
            first.append(timed(node.scan, ["small"]))
            walk.append(timed(bare_walk, small_root))
            rescan.append(timed(node.scan, ["small"]))
            node.share(str(large_root), "large")
            large.append(timed(node.scan, ["large"]))
            cat.append(_time_cat(large_root))
            entries = len(node.entries())
            node.close()
            shutil.rmtree(home.root)
            print(
                f"round {r + 1}: first {first[-1]:.2f}s (bare {bare[-1]:.2f}s), "
                f"rescan {rescan[-1]:.2f}s (walk {walk[-1]:.2f}s), "
                f"large {large[-1]:.2f}s (cat {cat[-1]:.2f}s), {entries} entries",
                flush=True,
            )
        med = statistics.median
        n = args.files
        gib = args.large * 256 / 1024
        print()
        print("| measure | mesh | baseline | ratio (baseline/mesh) |")
        print("|---|---|---|---|")
        print(
            f"| first scan, {n} files | {med(first):.2f} s ({n / med(first):,.0f} files/s) | "
            f"bare read+hash loop {med(bare):.2f} s ({n / med(bare):,.0f} files/s) | "
            f"{med(b / f for b, f in zip(bare, first, strict=True)):.2f}x |"
        )
        print(
            f"| rescan, nothing changed | {med(rescan):.2f} s ({n / med(rescan):,.0f} files/s) | "
            f"scandir+stat walk {med(walk):.2f} s | "
            f"{med(w / s for w, s in zip(walk, rescan, strict=True)):.2f}x |"
        )
        print(
            f"| large files, {gib:.2f} GiB | {gib / med(large):.2f} GiB/s | "
            f"cat > /dev/null {gib / med(cat):.2f} GiB/s | "
            f"{med(c / g for c, g in zip(cat, large, strict=True)):.2f}x |"
        )
        ok_first = med(b / f for b, f in zip(bare, first, strict=True)) >= 1.25
        ok_rescan = n < 100_000 or med(rescan) <= 1.0
        print(
            f"\ntargets: first scan >= 1.25x: {'met' if ok_first else 'MISSED'}; "
            f"rescan of 100k <= 1 s: {'met' if ok_rescan else 'MISSED'}"
        )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _time_cat(root: Path) -> float:
    files = sorted(str(p) for p in root.glob("*.bin"))
    start = time.perf_counter()
    with open(os.devnull, "wb") as null:
        subprocess.run(["cat", *files], stdout=null, check=True)
    return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
