"""Scanning one folder: the unit of work a scan hands to a worker process.

A worker lists the folder, skips what is unchanged by (size, mtime, inode) against the known
state it was given, hashes the rest, and returns plain tuples (one marshal'd blob). It never
follows a symlink, skips mesh's own staging names, and leaves very large files to the parent,
which hashes them in a thread so progress moves by bytes.
"""

from __future__ import annotations

import marshal
import os
import stat
from dataclasses import dataclass, field, fields

from mesh.core.chunks import CHUNK_SIZE, HASH_BYTES
from mesh.core.errors import InvalidPathError
from mesh.core.paths import check_name
from mesh.fs.hashing import Digest, digest_open, hash_one_chunk, open_for_reading
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


_RESULT_FIELDS = tuple(f.name for f in fields(FolderResult))


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


def scan_folders_packed(task: FolderTask) -> bytes:
    """`scan_folders` for a worker process: its results as one marshal'd blob.

    pickle spent more time on a first scan's results than the hashing of its small files
    did: it memoizes every path and hash in case they occur twice. marshal does not, and
    is as fast to load. It is safe here because the bytes come from our own worker.
    """
    return marshal.dumps([tuple(getattr(r, f) for f in _RESULT_FIELDS) for r in scan_folders(task)])


def unpack_results(packed: bytes) -> list[FolderResult]:
    return [FolderResult(*values) for values in marshal.loads(packed)]  # noqa: S302


_ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# A folder inside the library is not followed if it was swapped for a symlink since its
# parent was listed: that would walk out of the library. The root is followed: a user may
# well move a library's files elsewhere and leave a symlink where they were.
_FOLDER_FLAGS = _ROOT_FLAGS | os.O_NOFOLLOW


def scan_folder(
    root: str,
    rel: str,
    known: dict[str, KnownFile],
    large: int,
    skip: frozenset[str] = frozenset(),
) -> FolderResult:
    """List one folder and hash what is new or changed in it.

    Files are reached by name from the open folder (`dir_fd`), so each stat and open looks
    up one name instead of walking the whole path again. A file the index does not have is
    opened and fstat'd at once: the stat before the open would be a wasted lookup.
    """
    folder = os.path.join(root, rel) if rel else root
    result = FolderResult(rel=rel)
    try:
        dir_fd = os.open(folder, _FOLDER_FLAGS if rel else _ROOT_FLAGS)
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
    try:
        _scan_open_folder(result, dir_fd, folder, known, large, skip)
    finally:
        os.close(dir_fd)
    return result


def _scan_open_folder(
    result: FolderResult,
    dir_fd: int,
    folder: str,
    known: dict[str, KnownFile],
    large: int,
    skip: frozenset[str],
) -> None:
    prefix = f"{result.rel}/" if result.rel else ""
    try:
        with os.scandir(dir_fd) as it:
            entries = list(it)
    except OSError as exc:
        result.listed = False
        result.warnings.append(f"cannot list {folder}: {exc.strerror}")
        return
    seen: set[str] = set()
    for entry in entries:
        name = entry.name
        if name.startswith(STAGING_PREFIX):
            continue
        try:
            check_name(name)
        except InvalidPathError as exc:
            result.warnings.append(f"skipped {os.path.join(folder, name)!r}: {exc}")
            continue
        try:
            # Most entries are files: one look at the walk's file type settles them.
            if not entry.is_file(follow_symlinks=False):
                if entry.is_dir(follow_symlinks=False):
                    result.subfolders.append(name)
                continue  # a symlink (never followed), FIFO, socket or device
            if name in skip:
                seen.add(name)  # still being written: neither hashed now nor gone
                continue
            old = known.get(name)
            if old is None:
                # Not in the index, so it is read whatever its stat says.
                _hash_at(result, dir_fd, name, prefix + name, large, None)
                continue
            seen.add(name)
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            seen.add(name)  # unreadable is not gone
            result.failed.append((prefix + name, exc.strerror or str(exc)))
            continue
        if not old[4] and old[0] == st.st_size and old[1] == st.st_mtime_ns and old[2] == st.st_ino:
            result.seen += 1
            result.unchanged += 1
            continue
        _hash_at(result, dir_fd, name, prefix + name, large, old)
    result.gone = [prefix + name for name, k in known.items() if not k[4] and name not in seen]


def _hash_at(
    result: FolderResult, dir_fd: int, name: str, path: str, large: int, old: KnownFile | None
) -> None:
    """Open a file of the folder, fstat it, and hash it or leave it to the parent (large)."""
    try:
        fd = open_for_reading(name, dir_fd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return  # swapped for something else since the listing
            result.seen += 1
            size = st.st_size
            if size >= large:
                result.large.append((path, size))
                return
            if old is None and size < CHUNK_SIZE:
                # A first scan's hot path, a new small file: its row without a Digest.
                one = hash_one_chunk(fd, size)
                if one is not None:
                    result.bytes_hashed += size
                    result.new.append((path, size, st.st_mtime_ns, st.st_ino, *one))
                    return
            d = digest_open(fd, st, path)
        finally:
            os.close(fd)
    except OSError as exc:
        result.failed.append((path, exc.strerror or str(exc)))
        return
    result.bytes_hashed += d.size
    classify(result, path, old, d)
