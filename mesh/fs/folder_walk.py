"""Walking below a trusted folder one name at a time, by folder descriptors.

Everything below the borrowed folder's root is reached by walking one name at a time from
the root's descriptor with O_NOFOLLOW (`os.open(name, dir_fd=...)` and friends), never
through a joined path: a symbolic link anywhere below the root, planted beforehand or
swapped in during a pull, is refused instead of followed, so mesh never reads, writes or
deletes outside the root. These are the steps of such a walk, and the one way their
system errors become mesh's errors.
"""

from __future__ import annotations

import errno
import os
import stat

from mesh.core.errors import NoSpaceError, PlacementError
from mesh.core.text import shown

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted under a staging name must not hang (no effect on files).
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
WRITE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_FULL = (errno.ENOSPC, errno.EDQUOT)
# What link() says on file systems that have no hard links (vfat: EPERM).
NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS)
# What fsync() on a folder says where the file system cannot do it; nothing to be done then.
_NO_DIR_SYNC = (errno.EINVAL, errno.EOPNOTSUPP)


def printable(name: str) -> str:
    # Names come from peers: a terminal escape in an error message must stay inert.
    return shown(name)


def os_error(exc: OSError, doing: str) -> PlacementError:
    if exc.errno in _FULL:
        return NoSpaceError(f"cannot {doing}: no space left on the disk")
    return PlacementError(f"cannot {doing}: {exc.strerror or exc}")


def kind(st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link"
    if stat.S_ISDIR(st.st_mode):
        return "a folder"
    if stat.S_ISREG(st.st_mode):
        return "a file"
    return "a special file"


def kind_at(parent: int | None, name: str) -> str:
    try:
        return kind(os.stat(name, dir_fd=parent, follow_symlinks=False))
    except OSError:
        return "not a folder"


def same_inode(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def open_or_make(
    parent: int, name: str, mode: int, where: str, error: type[PlacementError]
) -> tuple[int, bool]:
    """Open folder `name` under `parent`, creating it if missing: (fd, whether it was made).

    A symbolic link or anything else that is not a folder raises `error`; it is never
    followed, replaced or removed."""
    made = False
    for _ in range(3):
        try:
            return os.open(name, DIR_FLAGS, dir_fd=parent), made
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise error(
                    f"{where} is {kind_at(parent, name)}, not a folder; mesh does not follow "
                    "or replace it"
                ) from exc
            raise os_error(exc, f"open {where}") from exc
        try:
            os.mkdir(name, mode, dir_fd=parent)
            made = True
        except FileExistsError:
            pass  # made by someone else in between: open it (or refuse it) on the next turn
        except OSError as exc:
            raise os_error(exc, f"create the folder {where}") from exc
    raise PlacementError(f"{where} keeps appearing and disappearing; try again")


def open_existing(parent: int, name: str, where: str) -> int | None:
    """Open folder `name` under `parent`, or None when it is missing or not a real folder."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
            return None
        raise os_error(exc, f"open {where}") from exc


def sync_dir(fd: int, where: str) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _NO_DIR_SYNC:
            raise os_error(exc, f"flush the folder {where} to disk") from exc


def chmod(fd: int, mode: int, where: str) -> None:
    try:
        os.fchmod(fd, mode)
    except OSError as exc:
        raise os_error(exc, f"set the permissions of {where}") from exc


def unlink_if_present(parent: int, name: str, where: str) -> None:
    try:
        os.unlink(name, dir_fd=parent)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise os_error(exc, f"delete {where}") from exc


def lstat_at(parent: int, name: str, where: str) -> os.stat_result | None:
    """What `name` under `parent` is, without following it; None when it is missing."""
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise os_error(exc, f"look at {where}") from exc
