"""Chunks: the 1 MiB slices a file is hashed, verified and fetched by."""

from __future__ import annotations

CHUNK_SIZE = 1 << 20
HASH_BYTES = 16  # xxh3-128, big-endian (the byte order xxh128sum prints)


def chunk_count(size: int) -> int:
    """How many chunks a file of `size` bytes has (an empty file has none)."""
    return (size + CHUNK_SIZE - 1) // CHUNK_SIZE


def chunk_span(size: int, index: int) -> tuple[int, int]:
    """(offset, length) of chunk `index` in a file of `size` bytes."""
    if not 0 <= index < chunk_count(size):
        raise IndexError(f"chunk {index} is outside a file of {size} bytes")
    offset = index * CHUNK_SIZE
    return offset, min(CHUNK_SIZE, size - offset)


def split_hashes(packed: bytes) -> list[bytes]:
    """The list of chunk hashes from their packed form (16 bytes each, in order)."""
    if len(packed) % HASH_BYTES:
        raise ValueError(f"packed chunk hashes must be a multiple of {HASH_BYTES} bytes")
    return [packed[i : i + HASH_BYTES] for i in range(0, len(packed), HASH_BYTES)]
