"""Placing many small verified files at once: a folder loan's small files (node/folder_batch.py).

Each file goes through the steps of fs/placing.py, but a step is done for the whole batch
before the next one starts, so the disk's flushes are shared:
1. every file is checked against its content hash (one chunk: the chunk's hash is the
   file's) and written to its own staging file;
2. all of them are fsynced, several at once (the file system commits concurrent fsyncs
   together), before any is linked in, so no name ever points at data not on disk;
3. each is placed (hash checked, folders made, read-only, linked in);
4. each destination folder is fsynced once, after every file in it is linked in.
Steps 1-2 are `stage_batch`, 3-4 `link_batch`: between the two the caller records the
staged files as pulls with every chunk verified, so after a kill in steps 3-4 the staging
names are kept and the next start places each file again through fs/placing.py, which
finds a file already linked in as its staging file's own placement (not a user's file).
The caller records the returned FileIds as held only after link_batch returns. A file that
fails is left out (its error is returned in its place); the others go on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

import xxhash

from mesh.core.errors import PlacementError
from mesh.fs import placing, staging
from mesh.fs.borrowed_root import BorrowedRoot
from mesh.fs.copies import FileId
from mesh.fs.folder_walk import os_error, sync_dir
from mesh.fs.placing import Step

_SYNCING = 8  # files fsynced at once


@dataclass(frozen=True, kw_only=True, slots=True)
class Placing:
    """One file of a batch: its staging key, where it goes, its verified bytes and hash."""

    key: str
    parts: tuple[str, ...]
    data: bytes
    hash: bytes


def stage_batch(
    root: BorrowedRoot, items: Sequence[Placing], step: Step
) -> list[PlacementError | None]:
    """Steps 1 and 2 for every item; per item, None when it is staged and on disk, or why
    it is not."""
    out: list[PlacementError | None] = [None] * len(items)
    with ExitStack() as stack:
        staged: list[tuple[int, int]] = []  # (item number, open descriptor)
        for n, item in enumerate(items):
            if xxhash.xxh3_128_digest(item.data) != item.hash:
                # A one-chunk file's content hash is its chunk's: checked here again, as
                # place() does, whatever the caller checked.
                out[n] = PlacementError(
                    f"the file fetched for {root.shown(list(item.parts))} does not have the "
                    "content hash it should; it was not placed"
                )
                continue
            try:
                # Through the page cache: an O_DIRECT write waits for the disk, one file
                # after another, where the fsyncs below overlap.
                file = staging.open_staging(root, item.key, len(item.data), direct=False)
                stack.callback(file.close)
                file.write_chunk(0, item.data)
                staged.append((n, file.duplicate()))
                stack.callback(os.close, staged[-1][1])
            except PlacementError as exc:
                out[n] = exc

        def sync(entry: tuple[int, int]) -> PlacementError | None:
            n, fd = entry
            try:
                os.fsync(fd)
            except OSError as exc:
                return os_error(exc, f"flush the file fetched for {'/'.join(items[n].parts)}")
            return None

        with ThreadPoolExecutor(_SYNCING, thread_name_prefix="mesh-sync") as pool:
            for (n, _), failed in zip(staged, pool.map(sync, staged), strict=True):
                out[n] = failed
        step("batch staged")
    return out


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


__all__ = ["Placing", "link_batch", "stage_batch"]
