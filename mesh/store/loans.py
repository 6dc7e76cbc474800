"""The borrower's local loan state: copies placed, and pulls in progress."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from mesh.core.ids import NodeId
from mesh.core.paths import lender_folder
from mesh.store.database import Database


@dataclass(frozen=True, kw_only=True, slots=True)
class Copy:
    """A verified borrowed file this node placed in its borrowed folder."""

    binding_key: bytes
    lender: NodeId
    lender_name: str
    library: str
    path: str
    hash: bytes
    size: int
    chunk_hashes: bytes
    device: int
    inode: int
    mtime_ns: int

    @property
    def parts(self) -> list[str]:
        """Where it is: under its lender's folder (core/paths.lender_folder)."""
        return [lender_folder(self.lender), self.library, *self.path.split("/")]


@dataclass(frozen=True, kw_only=True, slots=True)
class Pull:
    """A pull in progress: its staging file and which chunks are verified there."""

    binding_key: bytes
    staging: str
    hash: bytes
    size: int
    chunk_hashes: bytes
    verified: bytes
    hashed: int = 0  # the chunks before this one are in the whole-file hash saved as:
    hash_state: bytes = b""


_SELECT_COPIES = (
    "SELECT binding_key, lender, lender_name, library, path, hash, size, chunk_hashes, "
    "device, inode, mtime_ns FROM copies "
)
_INSERT_COPY = (
    "INSERT OR REPLACE INTO copies (binding_key, lender, lender_name, library, path, hash, "
    "size, chunk_hashes, device, inode, mtime_ns) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)


@functools.lru_cache(maxsize=256)
def _lender(raw: bytes) -> NodeId:
    # The few lenders of a borrower's copies, made once: the agent reads every copy each
    # pass (10,000 for a big folder loan).
    return NodeId(raw)


def _copy(row: tuple[Any, ...]) -> Copy:
    key, lender, name, library, path, h, size, hashes, device, inode, mtime_ns = row
    return Copy(
        binding_key=bytes(key),
        lender=_lender(bytes(lender)),
        lender_name=str(name),
        library=str(library),
        path=str(path),
        hash=bytes(h),
        size=int(size),
        chunk_hashes=bytes(hashes),
        device=int(device),
        inode=int(inode),
        mtime_ns=int(mtime_ns),
    )


class LoanBook:
    """The copies and pulls tables. Every copy is also kept in memory (the agent reads all
    of them each pass: 10,000 for a big folder loan), changed with the table by this
    book's writes, and read again from the table after any transaction rolled back (a
    write of this book may have been in it). Only this book writes the copies table."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._copies: dict[bytes, Copy] | None = None
        self._rollbacks = db.rollbacks

    # -- copies ------------------------------------------------------------------------

    def _cached(self) -> dict[bytes, Copy]:
        if self._copies is None or self._rollbacks != self._db.rollbacks:
            self._rollbacks = self._db.rollbacks
            self._copies = {c.binding_key: c for c in map(_copy, self._db.read(_SELECT_COPIES))}
        return self._copies

    def copies(self) -> list[Copy]:
        return list(self._cached().values())

    def copy(self, binding_key: bytes) -> Copy | None:
        rows = self._db.read(_SELECT_COPIES + "WHERE binding_key = ?", (binding_key,))
        return _copy(rows[0]) if rows else None

    def copies_of(self, content_hash: bytes) -> list[Copy]:
        rows = self._db.read(_SELECT_COPIES + "WHERE hash = ?", (content_hash,))
        return [_copy(r) for r in rows]

    def held_bytes(self) -> int:
        return int(self._db.read("SELECT coalesce(sum(size), 0) FROM copies")[0][0])

    def placed(self, copy: Copy) -> None:
        """Record a placed copy and forget the pull that made it, in one transaction."""
        with self._db.transaction() as conn:
            conn.execute(
                _INSERT_COPY,
                (
                    copy.binding_key,
                    copy.lender.raw,
                    copy.lender_name,
                    copy.library,
                    copy.path,
                    copy.hash,
                    copy.size,
                    copy.chunk_hashes,
                    copy.device,
                    copy.inode,
                    copy.mtime_ns,
                ),
            )
            conn.execute("DELETE FROM pulls WHERE binding_key = ?", (copy.binding_key,))
            self._cached()[copy.binding_key] = copy

    def removed(self, binding_key: bytes) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM copies WHERE binding_key = ?", (binding_key,))
            self._cached().pop(binding_key, None)

    def lost(self, copy: Copy, found: tuple[int, int, int] | None) -> None:
        """`copy` is no longer on disk as placed: forget its content, so the agent pulls it
        again. `found` (device, inode, mtime_ns): the file now at its place, which that
        pull replaces; None when nothing (or no regular file) is there. A no-op if the copy
        was placed anew since `copy` was read."""
        placed = (copy.binding_key, copy.device, copy.inode, copy.mtime_ns)
        with self._db.transaction() as conn:
            if found is None:
                conn.execute(
                    "DELETE FROM copies WHERE binding_key = ? AND device = ? AND inode = ? "
                    "AND mtime_ns = ?",
                    placed,
                )
            else:
                conn.execute(
                    "UPDATE copies SET hash = x'', device = ?, inode = ?, mtime_ns = ? "
                    "WHERE binding_key = ? AND device = ? AND inode = ? AND mtime_ns = ?",
                    (*found, *placed),
                )
            now = conn.execute(
                _SELECT_COPIES + "WHERE binding_key = ?", (copy.binding_key,)
            ).fetchall()
            if now:
                self._cached()[copy.binding_key] = _copy(now[0])
            else:
                self._cached().pop(copy.binding_key, None)

    # -- pulls -------------------------------------------------------------------------

    def pull(self, binding_key: bytes) -> Pull | None:
        rows = self._db.read(
            "SELECT binding_key, staging, hash, size, chunk_hashes, verified, hashed, "
            "hash_state FROM pulls WHERE binding_key = ?",
            (binding_key,),
        )
        if not rows:
            return None
        key, staging, h, size, hashes, verified, hashed, hash_state = rows[0]
        return Pull(
            binding_key=bytes(key),
            staging=str(staging),
            hash=bytes(h),
            size=int(size),
            chunk_hashes=bytes(hashes),
            verified=bytes(verified),
            hashed=int(hashed),
            hash_state=bytes(hash_state),
        )

    def pulls(self) -> list[bytes]:
        return [bytes(r[0]) for r in self._db.read("SELECT binding_key FROM pulls")]

    def save_pull(self, pull: Pull) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO pulls (binding_key, staging, hash, size, chunk_hashes, "
                "verified, hashed, hash_state) VALUES (?,?,?,?,?,?,?,?)",
                (
                    pull.binding_key,
                    pull.staging,
                    pull.hash,
                    pull.size,
                    pull.chunk_hashes,
                    pull.verified,
                    pull.hashed,
                    pull.hash_state,
                ),
            )

    def drop_pull(self, binding_key: bytes) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM pulls WHERE binding_key = ?", (binding_key,))
