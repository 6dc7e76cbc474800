"""The content hash of a staging file, built while its chunks are written.

A pull verifies every chunk as it arrives, but the content hash covers the whole file in
order. Reading the file back once it is complete would cost a second pass over it (from
the disk, as chunks bypass the page cache), so the hash is fed as chunks are written: a
chunk that arrives in its turn goes in straight from memory, in the writer's thread. A chunk
that is on disk ahead of its turn (another source sent it, or a resumed pull had it already)
is read back when its turn comes, by a hashing thread of its own, so that neither the writer
nor the network waits for those reads. `digest()` finishes what is left.

`saved()` gives how far the hash got and its state, kept with the pull's verified set: a
pull resumed after a restart goes on from there, and reads back only the chunks it had
verified ahead of the hash's turn.
"""

from __future__ import annotations

import logging
import mmap
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from mesh.core.chunks import CHUNK_SIZE
from mesh.fs.resumable_hash import Hash, ResumableHash
from mesh.fs.staging_file import StagingFile

log = logging.getLogger(__name__)

# Chunks read back at once. The hashing thread needs the GIL after every read, and while
# the event loop is busy it waits up to the interpreter's switch interval (5 ms) for it:
# one chunk a read capped the read-back near 200 MB/s, where the disk gives 1 GB/s.
_SPAN = 8


@dataclass(frozen=True, slots=True)
class SavedHash:
    """The chunks before `hashed` went into the hash whose saved state is `state`."""

    hashed: int
    state: bytes


class WholeHash:
    def __init__(
        self,
        staging: StagingFile,
        count: int,
        present: Iterable[int] = (),
        saved: SavedHash | None = None,
    ) -> None:
        self._staging = staging
        self._count = count
        self._lock = threading.Lock()
        self._hash, self._next = _continue(saved, count, staging.size)  # first not in it
        self._ahead = {i for i in present if i >= self._next}  # on disk, awaiting their turn
        self._reading = False  # the hashing thread owns the hash while it reads back
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="mesh-hash")
        self._buffer = mmap.mmap(-1, _SPAN * CHUNK_SIZE)  # page-aligned, as O_DIRECT wants
        self._error: BaseException | None = None
        self._start_reading()

    @property
    def hashed(self) -> int:
        """The chunks before this one are in the hash."""
        return self._next

    def saved(self) -> SavedHash | None:
        """How far the hash got and its state, or None where its state cannot be saved.
        Only chunks already written are in it: save it with the verified set, before the
        sync that makes both hold."""
        with self._lock:
            state = self._hash.save()
            return None if state is None else SavedHash(self._next, state)

    def add(self, index: int, data: bytes) -> None:
        """Chunk `index` was written with `data` (verified). Called from one thread."""
        with self._lock:
            if index == self._next and not self._reading:
                self._hash.update(data)
                self._next += 1
                if self._next not in self._ahead:
                    return
            elif index >= self._next:
                self._ahead.add(index)
        self._start_reading()

    def _start_reading(self) -> None:
        with self._lock:
            if self._reading or self._next not in self._ahead:
                return
            self._reading = True
        self._reader.submit(self._read_back)

    def _read_back(self) -> None:
        """Hash the chunks already on disk whose turn has come, until one is missing."""
        try:
            while True:
                with self._lock:
                    if self._next not in self._ahead:
                        self._reading = False
                        return
                    first = self._next
                    count = 1
                    while count < _SPAN and first + count in self._ahead:
                        count += 1
                self._hash_from_disk(first, count)
        except BaseException as exc:  # kept for digest(): this thread has no one to tell
            with self._lock:
                self._error = exc
                self._reading = False

    def _hash_from_disk(self, first: int, count: int = 1) -> None:
        """Read `count` chunks from `first`, whose turn it is, back and hash them (the
        writer goes on meanwhile: the lock is taken only to hash)."""
        n = self._staging.read_into(first, self._buffer, count)
        with self._lock:
            self._ahead.difference_update(range(first, first + count))
            self._hash.update(self._buffer, n)
            self._next += count

    def digest(self) -> bytes | None:
        """The whole file's xxh3-128 once every chunk went in, else None. Waits for the
        hashing thread; call it once the writes are done."""
        self._reader.shutdown(wait=True)
        if self._error is not None:
            raise self._error
        while self._next in self._ahead:  # left by a failed read-back: finish here
            self._hash_from_disk(self._next)
        return self._hash.digest() if self._next == self._count else None

    def close(self) -> None:
        """Stop the hashing thread and free its buffer."""
        self._reader.shutdown(wait=True, cancel_futures=True)
        self._buffer.close()
        self._hash.close()


def _continue(saved: SavedHash | None, count: int, size: int) -> tuple[Hash, int]:
    """The hash to go on with and the chunk it is at: from `saved` where it can be."""
    if saved is not None and 0 < saved.hashed <= count:
        length = min(saved.hashed * CHUNK_SIZE, size)
        try:
            return ResumableHash.create(saved.state, length), saved.hashed
        except ValueError as exc:
            log.info("the saved hash of a pull does not fit (%s): reading its chunks back", exc)
    return ResumableHash.create(), 0


__all__ = ["SavedHash", "WholeHash"]
