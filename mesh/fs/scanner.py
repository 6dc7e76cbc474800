"""Scanning libraries: walk, skip what did not change, hash what did, hand over the changes.

Theory of operation. A library is scanned folder by folder: each folder is a task
(`folder_scan.scan_folder`) that lists it, skips files whose size, mtime and inode match the
index, and hashes the rest. Small scans run the tasks in this process; once a scan shows it
is big, the remaining folders go to a pool of worker processes so both cores walk and hash
(threads would share one core under the GIL). This process only hands out folders, turns
results into index changes and commits them in slices, so a crash late in a long scan keeps
most of its work. Files of 64 MiB and more are hashed by a thread here so the progress bar
moves by bytes.

Deletions: a worker reports the known files missing from a folder it listed; a known folder
that no longer exists loses its files at the end. Nothing is deleted under a folder that
could not be listed, nor in a library whose root is missing (an unplugged disk is no reason
to tell the mesh that every file is gone).

A partial scan (a `Scope`, what the library watcher asks for) lists only the folders named,
without walking into their subfolders: a known folder it did not visit is gone only when
the nearest folder above it that was listed no longer holds it. Given `load_folder`, it
loads only what the index has directly in those folders (and the names of their known
subfolders), and the contents of a subfolder only once it turns out to be gone. Files named
in the scope's `skip` (still being written) are neither hashed nor taken as gone.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mesh.core.entries import Library
from mesh.core.errors import LocalError
from mesh.core.progress import ScanProgress
from mesh.fs.folder_scan import (
    STAGING_PREFIX,
    FolderResult,
    FolderTask,
    classify,
    scan_folders,
    scan_folders_packed,
    unpack_results,
)
from mesh.fs.hashing import Digest, hash_file
from mesh.store.index import KnownFile, ScanBatch

LARGE_FILE = 64 << 20
# Once this much time went into folders scanned here, the rest go to worker processes.
_INLINE_BUDGET_S = 0.05
_COMMIT_EVERY = 20_000
# The least a commit takes while the writer is free; each commit costs an fsync.
_SLICE_MIN = 2_000
_TASK_FOLDERS = 16
_TASK_FILES = 2_000
_COMMIT_INTERVAL_S = 2.0


@dataclass(frozen=True, slots=True)
class Scope:
    """What a scan of one library covers: every folder (`folders` is None), or only the
    files directly in `folders` ("" is the root); `skip` paths are left as they are."""

    folders: frozenset[str] | None = None
    skip: frozenset[str] = field(default_factory=frozenset)

    @property
    def full(self) -> bool:
        return self.folders is None


FULL = Scope()


class ScanCancelledError(LocalError):
    """The scan was stopped (shutdown, Ctrl-C) before it finished."""


def _ignore_sigint() -> None:
    # Ctrl-C is the parent's to handle; it shuts the workers down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork starts workers in milliseconds, but is unsafe once gRPC's threads exist (the
    # daemon); there forkserver starts them from a clean process instead.
    if "grpc" not in sys.modules and sys.platform == "linux":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver")


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def _folder_of(path: str) -> tuple[str, str]:
    rel, _, name = path.rpartition("/")
    return rel, name


class Scanner:
    """Scans libraries and hands their changes to `commit` (library name, changes)."""

    def __init__(
        self,
        *,
        # (library, folders or None for all) -> what the index has inside those folders
        load_known: Callable[[str, Sequence[str] | None], dict[str, dict[str, KnownFile]]],
        commit: Callable[[str, ScanBatch], int],
        on_progress: Callable[[ScanProgress], None] | None = None,
        workers: int | None = None,
        # (library, folder) -> (its known files by name, names of its known subfolders)
        load_folder: Callable[[str, str], tuple[dict[str, KnownFile], set[str]]] | None = None,
    ) -> None:
        self._load_known = load_known
        self._load_folder = load_folder
        self._commit = commit
        self._on_progress = on_progress or (lambda _p: None)
        self._workers = workers if workers is not None else (os.cpu_count() or 1)
        self._pool: cf.ProcessPoolExecutor | None = None
        self._threads: cf.ThreadPoolExecutor | None = None
        self._write_thread: cf.ThreadPoolExecutor | None = None
        self._cancelled = threading.Event()
        self.progress = ScanProgress()

    def cancel(self) -> None:
        """Stop at the next folder (from any thread); scan() raises ScanCancelledError.
        What was committed stays; the next scan picks up the rest."""
        self._cancelled.set()

    def _check_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise ScanCancelledError("the scan was cancelled; what it committed is kept")

    def scan(
        self, libraries: Sequence[Library], scopes: Mapping[str, Scope] | None = None
    ) -> ScanProgress:
        """Scan `libraries`, each in full or as far as `scopes` (by library name) says."""
        try:
            for library in libraries:
                if not os.path.isdir(library.root):
                    self.progress.warnings.append(
                        f"library {library.name!r}: {library.root} is missing; "
                        "its entries are kept as they were"
                    )
                    continue
                scope = (scopes or {}).get(library.name, FULL)
                _LibraryScan(self, library, scope).run()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
            for executor in (self._threads, self._write_thread):
                if executor is not None:
                    executor.shutdown(wait=True, cancel_futures=True)
            self._threads = self._write_thread = None
        self.progress.done = True
        self._on_progress(self.progress)
        return self.progress

    def _process_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(
                max_workers=self._workers, mp_context=_pool_context(), initializer=_ignore_sigint
            )
        return self._pool

    def _thread_pool(self) -> cf.ThreadPoolExecutor:
        if self._threads is None:
            self._threads = cf.ThreadPoolExecutor(1, "mesh-hash")
        return self._threads

    def _writer(self) -> cf.ThreadPoolExecutor:
        # SQLite lets go of the GIL while it writes, so commits overlap with handing out
        # folders; one thread keeps the store's single-writer rule.
        if self._write_thread is None:
            self._write_thread = cf.ThreadPoolExecutor(1, "mesh-scan-commit")
        return self._write_thread


class _LibraryScan:
    """One library's folders in flight, and the changes found so far."""

    def __init__(self, scanner: Scanner, library: Library, scope: Scope) -> None:
        self.scanner = scanner
        self.library = library
        self.scope = scope
        self.progress = scanner.progress
        folders = None if scope.folders is None else sorted(scope.folders)
        # Known subfolders of each folder listed, when only those folders were loaded.
        self.known_children: dict[str, set[str]] | None = None
        if folders is not None and scanner._load_folder is not None:
            self.by_folder, self.known_children = {}, {}
            for folder in folders:
                files, children = scanner._load_folder(library.name, folder)
                self.by_folder[folder] = files
                self.known_children[folder] = children
        else:
            self.by_folder = scanner._load_known(library.name, folders)
        self.queue: collections.deque[str] = collections.deque([""] if folders is None else folders)
        self.skip: dict[str, set[str]] = {}
        for path in scope.skip:
            folder, name = _folder_of(path)
            self.skip.setdefault(folder, set()).add(name)
        self.visited: set[str] = set()
        self.subfolders: dict[str, set[str]] = {}  # of each folder listed, in a partial scan
        self.unlisted: list[str] = []
        self.batch = ScanBatch()
        self.done: queue.SimpleQueue[cf.Future[Any]] = queue.SimpleQueue()
        self.in_flight = 0
        self.large: dict[cf.Future[Digest], tuple[str, list[int]]] = {}
        self.inline_s = 0.0
        self.hashed_bytes = 0
        self.last_report = 0.0
        self.last_commit = time.monotonic()
        self.committing: cf.Future[int] | None = None

    def run(self) -> None:
        scanner = self.scanner
        # Enough folders handed out that a worker never waits while this process commits.
        limit = 8 * max(1, scanner._workers)
        while self.queue or self.in_flight:
            scanner._check_cancelled()
            while self.queue and self.in_flight < limit:
                task = self._next_task()
                if scanner._pool is None and (
                    scanner._workers <= 1 or self.inline_s < _INLINE_BUDGET_S
                ):
                    started = time.monotonic()
                    for result in scan_folders(task):
                        self._absorb(result)
                    self.inline_s += time.monotonic() - started
                    # A scan done here whole still commits in slices.
                    self._maybe_commit()
                else:
                    self._track(scanner._process_pool().submit(scan_folders_packed, task))
            if self.in_flight:
                try:
                    future = self.done.get(timeout=0.1)
                except queue.Empty:
                    pass
                else:
                    self.in_flight -= 1
                    self._finish(future)
            self._maybe_commit()
            self._report()
        self._vanished_folders()
        self._commit()
        if self.committing is not None:
            self.committing.result()
        self._report(force=True)

    def _next_task(self) -> FolderTask:
        """Up to _TASK_FOLDERS folders, or fewer once they hold _TASK_FILES known files."""
        folders: list[tuple[str, dict[str, KnownFile]]] = []
        files = 0
        while self.queue and len(folders) < _TASK_FOLDERS and files < _TASK_FILES:
            rel = self.queue.popleft()
            known = self.by_folder.get(rel, {})
            folders.append((rel, known))
            files += len(known)
        skip = {rel: frozenset(self.skip[rel]) for rel, _ in folders if rel in self.skip}
        return FolderTask(root=self.library.root, folders=folders, large=LARGE_FILE, skip=skip)

    def _track(self, future: cf.Future[Any]) -> None:
        # A done-callback only enqueues: waiting on one queue costs the same however many
        # tasks are in flight, where cf.wait would re-arm every future on every call.
        self.in_flight += 1
        future.add_done_callback(self.done.put)

    def _finish(self, future: cf.Future[Any]) -> None:
        if future in self.large:
            self._absorb_large(future)
            return
        for result in unpack_results(future.result()):
            self._absorb(result)

    def _absorb(self, r: FolderResult) -> None:
        """Take a folder's result: its changes, its subfolders, its large files."""
        p = self.progress
        if r.missing:
            return  # gone since the event that named it: its listed parent tells
        self.visited.add(r.rel)
        if not r.listed:
            self.unlisted.append(r.rel)
        p.warnings.extend(r.warnings)
        if self.scope.full:
            self.queue.extend(_join(r.rel, name) for name in r.subfolders)
        elif r.listed:
            self.subfolders[r.rel] = set(r.subfolders)
        p.files_seen += r.seen
        p.removed += len(r.gone)
        self.batch.gone.extend(r.gone)
        hashed = len(r.new) + len(r.revived) + len(r.changed) + len(r.restat) + len(r.failed)
        p.files_to_hash += hashed
        p.files_hashed += hashed
        p.bytes_to_hash += r.bytes_hashed
        self.hashed_bytes += r.bytes_hashed
        self._take(r)
        for path, reason in r.failed:
            p.warnings.append(f"cannot read {self._full(path)}: {reason}")
        for path, size in r.large:
            counter = [0]
            future = self.scanner._thread_pool().submit(hash_file, self._full(path), counter)
            self.large[future] = (path, counter)
            self._track(future)
            p.files_to_hash += 1
            p.bytes_to_hash += size

    def _take(self, r: FolderResult) -> None:
        """Add classified files to the batch and the totals."""
        p = self.progress
        b = self.batch
        p.unchanged += r.unchanged
        p.added += len(r.new) + len(r.revived)
        p.changed += len(r.changed)
        b.new.extend(r.new)
        b.changed.extend(r.revived)
        b.changed.extend(r.changed)
        b.restat.extend(r.restat)
        b.chunk_lists.extend(r.chunk_lists)

    def _absorb_large(self, future: cf.Future[Digest]) -> None:
        path, _counter = self.large.pop(future)
        p = self.progress
        p.files_hashed += 1
        try:
            d = future.result()
        except OSError as exc:
            p.warnings.append(f"cannot read {self._full(path)}: {exc.strerror or exc}")
            return
        self.hashed_bytes += d.size
        folder, name = _folder_of(path)
        one = FolderResult(rel=folder)
        classify(one, path, self.by_folder.get(folder, {}).get(name), d)
        self._take(one)

    def _full(self, path: str) -> str:
        return os.path.join(self.library.root, path)

    def _vanished_folders(self) -> None:
        """Known files in folders that no longer exist (and were not merely unreadable)."""
        if not self.scope.full:
            self._vanished_below_listed()
            return
        if "" in self.unlisted:
            return
        prefixes = tuple(f"{u}/" for u in self.unlisted)
        for rel, files in self.by_folder.items():
            if rel in self.visited or rel.startswith(prefixes):
                continue
            gone = [_join(rel, name) for name, k in files.items() if not k[4]]
            self.batch.gone.extend(gone)
            self.progress.removed += len(gone)

    def _vanished_below_listed(self) -> None:
        if self.known_children is not None:
            self._vanished_children()
            return
        for rel, files in self.by_folder.items():
            if rel in self.visited or not self._left_its_parent(rel):
                continue
            gone = [_join(rel, name) for name, k in files.items() if not k[4]]
            self.batch.gone.extend(gone)
            self.progress.removed += len(gone)

    def _vanished_children(self) -> None:
        """Known subfolders that a folder listed here no longer holds: all they held is gone."""
        assert self.known_children is not None
        gone_folders = [
            _join(rel, name)
            for rel, names in self.known_children.items()
            if rel in self.subfolders
            for name in names - self.subfolders[rel]
        ]
        if not gone_folders:
            return
        for rel, files in self.scanner._load_known(self.library.name, gone_folders).items():
            gone = [_join(rel, name) for name, k in files.items() if not k[4]]
            self.batch.gone.extend(gone)
            self.progress.removed += len(gone)

    def _left_its_parent(self, rel: str) -> bool:
        """Whether the nearest folder above `rel` that this scan listed no longer holds the
        way down to it."""
        child = rel
        while child:
            parent, name = _folder_of(child)
            listed = self.subfolders.get(parent)
            if listed is not None:
                return name not in listed
            if parent in self.visited:
                return False  # visited but not listed: unreadable, so nothing is gone
            child = parent
        return False

    def _maybe_commit(self) -> None:
        """Commit once the batch is big or old, or as soon as the writer is free and there
        is a slice's worth: the writer then keeps pace with the workers, and what is left
        to commit after the last folder is small."""
        pending = len(self.batch)
        if not pending:
            return
        big_or_old = (
            pending >= _COMMIT_EVERY or time.monotonic() - self.last_commit >= _COMMIT_INTERVAL_S
        )
        writer_free = self.committing is None or self.committing.done()
        if big_or_old or (pending >= _SLICE_MIN and writer_free):
            self._commit()

    def _commit(self) -> None:
        """Hand the batch to the writer thread (one commit in flight, so memory stays bounded
        and a failed commit stops the scan at the next slice)."""
        if len(self.batch):
            if self.committing is not None:
                self.committing.result()
            self.committing = self.scanner._writer().submit(
                self.scanner._commit, self.library.name, self.batch
            )
            self.batch = ScanBatch()
        self.last_commit = time.monotonic()

    def _report(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last_report >= 0.1:
            self.last_report = now
            in_flight = sum(c[0] for _, c in list(self.large.values()))
            self.progress.bytes_hashed = self.hashed_bytes + in_flight
            self.scanner._on_progress(self.progress)


__all__ = [
    "FULL",
    "LARGE_FILE",
    "STAGING_PREFIX",
    "ScanCancelledError",
    "ScanProgress",
    "Scanner",
    "Scope",
]
