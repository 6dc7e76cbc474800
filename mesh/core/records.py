"""Records: every value the mesh replicates, each with exactly one writer (its origin).

A record's key says what it is about; a newer write of a key by its origin supersedes the
older. The origin is part of every key, so no node can write under another's key; `check`
refuses records whose content contradicts their origin (a binding lent to its own lender, a
loan status about one's own loan as lender, a node's addresses written by another).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from mesh.core.entries import LibraryEntry
from mesh.core.epoch import Epoch
from mesh.core.errors import ProtocolError
from mesh.core.ids import NodeId
from mesh.core.vector import VersionVector


class Kind(enum.IntEnum):
    ENTRY = 1
    LIBRARY = 2
    BINDING = 3
    LOAN_STATUS = 4
    BORROW_REQUEST = 5
    DENIAL = 6
    ADMISSION = 7
    REMOVAL = 8
    ADDRESSES = 9
    VECTOR = 10
    MANIFEST_PAGE = 11


# The kinds that grant something carry the origin's signature; the rest are trusted as far
# as the member that relays them (signing 100k entries would cost seconds).
SIGNED_KINDS = frozenset(
    {Kind.BINDING, Kind.BORROW_REQUEST, Kind.DENIAL, Kind.ADMISSION, Kind.REMOVAL, Kind.ADDRESSES}
)
MEMBERSHIP_KINDS = frozenset({Kind.ADMISSION, Kind.REMOVAL})


@dataclass(frozen=True, kw_only=True, slots=True)
class LibraryRecord:
    name: str
    open: bool = False
    removed: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class Content:
    """A file's content, as a binding lends it and a borrower verifies it."""

    hash: bytes
    size: int
    chunk_root: bytes


class BindingEnd(enum.IntEnum):
    NONE = 0
    RECALLED = 1


@dataclass(frozen=True, kw_only=True, slots=True)
class Binding:
    """The origin (lender) lends `content` at (library, path) to `borrower`.

    A folder loan (`folder`) lends what the pattern `path` matches (core/folders.py): its
    `content` is (manifest digest, total bytes, manifest digest), and `pages` are the
    SHA-256 of each page of the manifest that names every file it lends. The signature
    over the binding covers those hashes, so it covers every file the loan brings.
    """

    borrower: NodeId
    library: str
    path: str
    content: Content
    until_ms: int = 0  # 0: no end time
    ended: BindingEnd = BindingEnd.NONE
    created_ms: int = 0
    folder: bool = False
    pages: tuple[bytes, ...] = ()
    files: int = 0


class LoanState(enum.IntEnum):
    UNKNOWN = 0  # a state written by a newer mesh
    AWAITING_ACCEPTANCE = 1
    FETCHING = 2
    HELD = 3
    RETURNED = 4
    DECLINED = 5
    REFUSED = 6
    FAILED = 7
    REMOVED = 8
    GIVEN_BACK = 9  # returned by the borrower, and its copy is gone


@dataclass(frozen=True, kw_only=True, slots=True)
class LoanStatus:
    """The origin's (borrower's) side of the loan of (lender, library, path)."""

    lender: NodeId
    library: str
    path: str
    hash: bytes
    state: LoanState
    bytes_done: int = 0
    reason: str = ""
    updated_ms: int = 0
    files_done: int = 0  # a folder loan: how many of its files are held


