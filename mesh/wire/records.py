"""Record bodies: core records to the bytes an envelope carries, and back (checked)."""

from __future__ import annotations

import operator
from collections.abc import Sequence

from google.protobuf.message import DecodeError, Message

from mesh.core.chunks import HASH_BYTES
from mesh.core.entries import LibraryEntry
from mesh.core.errors import ProtocolError
from mesh.core.records import (
    Addresses,
    Admission,
    Binding,
    BindingEnd,
    BorrowRequest,
    Content,
    Denial,
    Kind,
    LibraryRecord,
    LoanState,
    LoanStatus,
    ManifestFile,
    ManifestPage,
    Record,
    Removal,
    VectorRecord,
    kind_of,
)
from mesh.core.vector import Clock, VersionVector
from mesh.v1 import records_pb2 as pb
from mesh.wire import checks

PAGE_HASH_BYTES = 32  # SHA-256
MAX_HOSTS = 32
MAX_CERTIFICATE = 8192
MAX_VECTOR = 4096
MAX_PAGES = 2048  # a folder loan's manifest pages (~900,000 files)
MAX_PAGE_FILES = 4096


def _content_to_wire(c: Content) -> pb.Content:
    return pb.Content(hash=c.hash, size=c.size, chunk_root=c.chunk_root)


def _content(msg: pb.Content) -> Content:
    return Content(
        hash=checks.content_hash(msg.hash),
        size=checks.count(msg.size, "size"),
        chunk_root=checks.content_hash(msg.chunk_root, "chunk root"),
    )


def _pages(pages: Sequence[bytes]) -> tuple[bytes, ...]:
    if len(pages) > MAX_PAGES:
        raise ProtocolError(f"a folder loan of {len(pages)} manifest pages, over {MAX_PAGES}")
    if any(len(p) != PAGE_HASH_BYTES for p in pages):
        raise ProtocolError("a manifest page hash that is not 32 bytes")
    return tuple(pages)


def vector_to_wire(vector: VersionVector) -> pb.VersionVector:
    return pb.VersionVector(
        entries=[
            pb.VectorEntry(origin=o.raw, epoch=checks.epoch_to_wire(c.epoch), seq=c.seq)
            for o, c in vector.items()
        ]
    )


def vector_from_wire(msg: pb.VersionVector) -> VersionVector:
    if len(msg.entries) > MAX_VECTOR:
        raise ProtocolError(f"a version vector of {len(msg.entries)} origins")
    items = {}
    for e in msg.entries:
        origin = checks.node_id(e.origin, "vector origin")
        if origin in items:
            raise ProtocolError("a version vector names an origin twice")
        items[origin] = Clock(checks.epoch(e.epoch), checks.count(e.seq, "seq"))
    return VersionVector(items)


def record_to_wire(record: Record) -> Message:
    match record:
        case LibraryEntry():
            return pb.LibraryEntry(
                library=record.library,
                path=record.path,
                size=record.size,
                mtime_ns=record.mtime_ns,
                hash=record.hash,
                chunk_root=record.chunk_root,
                deleted=record.deleted,
            )
        case LibraryRecord():
            return pb.Library(name=record.name, open=record.open, removed=record.removed)
        case Binding():
            return pb.Binding(
                borrower=record.borrower.raw,
                library=record.library,
                path=record.path,
                content=_content_to_wire(record.content),
                until_ms=record.until_ms,
                ended=int(record.ended),  # type: ignore[arg-type]
                created_ms=record.created_ms,
                folder=record.folder,
                pages=list(record.pages),
                files=record.files,
            )
        case ManifestPage():
            return pb.ManifestPage(
                borrower=record.borrower.raw,
                library=record.library,
                path=record.path,
                index=record.index,
                files=[
                    pb.ManifestFile(path=f.path, size=f.size, hash=f.hash, chunk_root=f.chunk_root)
                    for f in record.files
                ],
            )
        case LoanStatus():
            return pb.LoanStatus(
                lender=record.lender.raw,
                library=record.library,
                path=record.path,
                hash=record.hash,
                state=int(record.state),  # type: ignore[arg-type]
                bytes_done=record.bytes_done,
                reason=checks.clip(record.reason),
                updated_ms=record.updated_ms,
                files_done=record.files_done,
            )
        case BorrowRequest():
            return pb.BorrowRequest(
                lender=record.lender.raw,
                library=record.library,
                path=record.path,
                duration_ms=record.duration_ms,
                created_ms=record.created_ms,
            )
        case Denial():
            return pb.Denial(
                borrower=record.borrower.raw,
                request_seq=record.request_seq,
                library=record.library,
                path=record.path,
                reason=checks.clip(record.reason),
            )
        case Admission():
            return pb.Admission(
                node_id=record.node_id.raw,
                certificate=record.certificate,
                name=record.name,
                admitted_ms=record.admitted_ms,
            )
        case Removal():
            return pb.Removal(
                node_id=record.node_id.raw,
                last_epoch=checks.epoch_to_wire(record.last_epoch),
                last_seq=record.last_seq,
                removed_ms=record.removed_ms,
            )
        case Addresses():
            return pb.Addresses(hosts=list(record.hosts), port=record.port, name=record.name)
        case VectorRecord():
            return vector_to_wire(record.vector)


