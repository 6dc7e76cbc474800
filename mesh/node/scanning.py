"""Scans on the daemon: one at a time, in a worker thread, streaming progress; the store
is written from the store thread only (the scanner's callbacks hop onto it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from mesh.core.errors import LocalError
from mesh.core.progress import ScanProgress
from mesh.fs.scanner import Scanner, Scope

if TYPE_CHECKING:
    from mesh.node.daemon import Daemon


class Scanning:
    def __init__(self, daemon: Daemon) -> None:
        self._d = daemon
        self._lock = asyncio.Lock()
        self._running: set[Scanner] = set()

    def cancel_all(self) -> None:
        for scanner in self._running:
            scanner.cancel()

    async def scan_quietly(self, scopes: dict[str, Scope]) -> ScanProgress:
        """Scan libraries as far as `scopes` says (the watcher's scans); the totals."""
        last = ScanProgress()
        async for last in self.scan(list(scopes), scopes):  # noqa: B007
            pass
        return last

    async def scan(
        self, names: list[str], scopes: dict[str, Scope] | None = None
    ) -> AsyncIterator[ScanProgress]:
        """Scan in a worker thread, streaming progress; one scan at a time."""
        async with self._lock:
            libraries = await self._d.store(self._d.local.select_libraries, names)
            loop = asyncio.get_running_loop()
            updates: asyncio.Queue[ScanProgress | BaseException] = asyncio.Queue()

            def report(p: ScanProgress) -> None:
                snapshot = ScanProgress(**{**vars(p), "warnings": list(p.warnings)})
                loop.call_soon_threadsafe(updates.put_nowait, snapshot)

            index = self._d.local.index
            scanner = Scanner(
                load_known=lambda lib, under: self._d.store_blocking(
                    index.known_by_folder, lib, under
                ),
                load_folder=lambda lib, folder: self._d.store_blocking(
                    index.known_in_folder, lib, folder
                ),
                commit=lambda lib, batch: self._d.store_blocking(index.apply, lib, batch),
                on_progress=report,
            )
            self._running.add(scanner)

            def work() -> None:
                try:
                    scanner.scan(libraries, scopes)
                except BaseException as exc:
                    loop.call_soon_threadsafe(updates.put_nowait, exc)

            worker = asyncio.create_task(asyncio.to_thread(work))
            try:
                while True:
                    item = await updates.get()
                    if isinstance(item, BaseException):
                        raise item
                    yield item
                    if item.done:
                        break
            finally:
                scanner.cancel()
                with contextlib.suppress(LocalError):
                    await worker
                self._running.discard(scanner)
