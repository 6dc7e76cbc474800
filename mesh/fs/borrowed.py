"""The borrowed folder: staging files for pulls, placing verified files, removing them.

Theory of operation. Borrowed files live at `<root>/<lender folder>/<library>/<path...>`,
the lender folder named by its node id (fs/lender_links.py shows it by name); a pull writes
into a staging file `<root>/.mesh-staging/<key>` on the same file system, so placing
is one atomic link or rename. Everything below the root is reached by walking one name at a
time from the root's descriptor with O_NOFOLLOW (`os.open(name, dir_fd=...)` and friends),
never through a joined path: a symbolic link anywhere below the root, planted beforehand or
swapped in during a pull, is refused instead of followed, so mesh never reads, writes or
deletes outside the root. Every name is checked with `check_name` (`check_portable_name`
where the copy would land on Windows) before it is used. The root's own path is the user's
setting and is trusted except for its last name, which must be a real folder.

Placing a file; the commit point is step 5:
1. re-read and hash the whole staging file through its descriptor, compare;
2. fsync it, so no name in the borrowed folder can ever point at data not yet on disk;
3. create missing folders, each fsynced into its parent;
4. make the file read-only (before the commit, so a kill never leaves a writable copy);
5. commit: a new file is hard-linked in, which fails if the name is taken, so a file the
   user saved there a moment ago is never overwritten; mesh's own older copy is replaced by
   renaming a second link of the staging file over it;
6. fsync the destination folder.
A kill before step 5 leaves nothing in the borrowed folder, after it the whole verified file.

The staging name stays linked to the placed file until the caller has recorded the returned
FileId and calls `discard(key)`. If the process dies in between, calling `place` again finds
that the destination is the staging file itself and returns its FileId, instead of calling
mesh's own copy a user's file. (On a file system without hard links, FAT for one, the commit
falls back to a plain rename, which loses that recovery.) `staging()` never writes into a
file that has a second name: it replaces such a staging name with a fresh, empty file.

A FileId is the device, inode and mtime of the placed copy. `remove` and `holds` trust a file
only while all three match: a file the user saved after deleting the copy may get the same
inode number back, and a copy the user made writable and edited is theirs now.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import re
import stat
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from mesh.core.chunks import CHUNK_SIZE, chunk_span
from mesh.core.errors import (
    InvalidArgumentError,
    InvalidPathError,
    NoSpaceError,
    NotFoundError,
    PlacementError,
    UserFileInTheWayError,
)
from mesh.core.paths import check_name, check_portable_name
from mesh.core.text import shown
from mesh.fs.hashing import hash_fd

STAGING = ".mesh-staging"
# The second link of a staging file while it replaces an older copy (see `_swap_in`).
_SWAP = ".swap"
_KEY = re.compile(r"[0-9a-f]{1,128}")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted under a staging name must not hang (no effect on files).
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_WRITE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_FULL = (errno.ENOSPC, errno.EDQUOT)
# What link() says on file systems that have no hard links (vfat: EPERM).
_NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS)
# What fsync() on a folder says where the file system cannot do it; nothing to be done then.
_NO_DIR_SYNC = (errno.EINVAL, errno.EOPNOTSUPP)

# Issue 11's crash tests set this to stop the process at a named step of `place`.
_fault_hook: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if _fault_hook is not None:
        _fault_hook(name)


@dataclass(frozen=True, kw_only=True, slots=True)
class FileId:
    """Identifies a copy mesh placed: it is still that copy while all three fields match."""

    device: int
    inode: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileId:
        return cls(device=st.st_dev, inode=st.st_ino, mtime_ns=st.st_mtime_ns)

    def matches(self, st: os.stat_result) -> bool:
        return (
            stat.S_ISREG(st.st_mode)
            and st.st_dev == self.device
            and st.st_ino == self.inode
            and st.st_mtime_ns == self.mtime_ns
        )


def _printable(name: str) -> str:
    # Names come from peers: a terminal escape in an error message must stay inert.
    return shown(name)


def _os_error(exc: OSError, doing: str) -> PlacementError:
    if exc.errno in _FULL:
        return NoSpaceError(f"cannot {doing}: no space left on the disk")
    return PlacementError(f"cannot {doing}: {exc.strerror or exc}")


def _kind(st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link"
    if stat.S_ISDIR(st.st_mode):
        return "a folder"
    if stat.S_ISREG(st.st_mode):
        return "a file"
    return "a special file"


def _kind_at(parent: int | None, name: str) -> str:
    try:
        return _kind(os.stat(name, dir_fd=parent, follow_symlinks=False))
    except OSError:
        return "not a folder"


def _same_inode(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _check_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise InvalidArgumentError(f"staging key {key!r} is not a lower-case hex string")
    return key


def _open_or_make(
    parent: int, name: str, mode: int, where: str, error: type[PlacementError]
) -> tuple[int, bool]:
    """Open folder `name` under `parent`, creating it if missing: (fd, whether it was made).

    A symbolic link or anything else that is not a folder raises `error`; it is never
    followed, replaced or removed."""
    made = False
    for _ in range(3):
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent), made
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise error(
                    f"{where} is {_kind_at(parent, name)}, not a folder; mesh does not follow "
                    "or replace it"
                ) from exc
            raise _os_error(exc, f"open {where}") from exc
        try:
            os.mkdir(name, mode, dir_fd=parent)
            made = True
        except FileExistsError:
            pass  # made by someone else in between: open it (or refuse it) on the next turn
        except OSError as exc:
            raise _os_error(exc, f"create the folder {where}") from exc
    raise PlacementError(f"{where} keeps appearing and disappearing; try again")


def _open_existing(parent: int, name: str, where: str) -> int | None:
    """Open folder `name` under `parent`, or None when it is missing or not a real folder."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
            return None
        raise _os_error(exc, f"open {where}") from exc


