"""Issue item 8: the lender's file is edited in place while a borrower pulls it: the
borrower never holds a mix of the two versions (whatever the borrowed folder shows at any
moment is one whole version), and it ends up with the new one."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults.harness import (
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


@pytest.mark.parametrize("edit", ["rewritten", "appended to"])
def test_a_file_edited_while_it_is_pulled_never_reaches_the_borrower_mixed(
    make_lan: MakeLan, tmp_path: Path, edit: str
) -> None:
    # A retry timer of 10 minutes: the new version is pulled because its binding arrives.
    no_timer = {"laptop": {"retry_interval_s": 600.0}}
    tower, laptop = nodes = fault_mesh(make_lan(2), tmp_path, ["tower", "laptop"], no_timer)
    try:
        movies = tmp_path / "movies"
        movies.mkdir()
        lent = movies / "heat.mkv"
        first = write_file(lent, SIZE)
        tower.share(movies, "Movies")
        tower.host.limit_rate("80mbit")
        versions: set[str] = {first}
        rel = "tower/Movies/heat.mkv"
        sizes = {SIZE, SIZE + MB}
        with PartialWatcher(laptop.borrowed, {rel: sizes}, {rel: versions}) as watcher:
            loan = tower.lend("Movies/heat.mkv", "laptop")

            def done() -> int:
                line = laptop.loan(loan)
                return line.bytes_done if line is not None else 0

            until("a quarter of the file", lambda: done() >= SIZE // 4, 30)
            # Rewritten in place (same inode) while chunks of it are on their way; the
            # owner does not rescan: serving it must notice.
            if edit == "rewritten":
                versions.add(second := write_file(lent, SIZE))
            else:
                with lent.open("ab") as more:
                    more.write(b"\x5a" * MB)
                versions.add(second := file_hash(lent))
            edited = time.monotonic()
            copy = laptop.copy("Movies", "heat.mkv", "tower")
            # Never `failed` for long: the new binding restarts the pull when it arrives.
            failed_since: float | None = None
            longest = 0.0

            def arrived() -> bool:
                nonlocal failed_since, longest
                if laptop.phase(loan) == "failed":
                    failed_since = failed_since or time.monotonic()
                    longest = max(longest, time.monotonic() - failed_since)
                else:
                    failed_since = None
                return copy.exists() and file_hash(copy) == second

            until("the new version", arrived, 60)
            assert longest < 3, f"failed for {longest:.1f} s"
            assert time.monotonic() - edited < 30
            settled(tower, laptop, loan, copy, second)
        assert watcher.wrong == []
    finally:
        dump_logs(nodes)
