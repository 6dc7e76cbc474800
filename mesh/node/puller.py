"""One pull: a verified copy of a binding's content, resumable, from every allowed source.

Theory of operation. Check the borrower's policy (quota, free-space reserve) first; a
refusal is a status, and the agent tries again later. Then every allowed source that
answers is asked for the `Manifest`, checked against the binding (hash, size, chunk root),
and fetches runs of chunks at once as core/pull_plan.py deals them out: faster sources take
more, and the chunks of a source that fails, stalls or sends a bad chunk go to the others
(a source that sends bad chunks twice is dropped for the pull, named in the log and the
loan's status). Chunks go into one staging file, each verified against its hash in a
thread while the next arrives; the set of verified chunks is saved (after the staging file
is synced) up to four times a second, and a loan status says how far it got once per
progress interval, so a kill, a lost peer or a dead link costs at most a quarter second's
chunks. The node's
pulling rate limit applies to all sources together. When every chunk is verified, the whole
file is hashed again, fsynced and renamed into place (fs/borrowed.py), and the status says
held.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import xxhash

from mesh.core.chunks import CHUNK_SIZE, HASH_BYTES, chunk_count, chunk_span
from mesh.core.errors import (
    NothingStagedError,
    PeerUnavailableError,
    ProtocolError,
    RefusedError,
)
from mesh.core.folders import FileProgress
from mesh.core.ids import NodeId
from mesh.core.loans import NOT_ENOUGH_SPACE
from mesh.core.pull_plan import PullPlan, Run
from mesh.core.records import LoanState
from mesh.core.transfer import FetchRequest, Manifest, ManifestRequest
from mesh.fs.borrowed import FileId, NoSpaceError, PlacementError, StagingFile
from mesh.fs.lender_links import link_names
from mesh.fs.whole_hash import SavedHash, WholeHash
from mesh.node.lending import Lent, copy_parts
from mesh.node.local import now_ms
from mesh.node.pull_host import PullHost, reserve
from mesh.node.verified import Bitmap, check_manifest, staging_name, write_verified
from mesh.store.loans import Copy, Pull
from mesh.transport.peer_client import PeerChannel

log = logging.getLogger(__name__)
T = TypeVar("T")
_STRIKES = 2  # bad chunks after which a source is dropped for the rest of a pull
_WRITES_IN_FLIGHT = 2  # chunks received and still being verified and written, per run
_RUNS_AT_ONCE = 2  # runs asked of one source at a time: the next while the last one ends
_LOOKAHEAD = 4  # chunks left in a run when the next one is asked for
_CHECKPOINT_S = 0.1  # at most this often the verified set is saved
# A folder loan's files up to this size keep no checkpoint: a kill costs at most this much
# again, and a folder of many small files would otherwise spend its time in the store's
# commits (three per file) rather than on the wire.
_UNCHECKED_BYTES = 4 * CHUNK_SIZE


class Puller:
    def __init__(self, host: PullHost, lent: Lent) -> None:
        self._host = host
        self.lent = lent
        self.bytes_done = 0
        self._last_saved = 0.0
        self._last_reported = 0.0
        self._pull: Pull | None = None
        self._hashes: bytes | None = None
        self._problems: list[str] = []
        self._strikes: dict[NodeId, int] = {}
        self._served: dict[NodeId, int] = {}
        self._saving = asyncio.Lock()
        self._checkpoint: asyncio.Future[None] | None = None
        self._note = ""
        self._staging_name = staging_name(lent.key)
        self._checkpoints = not (lent.folder_key and lent.binding.content.size <= _UNCHECKED_BYTES)
        # Why the last run stopped short, for the agent to know what to wait for.
        self.needs_space = False
        # Set by _pull_from for the duration of a pull:
        self._plan: PullPlan[NodeId]
        self._verified: Bitmap
        self._changed: asyncio.Event
        self._staging: StagingFile
        self._writer: ThreadPoolExecutor
        self._whole: WholeHash
        self._hashed: bytes | None = None
        # For readers of the file while it arrives (the mount and streams, node/opened.py).
        self._arrived = asyncio.Event()
        self._readable: Bitmap | None = None
        self._open_staging: StagingFile | None = None
        self._afresh = False  # pulled again from nothing after its staging file went

    # -- readers ---------------------------------------------------------------------------

    def readable(self, first: int, end: int) -> bool:
        """Whether chunks [first, end) are verified and in the staging file."""
        found = self._readable
        return found is not None and all(i in found for i in range(first, end))

    def want(self, index: int) -> None:
        """A reader waits for chunk `index`: deal the chunks from there on first."""
        if self._readable is not None and index not in self._readable:
            self._plan.prefer(index)

    async def arrival(self) -> None:
        """Wait until more chunks are verified (or the pull stops)."""
        await self._arrived.wait()

    def _wake_readers(self) -> None:
        self._arrived.set()
        self._arrived = asyncio.Event()

    def reader_fd(self) -> int | None:
        """A descriptor of the staging file for a reader (the caller closes it): the same
        file stays readable after it is placed as the copy."""
        staging = self._open_staging
        return staging.duplicate() if staging is not None else None

    @property
    def staging(self) -> str:
        """The name of this pull's staging file (it may not exist yet)."""
        return self._staging_name

    async def _status(self, state: LoanState, *, reason: str = "") -> None:
        await self._host.store(self._write_status, state, reason)

    def _write_status(self, state: LoanState, reason: str = "") -> None:
        """The loan's status record with this pull's progress (on the store thread)."""
        if state is LoanState.FETCHING and not reason:
            reason = self._note  # a dropped source stays named while the pull goes on
        lent = self.lent
        if lent.folder_key:
            # A file of a folder loan: the folder has one status, summed over its files
            # by the agent's plan (node/folder_plan.py), not one record per file.
            files = self._host.lending.folder_files.setdefault(lent.folder_key, {})
            files[lent.binding.path] = FileProgress(
                path=lent.binding.path,
                size=lent.binding.content.size,
                state=state.name.lower(),
                bytes_done=self.bytes_done,
                reason=reason,
            )
            return
        self._host.lending.write_status(
            lent.lender,
            lent.binding,
            state,
            now_ms(),
            bytes_done=self.bytes_done,
            reason=reason,
        )

    async def run(self) -> bool:
        """Pull until held (True), or until it fails or is refused (False, status says why)."""
        why = await self._host.store(self._policy)
        if why:
            self.needs_space = why.startswith(NOT_ENOUGH_SPACE)
            log.info("refused the loan of %s: %s", self.lent.binding.path, why)
            await self._status(LoanState.REFUSED, reason=why)
            return False
        try:
            return await self._pull_and_place()
        finally:
            await self._host.store(self._host.lending.pulling.pop, self.lent.key, None)

    async def _pull_and_place(self) -> bool:
        content = self.lent.binding.content
        pull = await self._host.store(self._host.lending.book.pull, self.lent.key)
        if pull is not None and pull.hash != content.hash:
            # The lender changed the file: what was verified belongs to the old content.
            await asyncio.to_thread(self._host.borrowed.discard, pull.staging)
            pull = None
        self._pull = pull
        self._staging_name = pull.staging if pull is not None else staging_name(self.lent.key)
        self._hashes = pull.chunk_hashes if pull is not None else None
        verified = Bitmap(chunk_count(content.size), pull.verified if pull else b"")
        present = verified.present()
        self.bytes_done = sum(chunk_span(content.size, i)[1] for i in present)
        if present:
            log.info(
                "resuming the pull of %s: %d of %d chunks already verified%s",
                self.lent.binding.path,
                len(present),
                verified.count,
                f", hash saved over the first {pull.hashed}" if pull and pull.hash_state else "",
            )
        await self._status(LoanState.FETCHING)
        sources = await self._host.store(self._host.lending.holders, self.lent, now_ms())
        began, resumed_at = time.monotonic(), self.bytes_done
        try:
            hashes = await self._pull_from(sources, verified)
        except PlacementError as exc:
            # A write that failed part-way (a full disk, an I/O error). What is staged
            # would hold on to the space the user has to free, and count against the free
            # space the next try needs: that try starts afresh.
            self.needs_space = isinstance(exc, NoSpaceError)
            log.warning("pull of %s failed: %s", self.lent.binding.path, exc)
            await self._host.store(self._host.lending.book.drop_pull, self.lent.key)
            await asyncio.to_thread(self._host.borrowed.discard, self._staging_name)
            await self._status(LoanState.FAILED, reason=str(exc))
            return False
        if hashes is None:
            reason = "; ".join(self._problems) or "no source is online"
            await self._status(LoanState.FAILED, reason=f"no source could serve it: {reason}")
            return False
        self._log_speed(time.monotonic() - began, self.bytes_done - resumed_at)
        try:
            return await self._place(hashes)
        except NothingStagedError as exc:
            # What the checkpoint says was verified went with its staging file: every
            # later try would place nothing. Forget it and pull again, once, now.
            await self._host.store(self._host.lending.book.drop_pull, self.lent.key)
            if self._afresh:
                await self._status(LoanState.FAILED, reason=str(exc))
                return False
            log.warning("%s: pulling %s afresh", exc, self.lent.binding.path)
            self._afresh = True
            return await self._pull_and_place()

    def _policy(self) -> str:
        """Why this node may not take the loan now, or "" and its size is reserved."""
        old = self._host.lending.book.copy(self.lent.key)
        size = self.lent.binding.content.size
        return reserve(self._host, {self.lent.key: size}, replaced=old.size if old else 0)

    def _log_speed(self, seconds: float, nbytes: int) -> None:
        lending = self._host.lending
        parts = ", ".join(
            f"{lending.name_of(source)} {n / 1e6:.0f} MB"
            for source, n in sorted(self._served.items(), key=lambda kv: -kv[1])
            if n
        )
        log.log(
            logging.DEBUG if self.lent.folder_key else logging.INFO,
            "pulled %s: %.1f MB in %.2f s (%.1f MB/s) from %s",
            self.lent.binding.path,
            nbytes / 1e6,
            seconds,
            nbytes / 1e6 / max(seconds, 1e-6),
            parts or "nobody (it was all verified before)",
        )

    async def _pull_from(self, sources: list[NodeId], verified: Bitmap) -> bytes | None:
        """Fetch every missing chunk from the sources at once; the chunk list once all of
        them are verified, None if the sources failed before that."""
        content = self.lent.binding.content
        if self._hashes is not None and not verified.missing():
            # All verified before a restart: place what is staged. Reopening the staging
            # file here would start it afresh when a place() that died after its commit
            # left it linked to the copy, and place() itself recovers that case.
            return self._hashes
        staging = await asyncio.to_thread(
            self._host.borrowed.staging, self._staging_name, content.size
        )
        self._staging = staging
        saved = None
        if not staging.kept and verified.present():
            log.warning(
                "the staging file of %s is gone or cut short: pulling it afresh",
                self.lent.binding.path,
            )
            verified = Bitmap(verified.count)
            self.bytes_done = 0
        elif self._pull is not None and self._pull.hash_state:
            saved = SavedHash(self._pull.hashed, self._pull.hash_state)
        self._plan = PullPlan(verified.missing(), CHUNK_SIZE)
        self._verified = self._readable = verified
        self._open_staging = staging
        self._wake_readers()
        self._changed = asyncio.Event()
        self._whole = WholeHash(staging, verified.count, verified.present(), saved)
        # One writer per pull: writes to one file from several threads contend for its
        # inode lock in the kernel and cost more than they overlap; it also feeds the hash.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="mesh-pull")
        try:
            try:
                async with asyncio.TaskGroup() as group:
                    for source in sources:
                        group.create_task(
                            self._source_loop(source), name=f"pull from {source.short()}"
                        )
            except BaseExceptionGroup as failed:
                # One source's write failed (a full disk): that ends the pull, not the group.
                raise failed.exceptions[0] from None
            await self._settle_checkpoint()
            if self._plan.done and self._hashes is not None:
                if self._checkpoints:
                    await self._save()
                loop = asyncio.get_running_loop()
                self._hashed = await loop.run_in_executor(self._writer, self._whole.digest)
                return self._hashes
            return None
        finally:
            try:
                if self._checkpoint is not None:
                    await asyncio.gather(self._checkpoint, return_exceptions=True)
                # A write still running in the writer (its waiter was cancelled) must end
                # before the descriptor closes: a number reused by another open would take
                # its bytes.
                await asyncio.to_thread(self._writer.shutdown, wait=True, cancel_futures=True)
                await asyncio.to_thread(self._whole.close)
            finally:
                self._open_staging = None
                self._wake_readers()
                await asyncio.to_thread(staging.close)

    async def _source_loop(self, source: NodeId) -> None:
        """Fetch runs from one source until nothing is left it could help with. The next
        run is asked for while the last chunks of the current one arrive, so the link
        does not go idle while a request crosses it and the source looks the loan up."""
        name = self._host.lending.name_of(source)
        if self._plan.done:
            return  # all verified before: nothing to ask anyone
        running: set[asyncio.Task[None]] = set()
        nearly = asyncio.Event()  # set when the newest run is down to its last few chunks
        try:
            channel, hashes = await self._open(source)
            while not self._plan.done:
                changed = self._changed  # before looking at the plan: no change is missed
                if not running or (nearly.is_set() and len(running) < _RUNS_AT_ONCE):
                    run = self._plan.take(source, time.monotonic())
                    if run is not None:
                        nearly = asyncio.Event()
                        fetch = self._fetch_run(channel, run, hashes, nearly)
                        running.add(asyncio.create_task(fetch))
                        continue
                    if not running and not self._plan.active:
                        return
                waits: set[asyncio.Future[Any]] = {*running, asyncio.ensure_future(changed.wait())}
                if running and len(running) < _RUNS_AT_ONCE:
                    waits.add(asyncio.ensure_future(nearly.wait()))
                try:
                    # A timeout too: a quiet source's run may be taken.
                    done, _ = await asyncio.wait(waits, timeout=0.5, return_when="FIRST_COMPLETED")
                finally:
                    for waiter in waits - running:
                        waiter.cancel()
                for task in running & done:
                    running.discard(task)
                    try:
                        task.result()
                    except ProtocolError as exc:
                        if not await self._strike(source, name, exc):
                            return
        except (PeerUnavailableError, RefusedError, ProtocolError) as exc:
            self._problems.append(f"{name}: {exc}")
            log.info("pull of %s from %s: %s", self.lent.binding.path, name, exc)
            if isinstance(exc, PeerUnavailableError):
                await self._host.channels.drop(source)
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            self._notify()  # others may wait for chunks this source gave back

    async def _strike(self, source: NodeId, name: str, exc: ProtocolError) -> bool:
        """A bad chunk from `source`; whether it may go on serving this pull."""
        self._strikes[source] = self._strikes.get(source, 0) + 1
        if self._strikes[source] < _STRIKES:
            log.info("pull of %s from %s: %s", self.lent.binding.path, name, exc)
            return True
        why = f"dropped {name} as a source: it sent {_STRIKES} bad chunks"
        log.warning("pull of %s: %s (%s)", self.lent.binding.path, why, exc)
        self._problems.append(why)
        self._note = why
        await self._status(LoanState.FETCHING)
        return False

    def _notify(self) -> None:
        """Wake every source loop waiting for the plan to change."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _open(self, source: NodeId) -> tuple[PeerChannel, bytes]:
        """A channel to `source` and the chunk list it vouches for (checked)."""
        lent, content = self.lent, self.lent.binding.content
        channel = await self._host.channels.get(source)
        if channel is None:
            raise PeerUnavailableError("not reachable")
        timeout = self._host.settings.handshake_timeout_s * 2
        if 0 < content.size <= CHUNK_SIZE and xxhash.xxh3_128_digest(content.hash) == (
            content.chunk_root
        ):
            # One chunk: its hash is the file's, and the chunk root is the hash of that,
            # so the chunk list is known without asking (a round trip per small file).
            manifest = Manifest(
                hash=content.hash,
                size=content.size,
                chunk_size=CHUNK_SIZE,
                chunk_hashes=content.hash,
            )
        else:
            manifest = await channel.manifest(
                ManifestRequest(hash=content.hash, lender=lent.lender, binding=lent.envelope),
                timeout,
            )
        check_manifest(manifest, lent)
        if self._hashes is None:
            self._hashes = manifest.chunk_hashes
            if self._pull is None and self._checkpoints:
                self._pull = Pull(
                    binding_key=lent.key,
                    staging=self._staging_name,
                    hash=content.hash,
                    size=content.size,
                    chunk_hashes=manifest.chunk_hashes,
                    verified=bytes(self._verified.bits),
                )
                await self._host.store(self._host.lending.book.save_pull, self._pull)
        return channel, manifest.chunk_hashes

    async def _fetch_run(
        self, channel: PeerChannel, run: Run[NodeId], hashes: bytes, nearly: asyncio.Event
    ) -> None:
        """Fetch `run`, verifying and writing each chunk in a thread while the next one
        arrives; whatever is not verified when it ends goes back to the plan."""
        lent, plan, limit = self.lent, self._plan, self._host.limits.pull
        began, received = time.monotonic(), 0
        writing: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()
        request = FetchRequest(
            hash=lent.binding.content.hash,
            lender=lent.lender,
            first_chunk=run.first,
            count=run.end - run.first,
            binding=lent.envelope,
        )
        log.debug("asking %s for chunks %d-%d", run.source.short(), run.first, run.end - 1)
        try:
            async for chunk in channel.fetch(request):
                if not plan.received(run, chunk.index, time.monotonic()):
                    break  # another source took the rest of this run
                if run.left <= _LOOKAHEAD:
                    nearly.set()
                await limit.take(len(chunk.data))
                received += len(chunk.data)
                want = hashes[chunk.index * HASH_BYTES : (chunk.index + 1) * HASH_BYTES]
                writing.append(
                    (
                        chunk.index,
                        asyncio.get_running_loop().run_in_executor(
                            self._writer,
                            write_verified,
                            self._staging,
                            self._whole,
                            chunk.index,
                            chunk.data,
                            want,
                        ),
                    )
                )
                while len(writing) > _WRITES_IN_FLIGHT:
                    await self._written(run.source, *writing.popleft())
            while writing:
                await self._written(run.source, *writing.popleft())
            if run.next < run.end:
                raise PeerUnavailableError(f"the stream ended at chunk {run.next}")
        finally:
            for _, future in writing:
                future.cancel()
            await asyncio.gather(*(f for _, f in writing), return_exceptions=True)
            plan.finish(run, nbytes=received, seconds=time.monotonic() - began)
            nearly.set()
            self._notify()

    async def _written(self, source: NodeId, index: int, future: asyncio.Future[None]) -> None:
        await future
        self._verified.add(index)
        self._plan.verified(index)
        self._wake_readers()
        size = chunk_span(self.lent.binding.content.size, index)[1]
        self.bytes_done += size
        self._served[source] = self._served.get(source, 0) + size
        now = time.monotonic()
        interval = self._host.settings.progress_interval_s
        if not self._checkpoints or now - self._last_saved < min(interval, _CHECKPOINT_S):
            return
        if self._checkpoint is None or self._checkpoint.done():
            # In the background: the chunks keep coming while the disk catches up. The
            # verified set is saved often (a kill costs only what came since); the
            # progress, a replicated record, at the progress interval.
            report = now - self._last_reported >= interval
            if report:
                self._last_reported = now
            self._last_saved = now
            self._checkpoint = asyncio.ensure_future(self._save(report=report))

    async def _settle_checkpoint(self) -> None:
        """Wait for a checkpoint in flight (it uses the staging file); raise its error."""
        if self._checkpoint is not None:
            checkpoint, self._checkpoint = self._checkpoint, None
            await checkpoint

    async def _save(self, *, report: bool = False) -> None:
        """Record which chunks are verified, after the bytes of those reached the disk;
        with `report`, also the loan's progress."""
        async with self._saving:
            # Before the sync: only what it covers.
            bits, saved = bytes(self._verified.bits), self._whole.saved()
            await asyncio.to_thread(self._staging.sync)
            pull = self._pull = (
                dataclasses.replace(
                    self._pull,
                    verified=bits,
                    hashed=saved.hashed if saved else 0,
                    hash_state=saved.state if saved else b"",
                )
                if self._pull is not None
                else None
            )
            lending = self._host.lending

            def write() -> None:
                # One transaction (one fsync of the store) for both: the store thread is
                # what control calls wait for.
                with lending.local.db.transaction():
                    if pull is not None:
                        lending.book.save_pull(pull)
                    if report:
                        self._write_status(LoanState.FETCHING)

            await self._host.store(write)
            self._last_saved = time.monotonic()

    async def _place(self, hashes: bytes) -> bool:
        """Place and record the copy. A cancellation (the loan ended meanwhile) waits for
        both: placing runs in a thread that would go on regardless, and a copy placed but
        not recorded would be a file in the borrowed folder that nothing ever removes. Once
        recorded, the agent's next plan removes it."""
        placing = asyncio.ensure_future(self._place_and_record(hashes))
        try:
            return await asyncio.shield(placing)
        except asyncio.CancelledError:
            await asyncio.gather(placing, return_exceptions=True)
            raise

    async def _place_and_record(self, hashes: bytes) -> bool:
        lent, host = self.lent, self._host
        lender_name = host.lending.name_of(lent.lender)
        parts = copy_parts(lent.lender, lent.binding)
        old = await host.store(host.lending.book.copy, lent.key)
        replacing = None
        if old is not None:
            replacing = FileId(device=old.device, inode=old.inode, mtime_ns=old.mtime_ns)
            if old.parts != parts:
                # Same loan, other place (the lender was renamed): the old copy goes.
                await asyncio.to_thread(host.borrowed.remove, old.parts, replacing)
                replacing = None
        try:
            placed = await asyncio.to_thread(
                host.borrowed.place,
                self._staging_name,
                parts,
                lent.binding.content.hash,
                replacing=replacing,
                hashed=self._hashed,
            )
        except NothingStagedError:
            raise
        except PlacementError as exc:
            log.warning("cannot place %s: %s", "/".join(parts), exc)
            await self._status(LoanState.FAILED, reason=str(exc))
            return False
        copy = Copy(
            binding_key=lent.key,
            lender=lent.lender,
            lender_name=lender_name,
            library=lent.binding.library,
            path=lent.binding.path,
            hash=lent.binding.content.hash,
            size=lent.binding.content.size,
            chunk_hashes=hashes,
            device=placed.device,
            inode=placed.inode,
            mtime_ns=placed.mtime_ns,
        )
        await host.store(host.lending.book.placed, copy)
        await asyncio.to_thread(link_names, host.borrowed.root, {lent.lender: lender_name})
        # Recorded: the staging name may go (until now it kept the copy findable).
        await asyncio.to_thread(host.borrowed.discard, self._staging_name)
        self.bytes_done = lent.binding.content.size
        await self._status(LoanState.HELD)
        # A folder's files are many: the folder's line in the ledger says how far it got.
        log.log(
            logging.DEBUG if lent.folder_key else logging.INFO,
            "holding %s from %s",
            "/".join(parts[1:]),
            lender_name,
        )
        return True


__all__ = ["Puller"]
