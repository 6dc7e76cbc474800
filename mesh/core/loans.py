"""Loans as the replicated records tell them, and what each side's agent should do next.

A loan is a binding (the lender's record) and the borrower's loan status about it. This
module holds the rules, with `now` passed in: when a binding is active, what the borrower
wants for it, which loan a user means by an id or a file name, and the ledger line every
node shows. The agent (node/agent.py) applies them; nothing here touches a file or a socket.
"""

from __future__ import annotations

import base64
import enum
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mesh.core import folders
from mesh.core.errors import InvalidArgumentError, NotFoundError
from mesh.core.ids import NodeId
from mesh.core.records import Binding, BindingEnd, Content, LoanState, LoanStatus, key_of
from mesh.core.sizes import human_size

LOAN_ID_CHARS = 8
_NO_CONTENT = Content(hash=b"", size=0, chunk_root=b"")  # keys do not depend on the content


def binding_key(lender: NodeId, binding: Binding) -> bytes:
    return key_of(lender, binding)


def loan_id(lender: NodeId, borrower: NodeId, library: str, path: str) -> str:
    """The short id users see: a hash of the binding's key, lowercase base32."""
    probe = Binding(
        borrower=borrower,
        library=library,
        path=path,
        content=_NO_CONTENT,
    )
    digest = hashlib.sha256(key_of(lender, probe)).digest()
    return base64.b32encode(digest).decode()[:LOAN_ID_CHARS].lower()


def status_for(borrower: NodeId, lender: NodeId, library: str, path: str) -> bytes:
    """The key of the borrower's status about the binding of (lender, library, path)."""
    probe = LoanStatus(lender=lender, library=library, path=path, hash=b"", state=LoanState.UNKNOWN)
    return key_of(borrower, probe)


class Phase(enum.Enum):
    """Where a loan stands, as the ledger shows it."""

    WAITING = "waiting for the borrower"  # no status yet (offline, or not seen it)
    AWAITING_ACCEPTANCE = "awaiting acceptance"
    FETCHING = "fetching"
    HELD = "held"
    REFUSED = "refused"
    FAILED = "failed"
    DECLINED = "declined"
    RETURNED = "returned"
    RECALLED = "recalled"
    EXPIRED = "expired"
    ENDED = "ended"  # ended and the borrower's copy is gone


@dataclass(frozen=True, kw_only=True, slots=True)
class Loan:
    """One line of the ledger."""

    id: str
    lender: NodeId
    borrower: NodeId
    binding: Binding
    status: LoanStatus | None
    phase: Phase
    # The borrower is no longer a member: it can neither pull the file nor say it let the
    # copy go, so the loan is over whatever its records say.
    borrower_removed: bool = False

    @property
    def library(self) -> str:
        return self.binding.library

    @property
    def path(self) -> str:
        return self.binding.path

    @property
    def size(self) -> int:
        return self.binding.content.size

    @property
    def folder(self) -> bool:
        return self.binding.folder

    @property
    def files(self) -> int:
        return self.binding.files if self.binding.folder else 1

    @property
    def bytes_done(self) -> int:
        if self.phase is Phase.HELD:
            return self.size
        if self.status is not None and self.status.hash == self.binding.content.hash:
            return self.status.bytes_done
        if self.binding.folder and self.status is not None and self.open:
            return self._as_of_older_folder(self.status)[1]
        return 0

    @property
    def files_done(self) -> int:
        if self.phase is Phase.HELD:
            return self.files
        if not self.binding.folder:
            return 0
        if self.status is not None and self.status.hash == self.binding.content.hash:
            return min(self.status.files_done, self.files)
        if self.status is not None and self.open:
            return self._as_of_older_folder(self.status)[0]
        return 0

    def _as_of_older_folder(self, status: LoanStatus) -> tuple[int, int]:
        """(files, bytes) held of a folder that changed since the borrower's status: what
        it held of the older folder mostly still counts, capped at the new totals. The two
        agree on whether it is complete, or a ledger read "7/7 files 99%": the older seven
        held, the newer folder's bytes not all."""
        files = min(status.files_done, self.files)
        done = min(status.bytes_done, self.size)
        if files == self.files and done < self.size:
            files = max(0, self.files - 1)
        elif done == self.size and files < self.files:
            done = max(0, self.size - 1)
        return files, done

    @property
    def reason(self) -> str:
        if self.borrower_removed:
            return "the borrower was removed from the mesh"
        return self.status.reason if self.status is not None else ""

    @property
    def open(self) -> bool:
        """Whether the loan still holds (the borrower should have or get a copy)."""
        return self.phase in (
            Phase.WAITING,
            Phase.AWAITING_ACCEPTANCE,
            Phase.FETCHING,
            Phase.HELD,
            Phase.REFUSED,
            Phase.FAILED,
        )


def ended_by_lender(binding: Binding, now_ms: int) -> Phase | None:
    """RECALLED or EXPIRED if the lender's side has ended the binding, else None."""
    if binding.ended is BindingEnd.RECALLED:
        return Phase.RECALLED
    if binding.until_ms and now_ms >= binding.until_ms:
        return Phase.EXPIRED
    return None


