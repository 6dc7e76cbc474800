"""Partial scans (what the library watcher asks for): only the folders named are listed,
files still being written are left alone, and a folder that went away loses its files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mesh.core.entries import Library
from mesh.core.epoch import Epoch
from mesh.core.ids import NodeId
from mesh.core.progress import ScanProgress
from mesh.fs.scanner import Scanner, Scope
from mesh.store.database import Database
from mesh.store.index import LibraryIndex
from mesh.store.records import SqliteReplicaStore


@pytest.fixture
def index(tmp_path: Path) -> Iterator[LibraryIndex]:
    db = Database(tmp_path / "m.db")
    records = SqliteReplicaStore(db, self_id=NodeId(b"\x01" * 32), own_epoch=Epoch(1, 2))
    yield LibraryIndex(db, records.take_own_seqs)
    db.close()


Scan = Callable[..., ScanProgress]


@pytest.fixture(params=["folder by folder", "whole subtrees"])
def scan(request: pytest.FixtureRequest) -> Scan:
    """Partial scans loading only the folders listed (as the daemon does), or the subtrees
    below them."""
    by_folder = request.param == "folder by folder"

    def run(index: LibraryIndex, scope: Scope | None = None) -> ScanProgress:
        scanner = Scanner(
            load_known=index.known_by_folder,
            load_folder=index.known_in_folder if by_folder else None,
            commit=index.apply,
            workers=1,
        )
        return scanner.scan(index.libraries(), {"lib": scope} if scope else None)

    return run


@pytest.fixture
def root(tmp_path: Path, index: LibraryIndex, scan: Scan) -> Path:
    folder = tmp_path / "lib"
    (folder / "a" / "deep").mkdir(parents=True)
    (folder / "b").mkdir()
    (folder / "top.txt").write_bytes(b"top")
    (folder / "a" / "one.txt").write_bytes(b"one")
    (folder / "a" / "two.txt").write_bytes(b"two")
    (folder / "a" / "deep" / "three.txt").write_bytes(b"three")
    (folder / "b" / "four.txt").write_bytes(b"four")
    index.add_library(Library(name="lib", root=str(folder)), 0)
    scan(index)
    return folder


def live(index: LibraryIndex) -> dict[str, int]:
    return {e.entry.path: e.seq for e in index.entries()}


def test_lists_only_the_folders_named_and_hashes_only_what_changed(
    index: LibraryIndex, root: Path, scan: Scan
) -> None:
    before = live(index)
    (root / "a" / "one.txt").write_bytes(b"one, changed")
    (root / "a" / "new.txt").write_bytes(b"new")
    (root / "b" / "elsewhere.txt").write_bytes(b"not looked at")
    (root / "a" / "deep" / "below.txt").write_bytes(b"below, not looked at")

    result = scan(index, Scope(folders=frozenset({"a"})))

    assert (result.files_seen, result.files_hashed, result.unchanged) == (3, 2, 1)
    after = live(index)
    assert set(after) == {*before, "a/new.txt"}
    assert after["a/one.txt"] > before["a/one.txt"]
    assert after["a/two.txt"] == before["a/two.txt"]  # not read again
    assert after["a/deep/three.txt"] == before["a/deep/three.txt"]


def test_a_skipped_file_is_neither_indexed_nor_taken_as_gone(
    index: LibraryIndex, root: Path, scan: Scan
) -> None:
    before = live(index)
    (root / "a" / "one.txt").write_bytes(b"half writ")
    (root / "a" / "growing.bin").write_bytes(b"half")
    (root / "a" / "done.txt").write_bytes(b"done")

    scan(index, Scope(folders=frozenset({"a"}), skip=frozenset({"a/one.txt", "a/growing.bin"})))

    after = live(index)
    assert "a/growing.bin" not in after
    assert after["a/one.txt"] == before["a/one.txt"]
    assert "a/done.txt" in after


def test_a_full_scan_skips_too(index: LibraryIndex, root: Path, scan: Scan) -> None:
    (root / "b" / "growing.bin").write_bytes(b"half")
    scan(index, Scope(skip=frozenset({"b/growing.bin"})))
    assert "b/growing.bin" not in live(index)
    scan(index)
    assert "b/growing.bin" in live(index)


def test_a_removed_folder_is_gone_once_its_parent_is_listed(
    index: LibraryIndex, root: Path, scan: Scan
) -> None:
    for f in (root / "a" / "deep").iterdir():
        f.unlink()
    (root / "a" / "deep").rmdir()

    # The folder itself, named by the event about it, is simply not there any more.
    result = scan(index, Scope(folders=frozenset({"a/deep"})))
    assert (result.removed, result.warnings) == (0, [])
    assert "a/deep/three.txt" in live(index)

    result = scan(index, Scope(folders=frozenset({"a"})))
    assert result.removed == 1
    assert set(live(index)) == {"top.txt", "a/one.txt", "a/two.txt", "b/four.txt"}


def test_folders_below_one_listed_are_kept_when_still_there(
    index: LibraryIndex, root: Path, scan: Scan
) -> None:
    scan(index, Scope(folders=frozenset({""})))
    assert set(live(index)) == {
        "top.txt",
        "a/one.txt",
        "a/two.txt",
        "a/deep/three.txt",
        "b/four.txt",
    }


def test_an_empty_scope_looks_at_nothing(index: LibraryIndex, root: Path, scan: Scan) -> None:
    (root / "top.txt").unlink()
    result = scan(index, Scope(folders=frozenset()))
    assert (result.files_seen, result.removed) == (0, 0)
    assert "top.txt" in live(index)


def test_a_removed_tree_is_gone_whole_and_its_look_alikes_stay(
    index: LibraryIndex, root: Path, scan: Scan
) -> None:
    for name in ("a b", "a0", "ä"):
        (root / name).mkdir()
        (root / name / "f").write_bytes(name.encode())
    scan(index)
    for f in [*(root / "a").rglob("*")][::-1]:
        f.unlink() if f.is_file() else f.rmdir()
    (root / "a").rmdir()

    result = scan(index, Scope(folders=frozenset({""})))

    assert result.removed == 3
    assert set(live(index)) == {"top.txt", "b/four.txt", "a b/f", "a0/f", "ä/f"}


def test_the_index_lists_one_folder_inside_sqlite(index: LibraryIndex, root: Path) -> None:
    files, children = index.known_in_folder("lib", "")
    assert set(files) == {"top.txt"} and children == {"a", "b"}
    files, children = index.known_in_folder("lib", "a")
    assert set(files) == {"one.txt", "two.txt"} and children == {"deep"}
    assert files["one.txt"][0] == 3
    assert index.known_in_folder("lib", "a/deep") == (
        {"three.txt": index.known_by_folder("lib")["a/deep"]["three.txt"]},
        set(),
    )
