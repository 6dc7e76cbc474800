"""What a pull has verified and how a piece earns it: the bitmap of verified chunks (as
the pulls table stores it), the checks a manifest and a chunk pass before they count, and
the staging file's name."""

from __future__ import annotations

import hashlib

import xxhash

from mesh.core.errors import ProtocolError
from mesh.core.transfer import Manifest
from mesh.fs.borrowed import StagingFile
from mesh.fs.whole_hash import WholeHash
from mesh.node.lent import Lent


class Bitmap:
    """Which chunks are verified: one bit each, as the pulls table stores it."""

    def __init__(self, count: int, data: bytes = b"") -> None:
        self.count = count
        self.bits = bytearray(data[: (count + 7) // 8].ljust((count + 7) // 8, b"\0"))

    def __contains__(self, index: int) -> bool:
        return bool(self.bits[index // 8] & (1 << (index % 8)))

    def add(self, index: int) -> None:
        self.bits[index // 8] |= 1 << (index % 8)

    def missing(self) -> list[int]:
        return [i for i in range(self.count) if i not in self]

    def present(self) -> list[int]:
        return [i for i in range(self.count) if i in self]


def staging_name(key: bytes) -> str:
    """The staging file of a loan's pull: a hash of the whole binding key (its first bytes
    are only its kind and lender, which loans from one lender share)."""
    return hashlib.sha256(key).hexdigest()[:40]


def check_manifest(manifest: Manifest, lent: Lent) -> None:
    content = lent.binding.content
    if manifest.hash != content.hash or manifest.size != content.size:
        raise ProtocolError("its manifest is for other content than the loan's")
    if xxhash.xxh3_128_digest(manifest.chunk_hashes) != content.chunk_root:
        raise ProtocolError("its chunk list does not match the loan's chunk root")


def write_verified(
    staging: StagingFile, whole: WholeHash, index: int, data: bytes, expected: bytes
) -> None:
    if xxhash.xxh3_128_digest(data) != expected:
        raise ProtocolError(f"chunk {index} does not match its hash")
    staging.write_chunk(index, data)
    whole.add(index, data)


__all__ = ["Bitmap", "check_manifest", "staging_name", "write_verified"]
