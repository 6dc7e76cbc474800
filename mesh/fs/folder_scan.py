"""Scanning one folder: the unit of work a scan hands to a worker process.

A worker lists the folder, skips what is unchanged by (size, mtime, inode) against the known
state it was given, hashes the rest, and returns plain tuples (cheap to pickle). It never
follows a symlink, skips mesh's own staging names, and leaves very large files to the parent,
which hashes them in a thread so progress moves by bytes.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from mesh.core.chunks import CHUNK_SIZE, HASH_BYTES
from mesh.core.errors import InvalidPathError
from mesh.core.paths import check_name
from mesh.fs.hashing import Digest, hash_file, hash_small
from mesh.store.index import FileRow, KnownFile

STAGING_PREFIX = ".mesh-"


@dataclass(frozen=True, slots=True)
class FolderTask:
    root: str
    # (folder relative to root, '/'-separated, "" for the root; what the index has in it)
    folders: list[tuple[str, dict[str, KnownFile]]]
    large: int  # files of at least this many bytes are left to the parent
    # Names of files still being written, per folder: left as the index has them.
    skip: dict[str, frozenset[str]] = field(default_factory=dict)


@dataclass(slots=True)
class FolderResult:
    rel: str
    listed: bool = True
    missing: bool = False  # the folder is gone (not merely unreadable)
    subfolders: list[str] = field(default_factory=list)
    new: list[FileRow] = field(default_factory=list)  # no row in the index yet
    revived: list[FileRow] = field(default_factory=list)  # back after being deleted
    changed: list[FileRow] = field(default_factory=list)
    restat: list[tuple[str, int]] = field(default_factory=list)  # same content, new inode
    chunk_lists: list[tuple[bytes, bytes, bytes]] = field(default_factory=list)
    large: list[tuple[str, int]] = field(default_factory=list)  # path, size
    gone: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # path, reason
    warnings: list[str] = field(default_factory=list)
    seen: int = 0
    unchanged: int = 0
    bytes_hashed: int = 0


def classify(result: FolderResult, path: str, old: KnownFile | None, d: Digest) -> None:
    """File a hashed file under new, revived, changed or restat."""
    if len(d.chunk_hashes) > HASH_BYTES:
        result.chunk_lists.append((d.hash, d.chunk_root, d.chunk_hashes))
    row = (path, d.size, d.mtime_ns, d.inode, d.hash, d.chunk_root)
    if old is None:
        result.new.append(row)
    elif old[4]:
        result.revived.append(row)
    elif old[3] == d.hash and old[0] == d.size and old[1] == d.mtime_ns:
        result.restat.append((path, d.inode))
        result.unchanged += 1
    else:
        result.changed.append(row)


def scan_folders(task: FolderTask) -> list[FolderResult]:
    """Scan each folder of a task (several per task, so the round trips stay few)."""
    return [
        scan_folder(task.root, rel, known, task.large, task.skip.get(rel, frozenset()))
        for rel, known in task.folders
    ]


def scan_folder(
    root: str,
    rel: str,
    known: dict[str, KnownFile],
    large: int,
    skip: frozenset[str] = frozenset(),
) -> FolderResult:
    folder = os.path.join(root, rel) if rel else root
    prefix = f"{rel}/" if rel else ""
    result = FolderResult(rel=rel)
    try:
        with os.scandir(folder) as it:
            entries = list(it)
    except (FileNotFoundError, NotADirectoryError):
        # Only a partial scan names a folder its parent did not just list: it went away
        # since the event that named it, which the parent's own scan will tell.
        result.listed = False
        result.missing = True
        return result
    except OSError as exc:
        result.listed = False
        result.warnings.append(f"cannot list {folder}: {exc.strerror}")
        return result
    seen: set[str] = set()
    for entry in entries:
        name = entry.name
        if name.startswith(STAGING_PREFIX):
            continue
        try:
            check_name(name)
        except InvalidPathError as exc:
            result.warnings.append(f"skipped {entry.path!r}: {exc}")
            continue
        try:
            if entry.is_symlink():
                continue
            if entry.is_dir(follow_symlinks=False):
                result.subfolders.append(name)
                continue
            if name in skip:
                seen.add(name)  # still being written: neither hashed now nor gone
                continue
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            seen.add(name)  # unreadable is not gone
            result.failed.append((prefix + name, exc.strerror or str(exc)))
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        seen.add(name)
        result.seen += 1
        size = st.st_size
        old = known.get(name)
        if (
            old is not None
            and not old[4]
            and old[0] == size
            and old[1] == st.st_mtime_ns
            and old[2] == st.st_ino
        ):
            result.unchanged += 1
            continue
        if size >= large:
            result.large.append((prefix + name, size))
            continue
        try:
            d = hash_small(entry.path, st) if size < CHUNK_SIZE else hash_file(entry.path)
        except OSError as exc:
            result.failed.append((prefix + name, exc.strerror or str(exc)))
            continue
        result.bytes_hashed += d.size
        classify(result, prefix + name, old, d)
    result.gone = [prefix + name for name, k in known.items() if not k[4] and name not in seen]
    return result
