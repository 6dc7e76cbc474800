"""The content hash of a staging file, built while its chunks are written.

A pull verifies every chunk as it arrives, but the content hash covers the whole file in
order. Reading the file back once it is complete would cost a second pass over it (from
the disk, as chunks bypass the page cache), so the hash is fed as chunks are written: a
chunk that arrives in its turn goes in straight from memory, in the writer's thread. A chunk
that is on disk ahead of its turn (another source sent it, or a resumed pull had it already)
is read back when its turn comes, by a hashing thread of its own, so that neither the writer
nor the network waits for those reads. `digest()` finishes what is left.
"""

from __future__ import annotations

import mmap
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import xxhash

from mesh.core.chunks import CHUNK_SIZE
from mesh.fs.borrowed import StagingFile


class WholeHash:
    def __init__(self, staging: StagingFile, count: int, present: Iterable[int] = ()) -> None:
        self._staging = staging
        self._count = count
        self._lock = threading.Lock()
        self._next = 0  # the first chunk not in the hash yet
        self._ahead = set(present)  # on disk, waiting for their turn
        self._reading = False  # the hashing thread owns the hash while it reads back
        self._hash = xxhash.xxh3_128()
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="mesh-hash")
        self._buffer = mmap.mmap(-1, CHUNK_SIZE)  # page-aligned, as O_DIRECT reads want
        self._error: BaseException | None = None
        self._start_reading()

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
                    index = self._next
                self._hash_from_disk(index)
        except BaseException as exc:  # kept for digest(): this thread has no one to tell
            with self._lock:
                self._error = exc
                self._reading = False

    def _hash_from_disk(self, index: int) -> None:
        """Read chunk `index`, whose turn it is, back and hash it (the writer goes on
        meanwhile: the lock is taken only to hash)."""
        n = self._staging.read_into(index, self._buffer)
        with self._lock, memoryview(self._buffer) as view:
            self._ahead.discard(index)
            self._hash.update(view[:n])
            self._next += 1

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


__all__ = ["WholeHash"]
