"""Placing a verified staging file into the borrowed folder as mesh's copy.

Placing a file; the commit point is step 5:
1. re-read and hash the whole staging file through its descriptor, compare;
2. fsync it, so no name in the borrowed folder can ever point at data not yet on disk;
3. create missing folders, each fsynced into its parent;
4. make the file read-only (before the commit, so a kill never leaves a writable copy);
5. commit: a new file is hard-linked in, which fails if the name is taken, so a file the
   user saved there a moment ago is never overwritten; mesh's own older copy is replaced by
   renaming a second link of the staging file over it;
6. fsync the destination folder.
A kill before step 5 leaves nothing in the borrowed folder, after it the whole verified file.

The staging name stays linked to the placed file until the caller has recorded the returned
FileId and calls `discard(key)`. If the process dies in between, calling `place` again finds
that the destination is the staging file itself and returns its FileId, instead of calling
mesh's own copy a user's file. (On a file system without hard links, FAT for one, the commit
falls back to a plain rename, which loses that recovery.)

Every step is named to `step` as it is done: the crash tests stop the process there
(fs/borrowed.py's `_fault_hook`).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Sequence
from contextlib import ExitStack

from mesh.core.errors import PlacementError, UserFileInTheWayError
from mesh.fs.borrowed_root import STAGING, BorrowedRoot
from mesh.fs.copies import FileId
from mesh.fs.folder_walk import (
    NO_HARD_LINKS,
    chmod,
    kind,
    lstat_at,
    os_error,
    same_inode,
    sync_dir,
    unlink_if_present,
)
from mesh.fs.hashing import hash_fd
from mesh.fs.staging import SWAP, check_key, open_staged

Step = Callable[[str], None]


def place(
    root: BorrowedRoot,
    key: str,
    parts: Sequence[str],
    expected_hash: bytes,
    *,
    replacing: FileId | None,
    hashed: bytes | None,
    step: Step,
    sync_folder: bool = True,
    synced: bool = False,
) -> FileId:
    """Put the verified staging file of pull `key` at `parts`: BorrowedFolder.place.
    Without `sync_folder` step 6 is the caller's, and with `synced` the caller did step 2
    (fs/placing_batch.py does both for many files at once)."""
    key = check_key(key)
    names = root.check_parts(parts)
    shown = root.shown(names)
    with ExitStack() as stack:
        root_fd = root.made_root_fd(stack)
        staging_fd = root.staging_fd(stack, root_fd)
        # A second link left by a replacement that died before its rename.
        unlink_if_present(staging_fd, key + SWAP, root.shown([STAGING, key + SWAP]))
        fd = open_staged(stack, root, staging_fd, key)
        content = hashed
        if content is None:
            try:
                content, _packed, _size = hash_fd(fd)
            except OSError as exc:
                raise os_error(exc, f"read the staging file of {shown}") from exc
        if content != expected_hash:
            raise PlacementError(
                f"the file fetched for {shown} does not have the content hash it should "
                f"(pull {key}); it was not placed"
            )
        step("verified")
        if not synced:
            try:
                os.fsync(fd)
            except OSError as exc:
                raise os_error(exc, f"flush the file fetched for {shown} to disk") from exc
        step("synced")
        created: list[tuple[int, str]] = []
        try:
            dir_fd = root.make_folders(stack, root_fd, names[:-1], created)
            step("folders")
            return _commit(
                root,
                fd,
                staging_fd,
                key,
                dir_fd,
                names[-1],
                replacing,
                shown,
                step=step,
                sync_folder=sync_folder,
            )
        except BaseException:
            # Folders made for a file that did not arrive; rmdir leaves non-empty ones.
            for parent, name in reversed(created):
                with contextlib.suppress(OSError):
                    os.rmdir(name, dir_fd=parent)
            raise


def _commit(
    root: BorrowedRoot,
    fd: int,
    staging_fd: int,
    key: str,
    dir_fd: int,
    name: str,
    replacing: FileId | None,
    shown: str,
    *,
    step: Step,
    sync_folder: bool,
) -> FileId:
    mine = os.fstat(fd)
    there = lstat_at(dir_fd, name, shown)
    if there is not None and same_inode(there, mine):
        # Placed by an earlier call that died before its caller recorded the FileId.
        chmod(fd, 0o444, shown)
        if sync_folder:
            sync_dir(dir_fd, shown)
        return FileId.of(os.fstat(fd))
    if there is not None and not (replacing is not None and replacing.matches(there)):
        raise UserFileInTheWayError(
            f"{shown} is already there ({kind(there)}) and is not mesh's copy; mesh leaves it alone"
        )
    if mine.st_nlink != 1:
        raise PlacementError(
            f"the staging file of pull {key} has another name (a hard link); "
            "discard it and pull again"
        )
    staged = lstat_at(staging_fd, key, root.shown([STAGING, key]))
    if staged is None or not same_inode(staged, mine):
        raise PlacementError(f"the staging file of pull {key} changed while it was placed")
    mode = stat.S_IMODE(mine.st_mode)
    chmod(fd, 0o444, root.shown([STAGING, key]))
    try:
        if there is None:
            _link_in(staging_fd, key, dir_fd, name, shown)
        else:
            _swap_in(staging_fd, key, dir_fd, name, shown, step)
    except BaseException:
        # Not placed: a resumed pull must be able to write into the staging file again.
        with contextlib.suppress(OSError):
            os.fchmod(fd, mode)
        raise
    step("committed")
    if sync_folder:
        sync_dir(dir_fd, shown)
    step("placed")
    placed = lstat_at(dir_fd, name, shown)
    if placed is None or not same_inode(placed, mine):
        raise PlacementError(f"{shown} changed while mesh was placing it")
    return FileId.of(os.fstat(fd))


def _link_in(staging_fd: int, key: str, dir_fd: int, name: str, shown: str) -> None:
    try:
        os.link(key, name, src_dir_fd=staging_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        return
    except FileExistsError as exc:
        raise UserFileInTheWayError(
            f"{shown} appeared while mesh was placing it; mesh leaves it alone"
        ) from exc
    except OSError as exc:
        if exc.errno not in NO_HARD_LINKS:
            raise os_error(exc, f"place {shown}") from exc
    # No hard links on this file system: rename, which would overwrite a file the user
    # saved there since the check a moment ago, and leaves no recovery link behind.
    if lstat_at(dir_fd, name, shown) is not None:
        raise UserFileInTheWayError(
            f"{shown} appeared while mesh was placing it; mesh leaves it alone"
        )
    try:
        os.rename(key, name, src_dir_fd=staging_fd, dst_dir_fd=dir_fd)
    except OSError as exc:
        raise os_error(exc, f"place {shown}") from exc


def _swap_in(staging_fd: int, key: str, dir_fd: int, name: str, shown: str, step: Step) -> None:
    # rename() replaces atomically, but moves the name it renames: rename a second link
    # so the staging name still finds the placed copy after a crash. The user could
    # swap their own file in for mesh's copy between the check and this rename; no
    # system call replaces only a given inode, and the window is microseconds.
    swap = key + SWAP
    source = swap
    try:
        os.link(key, swap, src_dir_fd=staging_fd, dst_dir_fd=staging_fd, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in NO_HARD_LINKS:
            raise os_error(exc, f"replace {shown}") from exc
        source = key
    step("linked")
    try:
        os.rename(source, name, src_dir_fd=staging_fd, dst_dir_fd=dir_fd)
    except OSError as exc:
        if source == swap:
            with contextlib.suppress(OSError):
                os.unlink(swap, dir_fd=staging_fd)
        raise os_error(exc, f"replace {shown}") from exc
