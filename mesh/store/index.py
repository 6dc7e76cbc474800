"""The local index: this node's libraries, their entries and the chunk hashes of their files.

Every change to an entry (new, changed, deleted) takes this node's next sequence number in
the same transaction that writes it; the row is the entry's replicated record too (see
store/records.py), so "everything after seq N" is one indexed query and a
crash never leaves an entry without its number or a number without its entry.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mesh.core.chunks import CHUNK_SIZE
from mesh.core.entries import IndexedEntry, Library, LibraryEntry
from mesh.core.errors import AlreadyExistsError, NotFoundError
from mesh.core.ids import NodeId
from mesh.store.database import Database

# What the index holds of a file, enough to tell whether it changed:
# (size, mtime_ns, inode, hash, deleted)
KnownFile = tuple[int, int, int, bytes, bool]
# A file's new state: (path, size, mtime_ns, inode, hash, chunk_root)
FileRow = tuple[str, int, int, int, bytes, bytes]


_LIBRARY_SELECT = "SELECT name, root, open, borrowers, ask FROM libraries "


def _library_of(row: tuple[str, str, int, str, int | None]) -> Library:
    name, root, open_, borrowers, ask = row
    return Library(
        name=name,
        root=root,
        open=bool(open_),
        borrowers=frozenset(NodeId(bytes.fromhex(h)) for h in borrowers.split()),
        ask=None if ask is None else bool(ask),
    )


def _sharing(library: Library) -> tuple[str, int | None]:
    borrowers = " ".join(sorted(n.raw.hex() for n in library.borrowers))
    return borrowers, None if library.ask is None else int(library.ask)


@dataclass(slots=True)
class ScanBatch:
    """Changes to one library's entries, written in one transaction.

    `new` paths have no row yet (a plain insert, the fast path of a first scan); `changed`
    paths have one, live or deleted. Each of new, changed and gone is a write and takes the
    next sequence number, in that order; `restat` (same content under a new inode) is not.
    """

    new: list[FileRow] = field(default_factory=list)
    changed: list[FileRow] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    restat: list[tuple[str, int]] = field(default_factory=list)
    chunk_lists: list[tuple[bytes, bytes, bytes]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.new) + len(self.changed) + len(self.gone) + len(self.restat)

    def writes(self) -> int:
        return len(self.new) + len(self.changed) + len(self.gone)


@dataclass(frozen=True, kw_only=True, slots=True)
class LibraryStats:
    files: int
    bytes: int
    last_seq: int
    changed_ms: int = 0  # when an entry last changed; 0: never


def _outermost(folders: Iterable[str]) -> list[str]:
    """The folders not inside another of them."""
    kept: list[str] = []
    for folder in sorted(set(folders), key=len):
        if not any(folder.startswith(k + "/") for k in kept):
            kept.append(folder)
    return kept


def _is_within(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


TakeSeqs = Callable[[sqlite3.Connection, int], int]


class LibraryIndex:
    """`take_seqs(conn, n)` reserves n of this node's sequence numbers inside a transaction
    (the replica's own clock, so entries and other records share one numbering)."""

    def __init__(self, db: Database, take_seqs: TakeSeqs) -> None:
        self._db = db
        self._take_seqs = take_seqs

    # -- libraries ---------------------------------------------------------------------

    def add_library(self, library: Library, now_ms: int) -> None:
        with self._db.transaction() as conn:
            for other in self._libraries(conn):
                if other.name == library.name:
                    raise AlreadyExistsError(
                        f"a library named {library.name!r} is already shared ({other.root})"
                    )
                if _is_within(library.root, other.root) or _is_within(other.root, library.root):
                    raise AlreadyExistsError(
                        f"{library.root} overlaps library {other.name!r} ({other.root}); "
                        "a file can belong to one library only"
                    )
            conn.execute(
                "INSERT INTO libraries (name, root, open, added_ms, borrowers, ask) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (library.name, library.root, int(library.open), now_ms, *_sharing(library)),
            )

    def set_sharing(self, library: Library) -> None:
        """Store who may borrow from `library` (open, borrowers, ask), by its name."""
        with self._db.transaction() as conn:
            if self._library(conn, library.name) is None:
                raise NotFoundError(f"no library named {library.name!r}; `mesh ls` lists them")
            conn.execute(
                "UPDATE libraries SET open = ?, borrowers = ?, ask = ? WHERE name = ?",
                (int(library.open), *_sharing(library), library.name),
            )

    def remove_library(self, name: str) -> int:
        """Forget a library; its live entries become deleted writes. Returns how many."""
        with self._db.transaction() as conn:
            if self._library(conn, name) is None:
                raise NotFoundError(f"no library named {name!r}; `mesh ls` lists them")
            live = [
                row[0]
                for row in conn.execute(
                    "SELECT path FROM entries WHERE library = ? AND deleted = 0", (name,)
                )
            ]
            self._write(conn, name, ScanBatch(gone=live))
            conn.execute("DELETE FROM libraries WHERE name = ?", (name,))
            return len(live)

    def libraries(self) -> list[Library]:
        return self._libraries(self._db.conn)

    def find_library(self, name: str) -> Library | None:
        return self._library(self._db.conn, name)

    def library(self, name: str) -> Library:
        found = self._library(self._db.conn, name)
        if found is None:
            raise NotFoundError(f"no library named {name!r}; `mesh ls` lists them")
        return found

    @staticmethod
    def _libraries(conn: sqlite3.Connection) -> list[Library]:
        rows = conn.execute(_LIBRARY_SELECT + "ORDER BY name")
        return [_library_of(row) for row in rows]

    @staticmethod
    def _library(conn: sqlite3.Connection, name: str) -> Library | None:
        row = conn.execute(_LIBRARY_SELECT + "WHERE name = ?", (name,)).fetchone()
        return None if row is None else _library_of(row)

    def stats(self, name: str) -> LibraryStats:
        row = self._db.conn.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM entries "
            "WHERE library = ? AND deleted = 0",
            (name,),
        ).fetchone()
        last = self._db.conn.execute(
            "SELECT coalesce(max(seq), 0) FROM entries WHERE library = ?", (name,)
        ).fetchone()
        changed = self._db.conn.execute(
            "SELECT changed_ms FROM libraries WHERE name = ?", (name,)
        ).fetchone()
        return LibraryStats(
            files=row[0], bytes=row[1], last_seq=last[0], changed_ms=changed[0] if changed else 0
        )

    # -- entries -----------------------------------------------------------------------

    def known_by_folder(
        self, library: str, under: Sequence[str] | None = None
    ) -> dict[str, dict[str, KnownFile]]:
        """Every path the index has for a library, grouped by folder ("" is the root); with
        `under`, only those inside these folders (a partial scan needs no more)."""
        grouped: dict[str, dict[str, KnownFile]] = {}
        sql = "SELECT path, size, mtime_ns, inode, hash, deleted FROM entries WHERE library = ?"
        if under is None or "" in under:
            rows: Iterable[tuple[Any, ...]] = self._db.conn.execute(sql, (library,))
        else:
            # 'F/' <= path < 'F0' is everything inside F ('0' follows '/'), a range of the
            # (library, path) index.
            rows = itertools.chain.from_iterable(
                self._db.conn.execute(
                    sql + " AND path >= ? AND path < ?", (library, f"{folder}/", f"{folder}0")
                )
                for folder in _outermost(under)
            )
        for path, size, mtime, inode, content, deleted in rows:
            folder, _, name = path.rpartition("/")
            files = grouped.get(folder)
            if files is None:
                files = grouped[folder] = {}
            files[name] = (size, mtime, inode, content, bool(deleted))
        return grouped

    def known_in_folder(self, library: str, folder: str) -> tuple[dict[str, KnownFile], set[str]]:
        """What the index has directly in one folder: its files by name, and the names of
        its subfolders that hold entries. The filtering runs inside SQLite, so listing the
        root of a big library costs far less than loading all of it."""
        prefix = f"{folder}/" if folder else ""
        rest = f"substr(path, {len(prefix) + 1})"
        where = "library = ?"
        params: tuple[str, ...] = (library,)
        if folder:
            where += " AND path >= ? AND path < ?"  # everything inside the folder
            params += (prefix, f"{folder}0")
        files = {
            name: (size, mtime, inode, content, bool(deleted))
            for name, size, mtime, inode, content, deleted in self._db.conn.execute(
                f"SELECT {rest}, size, mtime_ns, inode, hash, deleted FROM entries "  # noqa: S608
                f"WHERE {where} AND instr({rest}, '/') = 0",
                params,
            )
        }
        children = {
            row[0]
            for row in self._db.conn.execute(
                f"SELECT DISTINCT substr({rest}, 1, instr({rest}, '/') - 1) FROM entries "  # noqa: S608
                f"WHERE {where} AND instr({rest}, '/') > 0",
                params,
            )
        }
        return files, children

    def apply(self, library: str, batch: ScanBatch) -> int:
        """Write a batch in one transaction; returns how many writes took a new seq."""
        with self._db.transaction() as conn:
            if self._library(conn, library) is None:
                raise NotFoundError(f"library {library!r} was unshared during the scan")
            return self._write(conn, library, batch)

    def _write(self, conn: sqlite3.Connection, library: str, batch: ScanBatch) -> int:
        writes = batch.writes()
        first = self._take_seqs(conn, writes) if writes else 0
        if writes:
            conn.execute(
                "UPDATE libraries SET changed_ms = ? WHERE name = ?",
                (time.time_ns() // 1_000_000, library),
            )
        seqs = itertools.count(first)
        sql_values = "(size, mtime_ns, inode, hash, chunk_root, seq, library, path) VALUES "
        # Hashes are bound as bytearray: Python 3.11's sqlite3 binds int, float, str and
        # bytearray directly, but looks for an adapter for bytes (raising and discarding an
        # AttributeError on the way), which cost a quarter of a first scan's insert.
        conn.executemany(
            "INSERT INTO entries " + sql_values + "(?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (sz, mt, ino, bytearray(h), bytearray(root), next(seqs), library, p)
                for p, sz, mt, ino, h, root in batch.new
            ],
        )
        conn.executemany(
            "INSERT INTO entries " + sql_values + "(?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (library, path) DO UPDATE SET size = excluded.size, "
            "mtime_ns = excluded.mtime_ns, inode = excluded.inode, hash = excluded.hash, "
            "chunk_root = excluded.chunk_root, seq = excluded.seq, deleted = 0",
            [
                (sz, mt, ino, bytearray(h), bytearray(root), next(seqs), library, p)
                for p, sz, mt, ino, h, root in batch.changed
            ],
        )
        conn.executemany(
            "UPDATE entries SET deleted = 1, seq = ? WHERE library = ? AND path = ?",
            [(next(seqs), library, p) for p in batch.gone],
        )
        conn.executemany(
            "UPDATE entries SET inode = ? WHERE library = ? AND path = ?",
            [(ino, library, p) for p, ino in batch.restat],
        )
        conn.executemany(
            "INSERT OR IGNORE INTO chunk_lists (hash, chunk_root, hashes) VALUES (?, ?, ?)",
            batch.chunk_lists,
        )
        return writes

    def entries(
        self, *, include_deleted: bool = False, libraries: Iterable[str] = ()
    ) -> list[IndexedEntry]:
        sql = "SELECT library, path, size, mtime_ns, hash, chunk_root, deleted, seq FROM entries"
        where = [] if include_deleted else ["deleted = 0"]
        names = list(libraries)
        params: list[object] = []
        if names:
            where.append(f"library IN ({', '.join('?' * len(names))})")
            params.extend(names)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY library, path"
        return [
            IndexedEntry(
                entry=LibraryEntry(
                    library=lib,
                    path=path,
                    size=size,
                    mtime_ns=mtime,
                    hash=h,
                    chunk_root=root,
                    deleted=bool(deleted),
                ),
                seq=seq,
            )
            for lib, path, size, mtime, h, root, deleted, seq in self._db.read(sql, tuple(params))
        ]

    def entry(self, library: str, path: str) -> LibraryEntry | None:
        """The live entry at (library, path), by the unique index."""
        rows = self._db.read(
            "SELECT size, mtime_ns, hash, chunk_root FROM entries "
            "WHERE library = ? AND path = ? AND deleted = 0",
            (library, path),
        )
        if not rows:
            return None
        size, mtime_ns, content, root = rows[0]
        return LibraryEntry(
            library=library,
            path=path,
            size=int(size),
            mtime_ns=int(mtime_ns),
            hash=bytes(content),
            chunk_root=bytes(root),
        )

    def file_state(self, library: str, path: str) -> tuple[int, int, int, bytes] | None:
        """(size, mtime_ns, inode, hash) of a live entry, as the last scan saw the file."""
        rows = self._db.read(
            "SELECT size, mtime_ns, inode, hash FROM entries "
            "WHERE library = ? AND path = ? AND deleted = 0",
            (library, path),
        )
        if not rows:
            return None
        size, mtime_ns, inode, content = rows[0]
        return int(size), int(mtime_ns), int(inode), bytes(content)

    def chunk_hashes(self, content_hash: bytes, size: int) -> bytes | None:
        """Packed chunk hashes of a content of `size` bytes, or None if they are not kept."""
        if size <= 0:
            return b""
        row = self._db.conn.execute(
            "SELECT hashes FROM chunk_lists WHERE hash = ?", (content_hash,)
        ).fetchone()
        if row is not None:
            return bytes(row[0])
        # A one-chunk file's only chunk hash is the file's hash.
        if size <= CHUNK_SIZE:
            return content_hash
        return None
