"""The borrowed folder: staging, placing, replacing and removing copies, on real files.

Every hostile case asserts on the file system itself: a sentinel folder outside the borrowed
folder must stay exactly as it was, whatever was planted or swapped in.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

import mesh.fs.borrowed as borrowed
from mesh.core.chunks import CHUNK_SIZE, chunk_count, chunk_span
from mesh.core.errors import (
    InvalidArgumentError,
    InvalidPathError,
    NoSpaceError,
    NotFoundError,
    PlacementError,
    UserFileInTheWayError,
)
from mesh.core.paths import check_name
from mesh.fs.borrowed import STAGING, BorrowedFolder, FileId
from tests.strategies import names as valid_names

KEY = "ab12"
PARTS = ["tower", "photos", "2024", "beach.jpg"]


def stage(folder: BorrowedFolder, key: str, data: bytes) -> bytes:
    """Write `data` into the staging file of `key` chunk by chunk; its content hash."""
    with folder.staging(key, len(data)) as staged:
        for index in range(chunk_count(len(data))):
            offset, length = chunk_span(len(data), index)
            staged.write_chunk(index, data[offset : offset + length])
        staged.sync()
    return xxhash.xxh3_128_digest(data)


def put(folder: BorrowedFolder, key: str, parts: list[str], data: bytes) -> FileId:
    file_id = folder.place(key, parts, stage(folder, key, data), replacing=None)
    folder.discard(key)
    return file_id


def snapshot(top: Path) -> dict[str, bytes | str]:
    """Everything under `top`: file contents, link targets and folders, by relative path."""
    found: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(top))
            if path.is_symlink():
                found[rel] = "-> " + os.readlink(path)
            elif path.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = path.read_bytes()
    return found


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "Borrowed"


@pytest.fixture
def folder(root: Path) -> BorrowedFolder:
    return BorrowedFolder(root)


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    """A sentinel folder beside the borrowed folder that must never change."""
    sentinel = tmp_path / "outside"
    sentinel.mkdir()
    (sentinel / "keep.txt").write_bytes(b"the user's own file")
    before = snapshot(sentinel)
    yield sentinel
    assert snapshot(sentinel) == before, "something outside the borrowed folder changed"


# -- the folder itself ---------------------------------------------------------------------


def test_creates_the_root_and_a_private_staging_folder(tmp_path: Path) -> None:
    root = tmp_path / "a" / "Borrowed"
    BorrowedFolder(root)
    assert root.is_dir()
    assert stat.S_IMODE((root / STAGING).stat().st_mode) == 0o700


def test_a_root_that_is_a_symlink_is_refused(tmp_path: Path, outside: Path) -> None:
    (tmp_path / "Borrowed").symlink_to(outside)
    with pytest.raises(PlacementError, match="symbolic link"):
        BorrowedFolder(tmp_path / "Borrowed")


def test_a_staging_folder_that_is_a_symlink_is_refused(root: Path, outside: Path) -> None:
    root.mkdir()
    (root / STAGING).symlink_to(outside)
    with pytest.raises(PlacementError, match="symbolic link"):
        BorrowedFolder(root)


def test_a_staging_folder_swapped_for_a_symlink_later_is_refused(
    root: Path, folder: BorrowedFolder, outside: Path
) -> None:
    (root / STAGING).rmdir()
    (root / STAGING).symlink_to(outside)
    with pytest.raises(PlacementError, match="symbolic link"):
        folder.staging(KEY, 10)
    with pytest.raises(PlacementError, match="symbolic link"):
        folder.place(KEY, PARTS, b"0" * 16, replacing=None)
    with pytest.raises(PlacementError, match="symbolic link"):
        folder.discard("6b656570")  # hex of "keep": nothing may be deleted through the link


def test_free_bytes_is_what_statvfs_says(root: Path, folder: BorrowedFolder) -> None:
    st = os.statvfs(root)
    assert abs(folder.free_bytes() - st.f_bavail * st.f_frsize) < 64 * CHUNK_SIZE


def test_a_deleted_root_is_made_again(root: Path, folder: BorrowedFolder) -> None:
    (root / STAGING).rmdir()
    root.rmdir()
    put(folder, KEY, PARTS, b"data")
    assert root.joinpath(*PARTS).read_bytes() == b"data"


# -- staging ---------------------------------------------------------------------------------


def test_a_resumed_staging_file_keeps_its_written_chunks(folder: BorrowedFolder) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 5)
    with folder.staging(KEY, len(data)) as staged:
        staged.write_chunk(0, data[:CHUNK_SIZE])
        staged.write_chunk(2, data[2 * CHUNK_SIZE :])
        staged.sync()
    with folder.staging(KEY, len(data)) as staged:
        assert staged.read_chunk(0) == data[:CHUNK_SIZE]
        assert staged.read_chunk(2) == data[2 * CHUNK_SIZE :]
        assert staged.read_chunk(1) == bytes(CHUNK_SIZE)  # never written: a hole of zeros
        staged.write_chunk(1, data[CHUNK_SIZE : 2 * CHUNK_SIZE])
    file_id = folder.place(KEY, PARTS, xxhash.xxh3_128_digest(data), replacing=None)
    assert folder.holds(PARTS, file_id)


def test_a_chunk_of_the_wrong_length_or_index_is_refused(folder: BorrowedFolder) -> None:
    with folder.staging(KEY, CHUNK_SIZE + 10) as staged:
        with pytest.raises(ValueError, match="10 bytes"):
            staged.write_chunk(1, b"x" * 11)
        with pytest.raises(ValueError):
            staged.write_chunk(0, b"x" * 10)
        with pytest.raises(IndexError):
            staged.write_chunk(2, b"")
    with pytest.raises(ValueError, match="closed"):
        staged.write_chunk(1, b"x" * 10)


def test_staged_keys_and_discard(folder: BorrowedFolder) -> None:
    stage(folder, "aa", b"1")
    stage(folder, "bb", b"2")
    assert folder.staged_keys() == ["aa", "bb"]
    folder.discard("aa")
    folder.discard("aa")  # missing is fine
    assert folder.staged_keys() == ["bb"]


@pytest.mark.parametrize("key", ["", "../x", "AB", "a/b", ".mesh", "g1", "a" * 129])
def test_a_key_that_is_not_lower_case_hex_is_refused(folder: BorrowedFolder, key: str) -> None:
    with pytest.raises(InvalidArgumentError):
        folder.staging(key, 1)
    with pytest.raises(InvalidArgumentError):
        folder.discard(key)


def test_a_symlink_planted_as_a_staging_file_is_replaced_not_followed(
    root: Path, folder: BorrowedFolder, outside: Path
) -> None:
    (root / STAGING / KEY).symlink_to(outside / "keep.txt")
    stage(folder, KEY, b"fetched bytes")
    assert not (root / STAGING / KEY).is_symlink()
    assert (root / STAGING / KEY).read_bytes() == b"fetched bytes"


def test_a_hard_link_planted_as_a_staging_file_is_never_written(
    root: Path, folder: BorrowedFolder, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    os.link(victim, root / STAGING / KEY)
    stage(folder, KEY, b"fetched!")
    assert victim.read_bytes() == b"precious"
    assert (root / STAGING / KEY).read_bytes() == b"fetched!"


# -- placing -------------------------------------------------------------------------------


def test_places_a_verified_read_only_copy(root: Path, folder: BorrowedFolder) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 5)
    file_id = folder.place(KEY, PARTS, stage(folder, KEY, data), replacing=None)
    placed = root.joinpath(*PARTS)
    assert placed.read_bytes() == data
    assert stat.S_IMODE(placed.stat().st_mode) == 0o444
    assert file_id == FileId.of(placed.stat())
    assert folder.holds(PARTS, file_id)
    # The staging name stays linked until the caller has recorded the FileId.
    assert folder.staged_keys() == [KEY]
    folder.discard(KEY)
    assert folder.staged_keys() == []
    assert folder.holds(PARTS, file_id)
    assert placed.read_bytes() == data


def test_an_empty_file_is_placed(root: Path, folder: BorrowedFolder) -> None:
    file_id = put(folder, KEY, ["tower", "docs", "empty"], b"")
    assert (root / "tower" / "docs" / "empty").read_bytes() == b""
    assert folder.holds(["tower", "docs", "empty"], file_id)


def test_the_wrong_hash_is_refused_and_the_staging_file_kept(
    root: Path, folder: BorrowedFolder
) -> None:
    stage(folder, KEY, b"what arrived")
    with pytest.raises(PlacementError, match="content hash"):
        folder.place(KEY, PARTS, xxhash.xxh3_128_digest(b"what was lent"), replacing=None)
    assert sorted(os.listdir(root)) == [STAGING]
    assert folder.staged_keys() == [KEY]


def test_nothing_staged_is_a_clear_error(folder: BorrowedFolder) -> None:
    with pytest.raises(PlacementError, match="nothing is staged"):
        folder.place(KEY, PARTS, b"0" * 16, replacing=None)


def test_replaces_mesh_own_copy(root: Path, folder: BorrowedFolder) -> None:
    old = put(folder, KEY, PARTS, b"version 1")
    new = folder.place("cd34", PARTS, stage(folder, "cd34", b"version 2"), replacing=old)
    assert root.joinpath(*PARTS).read_bytes() == b"version 2"
    assert new != old
    assert folder.holds(PARTS, new)
    assert not folder.holds(PARTS, old)
    folder.discard("cd34")
    assert folder.staged_keys() == []


def test_a_user_file_in_the_way_is_left_alone(root: Path, folder: BorrowedFolder) -> None:
    dest = root.joinpath(*PARTS)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"the user's file")
    digest = stage(folder, KEY, b"borrowed")
    with pytest.raises(UserFileInTheWayError, match="not mesh's copy"):
        folder.place(KEY, PARTS, digest, replacing=None)
    assert dest.read_bytes() == b"the user's file"
    # The staging file is kept, still writable, for the caller to decide.
    assert folder.staged_keys() == [KEY]
    assert stat.S_IMODE((root / STAGING / KEY).stat().st_mode) == 0o600


def test_a_user_file_that_took_the_place_of_mesh_copy_is_not_replaced(
    root: Path, folder: BorrowedFolder
) -> None:
    old = put(folder, KEY, PARTS, b"version 1")
    dest = root.joinpath(*PARTS)
    dest.unlink()
    dest.write_bytes(b"the user's own version")
    with pytest.raises(UserFileInTheWayError):
        folder.place("cd34", PARTS, stage(folder, "cd34", b"version 2"), replacing=old)
    assert dest.read_bytes() == b"the user's own version"


def test_a_copy_the_user_edited_is_theirs(root: Path, folder: BorrowedFolder) -> None:
    file_id = put(folder, KEY, PARTS, b"version 1")
    dest = root.joinpath(*PARTS)
    dest.chmod(0o644)
    dest.write_bytes(b"edited")
    assert not folder.holds(PARTS, file_id)
    assert folder.remove(PARTS, file_id) is False
    assert dest.read_bytes() == b"edited"


@pytest.mark.parametrize("what", ["folder", "symlink"])
def test_a_folder_or_link_at_the_file_name_is_in_the_way(
    root: Path, folder: BorrowedFolder, outside: Path, what: str
) -> None:
    dest = root.joinpath(*PARTS)
    dest.parent.mkdir(parents=True)
    if what == "folder":
        dest.mkdir()
    else:
        dest.symlink_to(outside / "keep.txt")
    with pytest.raises(UserFileInTheWayError):
        folder.place(KEY, PARTS, stage(folder, KEY, b"borrowed"), replacing=None)


def test_a_user_file_saved_during_placing_is_not_overwritten(
    root: Path, folder: BorrowedFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = root.joinpath(*PARTS)

    def user_saves(step: str) -> None:
        if step == "folders":
            dest.write_bytes(b"saved just now")

    digest = stage(folder, KEY, b"borrowed")
    monkeypatch.setattr(borrowed, "_fault_hook", user_saves)
    with pytest.raises(UserFileInTheWayError):
        folder.place(KEY, PARTS, digest, replacing=None)
    assert dest.read_bytes() == b"saved just now"


def test_a_user_file_where_a_folder_is_needed_is_in_the_way(
    root: Path, folder: BorrowedFolder
) -> None:
    (root / "tower").mkdir()
    (root / "tower" / "photos").write_bytes(b"not a folder")
    with pytest.raises(UserFileInTheWayError, match="not a folder"):
        folder.place(KEY, PARTS, stage(folder, KEY, b"x"), replacing=None)
    assert (root / "tower" / "photos").read_bytes() == b"not a folder"


# -- removing ------------------------------------------------------------------------------


def test_remove_deletes_the_copy_and_prunes_empty_folders(
    root: Path, folder: BorrowedFolder
) -> None:
    file_id = put(folder, KEY, PARTS, b"data")
    assert folder.remove(PARTS, file_id) is True
    assert sorted(os.listdir(root)) == [STAGING]
    assert folder.remove(PARTS, file_id) is False  # already gone


def test_remove_keeps_folders_that_hold_other_files(root: Path, folder: BorrowedFolder) -> None:
    first = put(folder, KEY, PARTS, b"one")
    put(folder, "cd34", ["tower", "photos", "other.jpg"], b"two")
    assert folder.remove(PARTS, first)
    assert sorted(os.listdir(root / "tower" / "photos")) == ["other.jpg"]


def test_remove_leaves_a_user_file_alone(root: Path, folder: BorrowedFolder) -> None:
    file_id = put(folder, KEY, PARTS, b"borrowed")
    dest = root.joinpath(*PARTS)
    dest.unlink()
    dest.write_bytes(b"the user's file")
    assert folder.remove(PARTS, file_id) is False
    assert dest.read_bytes() == b"the user's file"


def test_a_user_file_with_a_reused_inode_number_is_left_alone(
    root: Path, folder: BorrowedFolder
) -> None:
    file_id = put(folder, KEY, PARTS, b"borrowed")
    dest = root.joinpath(*PARTS)
    # A user's file at the same path with the same inode number, as a file system that
    # reuses a freed inode at once would give it, but written at another time.
    reused = FileId(device=file_id.device, inode=file_id.inode, mtime_ns=file_id.mtime_ns - 1)
    assert not folder.holds(PARTS, reused)
    assert folder.remove(PARTS, reused) is False
    assert dest.read_bytes() == b"borrowed"


def test_remove_and_holds_when_the_root_is_gone(root: Path, tmp_path: Path) -> None:
    folder = BorrowedFolder(root)
    file_id = put(folder, KEY, PARTS, b"x")
    os.rename(root, tmp_path / "elsewhere")
    assert not folder.holds(PARTS, file_id)
    assert folder.remove(PARTS, file_id) is False
    assert not root.exists()


# -- serving a copy ---------------------------------------------------------------------------


def test_open_copy_reads_mesh_copy(folder: BorrowedFolder) -> None:
    file_id = put(folder, KEY, PARTS, b"borrowed bytes")
    fd = folder.open_copy(PARTS, file_id)
    try:
        assert os.pread(fd, 100, 0) == b"borrowed bytes"
    finally:
        os.close(fd)


def test_open_copy_refuses_a_changed_or_missing_copy(root: Path, folder: BorrowedFolder) -> None:
    file_id = put(folder, KEY, PARTS, b"borrowed bytes")
    dest = root.joinpath(*PARTS)
    dest.chmod(0o644)
    dest.write_bytes(b"edited by the user")
    with pytest.raises(NotFoundError, match="changed"):
        folder.open_copy(PARTS, file_id)
    dest.unlink()
    with pytest.raises(NotFoundError, match="gone"):
        folder.open_copy(PARTS, file_id)


@pytest.mark.parametrize("depth", [1, 3, 4], ids=["lender", "intermediate", "file"])
def test_open_copy_never_follows_a_symlink(
    root: Path, folder: BorrowedFolder, tmp_path: Path, depth: int
) -> None:
    target = tmp_path / "target"
    secret = target.joinpath(*PARTS[depth:]) if depth < len(PARTS) else target
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_bytes(b"not for peers")
    link = root.joinpath(*PARTS[:depth])
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target.joinpath(*PARTS[depth:]) if depth < len(PARTS) else target)
    with pytest.raises(NotFoundError):
        folder.open_copy(PARTS, FileId.of(secret.stat()))


# -- hostile names ---------------------------------------------------------------------------

HOSTILE = ["..", ".", "", "/", "a/b", "/etc", "a\\b", "\\", "\x00", "a\x00b", "x" * 300]


@pytest.mark.parametrize("bad", HOSTILE)
@pytest.mark.parametrize("position", [0, 1, 2, 3])
def test_every_hostile_name_is_refused(
    root: Path, folder: BorrowedFolder, outside: Path, bad: str, position: int
) -> None:
    parts = list(PARTS)
    parts[position] = bad
    digest = stage(folder, KEY, b"data")
    with pytest.raises(InvalidPathError):
        folder.place(KEY, parts, digest, replacing=None)
    with pytest.raises(InvalidPathError):
        folder.remove(parts, FileId(device=0, inode=0, mtime_ns=0))
    with pytest.raises(InvalidPathError):
        folder.holds(parts, FileId(device=0, inode=0, mtime_ns=0))
    assert sorted(os.listdir(root)) == [STAGING]


@pytest.mark.parametrize(
    "parts", [[], ["tower"], ["tower", "photos"], [STAGING, "photos", "x"]], ids=repr
)
def test_a_path_without_lender_library_and_name_is_refused(
    folder: BorrowedFolder, parts: list[str]
) -> None:
    with pytest.raises(InvalidPathError):
        folder.place(KEY, parts, stage(folder, KEY, b"d"), replacing=None)


def test_an_escape_sequence_in_a_name_is_shown_inert(root: Path, folder: BorrowedFolder) -> None:
    parts = ["tower", "photos", "\x1b[31mred"]
    (root / "tower" / "photos").mkdir(parents=True)
    (root / "tower" / "photos" / "\x1b[31mred").write_bytes(b"user")
    with pytest.raises(UserFileInTheWayError) as caught:
        folder.place(KEY, parts, stage(folder, KEY, b"d"), replacing=None)
    assert "\x1b" not in str(caught.value)


# -- symlinks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2, 3], ids=["lender", "library", "intermediate"])
def test_a_symlink_planted_as_a_folder_is_refused(
    root: Path, folder: BorrowedFolder, outside: Path, depth: int
) -> None:
    link = root.joinpath(*PARTS[:depth])
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    with pytest.raises(UserFileInTheWayError, match="symbolic link"):
        folder.place(KEY, PARTS, stage(folder, KEY, b"data"), replacing=None)
    assert link.is_symlink()


@pytest.mark.parametrize("depth", [1, 2, 3], ids=["lender", "library", "intermediate"])
def test_remove_and_holds_never_follow_a_planted_symlink(
    root: Path, folder: BorrowedFolder, tmp_path: Path, depth: int
) -> None:
    # A file outside that looks exactly like mesh's copy through the link.
    target = tmp_path / "target"
    victim = target.joinpath(*PARTS[depth:])
    victim.parent.mkdir(parents=True, exist_ok=True)
    victim.write_bytes(b"the user's file")
    looks_like_mine = FileId.of(victim.stat())
    link = root.joinpath(*PARTS[:depth])
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    assert not folder.holds(PARTS, looks_like_mine)
    assert folder.remove(PARTS, looks_like_mine) is False
    assert victim.read_bytes() == b"the user's file"
    assert link.is_symlink()


def test_a_symlink_swapped_in_for_the_destination_folder_before_placing(
    root: Path, folder: BorrowedFolder, outside: Path
) -> None:
    put(folder, "cd34", ["tower", "photos", "2024", "first.jpg"], b"first")
    digest = stage(folder, KEY, b"second")
    moved = root.parent / "moved"
    os.rename(root / "tower" / "photos", moved)
    (root / "tower" / "photos").symlink_to(outside)
    with pytest.raises(UserFileInTheWayError, match="symbolic link"):
        folder.place(KEY, PARTS, digest, replacing=None)
    assert folder.staged_keys() == [KEY]


@pytest.mark.parametrize("step", ["verified", "synced"])
def test_a_symlink_swapped_in_during_placing(
    root: Path,
    folder: BorrowedFolder,
    outside: Path,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    put(folder, "cd34", ["tower", "photos", "2024", "first.jpg"], b"first")
    digest = stage(folder, KEY, b"second")

    def swap(at: str) -> None:
        if at == step:
            os.rename(root / "tower" / "photos" / "2024", root.parent / "moved")
            (root / "tower" / "photos" / "2024").symlink_to(outside)

    monkeypatch.setattr(borrowed, "_fault_hook", swap)
    with pytest.raises(UserFileInTheWayError, match="symbolic link"):
        folder.place(KEY, PARTS, digest, replacing=None)


def test_a_folder_swapped_for_a_symlink_after_the_walk_is_not_followed(
    root: Path, folder: BorrowedFolder, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Once the walk holds the folder's descriptor, swapping its name cannot redirect the
    # file: it lands in the real folder, wherever that was moved, never through the link.
    digest = stage(folder, KEY, b"second")
    moved = root.parent / "moved"

    def swap(at: str) -> None:
        if at == "folders":
            os.rename(root / "tower" / "photos" / "2024", moved)
            (root / "tower" / "photos" / "2024").symlink_to(outside)

    monkeypatch.setattr(borrowed, "_fault_hook", swap)
    file_id = folder.place(KEY, PARTS, digest, replacing=None)
    assert (moved / "beach.jpg").read_bytes() == b"second"
    assert not folder.holds(PARTS, file_id)  # the name now leads through a link


# -- full disk -------------------------------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount a small tmpfs with the given options; unmounted at teardown."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", str(where)], check=True)


def test_a_full_disk_while_writing_is_a_clear_error(tmpfs: Callable[[str], Path]) -> None:
    root = tmpfs("size=2m") / "Borrowed"
    folder = BorrowedFolder(root)
    data = os.urandom(3 * CHUNK_SIZE)
    with pytest.raises(NoSpaceError, match="no space left"), folder.staging(KEY, len(data)) as f:
        for index in range(3):
            f.write_chunk(index, data[index * CHUNK_SIZE : (index + 1) * CHUNK_SIZE])
    assert sorted(os.listdir(root)) == [STAGING]
    # The caller discards the pull; the space comes back and the next pull fits.
    folder.discard(KEY)
    put(folder, "cd34", PARTS, b"small")
    assert root.joinpath(*PARTS).read_bytes() == b"small"


def test_a_full_disk_while_placing_leaves_nothing_placed(tmpfs: Callable[[str], Path]) -> None:
    disk = tmpfs("size=2m,nr_inodes=64")
    root = disk / "Borrowed"
    folder = BorrowedFolder(root)
    digest = stage(folder, KEY, b"data")
    # Use up every inode but two: the lender and library folders fit, the next one not.
    filler = disk / "filler"
    filler.mkdir()
    made: list[Path] = []
    while True:
        try:
            (filler / str(len(made))).touch()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
            break
        made.append(filler / str(len(made)))
    made.pop().unlink()
    made.pop().unlink()
    with pytest.raises(NoSpaceError, match="no space left"):
        folder.place(KEY, PARTS, digest, replacing=None)
    # The folders made for it are gone again; the staging file waits for space.
    assert sorted(os.listdir(root)) == [STAGING]
    assert folder.staged_keys() == [KEY]
    for path in made:
        path.unlink()
    file_id = folder.place(KEY, PARTS, digest, replacing=None)
    assert folder.holds(PARTS, file_id)


# -- crashes -----------------------------------------------------------------------------------


def die_at(step: str, action: Callable[[], object]) -> None:
    """Run `action` in a child process that is killed outright at `step` of placing."""

    def hook(at: str) -> None:
        if at == step:
            os._exit(17)

    pid = os.fork()
    if pid == 0:  # the child: no cleanup of any kind may run, as after SIGKILL
        try:
            borrowed._fault_hook = hook
            action()
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 17, f"never reached step {step!r}"


@pytest.mark.parametrize("step", ["verified", "synced", "folders", "committed", "placed"])
def test_a_crash_at_any_step_leaves_nothing_or_the_whole_file(
    root: Path, folder: BorrowedFolder, step: str
) -> None:
    data = os.urandom(CHUNK_SIZE + 3)
    digest = stage(folder, KEY, data)
    die_at(step, lambda: folder.place(KEY, PARTS, digest, replacing=None))
    dest = root.joinpath(*PARTS)
    if step in ("committed", "placed"):
        assert dest.read_bytes() == data
        assert stat.S_IMODE(dest.stat().st_mode) == 0o444
    else:
        assert not dest.exists()
    # After the restart the caller places again and gets mesh's copy, not a "user file".
    file_id = folder.place(KEY, PARTS, digest, replacing=None)
    folder.discard(KEY)
    assert folder.holds(PARTS, file_id)
    assert dest.read_bytes() == data


@pytest.mark.parametrize("step", ["verified", "linked", "committed", "placed"])
def test_a_crash_while_replacing_leaves_the_old_or_the_new_file(
    root: Path, folder: BorrowedFolder, step: str
) -> None:
    old = put(folder, "cd34", PARTS, b"version 1")
    digest = stage(folder, KEY, b"version 2")
    die_at(step, lambda: folder.place(KEY, PARTS, digest, replacing=old))
    dest = root.joinpath(*PARTS)
    expected = b"version 2" if step in ("committed", "placed") else b"version 1"
    assert dest.read_bytes() == expected
    file_id = folder.place(KEY, PARTS, digest, replacing=old)
    folder.discard(KEY)
    assert folder.holds(PARTS, file_id)
    assert dest.read_bytes() == b"version 2"
    assert folder.staged_keys() == []


def test_reopening_a_placed_staging_file_never_writes_into_the_copy(
    root: Path, folder: BorrowedFolder
) -> None:
    file_id = folder.place(KEY, PARTS, stage(folder, KEY, b"placed"), replacing=None)
    with folder.staging(KEY, 6) as staged:
        staged.write_chunk(0, b"GARBLE")
    assert root.joinpath(*PARTS).read_bytes() == b"placed"
    assert folder.holds(PARTS, file_id)


# -- property: every accepted placement lands under the root -------------------------------

_hostile = st.sampled_from([*HOSTILE, STAGING, ".hidden", "..."])


@st.composite
def _cases(draw: st.DrawFn) -> tuple[list[str], int | None]:
    """Mostly well-formed paths, some with one hostile name at any position, and where to
    plant a symlink to outside as one of their folders (or nowhere)."""
    parts = draw(st.lists(valid_names, min_size=1, max_size=6))
    if draw(st.booleans()):
        parts[draw(st.integers(0, len(parts) - 1))] = draw(_hostile)
    plant = None
    if len(parts) > 1 and draw(st.booleans()):
        plant = draw(st.integers(1, len(parts) - 1))
    return parts, plant


def _makeable(names: list[str]) -> bool:
    """Whether the test itself can plant a link at these names inside the root."""
    try:
        for name in names:
            check_name(name)
    except InvalidPathError:
        return False
    return names[0] != STAGING


@given(case=_cases())
def test_every_accepted_placement_lands_under_the_root(case: tuple[list[str], int | None]) -> None:
    parts, plant = case
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp)
        root = top / "Borrowed"
        sentinel = top / "outside"
        sentinel.mkdir()
        folder = BorrowedFolder(root)
        digest = stage(folder, KEY, b"data")
        planted = plant is not None and _makeable(parts[:plant])
        if planted:
            # A symlink to the sentinel, planted as one of the folders on the way.
            link = root.joinpath(*parts[:plant])
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(sentinel)
        try:
            file_id = folder.place(KEY, parts, digest, replacing=None)
        except (InvalidPathError, PlacementError):
            accepted = False
        else:
            accepted = True
        assert os.listdir(sentinel) == []
        outside = [p for p in top.rglob("*") if not p.is_relative_to(root)]
        assert outside == [sentinel]
        if accepted:
            assert not planted
            dest = root.joinpath(*parts)
            assert os.path.realpath(dest).startswith(os.path.realpath(root) + os.sep)
            assert dest.read_bytes() == b"data"
            assert folder.holds(parts, file_id)
            assert folder.remove(parts, file_id)
