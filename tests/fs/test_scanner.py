"""The scanner: exactly the changes, unchanged files never read, nothing followed outside."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash

from mesh.core.entries import Library
from mesh.core.epoch import Epoch
from mesh.core.ids import NodeId
from mesh.core.progress import ScanProgress
from mesh.fs import scanner as scanner_module
from mesh.fs.scanner import Scanner
from mesh.store.database import Database
from mesh.store.index import LibraryIndex, ScanBatch
from mesh.store.records import SqliteReplicaStore


@pytest.fixture
def index(tmp_path: Path) -> Iterator[LibraryIndex]:
    db = Database(tmp_path / "m.db")
    records = SqliteReplicaStore(db, self_id=NodeId(b"\x01" * 32), own_epoch=Epoch(1, 2))
    yield LibraryIndex(db, records.take_own_seqs)
    db.close()


@pytest.fixture
def root(tmp_path: Path, index: LibraryIndex) -> Path:
    folder = tmp_path / "lib"
    folder.mkdir()
    index.add_library(Library(name="lib", root=str(folder)), 0)
    return folder


def scan(index: LibraryIndex, workers: int = 1) -> ScanProgress:
    scanner = Scanner(load_known=index.known_by_folder, commit=index.apply, workers=workers)
    return scanner.scan(index.libraries())


def live(index: LibraryIndex) -> dict[str, tuple[bytes, int]]:
    return {e.entry.path: (e.entry.hash, e.seq) for e in index.entries()}


def test_first_scan_indexes_every_file(index: LibraryIndex, root: Path) -> None:
    (root / "a.txt").write_bytes(b"alpha")
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "sub" / "deeper" / "b.bin").write_bytes(b"beta" * 1000)
    (root / "with space é").write_bytes(b"")
    (root / "-dash").write_bytes(b"d")
    result = scan(index)
    assert (result.added, result.changed, result.removed) == (4, 0, 0)
    got = live(index)
    assert set(got) == {"a.txt", "sub/deeper/b.bin", "with space é", "-dash"}
    assert got["a.txt"][0] == xxhash.xxh3_128_digest(b"alpha")
    assert sorted(seq for _, seq in got.values()) == [1, 2, 3, 4]


def test_rescan_sees_exactly_the_changes_with_new_seqs(index: LibraryIndex, root: Path) -> None:
    for name in "abcd":
        (root / name).write_bytes(name.encode())
    scan(index)
    before = live(index)
    (root / "a").write_bytes(b"changed a")
    (root / "b").unlink()
    (root / "e").write_bytes(b"new")
    result = scan(index)
    assert (result.added, result.changed, result.removed, result.unchanged) == (1, 1, 1, 2)
    after = live(index)
    assert set(after) == {"a", "c", "d", "e"}
    assert after["c"] == before["c"] and after["d"] == before["d"]
    assert after["a"][1] > max(s for _, s in before.values())
    deleted = {e.entry.path: e.seq for e in index.entries(include_deleted=True) if e.entry.deleted}
    assert set(deleted) == {"b"} and deleted["b"] > before["b"][1]


def test_unchanged_files_are_not_read(index: LibraryIndex, root: Path) -> None:
    path = root / "same"
    path.write_bytes(b"original")
    scan(index)
    st = path.stat()
    # Same size, mtime and inode, other bytes: only reading the file could notice.
    with path.open("r+b") as f:
        f.write(b"ORIGINAL")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    result = scan(index)
    assert result.files_to_hash == 0
    assert live(index)["same"][0] == xxhash.xxh3_128_digest(b"original")


def test_symlinks_are_never_followed(index: LibraryIndex, root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (root / "to-dir").symlink_to(outside)
    (root / "to-file").symlink_to(outside / "secret")
    (root / "real").write_bytes(b"r")
    scan(index)
    assert set(live(index)) == {"real"}


def test_staging_files_and_special_files_are_skipped(index: LibraryIndex, root: Path) -> None:
    (root / ".mesh-staging").mkdir()
    (root / ".mesh-staging" / "partial").write_bytes(b"half")
    (root / "x.mesh-partial").write_bytes(b"x")  # only the .mesh- prefix is ours
    os.mkfifo(root / "fifo")
    scan(index)
    assert set(live(index)) == {"x.mesh-partial"}


def test_a_missing_root_keeps_its_entries(index: LibraryIndex, root: Path) -> None:
    (root / "a").write_bytes(b"a")
    scan(index)
    (root / "a").unlink()
    root.rmdir()
    result = scan(index)
    assert result.removed == 0
    assert any("missing" in w for w in result.warnings)
    assert set(live(index)) == {"a"}


def test_many_files_are_hashed_by_worker_processes_with_the_same_result(
    index: LibraryIndex, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every folder goes to the worker processes: none may be scanned in this one.
    monkeypatch.setattr(scanner_module, "_INLINE_BUDGET_S", 0.0)

    def in_this_process(_task: object) -> None:
        raise AssertionError("a folder was scanned outside the worker processes")

    monkeypatch.setattr(scanner_module, "scan_folders", in_this_process)
    for i in range(1200):
        sub = root / f"d{i % 7}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{i}").write_bytes(os.urandom(i % 3000))
    (root / "large").write_bytes(os.urandom(70 << 20))
    seen: list[ScanProgress] = []
    scanner = Scanner(
        load_known=index.known_by_folder, commit=index.apply, workers=2, on_progress=seen.append
    )
    result = scanner.scan(index.libraries())
    assert result.added == 1201 and result.done
    assert seen, "no progress was reported"
    for e in index.entries():
        data = (root / e.entry.path).read_bytes()
        assert e.entry.hash == xxhash.xxh3_128_digest(data), e.entry.path
    assert result.bytes_hashed == result.bytes_to_hash

    # A rescan by the workers: exactly one change and one deletion come back.
    before = live(index)
    (root / "d1" / "f1").write_bytes(b"changed")
    (root / "d2" / "f2").unlink()
    result = Scanner(load_known=index.known_by_folder, commit=index.apply, workers=2).scan(
        index.libraries()
    )
    assert (result.changed, result.removed, result.unchanged) == (1, 1, 1199)
    after = live(index)
    assert after["d1/f1"][0] == xxhash.xxh3_128_digest(b"changed")
    assert "d2/f2" not in after
    assert {p: v for p, v in after.items() if p != "d1/f1"} == {
        p: v for p, v in before.items() if p not in ("d1/f1", "d2/f2")
    }


def test_an_unreadable_folder_does_not_delete_its_entries(index: LibraryIndex, root: Path) -> None:
    (root / "locked").mkdir()
    (root / "locked" / "f").write_bytes(b"f")
    (root / "open").write_bytes(b"o")
    scan(index)
    os.chmod(root / "locked", 0)
    try:
        if os.access(root / "locked", os.R_OK):
            pytest.skip("running with CAP_DAC_OVERRIDE: permissions do not apply")
        result = scan(index)
    finally:
        os.chmod(root / "locked", 0o755)
    assert result.removed == 0
    assert any("cannot list" in w for w in result.warnings)
    assert set(live(index)) == {"locked/f", "open"}


def test_a_removed_folder_removes_its_files(index: LibraryIndex, root: Path) -> None:
    (root / "keep").write_bytes(b"k")
    (root / "gone" / "deeper").mkdir(parents=True)
    (root / "gone" / "a").write_bytes(b"a")
    (root / "gone" / "deeper" / "b").write_bytes(b"b")
    scan(index)
    for p in (root / "gone" / "deeper" / "b", root / "gone" / "a"):
        p.unlink()
    (root / "gone" / "deeper").rmdir()
    (root / "gone").rmdir()
    result = scan(index)
    assert result.removed == 2
    assert set(live(index)) == {"keep"}


def test_a_file_replaced_by_a_folder(index: LibraryIndex, root: Path) -> None:
    (root / "x").write_bytes(b"file")
    scan(index)
    (root / "x").unlink()
    (root / "x").mkdir()
    (root / "x" / "inside").write_bytes(b"i")
    result = scan(index)
    assert (result.added, result.removed) == (1, 1)
    assert set(live(index)) == {"x/inside"}


def test_a_root_moved_behind_a_symlink_keeps_its_entries(
    index: LibraryIndex, root: Path, tmp_path: Path
) -> None:
    (root / "sub").mkdir()
    (root / "sub" / "a").write_bytes(b"a")
    (root / "b").write_bytes(b"b")
    scan(index)
    before = live(index)
    # The files move to another disk and a symlink takes the library's place.
    moved = tmp_path / "elsewhere"
    root.rename(moved)
    root.symlink_to(moved)
    result = scan(index)
    assert (result.removed, result.unchanged) == (0, 2)
    assert live(index) == before


def test_a_scan_done_in_this_process_still_commits_in_slices(
    index: LibraryIndex, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scanner_module, "_COMMIT_EVERY", 100)
    for i in range(600):
        sub = root / f"d{i // 15}"  # 40 folders: a task takes up to 16 of them
        sub.mkdir(exist_ok=True)
        (sub / f"f{i}").write_bytes(b"x")
    slices: list[int] = []

    def commit(library: str, batch: ScanBatch) -> int:
        slices.append(len(batch))
        return index.apply(library, batch)

    Scanner(load_known=index.known_by_folder, commit=commit, workers=1).scan(index.libraries())
    assert sum(slices) == 600
    assert len(slices) >= 3, slices  # a crash late in the scan keeps the earlier slices
