"""The lending agent: a reconcile loop over the replicated state (DESIGN.md, Lending).

Theory of operation. Whenever the records change, and once a second for end times, it
asks the store for a plan (node/plan.py): which loans this node should hold a copy of,
which copies must go, which loans wait for its owner's answer. Pulls run as tasks, one per
loan, except a folder loan's one-chunk files, which run in batches (node/folder_batch.py);
a file a batch did not bring is pulled on its own from then on. A pull that stops being
wanted (its loan ended or was replaced, or it is held now)
is cancelled, waited for, and its staging file and checkpoint are deleted at once.

A refused or failed pull waits for what stopped it to clear, not for a timer: free space
(polled while a loan waits for it), a new version of its binding, a change in who could
serve it, or a member coming back online (it may be the source the pull was missing).
The retry timer stays as a safety net, doubling up to 8 times the retry interval while
the pull keeps failing. Every step is a loan status, so every node's ledger shows it.

The copies themselves are checked (node/keeping.py) at start, every check interval and
when the borrowed folder changes: a held copy that is gone or changed is pulled again, and
staging files that belong to no pull are deleted. On start it acts on whatever it missed
while it was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from typing import Protocol

from mesh.core.backoff import Backoff
from mesh.core.loans import Want, borrower_wants
from mesh.core.records import LoanState
from mesh.fs.borrowed import FileId
from mesh.node.changes import ChangeSignal
from mesh.node.folder_batch import BATCH_BYTES, BATCH_FILES, BatchPull, batchable, stager
from mesh.node.keeping import BorrowedWatch, lost_copies, sweep_staging
from mesh.node.lending import Lent
from mesh.node.lent import MEMBER_SEPARATOR
from mesh.node.local import now_ms
from mesh.node.plan import Plan, end_state, plan
from mesh.node.pull_host import PullHost
from mesh.node.puller import Puller
from mesh.node.verified import staging_name
from mesh.store.loans import Copy

log = logging.getLogger(__name__)
_TICK_S = 1.0  # end times are checked at least this often
_SPACE_POLL_S = 0.5  # free space is looked at this often while a loan waits for it
_WATCHED_CHECK_S = 0.2  # a change in the borrowed folder is looked at after this
# ... or after this many times the last check's length: mesh's own placements change the
# folder too, and checking 10,000 copies after every batch would cost more than the pull.
_CHECK_SHARE = 4
SOURCE_GONE = "the lender deleted the file; the loan waits for it to be back"
_HOLDERS_EVERY_S = 1.0  # a waiting pull looks for new holders at most this often
_BACKOFF_FACTOR = 8  # the retry interval grows up to this many times while pulls fail
_QUICK_PASS_S = 0.005  # a pass quicker than this runs again at once when something changes
_FOLDER_PULLS = 32  # files of one folder loan pulled at once
_FOLDER_BATCHES = 4  # batches of a folder loan's small files fetching at once
_FOLDER_BATCHES_PLACING = 4  # and more whose files have come, being fsynced and placed


class AgentHost(PullHost, Protocol):
    changes: ChangeSignal


@dataclasses.dataclass
class _Waiting:
    """A pull that stopped short, and what would let it go on."""

    at: float  # the safety net: tried again at this time (monotonic) at the latest
    backoff: Backoff
    content: bytes  # the binding's content hash it was for
    holders: tuple[bytes, ...] | None  # who could serve it then (None: not known yet)
    space: int  # bytes of free space it waits for; 0: it does not wait for space
    looked_at: float = 0.0  # when the holders were last compared (monotonic)


class Agent:
    def __init__(self, host: AgentHost) -> None:
        self._host = host
        self._pulls: dict[bytes, tuple[asyncio.Task[bool], Puller]] = {}
        # Batches of a folder loan's small files (node/folder_batch.py), under each file's key.
        self._batches: dict[bytes, tuple[asyncio.Task[bool], BatchPull]] = {}
        # Files a batch did not bring (bad bytes, no source), with the content it was for:
        # pulled one by one from then on, with a pull's retries and status.
        self._unbatched: dict[bytes, bytes] = {}
        self.batches_run = 0  # batches started (for tests and the log)
        self._stager = stager()  # writes the batches' staging files
        self._waiting: dict[bytes, _Waiting] = {}
        self._backoffs: dict[bytes, Backoff] = {}
        self._next_check = 0.0
        self._check_took = 0.0  # how long the last check of the copies took (seconds)
        self._watch: BorrowedWatch | None = None
        self._noting: set[asyncio.Task[None]] = set()
        # Which pass each pull that ended well ended in: a plan made before its copy was
        # recorded still lists it as missing, and must not start it again (a folder's
        # files end many to a second, so that would happen often).
        self._passes = 0
        self._held_in: dict[bytes, int] = {}
        # The last plan said the clock alone could change the next (see Plan.timed).
        self._timed = True

    def progress(self, key: bytes) -> int | None:
        """Bytes verified so far of the running pull of a loan, if one runs."""
        found = self._pulls.get(key)
        if found is None:
            batch = self._batches.get(key)
            return 0 if batch is not None else None
        return found[1].bytes_done

    def puller(self, key: bytes) -> Puller | None:
        """The running pull of a loan, if one runs (readers wait on its chunks)."""
        found = self._pulls.get(key)
        return found[1] if found is not None else None

    def peer_back(self) -> None:
        """A member is reachable again: a pull that found no source may find one now."""
        if self._waiting:
            for waiting in self._waiting.values():
                waiting.at = 0.0
            self._host.changes.bump()

    def watching(self) -> tuple[int, int] | None:
        """The (device, inode) of the borrowed folder the agent watches, if it does."""
        return self._watch.watching if self._watch is not None else None

    def _check_soon(self) -> None:
        """The borrowed folder changed: check the copies shortly (changes come in bursts)."""
        soon = time.monotonic() + max(_WATCHED_CHECK_S, _CHECK_SHARE * self._check_took)
        if self._next_check > soon:
            self._next_check = soon
            self._host.changes.bump()

    async def run(self) -> None:
        self._stager = stager()  # a fresh one for each run: the last run shut its down
        self._watch = BorrowedWatch(str(self._host.borrowed.root), self._check_soon)
        self._watch.start()
        try:
            while True:
                version = self._host.changes.version
                try:
                    if time.monotonic() >= self._next_check:
                        self._next_check = time.monotonic() + self._host.settings.check_interval_s
                        checked = time.monotonic()
                        await self._check()
                        self._check_took = time.monotonic() - checked
                    began = time.monotonic()
                    await self._pass()
                    took = time.monotonic() - began
                except Exception:  # a bug must not stop lending for good
                    log.exception("the lending agent's pass failed; trying again")
                    took = 0.0
                if (self._pulls or self._batches) and took > _QUICK_PASS_S:
                    # A pass over many loans or a big folder costs the store thread; the
                    # pulls ending meanwhile wait for the next one together, so passes
                    # take at most about half of it.
                    await asyncio.sleep(min(took, _TICK_S))
                # asyncio.timeout, not wait_for: in Python 3.11 wait_for can swallow a
                # cancellation that arrives as the wait ends, and this loop would never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._sleep()):
                        await self._host.changes.wait(version)
        finally:
            self._watch.stop()
            tasks = [t for t, _ in self._pulls.values()] + [t for t, _ in self._batches.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._stager.shutdown(wait=False)  # its writes ended with their batches

    def _sleep(self) -> float:
        now = time.monotonic()
        # A node that neither lends nor borrows plans again only when something changes
        # (or at the next check): a pass a second cost an idle daemon a store round trip
        # and a walk over every binding each time.
        ticking = self._timed or self._pulls or self._batches or self._waiting
        wake = [now + _TICK_S if ticking else math.inf, self._next_check]
        wake += [w.at for w in self._waiting.values()]
        if any(w.space for w in self._waiting.values()):
            wake.append(now + _SPACE_POLL_S)
        return max(0.0, min(wake) - now)

    async def _pass(self) -> None:
        s, lending = self._host.settings, self._host.lending
        self._passes += 1
        this_pass = self._passes
        self._held_in = {k: n for k, n in self._held_in.items() if n >= this_pass - 1}
        # (A pull that ended in the last pass is known to this pass's plan: it is dropped
        # one pass later.)
        todo: Plan = await self._host.store(
            plan,
            lending,
            now_ms(),
            borrow_ask_first=s.borrow_ask_first,
            lend_ask_first=s.lend_ask_first,
            quota=s.quota,
            reserve=s.reserve,
            free_bytes=self._host.borrowed.free_bytes,
            progress_ms=int(s.progress_interval_s * 1000),
        )
        self._timed = todo.timed
        wanted = {lent.key for lent in todo.fetch} | todo.pulling
        for key in [k for k in self._pulls if k not in wanted]:
            await self._stop(key)  # its loan ended, or it is held now
        for key in [k for k in self._batches if k not in wanted]:
            if key in self._batches[key][1].held:
                del self._batches[key]  # held now: the batch goes on with the rest
            else:
                await self._stop(key)  # its loan ended
        for key in [k for k in self._waiting if k not in wanted]:
            del self._waiting[key]
            self._backoffs.pop(key, None)
        stale = await self._host.store(lambda: [k for k in lending.book.pulls() if k not in wanted])
        for key in stale:  # pulls of loans that ended before they were held
            await self._forget(key)
        for copy, state, why in todo.remove:
            await self._remove(copy, state, why)
        for lent in todo.source_gone:
            await self._stop(lent.key)
            self._waiting.pop(lent.key, None)  # pulled at once when the file is back
            await self._host.store(self._say_source_gone, lent)
        for lent in todo.given_back:
            await self._stop(lent.key)
            status = await self._host.store(lending.status_of, lent)
            end, why = end_state(lent.binding, status, now_ms())
            await self._host.store(
                lending.write_status, lent.lender, lent.binding, end, now_ms(), reason=why
            )
        for lent in todo.ask:
            if not await self._host.store(self._ask, lent):
                continue
            log.info(
                "a loan of %s from %s waits for `mesh accept`",
                lent.binding.path,
                lending.name_of(lent.lender),
            )
        by_folder: dict[bytes, int] = {}
        for _, puller in self._pulls.values():
            if puller.lent.folder_key:
                by_folder[puller.lent.folder_key] = by_folder.get(puller.lent.folder_key, 0) + 1
        batching: dict[bytes, list[Lent]] = {}
        for lent in todo.fetch:
            if lent.key in self._batches:
                continue
            running = self._pulls.get(lent.key)
            if running is not None and running[1].lent.binding.content != lent.binding.content:
                # A newer version superseded what it pulls: its chunks are of no use.
                log.info("a new version of %s: pulling that instead", lent.binding.path)
                await self._stop(lent.key)
                self._waiting.pop(lent.key, None)
            elif running is not None:
                continue
            if running is None and self._held_in.get(lent.key) == this_pass:
                continue  # ended well after this pass's plan was made: it is held
            # A folder's files are pulled a few at a time: each pull's round trips
            # overlap the others', and the next starts as one ends.
            if lent.folder_key and by_folder.get(lent.folder_key, 0) >= _FOLDER_PULLS:
                continue
            unbatched = self._unbatched.get(lent.key) == lent.binding.content.hash
            if running is None and not unbatched and batchable(lent):
                batching.setdefault(lent.folder_key, []).append(lent)
                continue
            waiting = self._waiting.get(lent.key)
            if waiting is not None and not await self._cleared(lent, waiting):
                continue
            self._waiting.pop(lent.key, None)
            if lent.folder_key:
                by_folder[lent.folder_key] = by_folder.get(lent.folder_key, 0) + 1
            self._start(lent)
        for folder_key, lents in batching.items():
            self._start_batches(folder_key, lents)

    def _start_batches(self, folder_key: bytes, lents: list[Lent]) -> None:
        """Start batches of a folder loan's small files, up to _FOLDER_BATCHES fetching at
        once (and _FOLDER_BATCHES_PLACING more placing theirs)."""
        running = {b for _, b in self._batches.values() if b.lents[0].folder_key == folder_key}
        fetching = sum(1 for b in running if b.fetching)
        free = min(
            _FOLDER_BATCHES - fetching, _FOLDER_BATCHES + _FOLDER_BATCHES_PLACING - len(running)
        )
        batch: list[Lent] = []
        size = 0
        for lent in [*lents, None]:
            if free <= 0:
                return
            full = lent is None or (
                batch
                and (len(batch) >= BATCH_FILES or size + lent.binding.content.size > BATCH_BYTES)
            )
            if full and batch:
                self._start_batch(batch)
                free -= 1
                batch, size = [], 0
            if lent is not None:
                batch.append(lent)
                size += lent.binding.content.size

    def _start_batch(self, lents: list[Lent]) -> None:
        batch = BatchPull(self._host, lents, self._stager, on_fetched=self._host.changes.bump)
        self.batches_run += 1
        log.debug("pulling %d files of a folder loan in a batch", len(lents))
        task = asyncio.create_task(batch.run(), name=f"pull {len(lents)} files")
        for lent in lents:
            self._batches[lent.key] = (task, batch)
        task.add_done_callback(lambda t: self._batch_finished(batch, t))

    def _batch_finished(self, batch: BatchPull, task: asyncio.Task[bool]) -> None:
        for key in batch.keys:
            current = self._batches.get(key)
            if current is not None and current[0] is task:
                del self._batches[key]
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("a batch of files failed unexpectedly: %s", exc, exc_info=exc)
        for key in batch.held:
            self._held_in[key] = self._passes
        for lent in batch.lents:
            if lent.key not in batch.held:
                self._unbatched[lent.key] = lent.binding.content.hash
        self._host.changes.bump()

    def _ask(self, lent: Lent) -> bool:
        """Say the loan waits for acceptance, unless it was accepted since the plan was
        made (`mesh accept`, or the file opened through the mount): on the store thread."""
        lending = self._host.lending
        status = lending.status_of(lent)
        if borrower_wants(lent.binding, status, now_ms(), ask_first=True) is not Want.ASK:
            return False
        lending.write_status(
            lent.lender,
            lent.binding,
            LoanState.AWAITING_ACCEPTANCE,
            now_ms(),
            reason="waiting for this node's owner to accept",
        )
        return True

    def _say_source_gone(self, lent: Lent) -> None:
        """The loan's status says the lender deleted the file (once, on the store thread)."""
        lending = self._host.lending
        status = lending.status_of(lent)
        if (
            status is not None
            and status.state is LoanState.FAILED
            and status.reason == SOURCE_GONE
            and status.hash == lent.binding.content.hash
        ):
            return
        lending.write_status(
            lent.lender, lent.binding, LoanState.FAILED, now_ms(), reason=SOURCE_GONE
        )

    async def _cleared(self, lent: Lent, waiting: _Waiting) -> bool:
        """Whether what stopped a pull may have cleared (or its safety-net time came)."""
        if time.monotonic() >= waiting.at or lent.binding.content.hash != waiting.content:
            return True
        if waiting.space:
            free = await asyncio.to_thread(self._host.borrowed.free_bytes)
            if free >= waiting.space:
                log.info("free space for %s again: pulling it", lent.binding.path)
                return True
            return False
        now = time.monotonic()
        if waiting.holders is None or now < waiting.looked_at + _HOLDERS_EVERY_S:
            return False
        waiting.looked_at = now  # finding the holders reads every open library's entries
        return await self._holders(lent) != waiting.holders

    async def _holders(self, lent: Lent) -> tuple[bytes, ...]:
        lending = self._host.lending
        found = await self._host.store(lending.holders, lent, now_ms())
        return tuple(sorted(n.raw for n in found))

    def _start(self, lent: Lent) -> None:
        puller = Puller(self._host, lent)
        task = asyncio.create_task(puller.run(), name=f"pull {lent.binding.path}")
        self._pulls[lent.key] = (task, puller)
        task.add_done_callback(lambda t: self._finished(lent, puller, t))

    def _finished(self, lent: Lent, puller: Puller, task: asyncio.Task[bool]) -> None:
        key = lent.key
        current = self._pulls.get(key)
        if current is not None and current[0] is task:
            del self._pulls[key]
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("a pull failed unexpectedly: %s", exc, exc_info=exc)
        if exc is None and task.result():
            self._unbatched.pop(key, None)
            self._waiting.pop(key, None)
            self._backoffs.pop(key, None)
            self._held_in[key] = self._passes
        else:
            self._wait_for(lent, puller)
        self._host.changes.bump()  # replan now: a held copy or a wait changed

    def _wait_for(self, lent: Lent, puller: Puller) -> None:
        """Note what the failed or refused pull waits for (see the module's docstring)."""
        settings = self._host.settings
        backoff = self._backoffs.setdefault(
            lent.key,
            Backoff(
                settings.retry_interval_s,
                settings.retry_interval_s * _BACKOFF_FACTOR,
                rand=lambda: 1.0,  # one pull, one timer: no herd to spread out
            ),
        )
        waiting = self._waiting[lent.key] = _Waiting(
            at=time.monotonic() + backoff.next(),
            backoff=backoff,
            content=lent.binding.content.hash,
            holders=None,
            space=lent.binding.content.size + settings.reserve if puller.needs_space else 0,
        )

        async def note_holders() -> None:
            with contextlib.suppress(Exception):  # the store may be closing
                waiting.holders = await self._holders(lent)

        task = asyncio.get_running_loop().create_task(note_holders())
        self._noting.add(task)
        task.add_done_callback(self._noting.discard)

    async def _stop(self, key: bytes) -> None:
        """Cancel a pull that is no longer wanted, wait for it to let go of its staging
        file, and delete that file and its checkpoint."""
        found = self._pulls.pop(key, None)
        if found is not None:
            task, _ = found
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        batch = self._batches.pop(key, None)
        if batch is not None:
            # The batch's other files are planned again next pass.
            batch[0].cancel()
            await asyncio.gather(batch[0], return_exceptions=True)
        await self._forget(key)

    async def _forget(self, key: bytes) -> None:
        lending = self._host.lending
        pull = await self._host.store(lending.book.pull, key)
        await self._host.store(lending.book.drop_pull, key)
        names = {staging_name(key)} | ({pull.staging} if pull is not None else set())
        for name in names:
            await asyncio.to_thread(self._host.borrowed.discard, name)

    async def _check(self) -> None:
        """Held copies still as placed, and no staging file without its pull."""
        host, book = self._host, self._host.lending.book
        if self._watch is not None:
            self._watch.rearm()
        copies = await host.store(book.copies)
        for copy, there in await asyncio.to_thread(lost_copies, host.borrowed, copies):
            found = (there.device, there.inode, there.mtime_ns) if there else None
            await host.store(book.lost, copy, found)
            host.changes.bump()
            if not copy.hash:
                continue  # lost before, and changed again: said already
            log.warning(
                "the copy %s is %s: restoring it (`mesh return` gives a loan up)",
                "/".join(copy.parts),
                "gone" if there is None else "changed",
            )

        def live() -> set[str]:
            return {p.staging for p in (book.pull(k) for k in book.pulls()) if p is not None}

        names = await host.store(live)
        names |= {puller.staging for _, puller in self._pulls.values()}
        names |= {staging_name(key) for key in self._pulls}
        names |= {staging_name(key) for key in self._batches}
        for name in await asyncio.to_thread(sweep_staging, host.borrowed, names):
            log.info("deleted the staging file %s: no pull needs it", name)

    async def _remove(self, copy: Copy, state: LoanState, why: str) -> None:
        host, lending = self._host, self._host.lending
        await self._stop(copy.binding_key)
        kept = not await asyncio.to_thread(
            host.borrowed.remove,
            copy.parts,
            FileId(device=copy.device, inode=copy.inode, mtime_ns=copy.mtime_ns),
        )
        await host.store(lending.book.removed, copy.binding_key)
        self._unbatched.pop(copy.binding_key, None)
        for lent in lending_bindings(await host.store(lending.bindings), copy.binding_key):
            await host.store(
                lending.write_status, lent.lender, lent.binding, state, now_ms(), reason=why
            )
        note = " (a file of the user's own was there instead: left alone)" if kept else ""
        # A folder's files are many: its one line in the ledger says the loan ended.
        member = MEMBER_SEPARATOR in copy.binding_key
        level = logging.DEBUG if member and not kept else logging.INFO
        log.log(level, "removed %s: %s%s", "/".join(copy.parts), why, note)


def lending_bindings(bindings: list[Lent], key: bytes) -> list[Lent]:
    return [lent for lent in bindings if lent.key == key]


__all__ = ["Agent", "AgentHost"]
