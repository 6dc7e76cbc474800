"""The agent's plan: what the borrower's side should do now, from the replicated state
and the local copies (and, on the lender's side, bringing bindings of changed files up to
date). Runs on the store thread; node/agent.py acts on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from mesh.core.entries import LibraryEntry
from mesh.core.loans import Want, borrower_wants
from mesh.core.records import Binding, BindingEnd, LoanState, LoanStatus, key_of
from mesh.node.folder_plan import FolderPolicy, plan_folder
from mesh.node.lending import MEMBER_SEPARATOR, Lending, Lent, active, content_of
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
    # Files of folder loans still to pull beyond those listed in `fetch`: their pulls,
    # if any run, are wanted too.
    pulling: set[bytes] = dataclasses.field(default_factory=set)
    # This node lends or borrows something: a plan made later may differ by the clock
    # alone (a loan's end time), so the agent plans again every tick. Without, only a
    # change can make a plan differ.
    timed: bool = True


def plan(
    lending: Lending,
    now_ms: int,
    *,
    borrow_ask_first: bool,
    lend_ask_first: bool,
    quota: int = 0,
    reserve: int = 0,
    free_bytes: Callable[[], int] | None = None,
    progress_ms: int = 1000,
) -> Plan:
    """Bring the lender's side up to date (rewrite bindings of changed files and
    folders, answer borrow requests when no one needs to be asked), and say what the
    borrower's side should do."""
    me = lending.local.node_id
    _refresh_lent_content(lending, now_ms)
    lending.refresh_folders(now_ms)
    lending.answer_pending(now_ms, ask_first=lend_ask_first)
    copies = {c.binding_key: c for c in lending.book.copies()}
    folder_copies = _by_folder(lending, copies, me)
    policy = FolderPolicy(
        quota=quota,
        reserve=reserve,
        free_bytes=free_bytes or (lambda: 1 << 62),
        progress_ms=progress_ms,
    )
    fetch: list[Lent] = []
    ask: list[Lent] = []
    given_back: list[Lent] = []
    source_gone: list[Lent] = []
    remove: list[tuple[Copy, LoanState, str]] = []
    wanted: set[bytes] = set()
    pulling: set[bytes] = set()
    timed = False
    planned: set[bytes] = set()  # folder loans planned: their FolderMembers are kept
    for lent in lending.bindings():
        if lent.lender == me:
            timed = True
        if lent.binding.borrower != me:
            continue
        timed = True
        status = lending.status_of(lent)
        want = borrower_wants(lent.binding, status, now_ms, ask_first=borrow_ask_first)
        mine = folder_copies.get(lent.key, {}) if lent.binding.folder else {}
        if lent.binding.folder and want is Want.COPY:
            planned.add(lent.key)
            todo = plan_folder(lending, lent, status, mine, now_ms, policy)
            fetch += todo.fetch
            wanted |= todo.keep
            if todo.fetch:
                pulling |= todo.more
            continue
        if lent.binding.folder and want is not Want.COPY and mine:
            # The loan ended: the whole copy goes, file by file; the folder's status says
            # so once none is left.
            state, why = end_state(lent.binding, status, now_ms)
            remove += [(copy, state, why) for copy in mine.values()]
            wanted |= mine.keys()
            continue
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
    for key in lending.folder_members.keys() - planned:
        del lending.folder_members[key]  # the loan ended, or waits: made again if it resumes
    for key, copy in copies.items():
        if key not in wanted:  # its binding is gone (its lender was removed, say)
            why = "the loan no longer exists"
            if any(key in files for files in folder_copies.values()):
                why = "no longer in the lent folder"
            remove.append((copy, LoanState.REMOVED, why))
    return Plan(
        fetch=fetch,
        remove=remove,
        ask=ask,
        given_back=given_back,
        source_gone=source_gone,
        pulling=pulling,
        timed=timed,
    )


def _by_folder(
    lending: Lending, copies: dict[bytes, Copy], me: object
) -> dict[bytes, dict[bytes, Copy]]:
    """The copies of each folder loan this node borrows, by folder key."""
    folder_keys = {
        lent.key
        for lent in lending.bindings()
        if lent.binding.folder and lent.binding.borrower == me
    }
    out: dict[bytes, dict[bytes, Copy]] = {}
    for key, copy in copies.items():
        # A path has no NUL: the last separator is the member's.
        cut = key.rfind(MEMBER_SEPARATOR)
        if cut > 0 and key[:cut] in folder_keys:
            out.setdefault(key[:cut], {})[key] = copy
    return out


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
        if lent.lender != me or b.folder or not active(b, now_ms):
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
