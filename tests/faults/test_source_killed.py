"""Issue item 2: the only source of a pull is killed mid-pull: the pull waits (its
verified chunks kept) and finishes when the source returns, without fetching those chunks
again. With a second allowed holder, the pull finishes from that holder without a pause
longer than the keepalive window, whether the first source is killed or silently cut off."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.faults.harness import (
    KEEPALIVE_WINDOW_S,
    MB,
    PartialWatcher,
    dump_logs,
    fault_mesh,
    file_hash,
    settled,
    until,
    write_file,
)
from tests.lan.netns import MakeLan

pytestmark = pytest.mark.netns
SIZE = 32 * MB
RATE = "80mbit"  # 10 MB/s per source: a pull of a few seconds
RETRY_S = 30.0


def test_the_only_source_killed_mid_pull_finishes_when_it_returns(
    make_lan: MakeLan, tmp_path: Path
) -> None:
    # A failed pull is tried again after 30 s (the default), or when a member comes back.
    retry = {"laptop": {"retry_interval_s": RETRY_S}}
    tower, laptop = nodes = fault_mesh(make_lan(2), tmp_path, ["tower", "laptop"], retry)
    try:
        movies = tmp_path / "movies"
        movies.mkdir()
        digest = write_file(movies / "heat.mkv", SIZE)
        tower.share(movies, "Movies")
        tower.host.limit_rate(RATE)
        with PartialWatcher(laptop.borrowed, {"tower/Movies/heat.mkv": SIZE}) as watcher:
            loan = tower.lend("Movies/heat.mkv", "laptop")

            def done() -> int:
                line = laptop.loan(loan)
                return line.bytes_done if line is not None else 0

            until("a quarter of the file", lambda: done() >= SIZE // 4, 30)
            tower.kill()
            # Nobody can serve it now: the pull keeps what it verified and waits.
            until("the pull to notice", lambda: laptop.phase(loan) == "failed", 10)
            line = laptop.loan(loan)
            assert line is not None and "tower" in line.reason, line
            time.sleep(1)  # the source stays away a while: nothing may be lost meanwhile
            assert laptop.running() and laptop.phase(loan) != "held"
            assert len(laptop.staged()) == 1
            sent_before = tower.tx_bytes()
            tower.up()
            back = time.monotonic()
            until("the laptop to see the tower", lambda: "tower" in laptop.online(), 10, 0.02)
            online = time.monotonic()
            until("the pull to resume", lambda: laptop.phase(loan) != "failed", 5, 0.02)
            # Resumed because the source came back, not because the retry time came.
            assert time.monotonic() - online < 2, time.monotonic() - online
            until("the copy", lambda: laptop.phase(loan) == "held", RETRY_S)
            assert time.monotonic() - back < RETRY_S / 3
        copy = laptop.copy("Movies", "heat.mkv", "tower")
        settled(tower, laptop, loan, copy, digest)
        assert watcher.wrong == []
        resumed = laptop.log.read_text().count("resuming the pull of heat.mkv")
        assert resumed >= 1
        # What was saved as verified before the kill was not sent again.
        again = tower.tx_bytes() - sent_before
        assert again < SIZE - SIZE // 8, again
    finally:
        dump_logs(nodes)


@pytest.mark.parametrize("fault", ["killed", "cut off"])
def test_with_a_second_holder_the_pull_goes_on_without_a_pause(
    make_lan: MakeLan, tmp_path: Path, fault: str
) -> None:
    tower, laptop, desk = nodes = fault_mesh(make_lan(3), tmp_path, ["tower", "laptop", "desk"])
    try:
        movies = tmp_path / "movies"
        movies.mkdir()
        digest = write_file(movies / "heat.mkv", SIZE)
        tower.share(movies, "Movies")
        first = tower.lend("Movies/heat.mkv", "desk")
        until("desk to hold a copy", lambda: desk.phase(first) == "held")
        tower.host.limit_rate(RATE)
        desk.host.limit_rate(RATE)
        loan = tower.lend("Movies/heat.mkv", "laptop")
        progress: list[tuple[float, int]] = []

        def advanced(at_least: int) -> bool:
            line = laptop.loan(loan)
            if line is None:
                return False
            done = line.bytes_done
            if not progress or done > progress[-1][1]:
                progress.append((time.monotonic(), done))
            return done >= at_least

        until("a quarter of the file", lambda: advanced(SIZE // 4), 30)
        if fault == "killed":
            tower.kill()
        else:
            tower.host.blackhole()
        faulted = time.monotonic()
        until("every chunk", lambda: advanced(SIZE), 30)
        until("the copy", lambda: laptop.phase(loan) == "held", 10)
        assert file_hash(laptop.copy("Movies", "heat.mkv", "tower")) == digest
        times = [t for t, _ in progress if t >= faulted]
        gaps = [b - a for a, b in zip([faulted, *times], times, strict=False)]
        # Progress is polled every 50 ms and a chunk takes ~0.1 s from the desk.
        assert max(gaps) < KEEPALIVE_WINDOW_S, gaps
        assert re.search(r"pulled heat\.mkv: .* from desk \d+ MB, tower", laptop.log.read_text())
        # The lender back: its ledger agrees with the borrower's, nothing stays staged.
        if fault == "killed":
            tower.up()
        else:
            tower.host.heal()
        settled(tower, laptop, loan, laptop.copy("Movies", "heat.mkv", "tower"), digest)
    finally:
        dump_logs(nodes)