def ended_by_borrower(binding: Binding, status: LoanStatus | None) -> Phase | None:
    """RETURNED or DECLINED if the borrower said so about this lending of it; ENDED once
    a returned loan's copy is gone.

    A return or decline holds for the binding as it was written then: a binding written
    again later (lent anew) starts over; a content update alone does not.
    """
    if status is None or status.updated_ms < binding.created_ms:
        return None
    if status.state is LoanState.RETURNED:
        return Phase.RETURNED
    if status.state is LoanState.GIVEN_BACK:
        return Phase.ENDED
    if status.state is LoanState.DECLINED:
        return Phase.DECLINED
    return None


def phase_of(binding: Binding, status: LoanStatus | None, now_ms: int) -> Phase:
    by_borrower = ended_by_borrower(binding, status)
    if by_borrower is not None:
        return by_borrower
    by_lender = ended_by_lender(binding, now_ms)
    if by_lender is not None:
        if status is not None and status.state in (LoanState.HELD, LoanState.FETCHING):
            return by_lender  # the borrower has not removed its copy yet
        return Phase.ENDED if status is not None else by_lender
    if status is None:
        return Phase.WAITING
    if status.hash != binding.content.hash and status.state is LoanState.HELD:
        return Phase.FETCHING  # holds the old version, the new one is on its way
    return {
        LoanState.AWAITING_ACCEPTANCE: Phase.AWAITING_ACCEPTANCE,
        LoanState.FETCHING: Phase.FETCHING,
        LoanState.HELD: Phase.HELD,
        LoanState.REFUSED: Phase.REFUSED,
        LoanState.FAILED: Phase.FAILED,
        LoanState.REMOVED: Phase.WAITING,
    }.get(status.state, Phase.WAITING)


def make_loan(
    lender: NodeId,
    binding: Binding,
    status: LoanStatus | None,
    now_ms: int,
    *,
    borrower_removed: bool = False,
) -> Loan:
    return Loan(
        id=loan_id(lender, binding.borrower, binding.library, binding.path),
        lender=lender,
        borrower=binding.borrower,
        binding=binding,
        status=status,
        phase=Phase.ENDED if borrower_removed else phase_of(binding, status, now_ms),
        borrower_removed=borrower_removed,
    )


class Want(enum.Enum):
    """What the borrower's agent wants for one binding."""

    COPY = "copy"  # a verified copy of the binding's content
    ASK = "ask"  # ask this node's owner first (ask-first policy)
    NONE = "none"  # no copy: remove one if present


def borrower_wants(
    binding: Binding, status: LoanStatus | None, now_ms: int, *, ask_first: bool
) -> Want:
    """The borrower's side of the Lending rule: a copy exactly while the binding is active
    (not recalled, not past its end by this node's clock, not returned or declined here)
    and accepted by this node's policy."""
    if ended_by_borrower(binding, status) is not None:
        return Want.NONE
    if ended_by_lender(binding, now_ms) is not None:
        return Want.NONE
    if ask_first:
        accepted = (
            status is not None
            and status.updated_ms >= binding.created_ms
            and (
                status.state
                in (LoanState.FETCHING, LoanState.HELD, LoanState.REFUSED, LoanState.FAILED)
            )
        )
        if not accepted:
            return Want.ASK
    return Want.COPY


NOT_ENOUGH_SPACE = "not enough free space"


def refusal(size: int, *, held_bytes: int, quota: int, free: int, reserve: int) -> str:
    """Why the borrower's policy refuses a copy of `size` bytes now ('' if it does not)."""
    if quota and held_bytes + size > quota:
        return (
            f"over the borrowing quota: {human_size(held_bytes + size)} would be held, "
            f"the quota is {human_size(quota)}"
        )
    if free - size < reserve:
        return (
            f"{NOT_ENOUGH_SPACE}: {human_size(free)} free, {human_size(size)} needed, "
            f"{human_size(reserve)} kept free"
        )
    return ""


def pick(loans: Iterable[Loan], what: str) -> Loan:
    """The loan a user means by `what`: a loan id (or its start), a path or a file name."""
    candidates = list(loans)
    needle = what.strip().lower()
    if not needle:
        raise InvalidArgumentError("name a loan: its id from `mesh loans`, or the file's name")
    by_id = [loan for loan in candidates if loan.id.startswith(needle)]
    if by_id:
        return _one(by_id, what)
    by_path = [loan for loan in candidates if what in _names(loan)]
    if by_path:
        open_ones = [loan for loan in by_path if loan.open]
        return _one(open_ones or by_path, what)
    raise NotFoundError(f"no loan {what!r}; `mesh loans` lists them")


def _names(loan: Loan) -> tuple[str, ...]:
    """What a user may call a loan by: its path, with or without its library, or the
    file's name; a folder loan by its folder as shown ('Season 1/', 'Season 1')."""
    paths = [loan.path]
    if loan.folder:
        shown = folders.shown(loan.path)
        paths += [shown, shown.rstrip("/")] if shown != "/" else [loan.library]
    names = [p.rstrip("/").rsplit("/", 1)[-1] for p in paths if p]
    return (*paths, *(f"{loan.library}/{p}" for p in paths), *names)


def _one(found: Sequence[Loan], what: str) -> Loan:
    if len(found) > 1:
        ids = ", ".join(loan.id for loan in found[:5])
        raise InvalidArgumentError(f"{what!r} matches {len(found)} loans ({ids}); give the id")
    return found[0]