def encode_entries(
    rows: Sequence[tuple[str, str, int, int, bytes, bytes, bool]],
) -> list[bytes]:
    """The body `encode` makes of each entry given as (library, path, size, mtime_ns, hash,
    chunk root, deleted): all of them serialized as one LibraryEntries, whose bytes hold
    each entry's own serialization framed (tag, length), then cut apart. A node serving an
    initial sync encodes every one of its entries."""
    msg = pb.LibraryEntries()
    add = msg.entries.add
    for library, path, size, mtime_ns, hash_, root, deleted in rows:
        add(
            library=library,
            path=path,
            size=size,
            mtime_ns=mtime_ns,
            hash=hash_,
            chunk_root=root,
            deleted=bool(deleted),
        )
    return split_entries(msg.SerializeToString(deterministic=True))


def split_entries(data: bytes) -> list[bytes]:
    """The bodies framed in `data` as the `entries` of a LibraryEntries, each entry's bytes
    cut at its frame. ProtocolError if `data` is anything else: a frame of another field
    (which a parse would keep as an unknown field), a length past the end."""
    bodies: list[bytes] = []
    append = bodies.append
    at, end = 0, len(data)
    try:
        while at < end:
            # data[at] is the tag of field 1; then the body's length, a varint.
            if data[at] != 0x0A:
                raise ProtocolError("a malformed entry record")
            size, shift, at = 0, 0, at + 1
            while True:
                byte = data[at]
                at += 1
                size |= (byte & 0x7F) << shift
                if byte < 0x80:
                    break
                shift += 7
            if at + size > end:
                raise ProtocolError("a malformed entry record")
            append(data[at : at + size])
            at += size
    except IndexError as exc:  # a length's varint cut off at the end
        raise ProtocolError("a malformed entry record") from exc
    return bodies


def frame_entries(bodies: Sequence[bytes]) -> bytes:
    """Library entry bodies framed as the `entries` of one LibraryEntries: what
    `split_entries` cuts apart again."""
    sizes = list(map(len, bodies))
    if sizes and max(sizes) < 128:  # the common case: each head from the table, all in C
        return b"".join(map(bytes.__add__, map(_SHORT_HEADS.__getitem__, sizes), bodies))
    return b"".join([part for body in bodies for part in (_head(len(body)), body)])


def encode(record: Record) -> tuple[Kind, bytes]:
    """(kind, body bytes) of a record. Deterministic for a given record."""
    return kind_of(record), record_to_wire(record).SerializeToString(deterministic=True)


_MESSAGES: dict[Kind, type[Message]] = {
    Kind.ENTRY: pb.LibraryEntry,
    Kind.LIBRARY: pb.Library,
    Kind.BINDING: pb.Binding,
    Kind.LOAN_STATUS: pb.LoanStatus,
    Kind.BORROW_REQUEST: pb.BorrowRequest,
    Kind.DENIAL: pb.Denial,
    Kind.ADMISSION: pb.Admission,
    Kind.REMOVAL: pb.Removal,
    Kind.ADDRESSES: pb.Addresses,
    Kind.VECTOR: pb.VersionVector,
    Kind.MANIFEST_PAGE: pb.ManifestPage,
}