def _sync_dir(fd: int, where: str) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _NO_DIR_SYNC:
            raise _os_error(exc, f"flush the folder {where} to disk") from exc


def _chmod(fd: int, mode: int, where: str) -> None:
    try:
        os.fchmod(fd, mode)
    except OSError as exc:
        raise _os_error(exc, f"set the permissions of {where}") from exc


def _unlink_if_present(parent: int, name: str, where: str) -> None:
    try:
        os.unlink(name, dir_fd=parent)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _os_error(exc, f"delete {where}") from exc


def _write_all(fd: int, data: bytes | mmap.mmap, offset: int) -> None:
    with memoryview(data) as whole:
        view = whole
        try:
            while view:
                written = os.pwrite(fd, view, offset)
                if written <= 0:  # pwrite on a regular file writes or fails; never loop forever
                    raise OSError(errno.EIO, "nothing written")
                view = view[written:]
                offset += written
        finally:
            # Its slice of the buffer, released even when a write failed part-way: the
            # traceback keeps this frame, and an exported slice would stop the buffer
            # from closing (BufferError) for as long as the error is kept.
            view.release()


def _open_direct(fd: int) -> int:
    """A second, O_DIRECT descriptor of the file open as `fd`, or -1 where there is none.
    Reopened through /proc/self/fd, which names the open file itself, so no path is walked
    again (a name swapped meanwhile cannot redirect it)."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return -1  # macOS, Windows
    try:
        return os.open(f"/proc/self/fd/{fd}", os.O_RDWR | flag | os.O_CLOEXEC)
    except OSError:
        return -1  # no /proc, or a file system without O_DIRECT (tmpfs on older kernels)


class StagingFile:
    """The open staging file of one pull; chunks are written and read at their offsets.

    Whole chunks go to the disk with O_DIRECT where the file system allows it, through a
    second descriptor of the same open file: a borrowed file is written once and not read
    again soon, so the page cache would only cost a copy into freshly allocated pages (the
    most expensive part of a pull on these machines, FIELD-NOTES.md) and push out what the
    user is working with. O_DIRECT wants aligned memory, so each chunk is copied into one
    page-aligned buffer first; the last, shorter chunk goes through the page cache. One
    thread writes at a time (the buffer is shared).
    """

    def __init__(
        self, fd: int, *, key: str, size: int, where: str, direct: bool = True, kept: bool = False
    ) -> None:
        self._fd = fd
        self.key = key
        self.size = size
        self.kept = kept  # an earlier run's file, reopened: what it verified is still there
        self._where = where
        self._direct = _open_direct(fd) if direct else -1
        self._buffer = mmap.mmap(-1, CHUNK_SIZE) if self._direct >= 0 else None

    @property
    def direct(self) -> bool:
        """Whether whole chunks bypass the page cache."""
        return self._direct >= 0

    def _fileno(self) -> int:
        if self._fd < 0:
            raise ValueError(f"the staging file {self._where} is closed")
        return self._fd

    def write_chunk(self, index: int, data: bytes) -> None:
        """Write chunk `index`; `data` must be exactly that chunk's length."""
        offset, length = chunk_span(self.size, index)
        if len(data) != length:
            raise ValueError(f"chunk {index} of {self._where} is {length} bytes, not {len(data)}")
        fd = self._fileno()
        try:
            if self._buffer is not None and length == CHUNK_SIZE:
                self._buffer[:] = data
                try:
                    _write_all(self._direct, self._buffer, offset)
                    return
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    self._stop_direct()  # this file system refuses it after all
            _write_all(fd, data, offset)
        except OSError as exc:
            raise _os_error(exc, f"write chunk {index} to {self._where}") from exc

    def _stop_direct(self) -> None:
        if self._direct >= 0:
            fd, self._direct = self._direct, -1
            os.close(fd)
        if self._buffer is not None:
            buffer, self._buffer = self._buffer, None
            # Still exported by a caller's view: freed when that view goes.
            with contextlib.suppress(BufferError):
                buffer.close()

    def read_chunk(self, index: int) -> bytes:
        """Chunk `index` as it is on disk now (shorter if the file was cut short)."""
        offset, length = chunk_span(self.size, index)
        fd = self._fileno()
        pieces: list[bytes] = []
        done = 0
        try:
            while done < length:
                piece = os.pread(fd, length - done, offset + done)
                if not piece:
                    break
                pieces.append(piece)
                done += len(piece)
        except OSError as exc:
            raise _os_error(exc, f"read chunk {index} of {self._where}") from exc
        return b"".join(pieces)

    def read_into(self, index: int, buffer: mmap.mmap, count: int = 1) -> int:
        """Read `count` chunks from `index` into `buffer` (a page-aligned mmap at least
        that long), past the page cache where the disk allows (what was written that way
        is not in it, and reading it through the cache would cost fresh pages again); the
        bytes read."""
        offset, _ = chunk_span(self.size, index)
        end = sum(chunk_span(self.size, index + count - 1))
        length = end - offset
        # O_DIRECT reads whole pages: ask for the span rounded up to them; a short file
        # ends the read at its end.
        pages = -(-length // mmap.PAGESIZE) * mmap.PAGESIZE
        fd = self._direct if self._direct >= 0 else self._fileno()
        done = 0
        try:
            with memoryview(buffer) as view:
                while done < length:
                    try:
                        n = os.preadv(fd, [view[done:pages]], offset + done)
                    except OSError as exc:
                        if exc.errno != errno.EINVAL or fd == self._fd:
                            raise
                        fd = self._fd  # a read left off mid-page: the rest the usual way
                        continue
                    if n <= 0:
                        break
                    done += n
        except OSError as exc:
            raise _os_error(exc, f"read chunk {index} of {self._where}") from exc
        return min(done, length)

    def sync(self) -> None:
        """Make the chunks written so far durable (before they are recorded as verified)."""
        try:
            os.fdatasync(self._fileno())
        except OSError as exc:
            raise _os_error(exc, f"flush {self._where} to disk") from exc

    def close(self) -> None:
        """Close both descriptors and free the buffer; the descriptors go first, so a
        buffer still exported somewhere costs memory until it is collected, never a
        descriptor."""
        try:
            self._stop_direct()
        finally:
            if self._fd >= 0:
                fd, self._fd = self._fd, -1
                os.close(fd)

    def __enter__(self) -> StagingFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class BorrowedFolder:
    """The borrowed folder at `root` and its staging folder; see the module's docstring.

    Calls block (they read and fsync whole files): run them off the event loop. The root is
    opened afresh by each call, so a borrowed folder deleted while the daemon runs is made
    again when it is next needed."""

    def __init__(self, root: Path, *, portable: bool = os.name == "nt") -> None:
        """`portable`: also refuse names Windows would take for a device or change."""
        self.root = root
        self._check_name = check_portable_name if portable else check_name
        with ExitStack() as stack:
            root_fd = self._root_fd(stack, create=True)
            assert root_fd is not None
            staging_fd = self._staging_fd(stack, root_fd)
            # Staging files are the user's borrowed bytes too: keep them from other users.
            if stat.S_IMODE(os.fstat(staging_fd).st_mode) & 0o077:
                _chmod(staging_fd, 0o700, self._shown([STAGING]))

    # -- staging -------------------------------------------------------------------------

    def staging(self, key: str, size: int) -> StagingFile:
        """Open the staging file of pull `key`, creating it, or reopening it to resume (its
        written chunks are kept), and set its length to `size`."""
        key = _check_key(key)
        if size < 0:
            raise ValueError(f"a file size cannot be negative: {size}")
        where = self._shown([STAGING, key])
        with ExitStack() as stack:
            root_fd = self._root_fd(stack, create=True)
            assert root_fd is not None
            staging_fd = self._staging_fd(stack, root_fd)
            fd = self._open_staging_file(staging_fd, key, where)
            try:
                # A file of this size was left by this pull (it is sized when created); any
                # other was made just now, or cut short, and holds nothing verified.
                kept = os.fstat(fd).st_size == size
                os.ftruncate(fd, size)
            except OSError as exc:
                os.close(fd)
                raise _os_error(exc, f"size {where}") from exc
        return StagingFile(fd, key=key, size=size, where=where, kept=kept)

    def discard(self, key: str) -> None:
        """Delete the staging file of pull `key`; a missing one is fine."""
        key = _check_key(key)
        with ExitStack() as stack:
            root_fd = self._root_fd(stack, create=True)
            assert root_fd is not None
            staging_fd = self._staging_fd(stack, root_fd)
            for name in (key, key + _SWAP):
                _unlink_if_present(staging_fd, name, self._shown([STAGING, name]))

    def staged_keys(self) -> list[str]:
        """Keys of the staging files present, to clean up pulls that are no longer wanted."""
        with ExitStack() as stack:
            root_fd = self._root_fd(stack, create=True)
            assert root_fd is not None
            staging_fd = self._staging_fd(stack, root_fd)
            try:
                names = os.listdir(staging_fd)
            except OSError as exc:
                raise _os_error(exc, f"list {self._shown([STAGING])}") from exc
        keys = {name.removesuffix(_SWAP) for name in names}
        return sorted(key for key in keys if _KEY.fullmatch(key))

    def free_bytes(self) -> int:
        """Bytes an unprivileged user may still write on the borrowed folder's disk."""
        with ExitStack() as stack:
            root_fd = self._root_fd(stack, create=True)
            assert root_fd is not None
            try:
                st = os.statvfs(root_fd)
            except OSError as exc:
                raise _os_error(exc, f"measure the free space of {self.root}") from exc
        return st.f_bavail * st.f_frsize

    # -- placed files --------------------------------------------------------------------

    def place(
        self,
        key: str,
        parts: Sequence[str],
        expected_hash: bytes,
        *,
        replacing: FileId | None,
        hashed: bytes | None = None,
    ) -> FileId:
        """Put the verified staging file of pull `key` at `parts` (lender, library, path names).

        The whole file must hash to `expected_hash` (else PlacementError, and the staging
        file is kept for the caller to decide): `hashed` is its hash as the caller built it
        while writing the file (fs/whole_hash.py); without it, the file is read and hashed
        again here. An existing destination is
        replaced only if it is `replacing`; anything else there raises UserFileInTheWayError
        and nothing is touched. The staging name stays linked to the placed copy until the
        caller, having recorded the returned FileId, calls `discard(key)`."""
        key = _check_key(key)
        names = self._check_parts(parts)
        shown = self._shown(names)
        with ExitStack() as stack:
            root_fd = self._root_fd(stack, create=True)
            assert root_fd is not None
            staging_fd = self._staging_fd(stack, root_fd)
            # A second link left by a replacement that died before its rename.
            _unlink_if_present(staging_fd, key + _SWAP, self._shown([STAGING, key + _SWAP]))
            fd = self._open_staged(stack, staging_fd, key)
            content = hashed
            if content is None:
                try:
                    content, _packed, _size = hash_fd(fd)
                except OSError as exc:
                    raise _os_error(exc, f"read the staging file of {shown}") from exc
            if content != expected_hash:
                raise PlacementError(
                    f"the file fetched for {shown} does not have the content hash it should "
                    f"(pull {key}); it was not placed"
                )
            _step("verified")
            try:
                os.fsync(fd)
            except OSError as exc:
                raise _os_error(exc, f"flush the file fetched for {shown} to disk") from exc
            _step("synced")
            created: list[tuple[int, str]] = []
            try:
                dir_fd = self._make_folders(stack, root_fd, names[:-1], created)
                _step("folders")
                return self._commit(fd, staging_fd, key, dir_fd, names[-1], replacing, shown)
            except BaseException:
                # Folders made for a file that did not arrive; rmdir leaves non-empty ones.
                for parent, name in reversed(created):
                    with contextlib.suppress(OSError):
                        os.rmdir(name, dir_fd=parent)
                raise

    def remove(self, parts: Sequence[str], file_id: FileId) -> bool:
        """Delete the copy at `parts` if it is still `file_id`, then the folders it leaves
        empty, up to but not including the root. False when the copy is gone or something
        else is there (a file the user put there is left alone)."""
        names = self._check_parts(parts)
        with ExitStack() as stack:
            dirs = self._find_folders(stack, names[:-1])
            if dirs is None:
                return False
            parent = dirs[-1]
            there = self._lstat(parent, names[-1], self._shown(names))
            if there is not None and not file_id.matches(there):
                return False
            removed = False
            if there is not None:
                try:
                    os.unlink(names[-1], dir_fd=parent)
                    removed = True
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise _os_error(exc, f"delete {self._shown(names)}") from exc
                if removed:
                    _sync_dir(parent, self._shown(names[:-1]))
            # dirs[j] holds names[j]: remove folders bottom up until one is not empty.
            for j in reversed(range(len(names) - 1)):
                try:
                    os.rmdir(names[j], dir_fd=dirs[j])
                except OSError:
                    break
            return removed

    def holds(self, parts: Sequence[str], file_id: FileId) -> bool:
        """Whether the copy `file_id` is still at `parts`, unchanged."""
        names = self._check_parts(parts)
        with ExitStack() as stack:
            dirs = self._find_folders(stack, names[:-1])
            if dirs is None:
                return False
            there = self._lstat(dirs[-1], names[-1], self._shown(names))
            return there is not None and file_id.matches(there)

    def file_at(self, parts: Sequence[str]) -> FileId | None:
        """The regular file at `parts` as it is now; None for nothing or anything else."""
        names = self._check_parts(parts)
        with ExitStack() as stack:
            dirs = self._find_folders(stack, names[:-1])
            if dirs is None:
                return None
            there = self._lstat(dirs[-1], names[-1], self._shown(names))
        if there is None or not stat.S_ISREG(there.st_mode):
            return None
        return FileId.of(there)

    def open_copy(self, parts: Sequence[str], file_id: FileId) -> int:
        """A read-only descriptor of the copy `file_id` at `parts`, for serving it to a peer;
        the caller closes it. NotFoundError if the copy is gone or is no longer that copy
        (checked on the opened descriptor, so what is read is what was checked)."""
        names = self._check_parts(parts)
        shown = self._shown(names)
        with ExitStack() as stack:
            dirs = self._find_folders(stack, names[:-1])
            if dirs is None:
                raise NotFoundError(f"the borrowed copy {shown} is gone")
            try:
                fd = os.open(names[-1], _READ_FLAGS, dir_fd=dirs[-1])
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ELOOP):
                    raise NotFoundError(f"the borrowed copy {shown} is gone") from exc
                raise _os_error(exc, f"open {shown}") from exc
        try:
            unchanged = file_id.matches(os.fstat(fd))
        except BaseException:
            os.close(fd)
            raise
        if not unchanged:
            os.close(fd)
            raise NotFoundError(f"the borrowed copy {shown} was changed or replaced")
        return fd

    # -- helpers -------------------------------------------------------------------------

    def _shown(self, names: Sequence[str]) -> str:
        """A path for messages only; the file system is never given a joined path."""
        return "/".join([str(self.root), *map(_printable, names)])

    def _check_parts(self, parts: Sequence[str]) -> list[str]:
        names = list(parts)
        if len(names) < 3:
            raise InvalidPathError(
                "a borrowed file's path needs a lender, a library and a file name; got "
                f"{'/'.join(map(_printable, names)) or 'nothing'}"
            )
        for name in names:
            try:
                self._check_name(name)
            except InvalidPathError as exc:
                raise InvalidPathError(f"cannot place a borrowed file there: {exc}") from exc
        if names[0] == STAGING:
            raise InvalidPathError(f"{STAGING!r} is mesh's staging folder, not a lender")
        return names

    def _root_fd(self, stack: ExitStack, *, create: bool) -> int | None:
        path = os.fspath(self.root)
        for _ in range(2):
            try:
                fd = os.open(path, _DIR_FLAGS)
            except FileNotFoundError:
                if not create:
                    return None
                try:
                    os.makedirs(path, mode=0o755, exist_ok=True)
                except FileExistsError:
                    pass  # a dangling link, say: the next open says what it is
                except OSError as exc:
                    raise _os_error(exc, f"create the borrowed folder {path}") from exc
                continue
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise PlacementError(
                        f"the borrowed folder {path} is {_kind_at(None, path)}, not a folder; "
                        "set borrowed_folder to a real folder"
                    ) from exc
                raise _os_error(exc, f"open the borrowed folder {path}") from exc
            stack.callback(os.close, fd)
            return fd
        raise PlacementError(f"the borrowed folder {path} keeps disappearing")

    def _staging_fd(self, stack: ExitStack, root_fd: int) -> int:
        fd, _made = _open_or_make(root_fd, STAGING, 0o700, self._shown([STAGING]), PlacementError)
        stack.callback(os.close, fd)
        return fd

    def _open_staging_file(self, staging_fd: int, key: str, where: str) -> int:
        unlocked = False
        for _ in range(4):
            try:
                fd = os.open(key, _WRITE_FLAGS, 0o600, dir_fd=staging_fd)
            except PermissionError as exc:
                # Left read-only by a place() that died before its commit (step 4).
                if unlocked:
                    raise _os_error(exc, f"open {where}") from exc
                self._unlock(staging_fd, key, where)
                unlocked = True
                continue
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    # A link planted in mesh's own staging folder: drop the name, never follow.
                    _unlink_if_present(staging_fd, key, where)
                    continue
                raise _os_error(exc, f"open {where}") from exc
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                return fd
            os.close(fd)
            if stat.S_ISDIR(st.st_mode):
                raise PlacementError(f"{where} is a folder, not a staging file")
            # Another name shares this inode (a hard link, or a copy already placed from it):
            # writing would change that file too, so this name starts afresh.
            _unlink_if_present(staging_fd, key, where)
        raise PlacementError(f"{where} keeps changing while mesh opens it")

    def _unlock(self, staging_fd: int, key: str, where: str) -> None:
        try:
            fd = os.open(key, _READ_FLAGS, dir_fd=staging_fd)
        except OSError as exc:
            raise _os_error(exc, f"open {where}") from exc
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                os.fchmod(fd, 0o600)
                return
        finally:
            os.close(fd)
        _unlink_if_present(staging_fd, key, where)

    def _open_staged(self, stack: ExitStack, staging_fd: int, key: str) -> int:
        where = self._shown([STAGING, key])
        try:
            fd = os.open(key, _READ_FLAGS, dir_fd=staging_fd)
        except FileNotFoundError as exc:
            raise PlacementError(f"nothing is staged for pull {key} ({where} is missing)") from exc
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise PlacementError(f"{where} is a symbolic link, not a staging file") from exc
            raise _os_error(exc, f"open {where}") from exc
        stack.callback(os.close, fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PlacementError(f"{where} is not a regular file")
        return fd

    def _make_folders(
        self, stack: ExitStack, root_fd: int, folders: Sequence[str], created: list[tuple[int, str]]
    ) -> int:
        current = root_fd
        for depth, name in enumerate(folders):
            where = self._shown(folders[: depth + 1])
            fd, made = _open_or_make(current, name, 0o755, where, UserFileInTheWayError)
            stack.callback(os.close, fd)
            if made:
                created.append((current, name))
                # The file's name must not outlive a crash without the folders that hold it.
                _sync_dir(current, self._shown(folders[:depth]))
            current = fd
        return current

    def _find_folders(self, stack: ExitStack, folders: Sequence[str]) -> list[int] | None:
        """fds of the root and each of `folders` in turn; None if one is missing or a link."""
        root_fd = self._root_fd(stack, create=False)
        if root_fd is None:
            return None
        dirs = [root_fd]
        for depth, name in enumerate(folders):
            fd = _open_existing(dirs[-1], name, self._shown(folders[: depth + 1]))
            if fd is None:
                return None
            stack.callback(os.close, fd)
            dirs.append(fd)
        return dirs

    def _lstat(self, parent: int, name: str, where: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _os_error(exc, f"look at {where}") from exc

    def _commit(
        self,
        fd: int,
        staging_fd: int,
        key: str,
        dir_fd: int,
        name: str,
        replacing: FileId | None,
        shown: str,
    ) -> FileId:
        mine = os.fstat(fd)
        there = self._lstat(dir_fd, name, shown)
        if there is not None and _same_inode(there, mine):
            # Placed by an earlier call that died before its caller recorded the FileId.
            _chmod(fd, 0o444, shown)
            _sync_dir(dir_fd, shown)
            return FileId.of(os.fstat(fd))
        if there is not None and not (replacing is not None and replacing.matches(there)):
            raise UserFileInTheWayError(
                f"{shown} is already there ({_kind(there)}) and is not mesh's copy; "
                "mesh leaves it alone"
            )
        if mine.st_nlink != 1:
            raise PlacementError(
                f"the staging file of pull {key} has another name (a hard link); "
                "discard it and pull again"
            )
        staged = self._lstat(staging_fd, key, self._shown([STAGING, key]))
        if staged is None or not _same_inode(staged, mine):
            raise PlacementError(f"the staging file of pull {key} changed while it was placed")
        mode = stat.S_IMODE(mine.st_mode)
        _chmod(fd, 0o444, self._shown([STAGING, key]))
        try:
            if there is None:
                self._link_in(staging_fd, key, dir_fd, name, shown)
            else:
                self._swap_in(staging_fd, key, dir_fd, name, shown)
        except BaseException:
            # Not placed: a resumed pull must be able to write into the staging file again.
            with contextlib.suppress(OSError):
                os.fchmod(fd, mode)
            raise
        _step("committed")
        _sync_dir(dir_fd, shown)
        _step("placed")
        placed = self._lstat(dir_fd, name, shown)
        if placed is None or not _same_inode(placed, mine):
            raise PlacementError(f"{shown} changed while mesh was placing it")
        return FileId.of(os.fstat(fd))

    def _link_in(self, staging_fd: int, key: str, dir_fd: int, name: str, shown: str) -> None:
        try:
            os.link(key, name, src_dir_fd=staging_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            return
        except FileExistsError as exc:
            raise UserFileInTheWayError(
                f"{shown} appeared while mesh was placing it; mesh leaves it alone"
            ) from exc
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise _os_error(exc, f"place {shown}") from exc
        # No hard links on this file system: rename, which would overwrite a file the user
        # saved there since the check a moment ago, and leaves no recovery link behind.
        if self._lstat(dir_fd, name, shown) is not None:
            raise UserFileInTheWayError(
                f"{shown} appeared while mesh was placing it; mesh leaves it alone"
            )
        try:
            os.rename(key, name, src_dir_fd=staging_fd, dst_dir_fd=dir_fd)
        except OSError as exc:
            raise _os_error(exc, f"place {shown}") from exc

    def _swap_in(self, staging_fd: int, key: str, dir_fd: int, name: str, shown: str) -> None:
        # rename() replaces atomically, but moves the name it renames: rename a second link
        # so the staging name still finds the placed copy after a crash. The user could
        # swap their own file in for mesh's copy between the check and this rename; no
        # system call replaces only a given inode, and the window is microseconds.
        swap = key + _SWAP
        source = swap
        try:
            os.link(key, swap, src_dir_fd=staging_fd, dst_dir_fd=staging_fd, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise _os_error(exc, f"replace {shown}") from exc
            source = key
        _step("linked")
        try:
            os.rename(source, name, src_dir_fd=staging_fd, dst_dir_fd=dir_fd)
        except OSError as exc:
            if source == swap:
                with contextlib.suppress(OSError):
                    os.unlink(swap, dir_fd=staging_fd)
            raise _os_error(exc, f"replace {shown}") from exc


__all__ = [
    "STAGING",
    "BorrowedFolder",
    "FileId",
    "NoSpaceError",
    "PlacementError",
    "StagingFile",
    "UserFileInTheWayError",
]
