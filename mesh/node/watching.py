"""Libraries that watch themselves: a running node indexes what changed in its shared
folders within about a second of the change settling, without rehashing the rest.

Theory of operation. File-system events (or, where a library cannot be watched, the
difference between two walks of it) only enqueue: a changed file is `touch`ed in the
settler, a folder that appeared, went or moved queues its parent to be listed and has its
files touched (some may predate its watch), and a library whose events were lost is queued
to be scanned whole. The loop then waits for the earliest of: new events, a path becoming
due, the next poll, the next full rescan. Due paths are looked at (stat, in a thread); those
that settled queue their folder. Then one partial scan lists just the queued folders and
hashes only what changed there, leaving every path still settling alone; its commits wake
gossip like any scan. A full rescan of every library every `rescan_interval_s` (and once at
start, for what changed while the node was down) catches anything events missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import stat
import time
from collections.abc import Iterable
from typing import Protocol

from mesh.config import Settings
from mesh.core.entries import Library
from mesh.core.errors import MeshError
from mesh.core.progress import ScanProgress
from mesh.core.settle import Key, Settler, Signature
from mesh.fs import poll
from mesh.fs.scanner import Scope
from mesh.fs.watcher import Change, Watcher, WatchLimitError, What

log = logging.getLogger(__name__)


class WatchHost(Protocol):
    settings: Settings

    async def libraries(self) -> list[Library]: ...

    async def scan_quietly(self, scopes: dict[str, Scope]) -> ScanProgress: ...


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


def _look(root: str, path: str) -> tuple[Signature, float]:
    """(size, mtime_ns) of a file, None if it is not a file there; and its mtime's age."""
    try:
        st = os.stat(os.path.join(root, path), follow_symlinks=False)
    except OSError:
        return None, 0.0
    if not stat.S_ISREG(st.st_mode):
        return None, 0.0
    return (st.st_size, st.st_mtime_ns), time.time() - st.st_mtime_ns / 1e9


def _files_below(root: str, top: str, exclude: Iterable[str]) -> list[str]:
    snap = poll.snapshot(os.path.join(root, top) if top else root, exclude)
    prefix = f"{top}/" if top else ""
    return [prefix + path for path, seen in snap.items() if seen is not None]


