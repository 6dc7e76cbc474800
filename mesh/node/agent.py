"""The lending agent: a reconcile loop over the replicated state (DESIGN.md, Lending).

Theory of operation. Whenever the records change, and once a second for end times, it
asks the store for a plan (node/lending.py): which loans this node should hold a copy of,
which copies must go, which loans wait for its owner's answer. Pulls run as tasks, one per
loan; a pull whose loan ended meanwhile is cancelled, and a refused or failed one is tried
again after the retry interval while its loan lasts, or at once when a member comes back
online (it may be the source the pull was missing). Every step is a loan status, so every
node's ledger shows it. On start it acts on whatever it missed while it was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

from mesh.core.records import LoanState
from mesh.fs.borrowed import FileId
from mesh.node.changes import ChangeSignal
from mesh.node.lending import Lent, Plan
from mesh.node.local import now_ms
from mesh.node.puller import Puller, PullHost
from mesh.store.loans import Copy

log = logging.getLogger(__name__)
_TICK_S = 1.0  # end times are checked at least this often


class AgentHost(PullHost, Protocol):
    changes: ChangeSignal


class Agent:
    def __init__(self, host: AgentHost) -> None:
        self._host = host
        self._pulls: dict[bytes, tuple[asyncio.Task[bool], Puller]] = {}
        self._retry_at: dict[bytes, float] = {}

    def progress(self, key: bytes) -> int | None:
        """Bytes verified so far of the running pull of a loan, if one runs."""
        found = self._pulls.get(key)
        return found[1].bytes_done if found is not None else None

    def peer_back(self) -> None:
        """A member is reachable again: a pull that found no source may find one now,
        instead of after its retry interval (30 s)."""
        if self._retry_at:
            self._retry_at.clear()
            self._host.changes.bump()

    async def run(self) -> None:
        try:
            while True:
                version = self._host.changes.version
                try:
                    await self._pass()
                except Exception:  # a bug must not stop lending for good
                    log.exception("the lending agent's pass failed; trying again")
                # asyncio.timeout, not wait_for: in Python 3.11 wait_for can swallow a
                # cancellation that arrives as the wait ends, and this loop would never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_TICK_S):
                        await self._host.changes.wait(version)
        finally:
            for task, _ in self._pulls.values():
                task.cancel()
            await asyncio.gather(*(t for t, _ in self._pulls.values()), return_exceptions=True)

    async def _pass(self) -> None:
        s, lending = self._host.settings, self._host.lending
        plan: Plan = await self._host.store(
            lending.plan,
            now_ms(),
            borrow_ask_first=s.borrow_ask_first,
            lend_ask_first=s.lend_ask_first,
        )
        wanted = {lent.key for lent in plan.fetch}
        for key in [k for k in self._pulls if k not in wanted]:
            task, _ = self._pulls.pop(key)
            task.cancel()  # its loan ended, or it is held now
        stale = await self._host.store(lambda: [k for k in lending.book.pulls() if k not in wanted])
        for key in stale:  # pulls of loans that ended before they were held
            await self._host.store(lending.book.drop_pull, key)
            await asyncio.to_thread(self._host.borrowed.discard, key.hex()[:40])
        for copy, state, why in plan.remove:
            await self._remove(copy, state, why)
        for lent in plan.ask:
            await self._host.store(
                lending.write_status,
                lent.lender,
                lent.binding,
                LoanState.AWAITING_ACCEPTANCE,
                now_ms(),
                reason="waiting for this node's owner to accept",
            )
            log.info(
                "a loan of %s from %s waits for `mesh accept`",
                lent.binding.path,
                lending.name_of(lent.lender),
            )
        now = time.monotonic()
        for lent in plan.fetch:
            if lent.key in self._pulls or self._retry_at.get(lent.key, 0.0) > now:
                continue
            self._start(lent)

    def _start(self, lent: Lent) -> None:
        puller = Puller(self._host, lent)
        task = asyncio.create_task(puller.run(), name=f"pull {lent.binding.path}")
        self._pulls[lent.key] = (task, puller)
        task.add_done_callback(lambda t: self._finished(lent.key, t))

    def _finished(self, key: bytes, task: asyncio.Task[bool]) -> None:
        current = self._pulls.get(key)
        if current is not None and current[0] is task:
            del self._pulls[key]
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("a pull failed unexpectedly: %s", exc, exc_info=exc)
        if exc is not None or not task.result():
            self._retry_at[key] = time.monotonic() + self._host.settings.retry_interval_s
        else:
            self._retry_at.pop(key, None)
        self._host.changes.bump()  # replan now: a held copy or a retry time changed

    async def _remove(self, copy: Copy, state: LoanState, why: str) -> None:
        host, lending = self._host, self._host.lending
        found = self._pulls.pop(copy.binding_key, None)
        if found is not None:
            found[0].cancel()
        kept = not await asyncio.to_thread(
            host.borrowed.remove,
            copy.parts,
            FileId(device=copy.device, inode=copy.inode, mtime_ns=copy.mtime_ns),
        )
        await host.store(lending.book.removed, copy.binding_key)
        for lent in lending_bindings(await host.store(lending.bindings), copy.binding_key):
            await host.store(
                lending.write_status, lent.lender, lent.binding, state, now_ms(), reason=why
            )
        note = " (a file of the user's own was there instead: left alone)" if kept else ""
        log.info("removed %s: %s%s", "/".join(copy.parts), why, note)


def lending_bindings(bindings: list[Lent], key: bytes) -> list[Lent]:
    return [lent for lent in bindings if lent.key == key]


__all__ = ["Agent", "AgentHost"]