def decode(kind: Kind, body: bytes) -> Record:
    """The record in `body`, checked; ProtocolError if it is malformed or unsafe."""
    message_type = _MESSAGES.get(kind)
    if message_type is None:
        raise ProtocolError(f"unknown record kind {int(kind)}")
    try:
        msg = message_type.FromString(body)
    except (DecodeError, RecursionError) as exc:
        raise ProtocolError(f"malformed {kind.name.lower()} record") from exc
    if kind is Kind.ENTRY:
        # Straight to the entry, without the dispatch below: an initial sync decodes
        # hundreds of thousands of them on the receiver's store thread.
        return _entry(msg)  # type: ignore[arg-type]
    return _from_wire(msg)


# Field 1 (`entries`), length-delimited, as the head of each framed body; then its length.
_ENTRIES_TAG = b"\x0a"
_SHORT_HEADS = [_ENTRIES_TAG + bytes([n]) for n in range(128)]


def _head(size: int) -> bytes:
    if size < 128:
        return _SHORT_HEADS[size]
    out = bytearray(_ENTRIES_TAG)
    while size >= 128:
        out.append(size & 0x7F | 0x80)
        size >>= 7
    out.append(size)
    return bytes(out)


def decode_entries(bodies: Sequence[bytes]) -> list[tuple[str, str, bool]]:
    """(library, path, deleted) of each library entry body, with every check `decode` makes
    of an entry (ProtocolError if any fails; `decode` then names the record at fault).

    One protobuf parse for the lot (the bodies framed as the fields of a LibraryEntries,
    which reads each exactly as it reads alone), the checks made over all of them at once
    where they can be, and no LibraryEntry made: an initial sync of 100k entries spent
    most of its receiving CPU making and checking them one by one.
    """
    return decode_framed_entries(frame_entries(bodies), len(bodies))


_ENTRY_FIELDS = operator.attrgetter("library", "path", "size", "hash", "chunk_root", "deleted")


def decode_framed_entries(framed: bytes, count: int) -> list[tuple[str, str, bool]]:
    """`decode_entries` of the `count` bodies framed in `framed` (see `frame_entries`)."""
    try:
        entries = pb.LibraryEntries.FromString(framed).entries
    except (DecodeError, RecursionError) as exc:
        raise ProtocolError("a malformed entry record") from exc
    if len(entries) != count:
        raise ProtocolError("a malformed entry record")
    if not count:
        return []
    # Every field read in one pass, by an attrgetter run in C, then turned into columns
    # and checked whole: a comprehension per field went over the entries six times, each
    # time making a wrapper per entry message (2.5x the time of this, on the threads
    # reading a sync's batches).
    libraries, paths, sizes, hashes, roots, deleted = zip(*map(_ENTRY_FIELDS, entries), strict=True)
    for library in set(libraries):
        checks.name(library, "library name")
    checks.paths(paths)
    if max(sizes) > checks.U63:
        raise ProtocolError("an entry's size is over the limit")
    if set(map(len, hashes)) | set(map(len, roots)) != {HASH_BYTES}:
        raise ProtocolError(f"an entry's hash or chunk root is not {HASH_BYTES} bytes")
    return list(zip(libraries, paths, deleted, strict=True))


def _entry(msg: pb.LibraryEntry) -> LibraryEntry:
    size = msg.size
    if size > checks.U63:
        checks.count(size, "size")  # raises
    hash_, root = msg.hash, msg.chunk_root
    if len(hash_) != HASH_BYTES or len(root) != HASH_BYTES:
        checks.content_hash(hash_)
        checks.content_hash(root, "chunk root")
    return LibraryEntry(
        library=checks.name(msg.library, "library name"),
        path=checks.path(msg.path),
        size=size,
        mtime_ns=msg.mtime_ns,
        hash=hash_,
        chunk_root=root,
        deleted=msg.deleted,
    )


