"""Watching libraries: file-system events turned into changes of (library, path).

Theory of operation. Each library's folders each get an inotify watch (inotify is not
recursive); a folder that appears gets its watches at once, and is reported so its files
are looked at (some may have been written before its watch existed). The watcher only
translates: what to do about a change (settle, scan) is the caller's.

A change is about a file, about a folder (appeared, went or moved: its parent is listed
again), or about the whole library (the event queue overflowed, its root went away or the
watch table is full): then only a full scan can tell what happened. Mesh's own staging
names and the excluded folders (the borrowed folder: it is not a library) are not watched.

Where inotify is missing (not Linux) or a library cannot be watched whole (the kernel's
watch limit), `WatchLimitError` tells the caller to poll it instead (see `poll.py`).
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from mesh.core.errors import LocalError
from mesh.core.paths import LENDER_FOLDER_PREFIX
from mesh.fs import inotify as ino
from mesh.fs.folder_scan import STAGING_PREFIX

_MASK = (
    ino.IN_MODIFY
    | ino.IN_ATTRIB
    | ino.IN_CLOSE_WRITE
    | ino.IN_MOVED_FROM
    | ino.IN_MOVED_TO
    | ino.IN_CREATE
    | ino.IN_DELETE
    | ino.IN_DELETE_SELF
    | ino.IN_MOVE_SELF
    | ino.IN_ONLYDIR
    | ino.IN_DONT_FOLLOW
    | ino.IN_EXCL_UNLINK
)
_FOLDER_GONE = ino.IN_DELETE | ino.IN_MOVED_FROM


class WatchLimitError(LocalError):
    """A library cannot be watched (no inotify here, or the kernel's watch limit is
    reached); poll it instead."""


class What(Enum):
    FILE = "file"
    FOLDER = "folder"  # appeared (its files to be looked at), went or moved
    LIBRARY = "library"  # anything may have changed: scan it whole


@dataclass(frozen=True, slots=True)
class Change:
    library: str
    path: str  # relative to the library's root, '/'-separated; "" is the root
    what: What


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


class Watcher:
    """inotify watches over every folder of the libraries added."""

    def __init__(
        self,
        exclude: Sequence[str] = (),
        make: Callable[[], ino.Inotify] = ino.Inotify,
    ) -> None:
        try:
            self._inotify = make()
        except OSError as exc:
            raise WatchLimitError(f"cannot watch folders: {exc.strerror or exc}") from exc
        self._exclude = {os.path.realpath(p) for p in exclude}
        self._roots: dict[str, str] = {}
        self._by_wd: dict[int, tuple[str, str]] = {}  # wd -> (library, folder)
        self._wds: dict[str, dict[str, int]] = {}  # library -> folder -> wd
        # `add` walks a whole library, so the caller may run it in a thread while the event
        # loop reads events: both change the maps above.
        self._lock = threading.RLock()

    def fileno(self) -> int:
        return self._inotify.fileno()

    def libraries(self) -> set[str]:
        return set(self._roots)

    def watches(self) -> int:
        return len(self._by_wd)

    def add(self, library: str, root: str) -> None:
        """Watch every folder of a library (again, if it was watched). WatchLimitError if
        it cannot be watched whole; then none of it is."""
        with self._lock:
            self.remove(library)
            self._roots[library] = root
            self._wds[library] = {}
            try:
                self._watch_tree(library, "")
            except WatchLimitError:
                self.remove(library)
                raise

    def remove(self, library: str) -> None:
        with self._lock:
            for wd in self._wds.pop(library, {}).values():
                self._by_wd.pop(wd, None)
                self._inotify.rm_watch(wd)
            self._roots.pop(library, None)

    def close(self) -> None:
        self._inotify.close()

    def _watch_tree(self, library: str, top: str) -> None:
        """Watch `top` and every folder below it (symlinks are not followed)."""
        root = self._roots[library]
        stack = [top]
        while stack:
            rel = stack.pop()
            full = os.path.join(root, rel) if rel else root
            if os.path.realpath(full) in self._exclude:
                continue
            try:
                wd = self._inotify.add_watch(full, _MASK)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise WatchLimitError(
                        f"library {library!r}: the system's limit of watched folders is "
                        "reached (fs.inotify.max_user_watches); polling it instead"
                    ) from exc
                if not rel:
                    # A missing root (an unplugged disk): polling sees it come back.
                    raise WatchLimitError(
                        f"library {library!r}: cannot watch {full} "
                        f"({exc.strerror or exc}); polling it instead"
                    ) from exc
                continue  # gone already, or not a folder: its parent's event tells
            old = self._by_wd.get(wd)
            if old is not None and old != (library, rel):
                self._wds.get(old[0], {}).pop(old[1], None)
            self._by_wd[wd] = (library, rel)
            self._wds[library][rel] = wd
            try:
                with os.scandir(full) as entries:
                    for entry in entries:
                        if _hidden(entry.name):
                            continue
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(_join(rel, entry.name))
            except OSError:
                continue

    def _forget_tree(self, library: str, top: str) -> None:
        wds = self._wds.get(library, {})
        prefix = top + "/"
        for rel in [r for r in wds if r == top or r.startswith(prefix)]:
            wd = wds.pop(rel)
            self._by_wd.pop(wd, None)
            self._inotify.rm_watch(wd)

    def read(self) -> list[Change]:
        """The changes behind the events queued now (never blocks)."""
        changes: list[Change] = []
        with self._lock:
            for event in self._inotify.read():
                changes.extend(self._translate(event))
        return changes

    def _translate(self, event: ino.Event) -> list[Change]:
        mask = event.mask
        if mask & ino.IN_Q_OVERFLOW:
            return [Change(library=lib, path="", what=What.LIBRARY) for lib in self._roots]
        where = self._by_wd.get(event.wd)
        if where is None:
            return []
        library, rel = where
        if mask & ino.IN_IGNORED:
            self._by_wd.pop(event.wd, None)
            self._wds.get(library, {}).pop(rel, None)
            return []
        if not event.name:  # about the watched folder itself
            if rel == "" and mask & (ino.IN_DELETE_SELF | ino.IN_MOVE_SELF | ino.IN_UNMOUNT):
                return [Change(library=library, path="", what=What.LIBRARY)]
            return []
        if _hidden(event.name):
            return []
        path = _join(rel, event.name)
        if not mask & ino.IN_ISDIR:
            return [Change(library=library, path=path, what=What.FILE)]
        if mask & _FOLDER_GONE:
            self._forget_tree(library, path)
        elif mask & (ino.IN_CREATE | ino.IN_MOVED_TO):
            try:
                self._watch_tree(library, path)
            except WatchLimitError:
                self.remove(library)
                return [Change(library=library, path="", what=What.LIBRARY)]
        return [Change(library=library, path=path, what=What.FOLDER)]


def _hidden(name: str) -> bool:
    """mesh's own staging is not a change; a lender's folder in the borrowed folder
    (`.mesh-lender-ID`) holds the copies the watch is there for."""
    return name.startswith(STAGING_PREFIX) and not name.startswith(LENDER_FOLDER_PREFIX)


__all__ = ["Change", "WatchLimitError", "Watcher", "What"]
