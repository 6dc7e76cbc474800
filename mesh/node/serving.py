"""Serving lent content to members: who may have it (DESIGN.md, Lending), and the bytes.

A request names the content, its lender, and may carry the signed binding. This node
serves only if an active binding lends that content from that lender to the caller, and
only if it is the lender (reading its own index's path for the binding's file) or holds
the content as its own borrowed copy under a binding from the same lender. FetchFiles
asks for many one-chunk files of folder loans at once: the caller's folder loans from
that lender are looked up once, then each file is checked against their signed manifests
and served, or answered empty, as Fetch would serve or refuse it. The file is
opened without following symlinks and checked against what the index recorded (size,
mtime, inode): a file changed since its scan is rescanned, never served.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from mesh.core.chunks import CHUNK_SIZE, chunk_count, chunk_span
from mesh.core.errors import LocalError, NotFoundError, ProtocolError, RefusedError
from mesh.core.ids import NodeId
from mesh.core.transfer import Chunk, FetchFilesRequest, FetchRequest, Manifest, ManifestRequest
from mesh.fs.borrowed import BorrowedFolder, FileId
from mesh.fs.hashing import open_for_reading
from mesh.node.lending import Lending
from mesh.node.lent import Lent
from mesh.node.local import now_ms
from mesh.node.ratelimit import Limits

log = logging.getLogger(__name__)
T = TypeVar("T")
_FILES_AHEAD = 4  # files of a FetchFiles call read at once, ahead of the one being sent
_PACKS_AHEAD = 2  # or packs of files, when the caller asks for packs


class ServingHost(Protocol):
    node_id: NodeId
    limits: Limits

    @property
    def lending(self) -> Lending: ...

    @property
    def borrowed(self) -> BorrowedFolder: ...

    async def store(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...

    def rescan_soon(self, library: str) -> None: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class _Source:
    """Where the content is on this node, and what it must still look like."""

    size: int
    chunk_hashes: bytes
    path: str = ""  # this node's own file
    mtime_ns: int = 0
    inode: int = 0
    library: str = ""
    parts: tuple[str, ...] = ()  # or a borrowed copy
    file_id: FileId | None = None


class Serving:
    def __init__(self, host: ServingHost) -> None:
        self._host = host
        self.files_served = 0  # by FetchFiles (for tests and the log)

    async def _source(self, peer: NodeId, content: bytes, lender: NodeId, offered: Any) -> _Source:
        host = self._host

        def work() -> _Source:
            lending = host.lending
            lent = lending.lending_to(peer, lender, content, now_ms(), offered)
            if lent is None:
                raise RefusedError("no active loan lends that content to you")
            return self._source_of(lent, peer, lender, content)

        source = await host.store(work)
        return source

    def _source_of(self, lent: Lent, peer: NodeId, lender: NodeId, content: bytes) -> _Source:
        """Where this node holds the content `lent` lends to `peer` (on the store thread)."""
        lending = self._host.lending
        b = lent.binding
        if lender == self._host.node_id:
            return _own_source(lending, b.library, b.path, content)
        for copy in lending.book.copies_of(content):
            if copy.lender == lender:
                return _Source(
                    size=copy.size,
                    chunk_hashes=copy.chunk_hashes,
                    parts=tuple(copy.parts),
                    file_id=FileId(device=copy.device, inode=copy.inode, mtime_ns=copy.mtime_ns),
                )
        opened = lending.open_holding(content, peer)
        if opened is not None:
            with contextlib.suppress(NotFoundError):  # changed since: refused below
                return _own_source(lending, opened[1].library, opened[1].path, content)
        raise RefusedError("this node holds no copy of that content it may serve you")

    async def fetch_files(
        self, peer: NodeId, request: FetchFilesRequest
    ) -> AsyncIterator[list[bytes]]:
        """Each file asked, in order: its bytes, or b"" where it is not served (see the
        module's docstring), in groups of at most `request.pack` bytes (one file each
        when it is 0), each group read in one thread while earlier ones are on their way."""
        host = self._host

        def work() -> list[_Source | None]:
            lent_for = host.lending.folder_lending_to(peer, request.lender, now_ms())
            out: list[_Source | None] = []
            for content in request.hashes:
                lent = lent_for(content)
                source = None
                if lent is not None:
                    with contextlib.suppress(RefusedError, NotFoundError):
                        source = self._source_of(lent, peer, request.lender, content)
                out.append(source if source is not None and source.size <= CHUNK_SIZE else None)
            return out

        pack, limit = request.pack, host.limits.serve.bytes_per_s
        if pack and limit > 0:
            # Under a bandwidth limit a pack is a tenth of a second's worth at most, so
            # files still arrive (and count) one after another, not a pack at a time.
            pack = max(1, min(pack, limit // 10))
        groups = _grouped(await host.store(work), pack)
        reads: collections.deque[asyncio.Future[list[bytes]]] = collections.deque()
        asked = 0

        def read_next() -> None:
            nonlocal asked
            if asked < len(groups):
                read = asyncio.to_thread(self._read_files, groups[asked])
                reads.append(asyncio.ensure_future(read))
                asked += 1

        try:
            for _ in range(_FILES_AHEAD if request.pack == 0 else _PACKS_AHEAD):
                read_next()
            while reads:
                files = await reads[0]
                reads.popleft()
                read_next()
                await host.limits.serve.take(sum(len(data) for data in files))
                self.files_served += sum(1 for data in files if data)
                yield files
        finally:
            # Reads still running in their threads end before their descriptors close.
            await asyncio.gather(*reads, return_exceptions=True)

    def _read_files(self, sources: list[_Source | None]) -> list[bytes]:
        return [self._read_file(source) for source in sources]

    def _read_file(self, source: _Source | None) -> bytes:
        """A whole one-chunk file's bytes, or b"" where it cannot be served as indexed."""
        if source is None:
            return b""
        try:
            fd = self._open(source)
        except (LocalError, OSError) as exc:
            log.debug("not serving a file of a folder loan: %s", exc)
            return b""
        try:
            return _read(fd, source.size, 0)
        except (NotFoundError, OSError):
            return b""
        finally:
            os.close(fd)

    async def manifest(self, peer: NodeId, request: ManifestRequest) -> Manifest:
        source = await self._source(peer, request.hash, request.lender, request.binding)
        return Manifest(
            hash=request.hash,
            size=source.size,
            chunk_size=CHUNK_SIZE,
            chunk_hashes=source.chunk_hashes,
        )

    async def fetch(self, peer: NodeId, request: FetchRequest) -> AsyncIterator[Chunk]:
        source = await self._source(peer, request.hash, request.lender, request.binding)
        total = chunk_count(source.size)
        first, count = request.first_chunk, request.count
        if count == 0 or first >= total:
            raise ProtocolError(f"chunks {first}+{count} are outside a file of {total} chunks")
        last = min(total, first + count)
        fd = await asyncio.to_thread(self._open, source)
        try:
            # Read one chunk ahead in a thread while the previous one is on its way.
            ahead: asyncio.Future[bytes] = asyncio.ensure_future(
                asyncio.to_thread(_read, fd, source.size, first)
            )
            for index in range(first, last):
                data = await ahead
                if index + 1 < last:
                    ahead = asyncio.ensure_future(
                        asyncio.to_thread(_read, fd, source.size, index + 1)
                    )
                await self._host.limits.serve.take(len(data))
                yield Chunk(index=index, data=data)
        finally:
            # Let a read still running in its thread finish (cancelling only stops waiting
            # for it) before the descriptor closes and its number can be reused.
            await asyncio.gather(ahead, return_exceptions=True)
            os.close(fd)

    def _open(self, source: _Source) -> int:
        if source.file_id is not None:
            return self._host.borrowed.open_copy(list(source.parts), source.file_id)
        try:
            fd = open_for_reading(source.path)
        except OSError as exc:
            self._host.rescan_soon(source.library)
            raise NotFoundError(f"cannot read the lent file: {exc.strerror}") from exc
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_size, st.st_mtime_ns, st.st_ino) != (
            source.size,
            source.mtime_ns,
            source.inode,
        ):
            os.close(fd)
            self._host.rescan_soon(source.library)
            raise NotFoundError("the lent file changed since it was indexed; rescanning it")
        return fd


