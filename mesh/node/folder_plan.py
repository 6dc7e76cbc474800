"""The borrower's plan for one active folder loan (node/plan.py asks it): which of its
files to pull, which copies to keep, and its one status, summed over its files.

Theory of operation. The files are those of the lender's signed manifest
(node/folders.py); until every page of it has arrived the loan keeps what it holds and
pulls nothing. The loan is taken or refused as a whole: the bytes it still needs must
fit the quota and the free space beyond the reserve, or none of its files is pulled and
its status says why (a pull already running stops). Each file is pulled under the
folder's key, a big one as its own pull (node/puller.py), small ones in batches the agent
makes (node/folder_batch.py); a file whose content changed is pulled
again and swapped in once verified; a copy whose path left the manifest is not kept (the
caller removes it). The folder's status is written when its state changes, and while it
is fetching at most once per progress interval, with files held, bytes and the first
failures.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from mesh.core.folders import FileProgress, FolderProgress, shown, summed
from mesh.core.loans import refusal
from mesh.core.records import LoanState, LoanStatus
from mesh.node.lending import Lending, Lent
from mesh.node.lent import FolderMembers
from mesh.store.loans import Copy

log = logging.getLogger(__name__)
# The files still to pull that a plan lists as pulls to start (the agent starts a few at
# a time, in path order): listing all of 100,000 each pass would cost more than pulling.
# Enough for the agent's batches of small files in flight, fetching and placing, and the
# next ones (node/folder_batch.py).
_LISTED = 3072
WAITING_FOR_MANIFEST = "waiting for the lender's manifest of the folder"


@dataclass(frozen=True, kw_only=True, slots=True)
class FolderPolicy:
    quota: int
    reserve: int
    free_bytes: Callable[[], int]
    progress_ms: int


@dataclass(kw_only=True, slots=True)
class FolderTodo:
    fetch: list[Lent] = field(default_factory=list)
    keep: set[bytes] = field(default_factory=set)
    more: set[bytes] = field(default_factory=set)  # every file still to pull, by key


def plan_folder(
    lending: Lending,
    lent: Lent,
    status: LoanStatus | None,
    copies: dict[bytes, Copy],
    now_ms: int,
    policy: FolderPolicy,
) -> FolderTodo:
    todo = FolderTodo()
    manifest = lending.manifests.of(lent.lender, lent.binding)
    if manifest is None:
        todo.keep |= copies.keys()  # nothing is known to be gone yet
        _write(
            lending, lent, status, now_ms, LoanState.FETCHING, None, WAITING_FOR_MANIFEST, policy
        )
        return todo
    progress = lending.folder_files.setdefault(lent.key, {})
    members: list[Lent] = []
    files: list[FileProgress] = []  # those not held: the held ones are only counted
    held_files = held_bytes = 0
    known = lending.folder_members.get(lent.key)
    if known is None or known.lent != lent:
        known = lending.folder_members[lent.key] = FolderMembers(lent=lent)
    for file in manifest.files:
        key = known.key(file.path)
        copy = copies.get(key)
        if copy is not None:
            todo.keep.add(key)
        if copy is not None and copy.hash == file.hash:
            held_files += 1
            held_bytes += file.size
            if progress:
                progress.pop(file.path, None)
            if known.members:
                known.members.pop(file.path, None)
            continue
        todo.more.add(key)
        if len(members) < _LISTED:
            members.append(known.member(file))
        found = progress.get(file.path)
        if found is None or found.size != file.size:
            found = FileProgress(path=file.path, size=file.size, state="waiting")
        files.append(found)
    for path in set(progress) - {f.path for f in manifest.files}:
        del progress[path]
    rest = summed(files)
    sums = FolderProgress(
        files=rest.files + held_files,
        files_held=rest.files_held + held_files,
        size=rest.size + held_bytes,
        bytes_done=rest.bytes_done + held_bytes,
        failed=rest.failed,
    )
    if not todo.more:
        _write(lending, lent, status, now_ms, LoanState.HELD, sums, "", policy)
        return todo
    why = _refused(lending, lent, copies, sums, policy)
    if why:
        _write(lending, lent, status, now_ms, LoanState.REFUSED, sums, why, policy)
        return todo
    todo.fetch = members
    todo.keep |= todo.more  # their pulls may run: not stale
    failed = sums.reason()
    _write(lending, lent, status, now_ms, LoanState.FETCHING, sums, failed, policy)
    return todo


def _refused(
    lending: Lending,
    lent: Lent,
    copies: dict[bytes, Copy],
    sums: FolderProgress,
    policy: FolderPolicy,
) -> str:
    """Why the borrower's policy refuses the rest of the folder now ('' if it does not).
    Its own held copies and pulls count as its own; everything else held or being pulled
    counts against the quota and the free space."""
    mine = sum(c.size for c in copies.values())
    held = lending.book.held_bytes() - mine
    prefix = lent.key
    pulling = sum(n for key, n in lending.pulling.items() if not key.startswith(prefix))
    in_flight = sum(n for key, n in lending.pulling.items() if key.startswith(prefix))
    needed = sums.size - sums.bytes_done
    why = refusal(
        needed,
        held_bytes=held + pulling + sums.bytes_done,
        quota=policy.quota,
        free=policy.free_bytes() - pulling + in_flight,
        reserve=policy.reserve,
    )
    return f"the folder as a whole is refused: {why}" if why else ""


def _write(
    lending: Lending,
    lent: Lent,
    status: LoanStatus | None,
    now_ms: int,
    state: LoanState,
    sums: FolderProgress | None,
    reason: str,
    policy: FolderPolicy,
) -> None:
    """The folder's status, when it says something new (progress at most once per
    progress interval)."""
    b = lent.binding
    files_done = sums.files_held if sums is not None else 0
    bytes_done = sums.bytes_done if sums is not None else 0
    if status is not None and status.updated_ms >= b.created_ms:
        if status.state in (LoanState.RETURNED, LoanState.DECLINED, LoanState.GIVEN_BACK):
            return
        same = status.state is state and status.hash == b.content.hash
        if same and (status.files_done, status.bytes_done, status.reason) == (
            files_done,
            bytes_done,
            reason,
        ):
            return
        if same and state is not LoanState.HELD and now_ms - status.updated_ms < policy.progress_ms:
            return
    if state is LoanState.HELD:
        log.info(
            "holding the folder %s/%s from %s: %d files",
            b.library,
            shown(b.path),
            lending.name_of(lent.lender),
            files_done,
        )
    lending.write_status(
        lent.lender,
        b,
        state,
        now_ms,
        bytes_done=bytes_done,
        files_done=files_done,
        reason=reason,
    )


__all__ = ["WAITING_FOR_MANIFEST", "FolderPolicy", "FolderTodo", "plan_folder"]
