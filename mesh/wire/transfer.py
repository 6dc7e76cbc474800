"""Manifest, Fetch and FetchFiles messages on the wire.

Fetch's answer is a stream of raw messages, one chunk's bytes each, in order (mesh.proto
says why); the chunk's index is its place in the stream. FetchFiles answers the same way,
one raw message per file asked (empty: not served), in the order asked; or, when the
caller asks for packs and the answer's initial metadata says "mesh-packed", several
consecutive files to a message (`pack_files`: a count, the lengths, then the bytes).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TypeVar

from google.protobuf.message import DecodeError

from mesh.core.chunks import CHUNK_SIZE, HASH_BYTES, chunk_count
from mesh.core.errors import ProtocolError
from mesh.core.transfer import Chunk, FetchFilesRequest, FetchRequest, Manifest, ManifestRequest
from mesh.v1 import transfer_pb2 as pb
from mesh.wire import checks, envelope

_Request = TypeVar("_Request", pb.ManifestRequest, pb.FetchRequest, pb.FetchFilesRequest)

MAX_FETCH_CHUNKS = 1 << 20
MAX_FETCH_FILES = 1024
FETCH_SERVICE = "mesh.v1.Transfer"
FETCH_METHOD = f"/{FETCH_SERVICE}/Fetch"
FETCH_FILES_METHOD = f"/{FETCH_SERVICE}/FetchFiles"
MAX_PACK = 4 << 20  # bytes of files in one packed message: well under the 8 MiB limit
PACKED = ("mesh-packed", "1")  # initial metadata of an answer in packs
_LENGTH = struct.Struct(">I")


def manifest_request_to_wire(req: ManifestRequest) -> pb.ManifestRequest:
    msg = pb.ManifestRequest(hash=req.hash, lender=req.lender.raw)
    if req.binding is not None:
        msg.binding.CopyFrom(envelope.to_wire(req.binding))
    return msg


def manifest_request_from_bytes(data: bytes) -> ManifestRequest:
    """A Manifest request as it came off the wire: bytes that must parse (ProtocolError)."""
    return manifest_request_from_wire(_parse(pb.ManifestRequest, data))


def fetch_request_from_bytes(data: bytes) -> FetchRequest:
    """A Fetch request as it came off the wire: bytes that must parse (ProtocolError)."""
    return fetch_request_from_wire(_parse(pb.FetchRequest, data))


def _parse(kind: type[_Request], data: bytes) -> _Request:
    try:
        return kind.FromString(data)
    except DecodeError as exc:
        raise ProtocolError(f"a malformed {kind.DESCRIPTOR.name}") from exc


def manifest_request_from_wire(msg: pb.ManifestRequest) -> ManifestRequest:
    return ManifestRequest(
        hash=checks.content_hash(msg.hash),
        lender=checks.node_id(msg.lender, "lender"),
        binding=envelope.from_wire(msg.binding) if msg.HasField("binding") else None,
    )


def manifest_to_wire(m: Manifest) -> pb.Manifest:
    return pb.Manifest(
        hash=m.hash, size=m.size, chunk_size=m.chunk_size, chunk_hashes=m.chunk_hashes
    )


def manifest_from_wire(msg: pb.Manifest) -> Manifest:
    if msg.chunk_size != CHUNK_SIZE:
        raise ProtocolError(f"chunk size {msg.chunk_size}, this mesh uses {CHUNK_SIZE}")
    size = checks.count(msg.size, "size")
    if len(msg.chunk_hashes) != chunk_count(size) * HASH_BYTES:
        raise ProtocolError("the manifest's chunk list does not match its size")
    return Manifest(
        hash=checks.content_hash(msg.hash),
        size=size,
        chunk_size=msg.chunk_size,
        chunk_hashes=msg.chunk_hashes,
    )


def fetch_request_to_wire(req: FetchRequest) -> pb.FetchRequest:
    msg = pb.FetchRequest(
        hash=req.hash, lender=req.lender.raw, first_chunk=req.first_chunk, count=req.count
    )
    if req.binding is not None:
        msg.binding.CopyFrom(envelope.to_wire(req.binding))
    return msg


def fetch_request_from_wire(msg: pb.FetchRequest) -> FetchRequest:
    return FetchRequest(
        hash=checks.content_hash(msg.hash),
        lender=checks.node_id(msg.lender, "lender"),
        first_chunk=msg.first_chunk,
        count=checks.count(msg.count, "chunk count", MAX_FETCH_CHUNKS),
        binding=envelope.from_wire(msg.binding) if msg.HasField("binding") else None,
    )


def fetch_files_request_to_wire(req: FetchFilesRequest) -> pb.FetchFilesRequest:
    return pb.FetchFilesRequest(lender=req.lender.raw, hashes=req.hashes, pack=req.pack)


def fetch_files_request_from_bytes(data: bytes) -> FetchFilesRequest:
    """A FetchFiles request as it came off the wire: bytes that must parse (ProtocolError)."""
    msg = _parse(pb.FetchFilesRequest, data)
    if len(msg.hashes) > MAX_FETCH_FILES:
        raise ProtocolError(f"{len(msg.hashes)} files asked in one call, over {MAX_FETCH_FILES}")
    return FetchFilesRequest(
        lender=checks.node_id(msg.lender, "lender"),
        hashes=tuple(checks.content_hash(h) for h in msg.hashes),
        pack=min(msg.pack, MAX_PACK),
    )


def pack_files(files: Sequence[bytes]) -> bytes:
    """One packed message of a FetchFiles answer: `files` (b"": not served) in order."""
    header = struct.pack(f">{len(files) + 1}I", len(files), *(len(f) for f in files))
    return b"".join([header, *files])


def files_from_pack(data: bytes, most: int) -> list[memoryview | None]:
    """The files of a packed message (None: not served), at most `most` of them; views
    into `data`, not copies. ProtocolError if it is malformed."""
    if len(data) < _LENGTH.size:
        raise ProtocolError("a packed FetchFiles message without its count")
    (count,) = _LENGTH.unpack_from(data)
    start = _LENGTH.size * (count + 1)
    if not 0 < count <= most or start > len(data):
        raise ProtocolError(f"a packed FetchFiles message of {count} files, {most} still asked")
    lengths = struct.unpack_from(f">{count}I", data, _LENGTH.size)
    if max(lengths) > CHUNK_SIZE or start + sum(lengths) != len(data):
        raise ProtocolError("a packed FetchFiles message whose lengths do not add up")
    view = memoryview(data)
    out: list[memoryview | None] = []
    for length in lengths:
        out.append(view[start : start + length] if length else None)
        start += length
    return out


def file_from_wire(data: bytes) -> bytes | None:
    """A message of a FetchFiles answer: a file's bytes, or None where it is not served."""
    if len(data) > CHUNK_SIZE:
        raise ProtocolError(f"a file of {len(data)} bytes in FetchFiles, over {CHUNK_SIZE}")
    return data or None


def chunk_from_wire(index: int, data: bytes) -> Chunk:
    """The `index`th message of a Fetch answer, checked for size (its hash is checked by
    the puller against the manifest)."""
    if len(data) > CHUNK_SIZE:
        raise ProtocolError(f"a chunk of {len(data)} bytes, over {CHUNK_SIZE}")
    return Chunk(index=index, data=data)
