"""The open staging file of one pull, and its O_DIRECT writer.

A pull writes its chunks into a staging file `<root>/.mesh-staging/<key>` (opened by
fs/staging.py) on the same file system as the borrowed folder, so placing it is one atomic
link or rename (fs/placing.py).
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
from types import TracebackType

from mesh.core.chunks import CHUNK_SIZE, chunk_span
from mesh.fs.folder_walk import os_error


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

    def duplicate(self) -> int:
        """Another descriptor of the open file (the caller closes it), for reading chunks
        already written while the pull goes on; it stays valid once this one is closed."""
        return os.dup(self._fileno())

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
            raise os_error(exc, f"write chunk {index} to {self._where}") from exc

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
            raise os_error(exc, f"read chunk {index} of {self._where}") from exc
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
            raise os_error(exc, f"read chunk {index} of {self._where}") from exc
        return min(done, length)

    def sync(self) -> None:
        """Make the chunks written so far durable (before they are recorded as verified)."""
        try:
            os.fdatasync(self._fileno())
        except OSError as exc:
            raise os_error(exc, f"flush {self._where} to disk") from exc

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
