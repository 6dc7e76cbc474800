"""A batch of a folder loan's small files, pulled and placed together.

Theory of operation. A folder of many small files spent its time per file, not per byte:
a pull each, with its own calls, staging file, fsyncs and store commits. The agent gives
the files of a folder loan that fit in one chunk (and have no copy yet) to a batch instead:
one check of the borrower's policy for the batch, then the files spread over the sources
that hold them, one FetchFiles call per source (one Fetch per file from a source that
predates it); what a source does not serve, or everything it had not sent when it went
away, is asked of the others. Each file is checked against the lender's signed manifest
(a one-chunk file's chunk hash is its content hash) as it arrives, then written to its
staging file at once (fs/placing_batch.py starts its writeback, so the disk works while
the rest arrives); then all of them are fsynced, recorded as pulls, placed (each folder
fsynced once) and recorded as held in one store transaction, after they are durable.
A file that does not match its hash is refused and not placed; it and any file no source
served go back to the agent, which pulls them one by one (node/puller.py) with its usual
retries and status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import xxhash

from mesh.core.chunks import CHUNK_SIZE
from mesh.core.errors import PeerUnavailableError, RemoteError, UnsupportedError
from mesh.core.folders import FileProgress
from mesh.core.ids import NodeId
from mesh.core.loans import NOT_ENOUGH_SPACE
from mesh.core.transfer import FetchFilesRequest, FetchRequest
from mesh.fs.borrowed import FileId, PlacementError, Placing, Staged
from mesh.fs.lender_links import link_names
from mesh.node.lending import Lent, copy_parts
from mesh.node.local import now_ms
from mesh.node.pull_host import PullHost, reserve
from mesh.node.verified import staging_name
from mesh.store.loans import Copy, Pull
from mesh.transport.peer_client import PeerChannel

log = logging.getLogger(__name__)
_IN_FLIGHT = 16  # fetches of one batch in flight on its channel at once
BATCH_FILES = 256  # files in one batch at most
BATCH_BYTES = 64 * CHUNK_SIZE  # and bytes
_RESUMED = "staged before a restart: its own pull places it"
_NOT_SIGNED = "the bytes a source sent do not match the lender's signed manifest"
PACK_BYTES = 4 * CHUNK_SIZE  # bytes of files a source packs into one message


def stager() -> ThreadPoolExecutor:
    """The one thread that writes the staging files of a node's batches. Each new file
    holds the staging folder's lock while ext4 looks for a free inode; threads that made
    files there at once spun on that lock (a sixth of the borrower's system time on
    10,000 files, by perf). Its owner shuts it down."""
    return ThreadPoolExecutor(1, thread_name_prefix="mesh-stage")


def batchable(lent: Lent) -> bool:
    """Whether a folder loan's file can go in a batch: one chunk, its chunk list known
    from the manifest line alone (the chunk root is the hash of its one chunk hash)."""
    content = lent.binding.content
    return (
        bool(lent.folder_key)
        and 0 < content.size <= CHUNK_SIZE
        and xxhash.xxh3_128_digest(content.hash) == content.chunk_root
    )


class BatchPull:
    """Pulls a batch of files (see the module's docstring); `held` and `refused` say how
    each ended once `run` returns."""

    def __init__(
        self,
        host: PullHost,
        lents: list[Lent],
        stager: ThreadPoolExecutor,
        on_fetched: Callable[[], None] = lambda: None,
    ) -> None:
        """`stager`: the one thread that writes every batch's staging files (see
        `stager`)."""
        self._host = host
        self._stager = stager
        self.lents = lents
        # Its files have all come (or will not): placing them is left. The agent starts the
        # next batch then, so the network is not idle while batches fsync and place.
        self.fetching = True
        self._on_fetched = on_fetched
        self.bytes_done = 0
        self.needs_space = False
        self.held: set[bytes] = set()
        self.refused: dict[bytes, str] = {}  # key: why (bad bytes, no source, not placed)
        self._todo = lents  # those not staged by an earlier batch (their pulls place them)
        self._pending: set[bytes] = set()  # recorded as pulls, not yet placed: staging kept
        self._writes: set[asyncio.Future[Any]] = set()  # staging writes in their threads

    @property
    def keys(self) -> list[bytes]:
        return [lent.key for lent in self.lents]

    async def run(self) -> bool:
        """True when every file of the batch is held."""
        host = self._host
        why = await host.store(self._policy)
        if why:
            self.needs_space = why.startswith(NOT_ENOUGH_SPACE)
            for lent in self.lents:
                self.refused.setdefault(lent.key, why)
            return False
        if not self._todo:
            return False
        staged = host.borrowed.staged()
        try:
            sources = await host.store(host.lending.holders, self._todo[0], now_ms())
            try:
                fetched = await self._fetch(sources, staged)
            finally:
                # A write still running in its thread ends before its name is discarded.
                await asyncio.gather(*self._writes, return_exceptions=True)
            self._fetched()
            if fetched:
                # Placing and recording go together: a copy placed but not recorded would
                # be a file nothing removes (node/puller.py's _place says the same).
                placing = asyncio.ensure_future(self._place(fetched, staged))
                try:
                    await asyncio.shield(placing)
                except asyncio.CancelledError:
                    await asyncio.gather(placing, return_exceptions=True)
                    raise
        finally:
            self._fetched()
            staged.close()
            await host.store(self._release)
            # What is neither held nor left for a pull to place (a kill's leftovers, or
            # a link that failed part-way) goes.
            left = [
                staging_name(k)
                for k in self.keys
                if k not in self.held and k not in self._pending and self.refused.get(k) != _RESUMED
            ]
            await asyncio.to_thread(self._discard, left)
        for lent in self.lents:
            if lent.key not in self.held:
                self.refused.setdefault(lent.key, "no source served it")
        return not self.refused

    def _fetched(self) -> None:
        if self.fetching:
            self.fetching = False
            self._on_fetched()

    def _discard(self, names: list[str]) -> None:
        if names:
            self._host.borrowed.discard(*names)

    def _policy(self) -> str:
        """As Puller._policy, for the whole batch (on the store thread)."""
        lending = self._host.lending
        for lent in self.lents:
            if lending.book.pull(lent.key) is not None:
                # Staged by a batch that a kill stopped: its pull places it.
                self.refused[lent.key] = _RESUMED
        self._todo = [lent for lent in self.lents if lent.key not in self.refused]
        sizes = {lent.key: lent.binding.content.size for lent in self._todo}
        return reserve(self._host, sizes, ours=self.keys)

    def _release(self) -> None:
        for key in self.keys:
            self._host.lending.pulling.pop(key, None)

    async def _fetch(self, sources: list[NodeId], staged: Staged) -> list[Lent]:
        """The files fetched, verified and written to their staging files (not yet on
        disk for sure), spread over the sources; what one source does not serve (or a
        source that goes away) is asked of the others, until none is left to ask."""
        got: set[bytes] = set()
        tried: dict[NodeId, set[bytes]] = {source: set() for source in sources}
        while True:
            todo = [k for k in self._todo if k.key not in got and k.key not in self.refused]
            channels: dict[NodeId, PeerChannel] = {}
            for source in [s for s in sources if any(k.key not in tried[s] for k in todo)]:
                channel = await self._host.channels.get(source)
                if channel is not None:
                    channels[source] = channel
            shares: dict[NodeId, list[Lent]] = {source: [] for source in channels}
            for lent in todo:
                untried = [s for s in channels if lent.key not in tried[s]]
                if untried:
                    shares[min(untried, key=lambda s: len(shares[s]))].append(lent)
            for source, share in shares.items():
                tried[source] |= {lent.key for lent in share}
            if not any(shares.values()):
                break
            gone: list[NodeId] = []
            async with asyncio.TaskGroup() as group:
                for source, share in shares.items():
                    if share:
                        fetch = self._fetch_from(channels[source], share, staged, got)
                        group.create_task(self._or_gone(source, fetch, gone))
            for source in gone:
                await self._host.channels.drop(source)
                tried[source] = {lent.key for lent in self._todo}  # not asked again
        return [lent for lent in self._todo if lent.key in got]

    @staticmethod
    async def _or_gone(source: NodeId, fetch: Awaitable[None], gone: list[NodeId]) -> None:
        try:
            await fetch
        except PeerUnavailableError as exc:
            log.debug("batch: %s went away: %s", source.short(), exc)
            gone.append(source)

    async def _fetch_from(
        self, channel: PeerChannel, lents: list[Lent], staged: Staged, got: set[bytes]
    ) -> None:
        """Fetch `lents` from one source in one FetchFiles call (one Fetch each from a
        peer that predates it); each verified file is written as it arrives.
        PeerUnavailableError if the source goes away (what came is kept)."""
        # A batch is one folder loan's files: one lender.
        request = FetchFilesRequest(
            lender=lents[0].lender,
            hashes=tuple(lent.binding.content.hash for lent in lents),
            pack=PACK_BYTES,
        )

        async def write(lent: Lent, data: bytes) -> None:
            if await self._write(staged, lent, data):
                got.add(lent.key)

        async def write_pack(files: list[tuple[int, bytes | memoryview]]) -> None:
            pack = [(lents[index], data) for index, data in files]
            for lent, why in await self._write_pack(staged, pack):
                if self._placeable(lent, why):
                    got.add(lent.key)

        writes: list[asyncio.Task[None]] = []
        try:
            try:
                async for files in channel.fetch_files(request):
                    await self._host.limits.pull.take(sum(len(data) for _, data in files))
                    writes.append(asyncio.create_task(write_pack(files)))
                return
            except UnsupportedError:
                pass  # an older source: one Fetch for each file
            except PeerUnavailableError:
                raise
            except RemoteError as exc:
                log.debug("batch: %d files not served: %s", len(lents), exc)
                return
            gate = asyncio.Semaphore(_IN_FLIGHT)

            async def one(lent: Lent) -> None:
                async with gate:
                    data = await self._fetch_one(channel, lent)
                if data is not None:
                    await write(lent, data)

            try:
                async with asyncio.TaskGroup() as group:
                    for lent in lents:
                        group.create_task(one(lent))
            except* PeerUnavailableError as exc:
                raise PeerUnavailableError(str(exc.exceptions[0])) from exc
        finally:
            # Files that came are written (and counted) even when the source went away.
            await asyncio.gather(*writes)

    async def _verified(self, lent: Lent, data: bytes) -> bool:
        """Whether a file's bytes are the ones the lender signed for (after the bandwidth
        limit let them in); bytes that are not are refused, before anything is written."""
        await self._host.limits.pull.take(len(data))
        content = lent.binding.content
        if len(data) != content.size or xxhash.xxh3_128_digest(data) != content.hash:
            log.warning("refused %s: %s", lent.binding.path, _NOT_SIGNED)
            self.refused[lent.key] = _NOT_SIGNED
            return False
        return True

    async def _write_pack(
        self, staged: Staged, pack: list[tuple[Lent, bytes | memoryview]]
    ) -> list[tuple[Lent, PlacementError | None]]:
        """Verify and write the files of one message in one thread (one hand-off for the
        lot); per file, None when it is written, or why it is not."""

        def work() -> list[tuple[Lent, PlacementError | None]]:
            out: list[tuple[Lent, PlacementError | None]] = []
            for lent, data in pack:
                content = lent.binding.content
                if len(data) != content.size or xxhash.xxh3_128_digest(data) != content.hash:
                    out.append((lent, PlacementError(_NOT_SIGNED)))
                    continue
                out.append((lent, staged.write(self._placing(lent, data), checked=True)))
            return out

        write = asyncio.get_running_loop().run_in_executor(self._stager, work)
        self._writes.add(write)
        try:
            return await asyncio.shield(write)
        finally:
            if write.done():
                self._writes.discard(write)

    async def _write(self, staged: Staged, lent: Lent, data: bytes) -> bool:
        """Write a verified file to its staging file at once, in a thread, so the disk
        works while the others arrive; False if it cannot be."""
        write = asyncio.ensure_future(asyncio.to_thread(staged.write, self._placing(lent, data)))
        self._writes.add(write)
        try:
            why = await asyncio.shield(write)
        finally:
            if write.done():
                self._writes.discard(write)
        return self._placeable(lent, why)

    @staticmethod
    def _placing(lent: Lent, data: bytes | memoryview) -> Placing:
        return Placing(
            key=staging_name(lent.key),
            parts=tuple(copy_parts(lent.lender, lent.binding)),
            data=data,
            hash=lent.binding.content.hash,
        )

    async def _fetch_one(self, channel: PeerChannel, lent: Lent) -> bytes | None:
        content = lent.binding.content
        request = FetchRequest(
            hash=content.hash, lender=lent.lender, first_chunk=0, count=1, binding=lent.envelope
        )
        data = b""
        try:
            async for chunk in channel.fetch(request):
                data = chunk.data
        except PeerUnavailableError:
            raise
        except RemoteError as exc:
            log.debug("batch: %s not served: %s", lent.binding.path, exc)
            return None
        return data if await self._verified(lent, data) else None

    def _placeable(self, lent: Lent, why: PlacementError | None) -> bool:
        if why is None:
            return True
        log.warning("cannot place %s: %s", lent.binding.path, why)
        self.refused[lent.key] = str(why)
        return False

    async def _place(self, fetched: list[Lent], on_disk: Staged) -> None:
        host = self._host
        lending = host.lending
        failed = await asyncio.to_thread(on_disk.sync)
        staged = [
            (lent, self._placing(lent, b""))  # linking needs no bytes: they are staged
            for lent in fetched
            if self._placeable(lent, failed.get(staging_name(lent.key)))
        ]
        if not staged:
            return

        def save_pulls() -> None:
            # Staged and fsynced, all verified: recorded before any is linked in, so a
            # kill from here on leaves pulls that the next start places (node/puller.py
            # finds a file already linked in as its own), not files that look like the
            # user's. One transaction for the batch.
            with lending.local.db.transaction():
                for lent, item in staged:
                    c = lent.binding.content
                    lending.book.save_pull(
                        Pull(
                            binding_key=lent.key,
                            staging=item.key,
                            hash=c.hash,
                            size=c.size,
                            chunk_hashes=c.hash,
                            verified=b"\x01",
                        )
                    )

        await host.store(save_pulls)
        self._pending = {lent.key for lent, _ in staged}
        results = await asyncio.to_thread(host.borrowed.link_batch, [i for _, i in staged])
        placed: list[tuple[Lent, FileId]] = []
        for (lent, _), result in zip(staged, results, strict=True):
            if isinstance(result, PlacementError):
                self._placeable(lent, result)
                await host.store(lending.book.drop_pull, lent.key)
                self._pending.discard(lent.key)
            else:
                placed.append((lent, result))
        if not placed:
            return
        lenders = {
            lender: lending.name_of(lender) for lender in {lent.lender for lent, _ in placed}
        }

        def record() -> None:
            # One transaction for the batch: one commit (one fsync of the store).
            with lending.local.db.transaction():
                for lent, file_id in placed:
                    content = lent.binding.content
                    lending.book.placed(
                        Copy(
                            binding_key=lent.key,
                            lender=lent.lender,
                            lender_name=lenders[lent.lender],
                            library=lent.binding.library,
                            path=lent.binding.path,
                            hash=content.hash,
                            size=content.size,
                            chunk_hashes=content.hash,
                            device=file_id.device,
                            inode=file_id.inode,
                            mtime_ns=file_id.mtime_ns,
                        )
                    )
                    files = lending.folder_files.setdefault(lent.folder_key, {})
                    files[lent.binding.path] = FileProgress(
                        path=lent.binding.path,
                        size=content.size,
                        state="held",
                        bytes_done=content.size,
                    )

        await host.store(record)
        self.held |= {lent.key for lent, _ in placed}
        self.bytes_done = sum(lent.binding.content.size for lent, _ in placed)
        await asyncio.to_thread(link_names, host.borrowed.root, lenders)
        # Recorded: the staging names may go (until now they kept the copies findable).
        await asyncio.to_thread(self._discard, [staging_name(lent.key) for lent, _ in placed])


__all__ = ["BATCH_BYTES", "BATCH_FILES", "BatchPull", "batchable", "stager"]
