"""Batch folders: where a batch's new staging files are made before they take their names.

Creating a file on an ext4 without a journal costs a step past every inode of its folder's
inode group that was freed in the last minutes (`recently_deleted` in the kernel): after a
folder loan's 10,000 copies are removed, the next 10,000 staging files made in the same
staging folder, whose group those copies' inodes came from, cost ~0.5 ms of system time
each. So a batch makes its files in a fresh folder `<root>/.mesh-staging/batch-<run>-<n>/`,
and the staging folder is marked as the top of a hierarchy (`chattr +T`), which makes ext4
place each such folder, and so its files' inodes, in a group with more free inodes than
average. Each file is then linked under its key in the staging folder (never over a name
already there) and its batch name dropped, so everything else sees staging files where
it always did; the batch folder is removed when the batch is done.

A batch folder holds nothing recorded (its files are recorded as pulls only once they are
under their keys): one left by a kill is deleted whole by the next sweep
(`sweep_batch_folders`), which leaves the running process's own alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import secrets
import stat
import sys
import threading

from mesh.fs.folder_walk import os_error

_PREFIX = "batch-"
_RUN = secrets.token_hex(4)  # this process's batch folders; any other run's are left-overs
_NUMBERS = itertools.count()
_NUMBERS_LOCK = threading.Lock()
# linux/fs.h: FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_TOPDIR_FL.
_GETFLAGS, _SETFLAGS, _TOPDIR = 0x80086601, 0x40086602, 0x00020000


def make_batch_folder(staging_fd: int, where: str) -> tuple[str, int]:
    """A new, empty batch folder in the staging folder: its name and open descriptor."""
    _spread_subfolders(staging_fd)
    with _NUMBERS_LOCK:
        name = f"{_PREFIX}{_RUN}-{next(_NUMBERS)}"
    try:
        os.mkdir(name, 0o700, dir_fd=staging_fd)
        fd = os.open(
            name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=staging_fd
        )
    except OSError as exc:
        raise os_error(exc, f"make {where}/{name}") from exc
    return name, fd


def remove_batch_folder(staging_fd: int, name: str, fd: int) -> None:
    """Delete the batch folder `name` (open as `fd`, which is closed) and what is left in
    it: files whose batch failed before they took their keys."""
    try:
        for entry in os.listdir(fd):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry, dir_fd=fd)
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(name, dir_fd=staging_fd)


def sweep_batch_folders(staging_fd: int, where: str) -> list[str]:
    """Delete the batch folders other runs left (a kill mid-batch); the names deleted."""
    try:
        names = os.listdir(staging_fd)
    except OSError as exc:
        raise os_error(exc, f"list {where}") from exc
    swept = []
    for name in names:
        if not name.startswith(_PREFIX) or name.startswith(f"{_PREFIX}{_RUN}-"):
            continue
        try:
            fd = os.open(
                name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=staging_fd
            )
        except OSError:
            # Not a folder (or a link planted there): a name of no use to anyone.
            with contextlib.suppress(OSError):
                if not stat.S_ISDIR(
                    os.stat(name, dir_fd=staging_fd, follow_symlinks=False).st_mode
                ):
                    os.unlink(name, dir_fd=staging_fd)
            continue
        try:
            remove_batch_folder(staging_fd, name, fd)
        except OSError as exc:
            raise os_error(exc, f"delete {where}/{name}") from exc
        swept.append(name)
    return swept


def _spread_subfolders(staging_fd: int) -> None:
    """Mark the staging folder as the top of a hierarchy where the file system knows of
    it (ext4 and a few others); elsewhere this does nothing."""
    with contextlib.suppress(OSError, OverflowError):
        flags = bytearray(4)
        fcntl.ioctl(staging_fd, _GETFLAGS, flags)
        value = int.from_bytes(flags, sys.byteorder)
        if not value & _TOPDIR:
            fcntl.ioctl(staging_fd, _SETFLAGS, (value | _TOPDIR).to_bytes(4, sys.byteorder))


__all__ = ["make_batch_folder", "remove_batch_folder", "sweep_batch_folders"]
