"""Issue item 5: the borrower dies at every step of placing a pulled file (between the
fsync and the rename among them), through the test build's fault hook: afterwards the
borrowed folder holds either nothing or the whole verified file, and after the restart the
copy is placed and the staging area is empty."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.faults.harness import FaultNode, dump_logs, fault_mesh, file_hash, until, write_file
from tests.lan.netns import MakeLan

pytestmark = pytest.mark.netns
SIZE = 3 * 1024 * 1024 + 5
# The steps of BorrowedFolder.place for a new copy; the commit is the hard link after
# "folders", so a death before it must leave nothing and one after it the whole file.
BEFORE_COMMIT = ("verified", "synced", "folders")
AFTER_COMMIT = ("committed", "placed")


def whole_or_nothing(laptop: FaultNode, copy: Path, digest: str, *, whole: bool) -> None:
    if whole:
        assert file_hash(copy) == digest
        assert not copy.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    else:
        assert not copy.exists()


def test_a_crash_at_every_step_of_placing_leaves_nothing_or_the_whole_file(
    make_lan: MakeLan, tmp_path: Path
) -> None:
    tower, laptop = nodes = fault_mesh(make_lan(2), tmp_path, ["tower", "laptop"])
    try:
        movies = tmp_path / "movies"
        movies.mkdir()
        steps = BEFORE_COMMIT + AFTER_COMMIT
        digests = {step: write_file(movies / f"{step}.bin", SIZE) for step in steps}
        tower.share(movies, "Movies")
        # Each start dies placing its own file, after finishing the one before (the
        # hook names the file), so one start per step.
        laptop.stop()
        before: tuple[str, str] | None = None
        for step in [*steps, ""]:
            laptop.start(*(("--die-at", f"{step}:{step}.bin") if step else ()))
            until("laptop to run", laptop.running, 20)
            if before is not None:
                done, loan = before
                until(
                    f"the copy after a death at {done!r}", lambda x=loan: laptop.phase(x) == "held"
                )
                copy = laptop.copy("Movies", f"{done}.bin", "tower")
                whole_or_nothing(laptop, copy, digests[done], whole=True)
                assert laptop.staged() == []
            if not step:
                break
            loan = tower.lend(f"Movies/{step}.bin", "laptop")
            laptop.died()
            copy = laptop.copy("Movies", f"{step}.bin", "tower")
            whole_or_nothing(laptop, copy, digests[step], whole=step in AFTER_COMMIT)
            before = step, loan

        # Replacing a held copy with the lender's new version: the old or the new, whole.
        old = digests["placed"]
        # (tests/fs/test_borrowed.py dies at each step of replacing; here the one only a
        # replacement has, with a daemon.)
        for step, whole_new in (("linked", False),):
            new = write_file(movies / "placed.bin", SIZE)
            with tower.control() as control:
                control.scan(["Movies"])
            laptop.stop()
            laptop.start("--die-at", step)
            laptop.died()
            copy = laptop.copy("Movies", "placed.bin", "tower")
            whole_or_nothing(laptop, copy, new if whole_new else old, whole=True)
            laptop.up()
            until("the new version", lambda c=copy, d=new: c.exists() and file_hash(c) == d)
            assert laptop.staged() == []
            old = new
    finally:
        dump_logs(nodes)


def test_a_crash_after_a_batch_is_linked_in_before_it_is_recorded(
    make_lan: MakeLan, tmp_path: Path
) -> None:
    """A folder's small files come in a batch (node/folder_batch.py): the borrower dies
    after every file of it is linked in and its folders fsynced, before the store records
    them as held. After the restart each is placed as mesh's copy (not taken for a file of
    the user's own), the loan is held and nothing is left staged."""
    tower, laptop = nodes = fault_mesh(make_lan(2), tmp_path, ["tower", "laptop"])
    try:
        album = tmp_path / "album"
        album.mkdir()
        digests = {f"{i}.jpg": write_file(album / f"{i}.jpg", 5000 + i) for i in range(6)}
        tower.share(album, "Photos")
        laptop.stop()
        laptop.start("--die-at", "batch synced")
        until("laptop to run", laptop.running, 20)
        loan = tower.lend("Photos/", "laptop")
        laptop.died()
        assert laptop.staged()  # the staging names of the recorded pulls are kept
        laptop.up()
        until("the folder after a death", lambda: laptop.phase(loan) == "held")
        for name, digest in digests.items():
            whole_or_nothing(laptop, laptop.copy("Photos", name, "tower"), digest, whole=True)
        until("no staging left", lambda: laptop.staged() == [])
    finally:
        dump_logs(nodes)
