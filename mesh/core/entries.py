"""Libraries and their entries: what a node shares, file by file."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.core.ids import NodeId


@dataclass(frozen=True, kw_only=True, slots=True)
class Library:
    """A folder this node shares, under a name unique on this node."""

    name: str
    root: str
    open: bool = False
    # The members it is shared with (`mesh share --with`); empty: every member.
    borrowers: frozenset[NodeId] = frozenset()
    ask: bool | None = None  # overrides lending.ask_first where set (`--ask`, `--no-ask`)

    def may_borrow(self, node_id: NodeId) -> bool:
        """Whether `node_id` may borrow from it (and be served its files as an open one)."""
        return not self.borrowers or node_id in self.borrowers

    def asks(self, ask_first: bool) -> bool:
        """Whether a borrow request waits for its owner, given the node's lending.ask_first."""
        return ask_first if self.ask is None else self.ask


@dataclass(frozen=True, kw_only=True, slots=True)
class LibraryEntry:
    """One file of a library as the mesh knows it.

    `hash` is xxh3-128 of the whole file; `chunk_root` is xxh3-128 over the concatenated
    hashes of its 1 MiB chunks. A deleted entry keeps the last content it had.
    """

    library: str
    path: str
    size: int
    mtime_ns: int
    hash: bytes
    chunk_root: bytes
    deleted: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class IndexedEntry:
    """A library entry with the sequence number its origin gave its latest write."""

    entry: LibraryEntry
    seq: int
    # Whose entry this is, when a listing spans the mesh (None: this node's own).
    node_id: NodeId | None = None
    node: str = ""
