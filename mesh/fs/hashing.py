"""Hashing files: one read gives the whole-file xxh3-128, every chunk's hash and the chunk root.

Reads go into a page-aligned buffer (an anonymous mmap) because aligned `readv` was measured
4x faster than unaligned reads here. A file that changes while it is read (size or mtime
moves between the fstat before and after) is reported unstable rather than given a hash that
matches no version of it.
"""

from __future__ import annotations

import mmap
import os
import stat
import threading
from typing import NamedTuple

import xxhash

from mesh.core.chunks import CHUNK_SIZE

_local = threading.local()
EMPTY_HASH = xxhash.xxh3_128_digest(b"")


def _buffer() -> mmap.mmap:
    buf: mmap.mmap | None = getattr(_local, "buf", None)
    if buf is None:
        buf = mmap.mmap(-1, CHUNK_SIZE)
        _local.buf = buf
    return buf


class Digest(NamedTuple):
    # A tuple, not a dataclass: a first scan makes one per file, and a tuple is made in C.
    size: int
    mtime_ns: int
    inode: int
    hash: bytes
    chunk_root: bytes
    chunk_hashes: bytes  # packed, 16 bytes per chunk


class UnstableFileError(OSError):
    """The file changed while it was being read."""


def chunk_root(packed_hashes: bytes) -> bytes:
    return xxhash.xxh3_128_digest(packed_hashes)


def hash_fd(fd: int, progress: list[int] | None = None) -> tuple[bytes, bytes, int]:
    """(hash, packed chunk hashes, bytes read) of an open file, from its current offset 0."""
    buf = _buffer()
    view = memoryview(buf)
    whole = xxhash.xxh3_128()
    chunks: list[bytes] = []
    total = 0
    try:
        while True:
            filled = 0
            while filled < CHUNK_SIZE:
                n = os.readv(fd, [view[filled:]])
                if n == 0:
                    break
                filled += n
            if filled == 0:
                break
            data = view[:filled]
            chunks.append(xxhash.xxh3_128_digest(data))
            if len(chunks) > 1 or filled == CHUNK_SIZE:
                whole.update(data)
            total += filled
            if progress is not None:
                progress[0] += filled
            if filled < CHUNK_SIZE:
                break
    finally:
        view.release()
    if not chunks:
        return EMPTY_HASH, b"", 0
    # A file of one chunk (the common case) hashes once: its hash is its chunk's hash.
    content = chunks[0] if len(chunks) == 1 else whole.digest()
    return content, b"".join(chunks), total


# O_NONBLOCK: should a FIFO be swapped in after the walk saw a file, open must not hang.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_NOATIME = getattr(os, "O_NOATIME", 0)


def open_for_reading(path: str, dir_fd: int | None = None) -> int:
    """Open without following a final symlink, and without touching atime where allowed;
    with `dir_fd`, `path` is a name in that open folder (one lookup, not a walk from /)."""
    if _NOATIME:
        try:
            return os.open(path, _READ_FLAGS | _NOATIME, dir_fd=dir_fd)
        except PermissionError:
            pass  # O_NOATIME needs ownership of the file; reading still works without it.
    return os.open(path, _READ_FLAGS, dir_fd=dir_fd)


def hash_file(path: str, progress: list[int] | None = None) -> Digest:
    """Hash a regular file without following a symlink at its last component."""
    fd = open_for_reading(path)
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise IsADirectoryError(0, "not a regular file", path)
        return digest_open(fd, before, path, progress)
    finally:
        os.close(fd)


def hash_one_chunk(fd: int, size: int) -> tuple[bytes, bytes] | None:
    """(hash, chunk root) of an open file of less than one chunk, or None if it no longer
    has `size` bytes (then `digest_open` reads it the careful way).

    One pread of the size plus one byte, not of a whole chunk: a 1 MiB buffer per file
    would be mmap'd and page-faulted in afresh every time (FIELD-NOTES.md). A small file
    changed in place keeps the fstat's mtime, so the next scan sees it differ and hashes it
    again (and a source re-checks a file before serving it).
    """
    data = os.pread(fd, size + 1, 0)
    if len(data) != size:
        return None
    content = xxhash.xxh3_128_digest(data)
    return content, chunk_root(content if data else b"")


def digest_open(
    fd: int, before: os.stat_result, path: str, progress: list[int] | None = None
) -> Digest:
    """Hash an open regular file from its start, given its fstat from just after it was
    opened. A file that changes while it is read raises UnstableFileError."""
    size = before.st_size
    if size < CHUNK_SIZE:
        one = hash_one_chunk(fd, size)
        if one is not None:
            content, root = one
            packed = content if size else b""
            return Digest(size, before.st_mtime_ns, before.st_ino, content, root, packed)
    content, packed, size = hash_fd(fd, progress)
    after = os.fstat(fd)
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or (
        size != after.st_size
    ):
        raise UnstableFileError(0, "changed while it was read", path)
    return Digest(size, after.st_mtime_ns, after.st_ino, content, chunk_root(packed), packed)
