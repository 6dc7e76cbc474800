"""The content hash of a staging file, built while its chunks are written.

A pull verifies every chunk as it arrives, but the content hash covers the whole file in
order. Reading the file back once it is complete would cost a second pass over it (from
the disk, as chunks bypass the page cache), so the hash is fed as chunks are written: a
chunk that arrives in order goes in straight from memory; one that arrives ahead of its
turn (another source sent it, or a resumed pull had it already) is read back from the
staging file when its turn comes. Used from one thread, the pull's writer.
"""

from __future__ import annotations

from collections.abc import Iterable

import xxhash

from mesh.fs.borrowed import StagingFile


class WholeHash:
    def __init__(self, staging: StagingFile, count: int, present: Iterable[int] = ()) -> None:
        self._staging = staging
        self._count = count
        self._next = 0
        self._ahead = set(present)
        self._hash = xxhash.xxh3_128()

    def add(self, index: int, data: bytes) -> None:
        """Chunk `index` was written with `data` (verified)."""
        if index == self._next:
            self._hash.update(data)
            self._next += 1
        elif index > self._next:
            self._ahead.add(index)
        self._catch_up()

    def _catch_up(self) -> None:
        while self._next in self._ahead:
            self._ahead.discard(self._next)
            self._hash.update(self._staging.read_chunk(self._next))
            self._next += 1

    def digest(self) -> bytes | None:
        """The whole file's xxh3-128 once every chunk went in, else None."""
        self._catch_up()
        return self._hash.digest() if self._next == self._count else None


__all__ = ["WholeHash"]
