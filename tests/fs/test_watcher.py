"""The watcher on real inotify, and polling's walks: changes named by library and path."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from mesh.fs import inotify, poll
from mesh.fs.watcher import Change, Watcher, WatchLimitError, What

pytestmark = pytest.mark.skipif(not inotify.available(), reason="inotify is Linux only")


class LimitedInotify(inotify.Inotify):
    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def add_watch(self, path: str, mask: int) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        self.room -= 1
        return super().add_watch(path, mask)


def changes(w: Watcher, want: set[tuple[str, What]]) -> set[tuple[str, What]]:
    """Read until every change in `want` came (or 2 s passed); what came."""
    got: set[tuple[str, What]] = set()
    deadline = time.monotonic() + 2
    while not want <= got and time.monotonic() < deadline:
        got |= {(c.path, c.what) for c in w.read() if c.library == "lib"}
        time.sleep(0.01)
    return got


def test_files_and_folders_inside_a_library_are_reported(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    (root / "sub").mkdir(parents=True)
    w = Watcher()
    try:
        w.add("lib", str(root))
        assert w.watches() == 2
        (root / "sub" / "a.txt").write_bytes(b"a")
        (root / ".mesh-staging-x").write_bytes(b"ours")
        assert changes(w, {("sub/a.txt", What.FILE)}) == {("sub/a.txt", What.FILE)}

        (root / "new").mkdir()
        assert ("new", What.FOLDER) in changes(w, {("new", What.FOLDER)})
        assert w.watches() == 3  # watched at once, so what lands inside is seen
        (root / "new" / "b").write_bytes(b"b")
        assert ("new/b", What.FILE) in changes(w, {("new/b", What.FILE)})

        (root / "new" / "b").unlink()
        (root / "new").rmdir()
        assert ("new", What.FOLDER) in changes(w, {("new", What.FOLDER)})
        assert w.watches() == 2
    finally:
        w.close()


def test_the_excluded_folder_is_not_watched(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    (root / "Borrowed").mkdir(parents=True)
    w = Watcher(exclude=[str(root / "Borrowed")])
    try:
        w.add("lib", str(root))
        assert w.watches() == 1
        (root / "Borrowed" / "x").write_bytes(b"x")
        (root / "mine").write_bytes(b"m")
        assert changes(w, {("mine", What.FILE)}) == {("mine", What.FILE)}
    finally:
        w.close()


def test_a_full_watch_table_leaves_the_library_unwatched(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    (root / "a" / "b").mkdir(parents=True)
    w = Watcher(make=lambda: LimitedInotify(2))
    try:
        with pytest.raises(WatchLimitError, match="limit of watched folders"):
            w.add("lib", str(root))
        assert (w.watches(), w.libraries()) == (0, set())
    finally:
        w.close()


def test_a_removed_library_root_asks_for_a_whole_scan(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    root.mkdir()
    w = Watcher()
    try:
        w.add("lib", str(root))
        root.rename(tmp_path / "elsewhere")
        assert ("", What.LIBRARY) in changes(w, {("", What.LIBRARY)})
    finally:
        w.close()


def test_polling_reports_the_same_changes(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    (root / "gone").mkdir(parents=True)
    (root / "gone" / "f").write_bytes(b"f")
    (root / "same").write_bytes(b"s")
    (root / "grows").write_bytes(b"g")
    before = poll.snapshot(str(root))
    (root / "gone" / "f").unlink()
    (root / "gone").rmdir()
    (root / "grows").write_bytes(b"grown")
    (root / "new").write_bytes(b"n")
    (root / ".mesh-staging").mkdir()
    after = poll.snapshot(str(root))
    found = {(c.path, c.what, seen) for c, seen in poll.diff("lib", before, after)}
    st = (root / "grows").stat()
    assert found == {
        ("gone", What.FOLDER, None),
        ("gone/f", What.FILE, None),
        ("grows", What.FILE, (5, st.st_mtime_ns)),
        ("new", What.FILE, (1, (root / "new").stat().st_mtime_ns)),
    }
    assert all(isinstance(c, Change) for c, _ in poll.diff("lib", before, after))
