"""Placing many small verified files at once: a folder loan's small files (node/folder_batch.py).

Each file goes through the steps of fs/placing.py, but a step is done for the whole batch
before the next one starts, so the disk's flushes are shared:
1. every file is checked against its content hash (one chunk: the chunk's hash is the
   file's) and written to its own staging file as soon as it arrives, its writeback
   started at once (`Staged.write`), so the disk works while the rest is fetched; each is
   made in the batch's own folder and linked under its key (fs/staging_batch.py says why);
2. all of them are fsynced, several at once (the file system commits concurrent fsyncs
   together), before any is linked in, so no name ever points at data not on disk;
3. each is placed (folders made, hard-linked in; made read-only when it was created);
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
import stat
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field

import xxhash

from mesh.core.errors import PlacementError
from mesh.fs import placing, staging, staging_batch
from mesh.fs.borrowed_root import STAGING, BorrowedRoot
from mesh.fs.copies import FileId
from mesh.fs.folder_walk import lstat_at, os_error, same_inode, sync_dir
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
        self._batch: tuple[str, int] | None = None  # the batch folder (fs/staging_batch.py)
        self._lock = threading.Lock()

    def __enter__(self) -> Staged:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            fds, self._fds = self._fds, {}
            staging, self._staging = self._staging, -1
            batch, self._batch = self._batch, None
        for fd, _ in fds.values():
            os.close(fd)
        if staging >= 0:
            try:
                if batch is not None:
                    # Best effort: a batch folder left here holds nothing recorded, and the
                    # next start's sweep deletes it.
                    with contextlib.suppress(OSError):
                        staging_batch.remove_batch_folder(staging, *batch)
            finally:
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
        yet, costs an open, a write, a link and an unlink (made in the batch folder, so its
        inode is not where the last copies removed freed theirs: fs/staging_batch.py);
        any other goes through staging.open_staging."""
        key = staging.check_key(item.key)
        where = self._root.shown([STAGING, key])
        staging_fd, batch_fd = self._folders()
        try:
            # Created read-only: placing makes it so anyway, and a staging file left by
            # a kill is unlocked again by whoever reopens it to write (fs/staging.py).
            fd = os.open(key, _CREATE, 0o444, dir_fd=batch_fd)
        except OSError as exc:
            raise os_error(exc, f"create {where} in its batch folder") from exc
        try:
            view = memoryview(item.data)
            while view:
                view = view[os.write(fd, view) :]
            try:
                # Never over a name already there: link, not rename.
                os.link(key, key, src_dir_fd=batch_fd, dst_dir_fd=staging_fd)
            except FileExistsError:
                os.close(fd)
                fd = -1
            finally:
                os.unlink(key, dir_fd=batch_fd)
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            raise os_error(exc, f"write {where}") from exc
        if fd >= 0:
            return fd
        with staging.open_staging(self._root, key, len(item.data), direct=False) as file:
            file.write_chunk(0, bytes(item.data))
            return file.duplicate()

    def _folders(self) -> tuple[int, int]:
        """The staging folder and this batch's folder, made on first use."""
        with self._lock:
            if self._staging < 0:
                with ExitStack() as stack:
                    fd = self._root.staging_fd(stack, self._root.made_root_fd(stack))
                    self._staging = os.dup(fd)
            if self._batch is None:
                self._batch = staging_batch.make_batch_folder(
                    self._staging, self._root.shown([STAGING])
                )
            return self._staging, self._batch[1]

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
    was not placed. The root, the staging folder and each destination folder are opened
    once for the batch; a file whose case is not the usual one goes through place()."""
    out: list[FileId | PlacementError] = []
    with ExitStack() as stack:
        try:
            root_fd = root.made_root_fd(stack)
            staging_fd = root.staging_fd(stack, root_fd)
        except PlacementError as exc:
            return [exc] * len(items)
        folders: dict[tuple[str, ...], _Folder] = {}
        for item in items:
            try:
                names = root.check_parts(item.parts)
                where = tuple(names[:-1])
                folder = folders.get(where)
                if folder is None:
                    folder = _Folder()
                    try:
                        folder.fd = root.make_folders(stack, root_fd, where, folder.created)
                    except PlacementError:
                        _remove_made(folder.created)
                        raise
                    folders[where] = folder
                out.append(_link(root, staging_fd, folder.fd, item, names, step))
                folder.filled = True
            except PlacementError as exc:
                out.append(exc)
        for where, folder in sorted(folders.items()):
            if folder.filled:
                # The names linked in are durable once their folder is: one fsync each.
                sync_dir(folder.fd, root.shown(list(where)))
            else:
                _remove_made(folder.created)  # made for files that were not placed
    step("batch synced")
    return out


def _remove_made(created: list[tuple[int, str]]) -> None:
    for parent, name in reversed(created):
        with contextlib.suppress(OSError):  # rmdir leaves a folder that is not empty
            os.rmdir(name, dir_fd=parent)


@dataclass(kw_only=True, slots=True)
class _Folder:
    fd: int = -1
    created: list[tuple[int, str]] = field(default_factory=list)
    filled: bool = False


def _link(
    root: BorrowedRoot,
    staging_fd: int,
    dir_fd: int,
    item: Placing,
    names: list[str],
    step: Step,
) -> FileId:
    """Place one staged file. The usual case, a staging file made by `Staged` (read-only,
    one name) going to a free name, is one hard link; any other (a file staged by an
    earlier pull, mesh's own copy already there after a crash, a user's file in the way,
    a file system without hard links) is left to place(), which knows them all."""
    key = staging.check_key(item.key)
    shown = root.shown(names)
    with ExitStack() as stack:
        fd = staging.open_staged(stack, root, staging_fd, key)
        mine = os.fstat(fd)
        if mine.st_nlink == 1 and stat.S_IMODE(mine.st_mode) == 0o444:
            step("verified")  # by the caller, as the bytes came
            step("synced")  # by Staged.sync
            step("folders")
            try:
                os.link(key, names[-1], src_dir_fd=staging_fd, dst_dir_fd=dir_fd)
            except OSError:
                pass  # the name is taken, or no hard links here: place() says which
            else:
                step("committed")
                placed = lstat_at(dir_fd, names[-1], shown)
                if placed is None or not same_inode(placed, mine):
                    raise PlacementError(f"{shown} changed while mesh was placing it")
                step("placed")
                return FileId.of(placed)
    return placing.place(
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


__all__ = ["Placing", "Staged", "link_batch", "stage_batch"]