def _own_source(lending: Lending, library: str, path: str, content: bytes) -> _Source:
    """This node's own file at (library, path), if it still holds `content` as indexed."""
    index = lending.local.index
    state = index.file_state(library, path)
    found = lending.own_file_path(library, path)
    if state is None or found is None or state[3] != content:
        raise NotFoundError("this node no longer holds that version of the file")
    size, mtime_ns, inode, _ = state
    hashes = index.chunk_hashes(content, size)
    if hashes is None:
        raise NotFoundError("this node has not kept that file's chunk list")
    return _Source(
        size=size,
        chunk_hashes=hashes,
        path=found[0],
        mtime_ns=mtime_ns,
        inode=inode,
        library=library,
    )


def _grouped(sources: list[_Source | None], pack: int) -> list[list[_Source | None]]:
    """Consecutive sources in groups of at most `pack` bytes, at least one in each (one
    in each when `pack` is 0)."""
    groups: list[list[_Source | None]] = []
    size = 0
    for source in sources:
        length = source.size if source is not None else 0
        if not groups or not pack or size + length > pack:
            groups.append([])
            size = 0
        groups[-1].append(source)
        size += length
    return groups


def _read(fd: int, size: int, index: int) -> bytes:
    offset, length = chunk_span(size, index)
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise NotFoundError("the lent file got shorter while it was read")
    return data


__all__ = ["Serving", "ServingHost"]
