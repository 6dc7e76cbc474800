"""Files of the mesh opened for reading: through the mount (node/mount.py) or a stream
(node/stream.py).

Theory of operation. Opening a member's file finds where its bytes can be read now: this
node's own library file, or a held copy of a loan of it, read at local speed. Otherwise it
borrows the file: a borrow request to its lender (unless a loan of it is open already),
answered under the lender's policy: granted (the agent starts the pull), denied (the
reason is the open's error), or left for its owner (the open fails after
`open_timeout_s`, saying so). Reads then wait for the chunks they cover: the pull is told
to deal the chunks from the first one wanted on first (node/puller.py), and bytes are read
from the staging file only once the puller verified them against the chunk list the
lender's signed binding vouches for, so no read returns an unverified byte. A read that
no source serves within `read_timeout_s` fails (EIO at the mount, an error at the stream).

Files borrowed this way are cached copies (store/kept.py): node/cache.py returns them
when the cache is full or they went unread for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mesh.core.chunks import CHUNK_SIZE
from mesh.core.errors import NotFoundError, PeerUnavailableError, RefusedError
from mesh.core.ids import NodeId
from mesh.core.loans import Want, borrower_wants
from mesh.core.mount_tree import Listed
from mesh.core.records import LoanState
from mesh.fs.borrowed import FileId
from mesh.node.lending import Lent
from mesh.node.local import now_ms
from mesh.store.kept import KeptCopies

if TYPE_CHECKING:
    from mesh.node.daemon import Daemon

log = logging.getLogger(__name__)
_LOCAL_READ_INLINE = 256 * 1024  # reads up to this size of a local file run on the loop


@dataclass(eq=False)
class Handle:
    """One open file. `fd` reads it locally (own file, held copy, or the staging file of
    its pull once the chunks read are verified); `lent` is the loan it is read through."""

    number: int
    listed: Listed
    fd: int | None = None
    lent: Lent | None = None
    kept: bool = False  # a copy this node keeps for the mount (cached or pinned)
    whole: bool = False  # `fd` holds every byte verified (no read needs to wait)


@dataclass(frozen=True, kw_only=True, slots=True)
class _Found:
    lent: Lent | None = None
    want: Want = Want.NONE
    denied: str = ""
    held: bool = False


class OpenedFiles:
    def __init__(self, daemon: Daemon) -> None:
        self._d = daemon
        self._handles: dict[int, Handle] = {}
        self._numbers = itertools.count(1)
        self.kept = KeptCopies(daemon.local.db)

    def open_keys(self) -> set[tuple[NodeId, str, str]]:
        """(lender, library, path) of every file open now (the cache keeps those)."""
        return {(h.listed.node_id, h.listed.library, h.listed.path) for h in self._handles.values()}

    def get(self, number: int) -> Handle:
        return self._handles[number]

    # -- opening ---------------------------------------------------------------------------

    async def open(self, listed: Listed) -> Handle:
        """Open a member's file for reading (see the module's docstring for the errors)."""
        handle = Handle(number=next(self._numbers), listed=listed)
        if listed.node_id == self._d.node_id:
            handle.fd = await self._open_own(listed)
        else:
            handle.lent, handle.kept = await self._borrowed(listed)
            handle.fd = await self._open_copy(handle.lent)
        handle.whole = handle.fd is not None
        self._handles[handle.number] = handle
        return handle

    async def close(self, number: int) -> None:
        handle = self._handles.pop(number, None)
        if handle is None:
            return
        if handle.fd is not None:
            os.close(handle.fd)
        if handle.kept:
            await self._touch(handle.listed)

    async def close_all(self) -> None:
        for number in list(self._handles):
            await self.close(number)

    async def _touch(self, listed: Listed) -> None:
        kept = self.kept

        def touch() -> None:
            if kept.get(listed.node_id, listed.library, listed.path) is not None:
                kept.keep(listed.node_id, listed.library, listed.path, now_ms(), pin=False)

        await self._d.store(touch)

    async def _open_own(self, listed: Listed) -> int:
        lending = self._d.lending
        found = await self._d.store(lending.own_file_path, listed.library, listed.path)
        if found is None:
            raise NotFoundError(f"{listed.library}/{listed.path} is no longer shared here")
        return await asyncio.to_thread(os.open, found[0], os.O_RDONLY | os.O_CLOEXEC)

    async def _open_copy(self, lent: Lent) -> int | None:
        """A descriptor of the held copy of `lent`'s content, if this node holds it."""
        book, borrowed = self._d.lending.book, self._d.borrowed
        copy = await self._d.store(book.copy, lent.key)
        if copy is None or copy.hash != lent.binding.content.hash:
            return None
        file_id = FileId(device=copy.device, inode=copy.inode, mtime_ns=copy.mtime_ns)
        with contextlib.suppress(NotFoundError):
            return await asyncio.to_thread(borrowed.open_copy, copy.parts, file_id)
        return None

    async def pin(self, listed: Listed, *, pin: bool) -> str:
        """`mesh pin`: keep the file (borrowing it if need be) until `mesh unpin`; that
        makes it a cached copy again. Says what it did."""
        if listed.node_id == self._d.node_id:
            raise RefusedError("that file is in this node's own library: it is always here")
        where = f"{listed.member}/{listed.library}/{listed.path}"
        if not pin:
            kept = self.kept
            done = await self._d.store(
                kept.unpin, listed.node_id, listed.library, listed.path, now_ms()
            )
            if not done:
                raise NotFoundError(f"{where} is not pinned")
            return f"unpinned {where}: it stays as a cached copy until space is needed"
        await self._borrowed(listed, pin=True)
        return f"pinned {where}: it is kept until `mesh unpin`"

    async def _borrowed(self, listed: Listed, *, pin: bool = False) -> tuple[Lent, bool]:
        """The open loan of `listed` to this node, asking its lender for one if there is
        none; whether this node keeps it for the mount (it asked for it, or pinned it)."""
        d, lending, kept = self._d, self._d.lending, self.kept
        who = listed.member
        deadline = time.monotonic() + d.settings.open_timeout_s
        asked_ms = 0
        ours = pin
        while True:
            version = d.changes.version
            found = await d.store(self._look, listed, asked_ms)
            if found.lent is not None and found.want is Want.ASK:
                # This node's owner asked for it by opening it: accepted.
                await d.store(
                    lending.write_status,
                    found.lent.lender,
                    found.lent.binding,
                    LoanState.FETCHING,
                    now_ms(),
                )
                continue
            if found.lent is not None and found.want is Want.COPY:
                if found.lent.binding.content.hash == listed.hash or found.held:
                    if ours:
                        await d.store(
                            kept.keep,
                            listed.node_id,
                            listed.library,
                            listed.path,
                            now_ms(),
                            pin=pin,
                        )
                    else:
                        ours = (
                            await d.store(kept.get, listed.node_id, listed.library, listed.path)
                            is not None
                        )
                    return found.lent, ours
            elif found.denied:
                raise RefusedError(f"{who} refused {listed.library}/{listed.path}: {found.denied}")
            elif not asked_ms:
                await d.cache.trim(need=listed.size)  # room for it first, if need be
                asked_ms = now_ms()
                ours = True
                rel = f"{listed.library}/{listed.path}"
                await d.store(lending.borrow, who, rel, 0, asked_ms)
                log.info("opened %s of %s: asked %s to lend it", rel, who, who)
            left = deadline - time.monotonic()
            if left <= 0:
                raise RefusedError(
                    f"{who} has not lent {listed.library}/{listed.path} within "
                    f"{d.settings.open_timeout_s:g} s: it may wait for its owner's "
                    f"`mesh approve`, or be offline"
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, 1.0)):
                    await d.changes.wait(version)

    def _look(self, listed: Listed, asked_ms: int) -> _Found:
        """On the store thread: the loan of `listed` to this node and what the borrower's
        side wants of it, or the denial of the request made at `asked_ms`."""
        lending, me, now = self._d.lending, self._d.node_id, now_ms()
        best: _Found | None = None
        for lent in lending.bindings():
            b = lent.binding
            if (lent.lender, b.borrower, b.library, b.path) != (
                listed.node_id,
                me,
                listed.library,
                listed.path,
            ):
                continue
            want = borrower_wants(b, lending.status_of(lent), now, ask_first=True)
            copy = lending.book.copy(lent.key)
            held = copy is not None and copy.hash == b.content.hash
            if want is not Want.NONE:
                best = _Found(lent=lent, want=want, held=held)
        if best is not None:
            return best
        if asked_ms:
            for request in lending.requests():
                r = request.request
                if (
                    request.borrower == me
                    and (r.lender, r.library, r.path)
                    == (listed.node_id, listed.library, listed.path)
                    and r.created_ms >= asked_ms
                    and request.answer.startswith("denied")
                ):
                    return _Found(denied=request.answer.removeprefix("denied: "))
        return _Found()

    # -- reading ---------------------------------------------------------------------------

    async def read(self, number: int, offset: int, size: int) -> bytes:
        handle = self._handles[number]
        total = handle.listed.size if handle.lent is None else handle.lent.binding.content.size
        size = min(size, total - offset)
        if size <= 0:
            return b""
        if not handle.whole:
            await self._wait_readable(handle, offset, size)
        assert handle.fd is not None
        if size <= _LOCAL_READ_INLINE and handle.whole:
            return os.pread(handle.fd, size, offset)  # the page cache: quicker than a thread
        return await asyncio.to_thread(os.pread, handle.fd, size, offset)

    async def _wait_readable(self, handle: Handle, offset: int, size: int) -> None:
        """Until the chunks of [offset, offset + size) are verified: then `handle.fd`
        reads the staging file, or the copy once it is placed (`handle.whole`)."""
        assert handle.lent is not None
        d, lent = self._d, handle.lent
        first, end = offset // CHUNK_SIZE, (offset + size - 1) // CHUNK_SIZE + 1
        timeout = d.settings.read_timeout_s
        deadline = time.monotonic() + timeout
        while True:
            waiting: Callable[[], Awaitable[object]]
            puller = d.agent.puller(lent.key)
            if puller is not None:
                if puller.readable(first, end):
                    if handle.fd is None:
                        handle.fd = puller.reader_fd()
                    if handle.fd is not None:
                        return
                missing = [i for i in range(first, end) if not puller.readable(i, i + 1)]
                puller.want(missing[0] if missing else first)
                waiting = puller.arrival
            else:
                fd = await self._open_copy(lent)
                if fd is not None:
                    if handle.fd is not None:
                        os.close(handle.fd)
                    handle.fd, handle.whole = fd, True
                    return
                waiting = functools.partial(d.changes.wait, d.changes.version)
            left = deadline - time.monotonic()
            if left <= 0:
                raise PeerUnavailableError(
                    f"no source sent {lent.binding.library}/{lent.binding.path} "
                    f"(bytes {offset}-{offset + size - 1}) within {timeout:g} s"
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, 0.5)):
                    await waiting()


__all__ = ["Handle", "OpenedFiles"]