@dataclass(frozen=True, kw_only=True, slots=True)
class ManifestFile:
    """One file a folder loan lends: its path in the library and its content."""

    path: str
    size: int
    hash: bytes
    chunk_root: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class ManifestPage:
    """A page of the manifest of the origin's (lender's) folder loan of (library, path)
    to `borrower`. Not signed itself: the binding names its hash."""

    borrower: NodeId
    library: str
    path: str
    index: int
    files: tuple[ManifestFile, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class BorrowRequest:
    """The origin (borrower) asks `lender` for (library, path)."""

    lender: NodeId
    library: str
    path: str
    duration_ms: int = 0
    created_ms: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class Denial:
    """The origin (lender) says no to a borrow request."""

    borrower: NodeId
    request_seq: int
    library: str
    path: str
    reason: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Admission:
    """The origin admits `node_id` (whose certificate and name it carries) to the mesh."""

    node_id: NodeId
    certificate: bytes
    name: str
    admitted_ms: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class Removal:
    """The origin removes `node_id`; its records after (last_epoch, last_seq) do not count."""

    node_id: NodeId
    last_epoch: Epoch
    last_seq: int
    removed_ms: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class Addresses:
    """Where the origin listens, and its current name."""

    hosts: tuple[str, ...]
    port: int
    name: str = ""


@dataclass(frozen=True, slots=True)
class VectorRecord:
    """The origin's own version vector, published so tombstones can be purged."""

    vector: VersionVector


Record = (
    LibraryEntry
    | LibraryRecord
    | Binding
    | LoanStatus
    | BorrowRequest
    | Denial
    | Admission
    | Removal
    | Addresses
    | VectorRecord
    | ManifestPage
)

KIND_OF: dict[type, Kind] = {
    LibraryEntry: Kind.ENTRY,
    LibraryRecord: Kind.LIBRARY,
    Binding: Kind.BINDING,
    LoanStatus: Kind.LOAN_STATUS,
    BorrowRequest: Kind.BORROW_REQUEST,
    Denial: Kind.DENIAL,
    Admission: Kind.ADMISSION,
    Removal: Kind.REMOVAL,
    Addresses: Kind.ADDRESSES,
    VectorRecord: Kind.VECTOR,
    ManifestPage: Kind.MANIFEST_PAGE,
}


def kind_of(record: Record) -> Kind:
    return KIND_OF[type(record)]


_LENGTH = struct.Struct(">I").pack
_ENTRY_KIND = bytes([Kind.ENTRY])


def _field(value: str | bytes) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else value
    return _LENGTH(len(data)) + data


def entry_key(origin: NodeId, library: str, path: str) -> bytes:
    """The key of `origin`'s entry at (library, path), as `key_of` makes it."""
    lib, name = library.encode(), path.encode()
    return b"".join((_ENTRY_KIND, origin.raw, _LENGTH(len(lib)), lib, _LENGTH(len(name)), name))


def entry_keys(origin: NodeId, facts: Sequence[tuple[str, str, bool]]) -> list[bytes]:
    """`entry_key` of each (library, path, ...), the head of a library's keys made once."""
    heads: dict[str, bytes] = {}
    keys: list[bytes] = []
    append = keys.append
    for library, path, *_ in facts:
        head = heads.get(library)
        if head is None:
            lib = library.encode()
            head = heads[library] = b"".join((_ENTRY_KIND, origin.raw, _LENGTH(len(lib)), lib))
        name = path.encode()
        append(head + _LENGTH(len(name)) + name)
    return keys


def split_key(key: bytes) -> tuple[Kind, NodeId, list[bytes]]:
    """The kind, origin and fields of a key made by `key_of` (ValueError if it is not one)."""
    if len(key) < 33 or key[0] not in Kind._value2member_map_:
        raise ValueError("not a record key")
    fields: list[bytes] = []
    at = 33
    while at < len(key):
        if at + 4 > len(key):
            raise ValueError("a truncated record key")
        (size,) = struct.unpack_from(">I", key, at)
        fields.append(key[at + 4 : at + 4 + size])
        at += 4 + size
    if at != len(key):
        raise ValueError("a truncated record key")
    return Kind(key[0]), NodeId(key[1:33]), fields


def key_of(origin: NodeId, record: Record) -> bytes:
    """The key a record is written under: its kind, its origin and what it is about.

    Length-prefixed fields, so no two different keys share an encoding.
    """
    if type(record) is LibraryEntry:  # most records by far: no dispatch
        return entry_key(origin, record.library, record.path)
    parts: list[str | bytes]
    match record:
        case LibraryEntry():
            parts = [record.library, record.path]
        case LibraryRecord():
            parts = [record.name]
        case Binding():
            parts = [record.borrower.raw, record.library, record.path]
        case LoanStatus():
            parts = [record.lender.raw, record.library, record.path]
        case BorrowRequest():
            parts = [record.lender.raw, record.library, record.path]
        case Denial():
            parts = [record.borrower.raw, record.library, record.path]
        case Admission():
            parts = [record.node_id.raw]
        case Removal():
            parts = [record.node_id.raw]
        case ManifestPage():
            parts = [
                record.borrower.raw,
                record.library,
                record.path,
                struct.pack(">I", record.index),
            ]
        case Addresses() | VectorRecord():
            parts = []
    head = struct.pack(">B", kind_of(record)) + origin.raw
    return head + b"".join(_field(p) for p in parts)


def check(origin: NodeId, record: Record) -> None:
    """Refuse a record its origin may not write (ProtocolError, with the reason)."""
    match record:
        case Binding() if record.borrower == origin:
            raise ProtocolError("a binding lends to its own lender")
        case LoanStatus() if record.lender == origin:
            raise ProtocolError("a loan status names its own writer as lender")
        case BorrowRequest() if record.lender == origin:
            raise ProtocolError("a borrow request asks its own writer")
        case Denial() if record.borrower == origin:
            raise ProtocolError("a denial answers its own writer")
        case ManifestPage() if record.borrower == origin:
            raise ProtocolError("a manifest page lends to its own lender")
        case Removal() if record.node_id == origin:
            raise ProtocolError("a node cannot remove itself by its own record")
        case _:
            pass


def is_deleted(record: Record) -> bool:
    """Whether a record is a tombstone (purged once every member has seen it)."""
    match record:
        case LibraryEntry():
            return record.deleted
        case LibraryRecord():
            return record.removed
        case _:
            return False
