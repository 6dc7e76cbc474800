"""The staging folder `<root>/.mesh-staging/`: one staging file per pull, named by its key.

A staging file is opened to be written (made, or reopened to resume a pull, its written
chunks kept), opened to be placed (fs/placing.py), and discarded once its copy's FileId is
recorded. Staging never writes into a file that has a second name: it replaces such a
staging name with a fresh, empty file, since the other name may be a placed copy (or a
user's hard link) that writing would change too. A link planted under a staging name is
dropped, never followed.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from contextlib import ExitStack

from mesh.core.errors import InvalidArgumentError, NothingStagedError, PlacementError
from mesh.fs.borrowed_root import STAGING, BorrowedRoot
from mesh.fs.folder_walk import READ_FLAGS, WRITE_FLAGS, os_error, unlink_if_present
from mesh.fs.staging_file import StagingFile

# The second link of a staging file while it replaces an older copy (fs/placing.py).
SWAP = ".swap"
_KEY = re.compile(r"[0-9a-f]{1,128}")


def check_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise InvalidArgumentError(f"staging key {key!r} is not a lower-case hex string")
    return key


def open_staging(root: BorrowedRoot, key: str, size: int, *, direct: bool = True) -> StagingFile:
    """Open the staging file of pull `key`, creating it, or reopening it to resume (its
    written chunks are kept), and set its length to `size`; `direct`: see StagingFile."""
    key = check_key(key)
    if size < 0:
        raise ValueError(f"a file size cannot be negative: {size}")
    where = root.shown([STAGING, key])
    with ExitStack() as stack:
        staging_fd = root.staging_fd(stack, root.made_root_fd(stack))
        fd = _open_for_writing(staging_fd, key, where)
        try:
            # A file of this size was left by this pull (it is sized when created); any
            # other was made just now, or cut short, and holds nothing verified.
            kept = os.fstat(fd).st_size == size
            os.ftruncate(fd, size)
        except OSError as exc:
            os.close(fd)
            raise os_error(exc, f"size {where}") from exc
    return StagingFile(fd, key=key, size=size, where=where, kept=kept, direct=direct)


def discard(root: BorrowedRoot, *keys: str) -> None:
    """Delete the staging files of pulls `keys`; a missing one is fine."""
    keys = tuple(check_key(key) for key in keys)
    with ExitStack() as stack:
        staging_fd = root.staging_fd(stack, root.made_root_fd(stack))
        for key in keys:
            for name in (key, key + SWAP):
                unlink_if_present(staging_fd, name, root.shown([STAGING, name]))


def staged_keys(root: BorrowedRoot) -> list[str]:
    """Keys of the staging files present, to clean up pulls that are no longer wanted."""
    with ExitStack() as stack:
        staging_fd = root.staging_fd(stack, root.made_root_fd(stack))
        try:
            names = os.listdir(staging_fd)
        except OSError as exc:
            raise os_error(exc, f"list {root.shown([STAGING])}") from exc
    keys = {name.removesuffix(SWAP) for name in names}
    return sorted(key for key in keys if _KEY.fullmatch(key))


def open_staged(stack: ExitStack, root: BorrowedRoot, staging_fd: int, key: str) -> int:
    """A read-only descriptor of the staging file of pull `key`, to place it; closed with
    `stack`."""
    where = root.shown([STAGING, key])
    try:
        fd = os.open(key, READ_FLAGS, dir_fd=staging_fd)
    except FileNotFoundError as exc:
        raise NothingStagedError(f"nothing is staged for pull {key} ({where} is missing)") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PlacementError(f"{where} is a symbolic link, not a staging file") from exc
        raise os_error(exc, f"open {where}") from exc
    stack.callback(os.close, fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        raise PlacementError(f"{where} is not a regular file")
    return fd


def _open_for_writing(staging_fd: int, key: str, where: str) -> int:
    unlocked = False
    for _ in range(4):
        try:
            fd = os.open(key, WRITE_FLAGS, 0o600, dir_fd=staging_fd)
        except PermissionError as exc:
            # Left read-only by a place() that died before its commit (step 4).
            if unlocked:
                raise os_error(exc, f"open {where}") from exc
            _unlock(staging_fd, key, where)
            unlocked = True
            continue
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                # A link planted in mesh's own staging folder: drop the name, never follow.
                unlink_if_present(staging_fd, key, where)
                continue
            raise os_error(exc, f"open {where}") from exc
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            return fd
        os.close(fd)
        if stat.S_ISDIR(st.st_mode):
            raise PlacementError(f"{where} is a folder, not a staging file")
        # Another name shares this inode (a hard link, or a copy already placed from it):
        # writing would change that file too, so this name starts afresh.
        unlink_if_present(staging_fd, key, where)
    raise PlacementError(f"{where} keeps changing while mesh opens it")


def _unlock(staging_fd: int, key: str, where: str) -> None:
    try:
        fd = os.open(key, READ_FLAGS, dir_fd=staging_fd)
    except OSError as exc:
        raise os_error(exc, f"open {where}") from exc
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            os.fchmod(fd, 0o600)
            return
    finally:
        os.close(fd)
    unlink_if_present(staging_fd, key, where)
