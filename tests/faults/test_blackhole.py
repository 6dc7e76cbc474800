"""Issue item 3: the lender's link is blackholed for 30 s in the middle of a pull (every
packet dropped, the link stays up): the borrower sees the stall within the keepalive
window, and after the link heals the pull finishes and the records both nodes wrote
meanwhile reach the other side, none lost and none twice."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mesh.config import Settings
from mesh.core.entries import IndexedEntry
from tests.faults.harness import (
    KEEPALIVE_WINDOW_S,
    MB,
    FaultNode,
    dump_logs,
    fault_mesh,
    file_hash,
    until,
    write_file,
)
from tests.lan.netns import MakeLan

pytestmark = pytest.mark.netns
SIZE = 32 * MB
BLACKHOLE_S = 30.0
# Polls of the control socket and the session's own bookkeeping, on a loaded machine.
SLACK_S = 1.5
RETRY_S = Settings.for_tests().retry_interval_s
HANDSHAKE_S = Settings.for_tests().handshake_timeout_s


def rows(entries: list[IndexedEntry]) -> list[tuple[str, str, bytes, int]]:
    return sorted((e.entry.library, e.entry.path, e.entry.hash, e.seq) for e in entries)


def index_of(node: FaultNode) -> list[tuple[str, str, bytes, int]]:
    with node.control() as control:
        return rows(control.entries())


def seen_by(node: FaultNode, other: str) -> list[tuple[str, str, bytes, int]]:
    with node.control() as control:
        return rows(control.browse(node=other))


def add_files(node: FaultNode, folder: Path, library: str, names: range) -> None:
    for n in names:
        (folder / f"{n}.txt").write_text(f"{node.name} {n}")
    with node.control() as control:
        control.scan([library])


@pytest.mark.slow  # started first (tests/conftest.py)
def test_a_blackholed_link_is_detected_and_everything_completes_after_it_heals(
    make_lan: MakeLan, tmp_path: Path
) -> None:
    tower, laptop = nodes = fault_mesh(make_lan(2), tmp_path, ["tower", "laptop"])
    try:
        movies, notes = tmp_path / "movies", tmp_path / "notes"
        movies.mkdir()
        notes.mkdir()
        digest = write_file(movies / "heat.mkv", SIZE)
        tower.share(movies, "Movies")
        laptop.share(notes, "Notes")
        tower.host.limit_rate("80mbit")
        loan = tower.lend("Movies/heat.mkv", "laptop")

        def done() -> int:
            line = laptop.loan(loan)
            return line.bytes_done if line is not None else 0

        until("a quarter of the file", lambda: done() >= SIZE // 4, 30)
        tower.host.blackhole()
        cut = time.monotonic()
        until("the laptop to see the tower gone", lambda: "tower" not in laptop.online(), 10)
        gone = time.monotonic() - cut
        until("the tower to see the laptop gone", lambda: "laptop" not in tower.online(), 20)
        gone_too = time.monotonic() - cut
        until("the pull to stop", lambda: laptop.phase(loan) == "failed", 10)
        stalled = time.monotonic() - cut
        assert gone < KEEPALIVE_WINDOW_S + SLACK_S, gone
        # The ledger says `failed` once the agent has also tried the pull once more (its
        # source may have come straight back: issue 17's event-driven recovery), and that
        # try's handshake has timed out: a retry interval and a handshake timeout later.
        assert stalled < KEEPALIVE_WINDOW_S + RETRY_S + HANDSHAKE_S + SLACK_S, stalled
        assert gone_too < KEEPALIVE_WINDOW_S + SLACK_S, gone_too

        # Both sides write records while they cannot reach each other.
        add_files(tower, movies, "Movies", range(40))
        add_files(laptop, notes, "Notes", range(25))
        time.sleep(max(0.0, BLACKHOLE_S - (time.monotonic() - cut)))
        assert laptop.phase(loan) != "held"
        tower.host.heal()

        until("the copy", lambda: laptop.phase(loan) == "held", 60)
        assert file_hash(laptop.copy("Movies", "heat.mkv", "tower")) == digest
        for node, other in ((laptop, tower), (tower, laptop)):
            until(
                f"{node.name} to have all of {other.name}'s entries",
                lambda n=node, o=other: seen_by(n, o.name) == index_of(o),
                20,
            )
        assert len(index_of(tower)) == 41 and len(index_of(laptop)) == 25
    finally:
        dump_logs(nodes)
