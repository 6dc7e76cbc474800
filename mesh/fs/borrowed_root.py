"""The borrowed folder's root and the names below it: where every walk starts.

Borrowed files live at `<root>/<lender folder>/<library>/<path...>`, the lender folder named
by its node id (fs/lender_links.py shows it by name), and pulls stage their files in
`<root>/.mesh-staging/` on the same file system. Every name is checked with `check_name`
(`check_portable_name` where the copy would land on Windows) before it is used. The root's
own path is the user's setting and is trusted except for its last name, which must be a
real folder; it is opened afresh by each walk, so a borrowed folder deleted while the
daemon runs is made again when it is next needed. Below it, fs/folder_walk.py's steps.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from mesh.core.errors import InvalidPathError, PlacementError, UserFileInTheWayError
from mesh.core.paths import check_name, check_portable_name
from mesh.fs.folder_walk import (
    DIR_FLAGS,
    kind_at,
    open_existing,
    open_or_make,
    os_error,
    printable,
    sync_dir,
)

STAGING = ".mesh-staging"


class BorrowedRoot:
    """The root at `root`: its names checked, its folders opened by descriptor."""

    def __init__(self, root: Path, *, portable: bool) -> None:
        """`portable`: also refuse names Windows would take for a device or change."""
        self.root = root
        self._check_name = check_portable_name if portable else check_name

    def shown(self, names: Sequence[str]) -> str:
        """A path for messages only; the file system is never given a joined path."""
        return "/".join([str(self.root), *map(printable, names)])

    def check_parts(self, parts: Sequence[str]) -> list[str]:
        """The names of a borrowed file's path (lender, library, path names), each checked."""
        names = list(parts)
        if len(names) < 3:
            raise InvalidPathError(
                "a borrowed file's path needs a lender, a library and a file name; got "
                f"{'/'.join(map(printable, names)) or 'nothing'}"
            )
        for name in names:
            try:
                self._check_name(name)
            except InvalidPathError as exc:
                raise InvalidPathError(f"cannot place a borrowed file there: {exc}") from exc
        if names[0] == STAGING:
            raise InvalidPathError(f"{STAGING!r} is mesh's staging folder, not a lender")
        return names

    def root_fd(self, stack: ExitStack, *, create: bool) -> int | None:
        """The root's descriptor, closed with `stack`; None when it is missing and not
        `create`d."""
        path = os.fspath(self.root)
        for _ in range(2):
            try:
                fd = os.open(path, DIR_FLAGS)
            except FileNotFoundError:
                if not create:
                    return None
                try:
                    os.makedirs(path, mode=0o755, exist_ok=True)
                except FileExistsError:
                    pass  # a dangling link, say: the next open says what it is
                except OSError as exc:
                    raise os_error(exc, f"create the borrowed folder {path}") from exc
                continue
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise PlacementError(
                        f"the borrowed folder {path} is {kind_at(None, path)}, not a folder; "
                        "set borrowed_folder to a real folder"
                    ) from exc
                raise os_error(exc, f"open the borrowed folder {path}") from exc
            stack.callback(os.close, fd)
            return fd
        raise PlacementError(f"the borrowed folder {path} keeps disappearing")

    def made_root_fd(self, stack: ExitStack) -> int:
        """The root's descriptor, the root made first if it is missing."""
        fd = self.root_fd(stack, create=True)
        assert fd is not None
        return fd

    def staging_fd(self, stack: ExitStack, root_fd: int) -> int:
        """The staging folder's descriptor, closed with `stack`; made if missing."""
        fd, _made = open_or_make(root_fd, STAGING, 0o700, self.shown([STAGING]), PlacementError)
        stack.callback(os.close, fd)
        return fd

    def make_folders(
        self, stack: ExitStack, root_fd: int, folders: Sequence[str], created: list[tuple[int, str]]
    ) -> int:
        """The descriptor of the last of `folders`, each made if missing (and appended to
        `created` as (parent fd, name)); anything in the way that is not a folder raises
        UserFileInTheWayError."""
        current = root_fd
        for depth, name in enumerate(folders):
            where = self.shown(folders[: depth + 1])
            fd, made = open_or_make(current, name, 0o755, where, UserFileInTheWayError)
            stack.callback(os.close, fd)
            if made:
                created.append((current, name))
                # The file's name must not outlive a crash without the folders that hold it.
                sync_dir(current, self.shown(folders[:depth]))
            current = fd
        return current

    def find_folders(self, stack: ExitStack, folders: Sequence[str]) -> list[int] | None:
        """fds of the root and each of `folders` in turn; None if one is missing or a link."""
        root_fd = self.root_fd(stack, create=False)
        if root_fd is None:
            return None
        dirs = [root_fd]
        for depth, name in enumerate(folders):
            fd = open_existing(dirs[-1], name, self.shown(folders[: depth + 1]))
            if fd is None:
                return None
            stack.callback(os.close, fd)
            dirs.append(fd)
        return dirs
