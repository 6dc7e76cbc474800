"""Mesh's placed copies: whether a file is still mesh's copy, and removing or opening it.

A FileId is the device, inode and mtime of the placed copy. `remove` and `holds` trust a file
only while all three match: a file the user saved after deleting the copy may get the same
inode number back, and a copy the user made writable and edited is theirs now.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass

from mesh.core.errors import NotFoundError
from mesh.fs.borrowed_root import BorrowedRoot
from mesh.fs.folder_walk import READ_FLAGS, lstat_at, os_error, sync_dir


@dataclass(frozen=True, kw_only=True, slots=True)
class FileId:
    """Identifies a copy mesh placed: it is still that copy while all three fields match."""

    device: int
    inode: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileId:
        return cls(device=st.st_dev, inode=st.st_ino, mtime_ns=st.st_mtime_ns)

    def matches(self, st: os.stat_result) -> bool:
        return (
            stat.S_ISREG(st.st_mode)
            and st.st_dev == self.device
            and st.st_ino == self.inode
            and st.st_mtime_ns == self.mtime_ns
        )


def remove(root: BorrowedRoot, parts: Sequence[str], file_id: FileId) -> bool:
    """Delete the copy at `parts` if it is still `file_id`, then the folders it leaves
    empty, up to but not including the root. False when the copy is gone or something
    else is there (a file the user put there is left alone)."""
    names = root.check_parts(parts)
    with ExitStack() as stack:
        dirs = root.find_folders(stack, names[:-1])
        if dirs is None:
            return False
        parent = dirs[-1]
        there = lstat_at(parent, names[-1], root.shown(names))
        if there is not None and not file_id.matches(there):
            return False
        removed = False
        if there is not None:
            try:
                os.unlink(names[-1], dir_fd=parent)
                removed = True
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise os_error(exc, f"delete {root.shown(names)}") from exc
            if removed:
                sync_dir(parent, root.shown(names[:-1]))
        # dirs[j] holds names[j]: remove folders bottom up until one is not empty.
        for j in reversed(range(len(names) - 1)):
            try:
                os.rmdir(names[j], dir_fd=dirs[j])
            except OSError:
                break
        return removed


def _lstat(root: BorrowedRoot, parts: Sequence[str]) -> os.stat_result | None:
    """What is at `parts` (not followed if a link), reached by folder descriptors; None for
    nothing there, or a folder on the way missing."""
    names = root.check_parts(parts)
    with ExitStack() as stack:
        dirs = root.find_folders(stack, names[:-1])
        if dirs is None:
            return None
        return lstat_at(dirs[-1], names[-1], root.shown(names))


def holds(root: BorrowedRoot, parts: Sequence[str], file_id: FileId) -> bool:
    """Whether the copy `file_id` is still at `parts`, unchanged."""
    there = _lstat(root, parts)
    return there is not None and file_id.matches(there)


def file_at(root: BorrowedRoot, parts: Sequence[str]) -> FileId | None:
    """The regular file at `parts` as it is now; None for nothing or anything else."""
    there = _lstat(root, parts)
    if there is None or not stat.S_ISREG(there.st_mode):
        return None
    return FileId.of(there)


def open_copy(root: BorrowedRoot, parts: Sequence[str], file_id: FileId) -> int:
    """A read-only descriptor of the copy `file_id` at `parts`, for serving it to a peer;
    the caller closes it. NotFoundError if the copy is gone or is no longer that copy
    (checked on the opened descriptor, so what is read is what was checked)."""
    names = root.check_parts(parts)
    shown = root.shown(names)
    with ExitStack() as stack:
        dirs = root.find_folders(stack, names[:-1])
        if dirs is None:
            raise NotFoundError(f"the borrowed copy {shown} is gone")
        try:
            fd = os.open(names[-1], READ_FLAGS, dir_fd=dirs[-1])
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP):
                raise NotFoundError(f"the borrowed copy {shown} is gone") from exc
            raise os_error(exc, f"open {shown}") from exc
    try:
        unchanged = file_id.matches(os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    if not unchanged:
        os.close(fd)
        raise NotFoundError(f"the borrowed copy {shown} was changed or replaced")
    return fd
