"""Issue item 8: the lender's file is edited in place while a borrower pulls it: the
borrower never holds a mix of the two versions (whatever the borrowed folder shows at any
moment is one whole version), and it ends up with the new one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.harness import (
    MB,
    PartialWatcher,
    dump_logs,
    fault_mesh,
    file_hash,
    until,
    write_file,
)
from tests.lan.netns import MakeLan

pytestmark = pytest.mark.netns
SIZE = 32 * MB


def test_a_file_edited_while_it_is_pulled_never_reaches_the_borrower_mixed(
    make_lan: MakeLan, tmp_path: Path
) -> None:
    tower, laptop = nodes = fault_mesh(make_lan(2), tmp_path, ["tower", "laptop"])
    try:
        movies = tmp_path / "movies"
        movies.mkdir()
        lent = movies / "heat.mkv"
        first = write_file(lent, SIZE)
        tower.share(movies, "Movies")
        tower.host.limit_rate("80mbit")
        versions: set[str] = {first}
        rel = "tower/Movies/heat.mkv"
        with PartialWatcher(laptop.borrowed, {rel: SIZE}, {rel: versions}) as watcher:
            loan = tower.lend("Movies/heat.mkv", "laptop")

            def done() -> int:
                line = laptop.loan(loan)
                return line.bytes_done if line is not None else 0

            until("a quarter of the file", lambda: done() >= SIZE // 4, 30)
            # Rewritten in place (same inode) while chunks of it are on their way; the
            # owner does not rescan: serving it must notice.
            versions.add(second := write_file(lent, SIZE))
            copy = laptop.copy("Movies", "heat.mkv", "tower")
            until("the new version", lambda: copy.exists() and file_hash(copy) == second, 60)
            until("the loan to be held", lambda: laptop.phase(loan) == "held", 10)
        assert watcher.wrong == []
        assert file_hash(copy) == second
        assert laptop.staged() == []
    finally:
        dump_logs(nodes)
