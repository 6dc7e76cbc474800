"""Placing many small verified files at once: a folder loan's small files (node/folder_batch.py).

Each file goes through the steps of fs/placing.py, but a step is done for the whole batch
before the next one starts, so the disk's flushes are shared:
1. every file is checked against its content hash (one chunk: the chunk's hash is the
   file's) and written to its own staging file as soon as it arrives, its writeback
   started at once (`Staged.write`), so the disk works while the rest is fetched;
2. all of them are fsynced, several at once (the file system commits concurrent fsyncs
   together), before any is linked in, so no name ever points at data not on disk;
3. each is placed (hash checked, folders made, read-only, linked in);
4. each destination folder is fsynced once, after every file in it is linked in.
Steps 1-2 are `Staged` (or `stage_batch` for files at hand), 3-4 `link_batch`: between
the two the caller records the staged files as pulls with every chunk verified, so after
a kill in steps 3-4 the staging names are kept and the next start places each file again
through fs/placing.py, which finds a file already linked in as its staging file's own
placement (not a user's file).
The caller records the returned FileIds as held only after link_batch returns. A file that
fails is left out (its error is returned in its place); the others go on.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

import xxhash

from mesh.core.errors import PlacementError
from mesh.fs import placing, staging
from mesh.fs.borrowed_root import STAGING, BorrowedRoot
from mesh.fs.copies import FileId
from mesh.fs.folder_walk import os_error, sync_dir
from mesh.fs.placing import Step

_SYNCING = 8  # files fsynced at once
# A new staging file: never an existing name (another file's, or a link planted there).
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, kw_only=True, slots=True)
class Placing:
    """One file of a batch: its staging key, where it goes, its verified bytes and hash."""

    key: str
    parts: tuple[str, ...]
    data: bytes | memoryview
    hash: bytes


class Staged:
    """Files of a batch written to their staging files as they arrive, their writeback
    started at once (so the disk works while the rest of the batch is fetched); `sync`
    waits for all of them to be on disk. Close it (or use it as a context manager).
    `write` may be called from several threads at once."""

    def __init__(self, root: BorrowedRoot, step: Step) -> None:
        self._root = root
        self._step = step
        self._fds: dict[str, tuple[int, Placing]] = {}  # key: open descriptor, item
        self._staging = -1  # the staging folder, opened once for the batch
        self._lock = threading.Lock()

    def __enter__(self) -> Staged:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            fds, self._fds = self._fds, {}
            staging, self._staging = self._staging, -1
        for fd, _ in fds.values():
            os.close(fd)
        if staging >= 0:
            os.close(staging)

    def write(self, item: Placing, *, checked: bool = False) -> PlacementError | None:
        """Step 1 for one item (blocking): None when it is written, or why it is not.
        `checked`: the caller compared the bytes with the hash just before."""
        root = self._root
        if not checked and xxhash.xxh3_128_digest(item.data) != item.hash:
            # A one-chunk file's content hash is its chunk's: checked here again, as
            # place() does, whatever the caller checked.
            return PlacementError(
                f"the file fetched for {root.shown(list(item.parts))} does not have the "
                "content hash it should; it was not placed"
            )
        try:
            fd = self._create(item)
        except PlacementError as exc:
            return exc
        # Start writing it back now, without waiting (the kernel would otherwise keep it
        # dirty until the fsync below, which would then wait for the whole batch).
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        with self._lock:
            old = self._fds.pop(item.key, None)
            self._fds[item.key] = (fd, item)
        if old is not None:
            os.close(old[0])
        return None

    def _create(self, item: Placing) -> int:
        """The item written to a new staging file, through the page cache (an O_DIRECT
        write waits for the disk, one file after another, where the writebacks started
        by `write` overlap); its open descriptor. The usual case, no file of that name
        yet, costs an open and a write; any other goes through staging.open_staging."""
        key = staging.check_key(item.key)
        try:
            # Created read-only: placing makes it so anyway, and a staging file left by
            # a kill is unlocked again by whoever reopens it to write (fs/staging.py).
            fd = os.open(key, _CREATE, 0o444, dir_fd=self._staging_fd())
        except FileExistsError:
            with staging.open_staging(self._root, key, len(item.data), direct=False) as file:
                file.write_chunk(0, bytes(item.data))
                return file.duplicate()
        except OSError as exc:
            raise os_error(exc, f"create {self._root.shown([STAGING, key])}") from exc
        try:
            view = memoryview(item.data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:
            os.close(fd)
            raise os_error(exc, f"write {self._root.shown([STAGING, key])}") from exc
        return fd

    def _staging_fd(self) -> int:
        with self._lock:
            if self._staging < 0:
                with ExitStack() as stack:
                    fd = self._root.staging_fd(stack, self._root.made_root_fd(stack))
                    self._staging = os.dup(fd)
            return self._staging

    def sync(self) -> dict[str, PlacementError]:
        """Step 2 for every item written: per key, why it is not on disk (none: all are)."""
        with self._lock:
            entries = list(self._fds.values())

        def sync(entry: tuple[int, Placing]) -> PlacementError | None:
            fd, item = entry
            try:
                os.fsync(fd)
            except OSError as exc:
                return os_error(exc, f"flush the file fetched for {'/'.join(item.parts)}")
            return None

        with ThreadPoolExecutor(_SYNCING, thread_name_prefix="mesh-sync") as pool:
            failed = {
                item.key: why
                for (_, item), why in zip(entries, pool.map(sync, entries), strict=True)
                if why is not None
            }
        self._step("batch staged")
        return failed


def stage_batch(
    root: BorrowedRoot, items: Sequence[Placing], step: Step
) -> list[PlacementError | None]:
    """Steps 1 and 2 for every item; per item, None when it is staged and on disk, or why
    it is not."""
    with Staged(root, step) as staged:
        out = [staged.write(item) for item in items]
        failed = staged.sync()
    return [
        why if why is not None else failed.get(item.key)
        for item, why in zip(items, out, strict=True)
    ]


def link_batch(
    root: BorrowedRoot, items: Sequence[Placing], step: Step
) -> list[FileId | PlacementError]:
    """Steps 3 and 4 for items that stage_batch staged; per item, its FileId or why it
    was not placed."""
    out: list[FileId | PlacementError | None] = [None] * len(items)
    folders: set[tuple[str, ...]] = set()
    for n, item in enumerate(items):
        try:
            out[n] = placing.place(
                root,
                item.key,
                item.parts,
                item.hash,
                replacing=None,
                hashed=item.hash,
                step=step,
                sync_folder=False,
                synced=True,
            )
        except PlacementError as exc:
            out[n] = exc
            continue
        folders.add(item.parts[:-1])
    for folder in sorted(folders):
        # The names linked in are durable once their folder is: one fsync per folder.
        with ExitStack() as stack:
            fds = root.find_folders(stack, folder)
            if fds is None:
                raise PlacementError(f"{root.shown(list(folder))} went away while it was filled")
            sync_dir(fds[-1], root.shown(list(folder)))
    step("batch synced")
    return [r for r in out if r is not None]


__all__ = ["Placing", "Staged", "link_batch", "stage_batch"]
