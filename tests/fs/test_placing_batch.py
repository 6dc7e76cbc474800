"""Placing a batch of small verified files (fs/placing_batch.py), on real files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import xxhash

import mesh.fs.borrowed as borrowed
from mesh.core.errors import PlacementError, UserFileInTheWayError
from mesh.fs.borrowed import BorrowedFolder, FileId, Placing


def item(key: str, name: str, data: bytes, folder: str = "album") -> Placing:
    return Placing(
        key=key,
        parts=("tower", "photos", folder, name),
        data=data,
        hash=xxhash.xxh3_128_digest(data),
    )


def place_batch(folder: BorrowedFolder, items: list[Placing]) -> list[FileId | PlacementError]:
    """Stage, then link what was staged, as node/folder_batch.py does."""
    failed = folder.stage_batch(items)
    staged = [i for i, why in zip(items, failed, strict=True) if why is None]
    linked = iter(folder.link_batch(staged))
    return [why if why is not None else next(linked) for why in failed]


def test_a_batch_is_placed_read_only_and_a_user_file_in_the_way_is_left_alone(
    tmp_path: Path,
) -> None:
    folder = BorrowedFolder(tmp_path / "borrowed")
    album = tmp_path / "borrowed" / "tower" / "photos" / "album"
    album.mkdir(parents=True)
    (album / "mine.jpg").write_bytes(b"the user's own")
    items = [
        item("a1", "one.jpg", b"one"),
        item("a2", "mine.jpg", b"mesh's"),
        item("a3", "three.jpg", b"three" * 1000, folder="other"),
    ]
    results = place_batch(folder, items)
    assert isinstance(results[0], FileId) and isinstance(results[2], FileId)
    assert isinstance(results[1], UserFileInTheWayError)
    assert (album / "one.jpg").read_bytes() == b"one"
    assert (album / "mine.jpg").read_bytes() == b"the user's own"
    placed = tmp_path / "borrowed" / "tower" / "photos" / "other" / "three.jpg"
    assert placed.read_bytes() == b"three" * 1000
    assert not stat.S_IMODE(placed.stat().st_mode) & 0o222
    # Until the caller records them, the staging names keep the copies findable.
    assert set(folder.staged_keys()) >= {"a1", "a3"}


def test_bytes_that_do_not_match_their_hash_are_not_placed(tmp_path: Path) -> None:
    folder = BorrowedFolder(tmp_path / "borrowed")
    bad = Placing(key="b1", parts=("tower", "photos", "album", "x.jpg"), data=b"x", hash=b"\0" * 16)
    results = place_batch(folder, [bad, item("b2", "y.jpg", b"y")])
    assert isinstance(results[0], PlacementError) and isinstance(results[1], FileId)
    assert not (tmp_path / "borrowed" / "tower" / "photos" / "album" / "x.jpg").exists()


def test_killed_before_the_links_nothing_is_placed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file is fsynced before any is linked in: a kill there leaves only staging."""

    class KilledError(Exception):
        pass

    def hook(step: str) -> None:
        if step == "batch staged":
            raise KilledError

    folder = BorrowedFolder(tmp_path / "borrowed")
    monkeypatch.setattr(borrowed, "_fault_hook", hook)
    with pytest.raises(KilledError):
        place_batch(folder, [item("c1", "one.jpg", b"one"), item("c2", "two.jpg", b"two")])
    assert not (tmp_path / "borrowed" / "tower").exists()
    assert sorted(os.listdir(tmp_path / "borrowed" / ".mesh-staging")) == ["c1", "c2"]


def test_a_batch_linked_in_before_a_kill_is_placed_again_as_mesh_s_own(tmp_path: Path) -> None:
    """Linked in, not yet recorded, then linked again (the next start's place()): each
    file is found as its staging file's own placement, not taken for a user's file; a
    file staged by an earlier pull (writable, not made by the batch) goes through place()
    as well."""
    folder = BorrowedFolder(tmp_path / "borrowed")
    items = [item("b1", "one.jpg", b"one"), item("b2", "two.jpg", b"two")]
    first = place_batch(folder, items)
    assert all(isinstance(r, FileId) for r in first)
    assert folder.link_batch(items) == first
    earlier = item("b3", "three.jpg", b"three")
    staging = tmp_path / "borrowed" / ".mesh-staging"
    (staging / "b3").write_bytes(b"three")  # as a pull's own staging file, mode 0600
    (placed,) = folder.link_batch([earlier])
    assert isinstance(placed, FileId)
    copy = tmp_path / "borrowed" / "tower" / "photos" / "album" / "three.jpg"
    assert copy.read_bytes() == b"three"
    assert not stat.S_IMODE(copy.stat().st_mode) & 0o222


def test_a_folder_made_for_files_that_were_not_placed_is_removed(tmp_path: Path) -> None:
    folder = BorrowedFolder(tmp_path / "borrowed")
    (result,) = folder.link_batch([item("c1", "gone.jpg", b"gone", folder="new")])
    assert isinstance(result, PlacementError)  # nothing staged under c1
    assert not (tmp_path / "borrowed" / "tower" / "photos" / "new").exists()


def test_a_batch_leaves_no_batch_folder_and_a_killed_runs_is_swept(tmp_path: Path) -> None:
    folder = BorrowedFolder(tmp_path / "borrowed")
    staging_dir = tmp_path / "borrowed" / ".mesh-staging"
    # A key staged by an earlier pull: the batch's file takes its name over, never beside it.
    with folder.staging("c2", 3) as old:
        old.write_chunk(0, b"old")
    results = place_batch(folder, [item("c1", "one.jpg", b"one"), item("c2", "two.jpg", b"two")])
    assert all(isinstance(r, FileId) for r in results)
    assert sorted(p.name for p in staging_dir.iterdir()) == ["c1", "c2"]
    assert (staging_dir / "c2").read_bytes() == b"two"
    # A kill mid-batch leaves a batch folder with unrecorded files: the sweep deletes it,
    # and it is never taken for a staging key.
    left = staging_dir / "batch-0badc0de-7"
    left.mkdir()
    (left / "c3").write_bytes(b"half")
    assert folder.staged_keys() == ["c1", "c2"]
    assert folder.sweep_batch_folders() == ["batch-0badc0de-7"]
    assert sorted(p.name for p in staging_dir.iterdir()) == ["c1", "c2"]
