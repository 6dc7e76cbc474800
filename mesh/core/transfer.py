"""Pull requests and answers, as values: Manifest (the chunk list), Fetch (the chunks)
and FetchFiles (many one-chunk files of folder loans from one lender)."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.core.envelope import Envelope
from mesh.core.ids import NodeId


@dataclass(frozen=True, kw_only=True, slots=True)
class ManifestRequest:
    hash: bytes
    lender: NodeId
    binding: Envelope | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Manifest:
    hash: bytes
    size: int
    chunk_size: int
    chunk_hashes: bytes  # packed, 16 bytes each


@dataclass(frozen=True, kw_only=True, slots=True)
class FetchRequest:
    hash: bytes
    lender: NodeId
    first_chunk: int
    count: int
    binding: Envelope | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class FetchFilesRequest:
    """Whole files of one chunk each, by content hash, lent by `lender` to the caller."""

    lender: NodeId
    hashes: tuple[bytes, ...]
    pack: int = 0  # bytes of files one message of the answer may pack (0: one file each)


@dataclass(frozen=True, kw_only=True, slots=True)
class Chunk:
    index: int
    data: bytes
