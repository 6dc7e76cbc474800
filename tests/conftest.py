"""Suite-wide settings: hypothesis profiles, and checks that no test leaks threads or fds."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=300, deadline=None)
settings.register_profile("long", max_examples=3000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _sockets() -> set[str]:
    """Open network sockets and named Unix sockets of this process.

    Unnamed socket pairs are left out: event loops and gRPC's poller make them for their
    own wake-ups and keep them for the life of the loop or process."""
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(target[len("socket:[") : -1])
    found = set()
    for table in ("tcp", "tcp6", "udp", "udp6", "unix"):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            inode = cols[6] if table == "unix" else cols[9]
            if inode in mine and (table != "unix" or len(cols) > 7):
                found.add(f"socket:[{inode}]")
    return found


def _describe(sockets: set[str]) -> list[str]:
    """What each leaked socket is, from /proc/net (protocol and local address)."""
    inodes = {s[len("socket:[") : -1]: s for s in sockets}
    found = []
    for table in ("tcp", "tcp6", "udp", "udp6", "unix"):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            inode = cols[6] if table == "unix" else cols[9]
            if inode in inodes:
                where = cols[-1] if table == "unix" and len(cols) > 7 else cols[1]
                found.append(f"{table} {where} state {cols[3]}")
    return found or sorted(sockets)


def _threads() -> set[int]:
    return {t.ident for t in threading.enumerate() if t.ident is not None and not t.daemon}


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail a test that leaves threads or sockets behind once it is done."""
    threads_before = _threads()
    sockets_before = _sockets()
    yield
    deadline = time.monotonic() + 5
    while True:
        new_threads = _threads() - threads_before
        new_sockets = _sockets() - sockets_before
        if not new_threads and not new_sockets:
            return
        if time.monotonic() > deadline:
            names = [t.name for t in threading.enumerate() if t.ident in new_threads]
            pytest.fail(f"test leaked threads {names} and sockets {_describe(new_sockets)}")
        time.sleep(0.05)


@pytest.fixture
def home_dir(tmp_path: Path) -> Path:
    return tmp_path / "home"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how many simulated-LAN tests ran, so a CI log shows they were not skipped."""
    counts: dict[str, int] = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            if report.when in ("call", "setup") and "netns" in getattr(report, "keywords", {}):
                if outcome == "passed" and report.when != "call":
                    continue
                counts[outcome] = counts.get(outcome, 0) + 1
    if counts:
        shown = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
        terminalreporter.write_line(f"network-namespace tests: {shown}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `slow` run first (the order is otherwise kept, so every worker still
    collects the same list). `--dist worksteal` hands each worker a contiguous part of the
    list and the idle one steals from the back of the other's: a long test that comes
    late ends the run alone, one that starts first has the short ones fill in around it."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
