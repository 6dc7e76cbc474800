"""Issue item 6: the borrower's disk fills up during a pull (its borrowed folder is a
64 MiB tmpfs and something else takes the space): the loan fails with a clear reason,
nothing partial stays, the node keeps running, and the pull starts again by itself once
the space is freed."""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh.core.status import LoanLine
from mesh.fs.borrowed import STAGING
from tests.faults.harness import (
    MB,
    FaultNode,
    dump_logs,
    fault_mesh,
    file_hash,
    tmpfs,
    until,
    write_file,
)
from tests.lan.netns import MakeLan

pytestmark = pytest.mark.netns
# More than the disk holds once a few MB are staged: a staging file kept after the
# failure would make the loan too big for the disk for good.
SIZE = 56 * MB


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """The laptop's borrowed folder on a tmpfs of 64 MiB."""
    with tmpfs(tmp_path / "laptop-borrowed", "64m") as where:
        yield where


def fill(path: Path) -> None:
    """Write `path` until the disk is full."""
    piece = b"\xa5" * (1 << 20)
    with path.open("wb") as out:
        try:
            while True:
                out.write(piece)
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    # What close() flushes may not fit either; the file is there all the same.


# Recovery must come from the freed space itself, not from the retry timer.
NO_TIMER = {"laptop": {"retry_interval_s": 600.0}}


def staging_fds(node: FaultNode) -> list[str]:
    """The daemon's open descriptors of files in its staging folder."""
    assert node.proc is not None
    fds = Path(f"/proc/{node.proc.pid}/fd")
    found = []
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if STAGING in target:
                found.append(target)
    return found


def test_a_full_disk_fails_the_loan_cleanly_and_it_resumes_when_space_is_freed(
    make_lan: MakeLan, tmp_path: Path, small_disk: Path
) -> None:
    tower, laptop = nodes = fault_mesh(make_lan(2), tmp_path, ["tower", "laptop"], NO_TIMER)
    try:
        movies = tmp_path / "movies"
        movies.mkdir()
        digest = write_file(movies / "big.mkv", SIZE)
        tower.share(movies, "Movies")
        tower.host.limit_rate("80mbit")  # 10 MB/s: a pull of several seconds
        loan = tower.lend("Movies/big.mkv", "laptop")

        def started() -> bool:
            line = laptop.loan(loan)
            return line is not None and line.bytes_done >= 12 * MB

        until("the pull to get going", started, 30)
        filler = small_disk / "filler"
        fill(filler)
        filled = time.monotonic()

        def failed() -> LoanLine | None:
            line = laptop.loan(loan)
            return line if line is not None and line.phase == "failed" else None

        line = until("the loan to fail", failed, 30)
        # At once: the write that hit the full disk fails the loan, no timer in between.
        assert time.monotonic() - filled < 3, time.monotonic() - filled
        assert line is not None
        assert "no space left on the disk" in line.reason, line.reason
        copy = laptop.copy("Movies", "big.mkv", "tower")
        assert not copy.exists()
        assert laptop.staged() == []  # nothing partial stays, not even in staging
        assert staging_fds(laptop) == []  # and no descriptor of it stays open
        assert laptop.running()
        assert "BufferError" not in laptop.log.read_text()
        until("the loan to wait for space", lambda: laptop.phase(loan) in ("refused", "failed"), 10)

        filler.unlink()
        freed = time.monotonic()
        until("the pull to resume", lambda: laptop.phase(loan) == "fetching", 5, every=0.02)
        resumed = time.monotonic() - freed
        assert resumed < 2, f"resumed {resumed:.1f} s after the space was freed"
        until("the copy", lambda: laptop.phase(loan) == "held", 60)
        assert file_hash(copy) == digest
        assert laptop.staged() == []
        until("the lender's ledger", lambda: tower.phase(loan) == "held", 10)
    finally:
        dump_logs(nodes)


def test_a_loan_made_while_the_disk_is_full_is_pulled_once_space_is_freed(
    make_lan: MakeLan, tmp_path: Path, small_disk: Path
) -> None:
    tower, laptop = nodes = fault_mesh(make_lan(2), tmp_path, ["tower", "laptop"], NO_TIMER)
    try:
        movies = tmp_path / "movies"
        movies.mkdir()
        digest = write_file(movies / "big.mkv", 20 * MB)
        tower.share(movies, "Movies")
        filler = small_disk / "filler"
        fill(filler)
        loan = tower.lend("Movies/big.mkv", "laptop")

        def refused() -> LoanLine | None:
            found = laptop.loan(loan)
            return found if found is not None and found.phase == "refused" else None

        line = until("the loan to be refused", refused, 20)
        assert line is not None
        assert "not enough free space" in line.reason, line.reason
        until("the lender to see why", lambda: tower.phase(loan) == "refused", 10)
        assert laptop.staged() == []
        filler.unlink()
        freed = time.monotonic()
        until("the pull to start", lambda: laptop.phase(loan) in ("fetching", "held"), 5, 0.02)
        assert time.monotonic() - freed < 2
        until("the copy", lambda: laptop.phase(loan) == "held", 30)
        assert file_hash(laptop.copy("Movies", "big.mkv", "tower")) == digest
        assert laptop.staged() == []
    finally:
        dump_logs(nodes)
