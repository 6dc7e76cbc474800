"""Issue item 1: the borrower SIGKILLed at about half of a 1 GiB loan resumes after its
restart and finishes with the right hash; no partial file is ever visible in the borrowed
folder, and the chunks it had verified are not fetched again."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mesh.core.chunks import CHUNK_SIZE
from mesh.fs import resumable_hash
from tests.faults.harness import PartialWatcher, dump_logs, fault_mesh, file_hash, until, write_file
from tests.lan.netns import MakeLan

pytestmark = pytest.mark.netns
SIZE = 1 << 30
CHUNKS = SIZE // CHUNK_SIZE


def test_a_borrower_killed_halfway_resumes_without_fetching_again(
    make_lan: MakeLan, tmp_path: Path
) -> None:
    tower, laptop = nodes = fault_mesh(make_lan(2), tmp_path, ["tower", "laptop"])
    try:
        movies = tmp_path / "movies"
        movies.mkdir()
        digest = write_file(movies / "big.mkv", SIZE)
        tower.share(movies, "Movies")
        sent_before = tower.tx_bytes()
        with PartialWatcher(laptop.borrowed, {"tower/Movies/big.mkv": SIZE}) as watcher:
            loan = tower.lend("Movies/big.mkv", "laptop")

            def halfway() -> int:
                line = laptop.loan(loan)
                return line.bytes_done if line is not None and line.bytes_done >= SIZE // 2 else 0

            reported = until("half of the file", halfway, 120)
            laptop.kill()
            assert reported < SIZE, "killed too late: the pull had finished"
            sent_before_restart = tower.tx_bytes()
            copy = laptop.copy("Movies", "big.mkv", "tower")
            assert not copy.exists()
            laptop.up()
            until("the copy", lambda: laptop.phase(loan) == "held", 120)
        assert file_hash(copy) == digest
        assert watcher.seen == {"tower/Movies/big.mkv"}
        assert watcher.wrong == []
        assert laptop.staged() == []
        log = laptop.log.read_text()
        resumed = re.search(
            r"resuming the pull of big\.mkv: (\d+) of (\d+) chunks already verified"
            r"(?:, hash saved over the first (\d+))?",
            log,
        )
        assert resumed, log
        kept = int(resumed.group(1))
        assert int(resumed.group(2)) == CHUNKS
        if resumable_hash._library() is not None:
            # The whole-file hash went on from its saved state: the chunks in it were not
            # read back from the disk.
            assert resumed.group(3) is not None, resumed.group(0)
            assert 0 < int(resumed.group(3)) <= CHUNKS
        # The ledger shows chunks as they are verified; they are saved as verified in the
        # background once their bytes are synced, so the kill loses what the last sync had
        # not covered yet, never everything.
        assert 0 < kept * CHUNK_SIZE <= reported + 64 * CHUNK_SIZE
        # After the restart the tower sent only what was missing (plus TLS and framing):
        # no chunk that was saved as verified was fetched again.
        again = tower.tx_bytes() - sent_before_restart
        missing = (CHUNKS - kept) * CHUNK_SIZE
        assert missing <= again < missing * 1.03 + 2 * CHUNK_SIZE, (again, missing)
        assert tower.tx_bytes() - sent_before < SIZE * 1.5
    finally:
        dump_logs(nodes)