class LibraryWatch:
    """Keeps the index of every library in step with its folder while the node runs."""

    def __init__(self, host: WatchHost, *, exclude: Iterable[str] = ()) -> None:
        self._host = host
        s = host.settings
        self._settler = Settler(s.settle_s)
        self._exclude = tuple(exclude)
        self._wake = asyncio.Event()
        self._roots: dict[str, str] = {}
        self._folders: dict[str, set[str]] = {}  # library -> folders to list
        self._whole: set[str] = set()  # libraries to scan whole
        self._new_folders: list[tuple[str, str]] = []  # (library, folder) to walk
        self._rewatch: set[str] = set()
        self._polled: dict[str, poll.Snapshot] = {}  # libraries without events
        self._watcher: Watcher | None = None
        self._refresh = True
        self.scans = 0  # partial and full scans run, for `mesh status` and tests
        self.last: ScanProgress | None = None

    @property
    def polled(self) -> frozenset[str]:
        return frozenset(self._polled)

    def watched(self) -> frozenset[str]:
        """The libraries being watched or polled."""
        return frozenset(self._roots)

    def pending(self) -> int:
        """Paths still settling."""
        return len(self._settler)

    def libraries_changed(self) -> None:
        """A library was shared or unshared: look at the set again."""
        self._refresh = True
        self._wake.set()

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        s = self._host.settings
        loop = asyncio.get_running_loop()
        if s.watch:
            try:
                self._watcher = Watcher(exclude=self._exclude)
            except WatchLimitError as exc:
                log.warning("%s; libraries are polled every %.0f s", exc, s.poll_interval_s)
        if self._watcher is not None:
            loop.add_reader(self._watcher.fileno(), self._on_events)
        try:
            await self._loop()
        finally:
            if self._watcher is not None:
                loop.remove_reader(self._watcher.fileno())
                self._watcher.close()

    async def _loop(self) -> None:
        s = self._host.settings
        now = time.monotonic()
        next_rescan = now + s.rescan_interval_s if s.rescan_interval_s > 0 else math.inf
        next_poll = now + s.poll_interval_s
        first = True
        while True:
            deadline = min(
                next_rescan,
                next_poll if self._polled else math.inf,
                math.inf if (due := self._settler.next_due()) is None else due,
            )
            if not self._has_work():
                timeout = None if deadline == math.inf else max(0.0, deadline - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            if self._refresh:
                await self._take_libraries(scan_new=first)
                first = False
            now = time.monotonic()
            if now >= next_rescan:
                self._whole.update(self._roots)
                next_rescan = now + s.rescan_interval_s
            if self._polled and now >= next_poll:
                await self._poll()
                next_poll = time.monotonic() + s.poll_interval_s
            await self._walk_new_folders()
            await self._settle()
            if self._whole or any(self._folders.values()):
                await self._scan()

    def _has_work(self) -> bool:
        return bool(
            self._refresh or self._whole or self._new_folders or any(self._folders.values())
        )

    # -- taking changes ------------------------------------------------------------------

    def _on_events(self) -> None:
        assert self._watcher is not None
        for change in self._watcher.read():
            self._take(change)
        self._wake.set()

    def _take(self, change: Change) -> None:
        lib = change.library
        if lib not in self._roots:
            return
        if change.what is What.LIBRARY:
            self._whole.add(lib)
            self._rewatch.add(lib)
        elif change.what is What.FOLDER:
            self._folders.setdefault(lib, set()).add(_parent(change.path))
            self._new_folders.append((lib, change.path))
        else:
            self._settler.touch((lib, change.path), time.monotonic())

    async def _take_libraries(self, *, scan_new: bool) -> None:
        self._refresh = False
        try:
            current = {lib.name: lib.root for lib in await self._host.libraries()}
        except MeshError as exc:
            log.warning("cannot list libraries to watch: %s", exc)
            return
        for name in [n for n in self._roots if current.get(n) != self._roots[n]]:
            self._drop(name)
        for name, root in current.items():
            if name not in self._roots:
                self._roots[name] = root
                await self._watch(name)
                if scan_new:
                    self._whole.add(name)

    def _drop(self, name: str) -> None:
        if self._watcher is not None:
            self._watcher.remove(name)
        self._roots.pop(name, None)
        self._polled.pop(name, None)
        self._folders.pop(name, None)
        self._whole.discard(name)
        self._rewatch.discard(name)
        self._settler.forget(name)

    async def _watch(self, name: str) -> None:
        if not self._host.settings.watch:
            return  # only the periodic full rescan
        root = self._roots[name]
        if self._watcher is not None:
            watcher = self._watcher
            try:
                await asyncio.to_thread(watcher.add, name, root)
            except WatchLimitError as exc:
                log.warning("%s", exc)
            else:
                self._polled.pop(name, None)
                return
        self._polled[name] = await asyncio.to_thread(poll.snapshot, root, self._exclude)

    async def _poll(self) -> None:
        for name, before in list(self._polled.items()):
            root = self._roots[name]
            after = await asyncio.to_thread(poll.snapshot, root, self._exclude)
            if name not in self._polled:
                continue  # unshared meanwhile
            self._polled[name] = after
            for change, seen in poll.diff(name, before, after):
                if change.what is What.FILE:
                    self._settler.saw((name, change.path), seen, time.monotonic())
                else:
                    self._take(change)

    async def _walk_new_folders(self) -> None:
        while self._new_folders:
            lib, folder = self._new_folders.pop()
            root = self._roots.get(lib)
            if root is None:
                continue
            now = time.monotonic()
            for path in await asyncio.to_thread(_files_below, root, folder, self._exclude):
                self._settler.touch((lib, path), now)

    async def _settle(self) -> None:
        due = self._settler.due(time.monotonic())
        if not due:
            return
        roots = dict(self._roots)

        def look() -> list[tuple[Key, Signature, float]]:
            return [(key, *_look(roots[key[0]], key[1])) for key in due if key[0] in roots]

        now = time.monotonic()
        for key, seen, age in await asyncio.to_thread(look):
            if self._settler.confirm(key, seen, age, now):
                self._folders.setdefault(key[0], set()).add(_parent(key[1]))

    async def _scan(self) -> None:
        scopes: dict[str, Scope] = {}
        for name in self._roots:
            folders = self._folders.pop(name, set())
            if name in self._whole:
                scopes[name] = Scope(skip=self._settler.pending_in(name))
            elif folders:
                scopes[name] = Scope(
                    folders=frozenset(folders), skip=self._settler.pending_in(name)
                )
        self._whole.clear()
        rewatch, self._rewatch = self._rewatch, set()
        if scopes:
            try:
                self.last = await self._host.scan_quietly(scopes)
            except MeshError as exc:
                log.warning("indexing changes: %s", exc)
            else:
                self.scans += 1
                for warning in self.last.warnings:
                    log.info("%s", warning)
        for name in rewatch:
            if name in self._roots:
                await self._watch(name)


__all__ = ["LibraryWatch", "WatchHost"]
