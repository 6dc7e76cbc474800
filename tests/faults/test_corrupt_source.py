"""Issue item 4: a source that serves corrupted chunks (its file rotted on disk, size,
mtime and inode unchanged, so it does not notice): every bad chunk is fetched again from
the other holder, the source is dropped for that pull after its second bad chunk and named
in the borrower's log and in the loan's status, and the copy has the right hash."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mesh.core.chunks import CHUNK_SIZE
from tests.faults.harness import MB, dump_logs, fault_mesh, file_hash, until, write_file
from tests.lan.netns import MakeLan

pytestmark = pytest.mark.netns
SIZE = 24 * MB


def rot(path: Path, chunks: range) -> None:
    """Flip bytes in the middle of each of `chunks`, keeping the file's size and mtime."""
    st = path.stat()
    fd = os.open(path, os.O_RDWR)
    try:
        for index in chunks:
            offset = index * CHUNK_SIZE + CHUNK_SIZE // 2
            byte = os.pread(fd, 1, offset)
            os.pwrite(fd, bytes([byte[0] ^ 0xFF]), offset)
    finally:
        os.close(fd)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_corrupting_source_is_dropped_and_its_chunks_fetched_again(
    make_lan: MakeLan, tmp_path: Path
) -> None:
    tower, laptop, desk = nodes = fault_mesh(make_lan(3), tmp_path, ["tower", "laptop", "desk"])
    try:
        movies = tmp_path / "movies"
        movies.mkdir()
        lent = movies / "heat.mkv"
        digest = write_file(lent, SIZE)
        tower.share(movies, "Movies")
        first = tower.lend("Movies/heat.mkv", "desk")
        until("desk to hold a copy", lambda: desk.phase(first) == "held")

        # The tower's file rots in every other chunk; the desk's copy is sound but slow,
        # so the tower gets to send several runs before the desk has sent everything.
        rot(lent, range(0, SIZE // CHUNK_SIZE, 2))
        desk.host.limit_rate("40mbit")
        loan = tower.lend("Movies/heat.mkv", "laptop")
        reasons: set[str] = set()

        def held() -> bool:
            line = laptop.loan(loan)
            if line is not None and line.reason:
                reasons.add(line.reason)
            return line is not None and line.phase == "held"

        until("the laptop's copy", held, 60)
        assert file_hash(laptop.copy("Movies", "heat.mkv", "tower")) == digest
        dropped = "dropped tower as a source: it sent 2 bad chunks"
        assert any(dropped in reason for reason in reasons), reasons
        log = laptop.log.read_text()
        assert dropped in log
        assert "does not match its hash" in log
        assert "dropped desk" not in log
    finally:
        dump_logs(nodes)