def _from_wire(msg: Message) -> Record:
    match msg:
        case pb.LibraryEntry():
            return LibraryEntry(
                library=checks.name(msg.library, "library name"),
                path=checks.path(msg.path),
                size=checks.count(msg.size, "size"),
                mtime_ns=msg.mtime_ns,
                hash=checks.content_hash(msg.hash),
                chunk_root=checks.content_hash(msg.chunk_root, "chunk root"),
                deleted=msg.deleted,
            )
        case pb.Library():
            return LibraryRecord(
                name=checks.name(msg.name, "library name"), open=msg.open, removed=msg.removed
            )
        case pb.Binding():
            return Binding(
                borrower=checks.node_id(msg.borrower, "borrower"),
                library=checks.name(msg.library, "library name"),
                path=checks.path(msg.path),
                content=_content(msg.content),
                until_ms=checks.count(msg.until_ms, "end time"),
                ended=BindingEnd.RECALLED if msg.ended else BindingEnd.NONE,
                created_ms=checks.count(msg.created_ms, "creation time"),
                folder=msg.folder,
                pages=_pages(msg.pages),
                files=checks.count(msg.files, "file count"),
            )
        case pb.ManifestPage():
            if len(msg.files) > MAX_PAGE_FILES:
                raise ProtocolError(f"a manifest page of {len(msg.files)} files")
            return ManifestPage(
                borrower=checks.node_id(msg.borrower, "borrower"),
                library=checks.name(msg.library, "library name"),
                path=checks.path(msg.path),
                index=msg.index,
                files=tuple(
                    ManifestFile(
                        path=checks.path(f.path),
                        size=checks.count(f.size, "size"),
                        hash=checks.content_hash(f.hash),
                        chunk_root=checks.content_hash(f.chunk_root, "chunk root"),
                    )
                    for f in msg.files
                ),
            )
        case pb.LoanStatus():
            state = int(msg.state)
            known = state in LoanState._value2member_map_
            return LoanStatus(
                lender=checks.node_id(msg.lender, "lender"),
                library=checks.name(msg.library, "library name"),
                path=checks.path(msg.path),
                hash=checks.content_hash(msg.hash),
                state=LoanState(state) if known else LoanState.UNKNOWN,
                bytes_done=checks.count(msg.bytes_done, "bytes done"),
                reason=checks.text(msg.reason, "reason"),
                updated_ms=checks.count(msg.updated_ms, "update time"),
                files_done=checks.count(msg.files_done, "files done"),
            )
        case pb.BorrowRequest():
            return BorrowRequest(
                lender=checks.node_id(msg.lender, "lender"),
                library=checks.name(msg.library, "library name"),
                path=checks.path(msg.path),
                duration_ms=checks.count(msg.duration_ms, "duration"),
                created_ms=checks.count(msg.created_ms, "creation time"),
            )
        case pb.Denial():
            return Denial(
                borrower=checks.node_id(msg.borrower, "borrower"),
                request_seq=checks.count(msg.request_seq, "request seq"),
                library=checks.name(msg.library, "library name"),
                path=checks.path(msg.path),
                reason=checks.text(msg.reason, "reason"),
            )
        case pb.Admission():
            if len(msg.certificate) > MAX_CERTIFICATE:
                raise ProtocolError("an admission's certificate is too large")
            return Admission(
                node_id=checks.node_id(msg.node_id),
                certificate=msg.certificate,
                name=checks.node_name(msg.name),
                admitted_ms=checks.count(msg.admitted_ms, "admission time"),
            )
        case pb.Removal():
            return Removal(
                node_id=checks.node_id(msg.node_id),
                last_epoch=checks.epoch(msg.last_epoch),
                last_seq=checks.count(msg.last_seq, "seq"),
                removed_ms=checks.count(msg.removed_ms, "removal time"),
            )
        case pb.Addresses():
            if len(msg.hosts) > MAX_HOSTS:
                raise ProtocolError(f"{len(msg.hosts)} addresses, over {MAX_HOSTS}")
            return Addresses(
                hosts=tuple(checks.host(h) for h in msg.hosts),
                port=checks.count(msg.port, "port", 65535),
                name=checks.node_name(msg.name) if msg.name else "",
            )
        case pb.VersionVector():
            return VectorRecord(vector_from_wire(msg))
    raise ProtocolError(f"no record type for {type(msg).__name__}")
