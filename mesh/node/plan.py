"""The agent's plan: what the borrower's side should do now, from the replicated state
and the local copies (and, on the lender's side, bringing bindings of changed files up to
date). Runs on the store thread; node/agent.py acts on it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mesh.core.entries import LibraryEntry
from mesh.core.loans import Want, borrower_wants
from mesh.core.records import Binding, BindingEnd, LoanState, LoanStatus, key_of
from mesh.node.lending import Lending, Lent, active, content_of
from mesh.store.loans import Copy
from mesh.wire import records as wire_records


@dataclass(frozen=True, kw_only=True, slots=True)
class Plan:
    """What the agent should do now, from the replicated state and the local copies."""

    fetch: list[Lent]
    remove: list[tuple[Copy, LoanState, str]]  # the copy, the status to write, why
    ask: list[Lent]  # write "awaiting acceptance"
    # Returned with no copy placed: write that it ended, once any pull of it is stopped.
    given_back: list[Lent] = dataclasses.field(default_factory=list)
    # Not held, and the lender deleted the file: no pull until its entry is back.
    source_gone: list[Lent] = dataclasses.field(default_factory=list)


def plan(lending: Lending, now_ms: int, *, borrow_ask_first: bool, lend_ask_first: bool) -> Plan:
    """Bring the lender's side up to date (rewrite bindings of changed files, answer
    borrow requests when no one needs to be asked), and say what the borrower's side
    should do."""
    me = lending.local.node_id
    _refresh_lent_content(lending, now_ms)
    lending.answer_pending(now_ms, ask_first=lend_ask_first)
    copies = {c.binding_key: c for c in lending.book.copies()}
    fetch: list[Lent] = []
    ask: list[Lent] = []
    given_back: list[Lent] = []
    source_gone: list[Lent] = []
    remove: list[tuple[Copy, LoanState, str]] = []
    wanted: set[bytes] = set()
    for lent in lending.bindings():
        if lent.binding.borrower != me:
            continue
        status = lending.status_of(lent)
        want = borrower_wants(lent.binding, status, now_ms, ask_first=borrow_ask_first)
        if want is Want.COPY:
            wanted.add(lent.key)
            copy = copies.get(lent.key)
            if copy is None or copy.hash != lent.binding.content.hash:
                if _source_deleted(lending, lent):
                    source_gone.append(lent)  # nothing to pull until it is back
                else:
                    fetch.append(lent)
            elif status is None or status.state is not LoanState.HELD or (status.hash != copy.hash):
                # Placed, but the status did not say so (a crash in between).
                lending.write_status(lent.lender, lent.binding, LoanState.HELD, now_ms)
        elif want is Want.ASK and (
            status is None
            or status.state is not LoanState.AWAITING_ACCEPTANCE
            or (status.updated_ms < lent.binding.created_ms)
        ):
            ask.append(lent)
        if want is not Want.COPY and lent.key in copies:
            state, why = end_state(lent.binding, status, now_ms)
            remove.append((copies[lent.key], state, why))
            wanted.add(lent.key)  # handled
        elif (
            want is not Want.COPY
            and status is not None
            and status.state is LoanState.RETURNED
            and status.updated_ms >= lent.binding.created_ms
        ):
            given_back.append(lent)  # before it was held: no copy to remove
        elif (
            want is not Want.COPY
            and status is not None
            and status.state
            in (
                LoanState.HELD,
                LoanState.FETCHING,
            )
            and status.updated_ms >= lent.binding.created_ms
        ):
            state, why = end_state(lent.binding, status, now_ms)
            if state is not LoanState.FETCHING:
                lending.write_status(lent.lender, lent.binding, state, now_ms, reason=why)
    for key, copy in copies.items():
        if key not in wanted:  # its binding is gone (its lender was removed, say)
            remove.append((copy, LoanState.REMOVED, "the loan no longer exists"))
    return Plan(fetch=fetch, remove=remove, ask=ask, given_back=given_back, source_gone=source_gone)


def _source_deleted(lending: Lending, lent: Lent) -> bool:
    """Whether the lender's own entry of the lent file says it deleted it."""
    b = lent.binding
    probe = LibraryEntry(
        library=b.library, path=b.path, size=0, mtime_ns=0, hash=b"", chunk_root=b""
    )
    env = lending.local.records.get(key_of(lent.lender, probe))
    if env is None:
        return False
    entry = wire_records.decode(env.kind, env.body)
    return isinstance(entry, LibraryEntry) and entry.deleted


def _refresh_lent_content(lending: Lending, now_ms: int) -> None:
    """When a lent file changes, write the binding again with the new content."""
    me = lending.local.node_id
    for lent in lending.bindings():
        b = lent.binding
        if lent.lender != me or not active(b, now_ms):
            continue
        entry = lending.local.index.entry(b.library, b.path)  # indexed: one row per loan
        if entry is None or entry.hash == b.content.hash:
            continue
        lending.local.replica.write(dataclasses.replace(b, content=content_of(entry)))


def end_state(binding: Binding, status: LoanStatus | None, now_ms: int) -> tuple[LoanState, str]:
    """The status a borrower writes once its copy is gone, and why."""
    fresh = status is not None and status.updated_ms >= binding.created_ms
    if fresh and status is not None and status.state in (LoanState.RETURNED, LoanState.GIVEN_BACK):
        return LoanState.GIVEN_BACK, "returned by the borrower"
    if fresh and status is not None and status.state is LoanState.DECLINED:
        return status.state, status.reason
    if binding.ended is BindingEnd.RECALLED:
        return LoanState.REMOVED, "recalled by the lender"
    if binding.until_ms and now_ms >= binding.until_ms:
        return LoanState.REMOVED, "the loan expired"
    return LoanState.REMOVED, "the loan ended"


__all__ = ["Plan", "end_state", "plan"]
