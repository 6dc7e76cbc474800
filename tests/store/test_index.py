"""The local index: every write takes the next seq, atomically; libraries never overlap."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh.core.entries import Library
from mesh.core.epoch import Epoch
from mesh.core.errors import AlreadyExistsError, NotFoundError, StoreError
from mesh.core.ids import NodeId
from mesh.store.database import Database
from mesh.store.index import FileRow, LibraryIndex, ScanBatch
from mesh.store.records import SqliteReplicaStore


@pytest.fixture
def index(tmp_path: Path) -> Iterator[LibraryIndex]:
    db = Database(tmp_path / "m.db")
    records = SqliteReplicaStore(db, self_id=NodeId(b"\x01" * 32), own_epoch=Epoch(1, 2))
    index = LibraryIndex(db, records.take_own_seqs)
    index.add_library(Library(name="lib", root="/x"), 0)
    yield index
    db.close()


def row(path: str, content: bytes = b"h", size: int = 1, inode: int = 1) -> FileRow:
    return (path, size, 5, inode, content.ljust(16, b"."), b"r" * 16)


def state(index: LibraryIndex) -> dict[str, tuple[int, bool]]:
    return {e.entry.path: (e.seq, e.entry.deleted) for e in index.entries(include_deleted=True)}


def test_every_write_takes_the_next_seq(index: LibraryIndex) -> None:
    assert index.apply("lib", ScanBatch(new=[row("a"), row("b")])) == 2
    assert index.apply("lib", ScanBatch(changed=[row("a", b"new")], gone=["b"])) == 2
    assert state(index) == {"a": (3, False), "b": (4, True)}
    assert [e.entry.path for e in index.entries()] == ["a"]
    assert index.entries()[0].entry.hash == b"new".ljust(16, b".")


def test_a_deleted_path_comes_back_as_a_change(index: LibraryIndex) -> None:
    index.apply("lib", ScanBatch(new=[row("a")]))
    index.apply("lib", ScanBatch(gone=["a"]))
    index.apply("lib", ScanBatch(changed=[row("a", b"again")]))
    assert state(index) == {"a": (3, False)}


def test_restat_takes_no_seq(index: LibraryIndex) -> None:
    index.apply("lib", ScanBatch(new=[row("a")]))
    assert index.apply("lib", ScanBatch(restat=[("a", 99)])) == 0
    assert index.known_by_folder("lib")[""]["a"][2] == 99
    assert state(index) == {"a": (1, False)}


def test_known_is_grouped_by_folder(index: LibraryIndex) -> None:
    index.apply("lib", ScanBatch(new=[row("top"), row("x/y/deep"), row("x/mid")]))
    index.apply("lib", ScanBatch(gone=["x/mid"]))
    known = index.known_by_folder("lib")
    assert set(known) == {"", "x", "x/y"}
    assert known["x"]["mid"][4] is True and known["x/y"]["deep"][4] is False


def test_unshare_turns_live_entries_into_deleted_writes(index: LibraryIndex) -> None:
    index.apply("lib", ScanBatch(new=[row("a"), row("b")]))
    assert index.remove_library("lib") == 2
    assert index.libraries() == []
    assert state(index) == {"a": (3, True), "b": (4, True)}
    with pytest.raises(NotFoundError):
        index.remove_library("lib")


@pytest.mark.parametrize(
    ("name", "root"),
    [("lib", "/other"), ("two", "/x"), ("two", "/x/inner"), ("two", "/")],
)
def test_overlapping_or_duplicate_libraries_are_refused(
    index: LibraryIndex, name: str, root: str
) -> None:
    with pytest.raises(AlreadyExistsError):
        index.add_library(Library(name=name, root=root), 0)


def test_a_failed_batch_takes_no_seq_and_writes_nothing(index: LibraryIndex) -> None:
    index.apply("lib", ScanBatch(new=[row("a")]))
    # "a" exists, so inserting it as new breaks the unique path index mid-batch.
    with pytest.raises(StoreError):
        index.apply("lib", ScanBatch(new=[row("ok"), row("a")]))
    assert state(index) == {"a": (1, False)}
    assert index.apply("lib", ScanBatch(new=[row("ok")])) == 1
    assert state(index)["ok"] == (2, False)


def test_a_batch_for_an_unshared_library_is_refused(index: LibraryIndex) -> None:
    index.remove_library("lib")
    with pytest.raises(NotFoundError):
        index.apply("lib", ScanBatch(new=[row("a")]))


def test_chunk_hashes_are_kept_for_multi_chunk_files(index: LibraryIndex) -> None:
    big = b"big".ljust(16, b".")
    packed = b"1" * 16 + b"2" * 16 + b"3" * 16
    index.apply(
        "lib",
        ScanBatch(new=[row("big", b"big", size=3 << 20)], chunk_lists=[(big, b"r" * 16, packed)]),
    )
    assert index.chunk_hashes(big, 3 << 20) == packed
    small = b"h".ljust(16, b".")
    assert index.chunk_hashes(small, 1) == small
    assert index.chunk_hashes(b"?" * 16, 5 << 20) is None
