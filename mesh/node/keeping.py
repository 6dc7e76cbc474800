"""Keeping the borrower's promise on disk: the held copies are what was placed, and the
staging folder holds only the files of live pulls.

Theory of operation. The agent (node/agent.py) checks when it starts, every check
interval, and soon after the file-system watch on the borrowed folder (`BorrowedWatch`)
reports a change there. A held
copy that is gone, or no longer the file mesh placed (truncated, edited, replaced: its
inode or mtime differ), loses its content in the loan book, so the agent's next plan
pulls it again; what the user left at its place is what the restored copy replaces (the
borrowed folder is mesh's to keep: giving a copy up is `mesh return`). Staging files that
belong to no pull the book or the agent knows are deleted: a kill between a loan's end
and its clean-up, or an older mesh, leaves them behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Collection

from mesh.core.errors import LocalError
from mesh.fs.borrowed import BorrowedFolder, FileId
from mesh.fs.watcher import Watcher, WatchLimitError
from mesh.store.loans import Copy

log = logging.getLogger(__name__)


def lost_copies(borrowed: BorrowedFolder, copies: list[Copy]) -> list[tuple[Copy, FileId | None]]:
    """The copies that are no longer on disk as the loan book records them, each with the
    regular file now at its place (None: nothing, or no regular file). Blocking: run it
    in a thread."""
    lost = []
    for copy in copies:
        # A copy already lost is checked too: what the restoring pull is to replace must
        # be what is there now, or placing would take it for a file of the user's.
        placed = FileId(device=copy.device, inode=copy.inode, mtime_ns=copy.mtime_ns)
        try:
            if borrowed.holds(copy.parts, placed):
                continue
            lost.append((copy, borrowed.file_at(copy.parts)))
        except LocalError as exc:
            log.warning("cannot check the copy %s: %s", "/".join(copy.parts), exc)
    return lost


def sweep_staging(borrowed: BorrowedFolder, live: Collection[str]) -> list[str]:
    """Delete the staging files not named in `live`, and batch folders a killed run left;
    the names deleted. Blocking."""
    swept = borrowed.sweep_batch_folders()
    stale = [key for key in borrowed.staged_keys() if key not in live]
    for key in stale:
        borrowed.discard(key)
    return swept + stale


class BorrowedWatch:
    """inotify on the borrowed folder: calls `changed` (on the event loop) when anything
    below it changes. Without inotify, the periodic check alone keeps the copies."""

    def __init__(self, root: str, changed: Callable[[], None]) -> None:
        self._root = root
        self._changed = changed
        self._watcher: Watcher | None = None
        self._watched: tuple[int, int] | None = None  # the root folder watched (dev, inode)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            watcher = Watcher()
            watcher.add("borrowed", self._root)
            st = os.stat(self._root)
        except (WatchLimitError, LocalError, OSError) as exc:
            log.info("not watching the borrowed folder (%s): it is checked periodically", exc)
            return
        self._watcher = watcher
        self._watched = (st.st_dev, st.st_ino)
        loop.add_reader(watcher.fileno(), self._on_events)

    @property
    def watching(self) -> tuple[int, int] | None:
        """The (device, inode) of the borrowed folder being watched, if one is."""
        return self._watched if self._watcher is not None else None

    def rearm(self) -> None:
        """Watch the borrowed folder again if it was deleted and made anew since."""
        if self._watched is None:
            return  # never watched: no inotify here
        try:
            st = os.stat(self._root)
        except OSError:
            return  # gone: made again when the next copy is placed
        if self._watcher is None or (st.st_dev, st.st_ino) != self._watched:
            self.stop()
            self.start()

    def _on_events(self) -> None:
        assert self._watcher is not None
        try:
            changes = self._watcher.read()
        except OSError:
            return
        if changes:
            self._changed()

    def stop(self) -> None:
        if self._watcher is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._watcher.fileno())
            self._watcher.close()
            self._watcher = None


__all__ = ["BorrowedWatch", "lost_copies", "sweep_staging"]
