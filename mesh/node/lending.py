"""Lending on the store: bindings, loan statuses and borrow requests as records, the
ledger, the commands of both sides, and who may serve a loan (the plan the agent acts on
is node/plan.py).

Everything here runs on the store thread (the daemon's or the CLI's), synchronously; the
agent (node/agent.py) does the waiting, the pulling and the file work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shlex
from collections.abc import Iterator
from dataclasses import dataclass

from mesh.core import folders
from mesh.core.entries import LibraryEntry
from mesh.core.envelope import Envelope
from mesh.core.errors import InvalidArgumentError, MeshError, NotFoundError
from mesh.core.folders import FileProgress
from mesh.core.ids import NodeId
from mesh.core.loans import (
    Loan,
    Phase,
    binding_key,
    make_loan,
    pick,
    status_for,
)
from mesh.core.records import (
    Binding,
    BindingEnd,
    BorrowRequest,
    Denial,
    Kind,
    LoanState,
    LoanStatus,
    ManifestPage,
)
from mesh.core.status import LoanLine, RequestLine
from mesh.node.folders import Manifests, folder_binding, manifest_files
from mesh.node.lent import (
    MEMBER_SEPARATOR,
    FolderMembers,
    Lent,
    active,
    content_of,
    copy_parts,
    member_key,
)
from mesh.node.loan_sources import LoanSources
from mesh.node.local import LocalNode
from mesh.store.loans import LoanBook
from mesh.wire import records as wire_records

REQUEST_ID_CHARS = 6


@dataclass(frozen=True, kw_only=True, slots=True)
class Request:
    """A borrow request and where it stands."""

    id: str
    borrower: NodeId
    request: BorrowRequest
    seq: int
    answer: str  # "" (pending), "granted", or "denied: reason"


class Lending(LoanSources):
    def __init__(self, local: LocalNode) -> None:
        self.local = local
        self.book = LoanBook(local.db)
        self.manifests = Manifests(local)
        # Where each file of this node's folder loans stands, by folder key then path;
        # written by the pulls (Puller._write_status), summed into the folder's status.
        self.folder_files: dict[bytes, dict[str, FileProgress]] = {}
        # Each active folder loan's file keys and loans, kept across passes (node/plan.py).
        self.folder_members: dict[bytes, FolderMembers] = {}
        # Bytes reserved by the pulls in progress, by binding key (see Puller._policy).
        self.pulling: dict[bytes, int] = {}

    # -- reading the records -------------------------------------------------------------

    def _live(self, kind: Kind) -> Iterator[tuple[Envelope, object]]:
        for env in self.local.records.live(kind):
            if env.origin != self.local.node_id and not self.local.membership.is_member(env.origin):
                continue  # a removed member's records grant nothing
            yield env, wire_records.decode(env.kind, env.body)

    def bindings(self) -> list[Lent]:
        return [
            Lent(lender=env.origin, binding=record, envelope=env)
            for env, record in self._live(Kind.BINDING)
            if isinstance(record, Binding)
        ]

    def status_of(self, lent: Lent) -> LoanStatus | None:
        b = lent.binding
        env = self.local.records.get(status_for(b.borrower, lent.lender, b.library, b.path))
        if env is None:
            return None
        record = wire_records.decode(env.kind, env.body)
        return record if isinstance(record, LoanStatus) else None

    def name_of(self, node_id: NodeId) -> str:
        if node_id == self.local.node_id:
            return self.local.name
        member = self.local.membership.members.get(node_id)
        return member.name if member is not None else node_id.short()

    def ledger(self, now_ms: int, *, mine: bool = False) -> list[Loan]:
        me = self.local.node_id
        members = self.local.membership.members
        loans = [
            make_loan(
                lent.lender,
                lent.binding,
                self.status_of(lent),
                now_ms,
                borrower_removed=lent.binding.borrower not in members,
            )
            for lent in self.bindings()
            if not mine or me in (lent.lender, lent.binding.borrower)
        ]
        return sorted(loans, key=lambda loan: (not loan.open, -loan.binding.created_ms))

    @staticmethod
    def key_of_loan(loan: Loan) -> bytes:
        return binding_key(loan.lender, loan.binding)

    def line(self, loan: Loan, *, files: bool = False) -> LoanLine:
        status = loan.status
        return LoanLine(
            id=loan.id,
            lender=loan.lender,
            lender_name=self.name_of(loan.lender),
            borrower=loan.borrower,
            borrower_name=self.name_of(loan.borrower),
            library=loan.library,
            path=folders.shown(loan.path) if loan.folder else loan.path,
            size=loan.size,
            hash=loan.binding.content.hash,
            phase=loan.phase.value,
            bytes_done=loan.bytes_done,
            until_ms=loan.binding.until_ms,
            reason=loan.reason if loan.phase is not Phase.HELD else "",
            created_ms=loan.binding.created_ms,
            updated_ms=status.updated_ms if status is not None else 0,
            folder=loan.folder,
            files=loan.files,
            files_done=loan.files_done,
            file_list=self.file_progress(loan) if files and loan.folder else (),
        )

    def file_progress(self, loan: Loan) -> tuple[FileProgress, ...]:
        """Each file of a folder loan as this node knows it: on the borrower, held or how
        far its pull got; elsewhere 'lent' (or 'held' while the whole loan is held)."""
        manifest = self.manifests.of(loan.lender, loan.binding)
        if manifest is None:
            return ()
        key = binding_key(loan.lender, loan.binding)
        if loan.borrower != self.local.node_id:
            state = "held" if loan.phase is Phase.HELD else "lent"
            return tuple(
                FileProgress(path=f.path, size=f.size, state=state) for f in manifest.files
            )
        pulling = self.folder_files.get(key, {})
        out = []
        for f in manifest.files:
            copy = self.book.copy(member_key(key, f.path))
            if copy is not None and copy.hash == f.hash:
                out.append(FileProgress(path=f.path, size=f.size, state="held"))
            else:
                out.append(
                    pulling.get(f.path) or FileProgress(path=f.path, size=f.size, state="waiting")
                )
        return tuple(out)

    def request_line(self, request: Request) -> RequestLine:
        r = request.request
        return RequestLine(
            id=request.id,
            borrower=request.borrower,
            borrower_name=self.name_of(request.borrower),
            lender=r.lender,
            lender_name=self.name_of(r.lender),
            library=r.library,
            # A folder as the borrower typed it ('Docs/'), as the ledger shows its loan.
            path=folders.shown(r.path) if folders.is_pattern(r.path) else r.path,
            duration_ms=r.duration_ms,
            created_ms=r.created_ms,
            answer=request.answer,
        )

    # -- the lender's commands -----------------------------------------------------------

    def _resolve(self, path: str) -> tuple[str, str, str]:
        """What `path` names in this node's libraries: (library, relative path, what),
        `what` being "file", "folder" (rel '' for a whole library) or "pattern"."""
        on_disk = os.path.isabs(path)
        pattern = folders.is_pattern(path) and not (on_disk and os.path.lexists(path))
        if on_disk and not pattern and not os.path.lexists(path):
            raise NotFoundError(f"{path}: no such file")
        if on_disk and not pattern and os.path.isdir(path):
            path = path.rstrip("/") + "/"
        for library in self.local.index.libraries():
            root = library.root.rstrip("/") + "/"
            if path.startswith(root) or path == root:
                rel, name = path[len(root) :], library.name
                break
        else:
            name, _, rel = path.partition("/")
            if name not in {lib.name for lib in self.local.index.libraries()}:
                raise NotFoundError(
                    f"{path} is not in a shared folder; share it first (`mesh share DIR`)"
                )
        if pattern:
            return name, folders.check_pattern(rel), "pattern"
        if not rel or rel.endswith("/"):
            return name, rel.rstrip("/"), "folder"
        if self.local.index.entry(name, rel) is None and any(
            e.entry.path.startswith(rel + "/") for e in self.local.index.entries(libraries=[name])
        ):
            return name, rel, "folder"
        return name, rel, "file"

    def _own_file(self, path: str) -> LibraryEntry:
        """The entry of this node's libraries that `path` names: an absolute path under a
        shared folder, or LIBRARY/PATH."""
        on_disk = os.path.isabs(path)
        if on_disk and not os.path.lexists(path):
            raise NotFoundError(f"{path}: no such file")
        for library in self.local.index.libraries():
            root = library.root.rstrip("/") + "/"
            if path.startswith(root):
                rel, name = path[len(root) :], library.name
                break
        else:
            name, _, rel = path.partition("/")
            if not rel or name not in {lib.name for lib in self.local.index.libraries()}:
                raise NotFoundError(
                    f"{path} is not in a shared folder; share it first (`mesh share DIR`)"
                )
        entry = self.local.index.entry(name, rel)
        if entry is not None:
            return entry
        raise NotFoundError(f"{path} is not indexed yet; run `mesh scan {shlex.quote(name)}`")

    def _write_binding(
        self, entry: LibraryEntry, borrower: NodeId, until_ms: int, now_ms: int
    ) -> Binding:
        binding = Binding(
            borrower=borrower,
            library=entry.library,
            path=entry.path,
            content=content_of(entry),
            until_ms=until_ms,
            created_ms=now_ms,
        )
        self.local.replica.write(binding)
        return binding

    def lend(self, path: str, to: str, until_ms: int, now_ms: int) -> Loan:
        """Lend a file, a folder (every file under it, as one loan) or what a pattern
        matches in one library (as one loan)."""
        library, rel, what = self._resolve(path)
        borrower = self.local.member_named(to)
        if borrower == self.local.node_id:
            raise InvalidArgumentError("a node cannot lend to itself")
        if what == "file":
            entry = self._own_file(path)
            binding = self._write_binding(entry, borrower, until_ms, now_ms)
        else:
            binding = self._lend_folder(library, rel, what, borrower, until_ms, now_ms)
        return make_loan(self.local.node_id, binding, None, now_ms)

    def _lend_folder(
        self, library: str, rel: str, what: str, borrower: NodeId, until_ms: int, now_ms: int
    ) -> Binding:
        pattern = rel if what == "pattern" else folders.folder_pattern(rel)
        files = manifest_files(self.local, library, pattern)
        if not files and what == "pattern":
            raise NotFoundError(f"{library}/{rel} matches no indexed file")
        if (
            not files
            and rel
            and not any(
                e.entry.path.startswith(rel + "/")
                for e in self.local.index.entries(libraries=[library], include_deleted=True)
            )
        ):
            raise NotFoundError(
                f"{library}/{rel}/ holds no indexed file; run `mesh scan {shlex.quote(library)}`"
            )
        return folder_binding(
            self.local,
            borrower=borrower,
            library=library,
            pattern=pattern,
            files=files,
            until_ms=until_ms,
            created_ms=now_ms,
        )

    def refresh_folders(self, now_ms: int) -> None:
        """Write this node's active folder bindings again where their folder changed: the
        manifest's changed pages, then the binding, re-signed."""
        me = self.local.node_id
        mine = [
            lent
            for lent in self.bindings()
            if lent.lender == me and lent.binding.folder and active(lent.binding, now_ms)
        ]
        changed = {
            lib
            for lib in {lent.binding.library for lent in mine}
            if self.manifests.library_changed(lib)
        }
        for lent in mine:
            b = lent.binding
            if b.library not in changed:
                continue
            files = manifest_files(self.local, b.library, b.path)
            hashes_now = [
                folders.page_hash(
                    wire_records.encode(
                        ManifestPage(
                            borrower=b.borrower, library=b.library, path=b.path, index=i, files=p
                        )
                    )[1]
                )
                for i, p in enumerate(folders.paginate(files))
            ]
            if tuple(hashes_now) == b.pages:
                continue
            folder_binding(
                self.local,
                borrower=b.borrower,
                library=b.library,
                pattern=b.path,
                files=files,
                until_ms=b.until_ms,
                created_ms=b.created_ms,
                old=b,
            )

    def recall(self, what: str, now_ms: int) -> Loan:
        me = self.local.node_id
        loan = self._pick_side(what, now_ms, lent=True)
        if loan.binding.ended is BindingEnd.RECALLED:
            raise InvalidArgumentError(f"loan {loan.id} has already ended (recalled)")
        recalled = dataclasses.replace(loan.binding, ended=BindingEnd.RECALLED)
        self.local.replica.write(recalled)
        return make_loan(me, recalled, loan.status, now_ms)

    # -- the borrower's commands ---------------------------------------------------------

    def _to_me(self, what: str, now_ms: int) -> Loan:
        return self._pick_side(what, now_ms, lent=False)

    def _pick_side(self, what: str, now_ms: int, *, lent: bool) -> Loan:
        """The loan `what` names among those this node lent (or borrowed); one found on the
        other side is refused with the command that fits it."""
        me = self.local.node_id
        ledger = self.ledger(now_ms)
        try:
            return pick(
                [loan for loan in ledger if (loan.lender if lent else loan.borrower) == me], what
            )
        except NotFoundError:
            other = None
            with contextlib.suppress(MeshError):
                other = pick(
                    [loan for loan in ledger if (loan.borrower if lent else loan.lender) == me],
                    what,
                )
            if other is None:
                raise
        if lent:
            raise InvalidArgumentError(
                f"loan {other.id} is one this node borrowed from {self.name_of(other.lender)}: "
                f"only the lender recalls it; `mesh return {other.id}` gives it back"
            )
        raise InvalidArgumentError(
            f"loan {other.id} is one this node lent to {self.name_of(other.borrower)}: "
            f"`mesh recall {other.id}` ends it"
        )

    def write_status(
        self,
        lender: NodeId,
        binding: Binding,
        state: LoanState,
        now_ms: int,
        *,
        bytes_done: int = 0,
        reason: str = "",
        files_done: int = 0,
    ) -> None:
        self.local.replica.write(
            LoanStatus(
                files_done=files_done,
                lender=lender,
                library=binding.library,
                path=binding.path,
                hash=binding.content.hash,
                state=state,
                bytes_done=bytes_done,
                reason=reason,
                updated_ms=now_ms,
            )
        )

    def give_back(self, what: str, now_ms: int) -> Loan:
        loan = self._to_me(what, now_ms)
        if loan.phase is Phase.RETURNED or (
            loan.status is not None and loan.status.state is LoanState.GIVEN_BACK
        ):
            raise InvalidArgumentError(f"loan {loan.id} is already returned")
        self.write_status(loan.lender, loan.binding, LoanState.RETURNED, now_ms)
        return loan

    def answer_loan(self, what: str, accept: bool, now_ms: int) -> Loan:
        loan = self._to_me(what, now_ms)
        if accept:
            self.write_status(loan.lender, loan.binding, LoanState.FETCHING, now_ms)
        else:
            self.write_status(
                loan.lender, loan.binding, LoanState.DECLINED, now_ms, reason="declined"
            )
        return loan

    def borrow(self, node: str, path: str, duration_ms: int, now_ms: int) -> Request:
        lender = self.local.member_named(node)
        if lender == self.local.node_id:
            raise InvalidArgumentError("this node cannot borrow from itself")
        library, _, rel = path.partition("/")
        known = {
            (e.library, e.path) for e in (i.entry for i in self.local.browse(node)) if not e.deleted
        }
        if (library, rel) not in known:
            # A folder ('Movies/Season 1/', 'Movies/') or a pattern ('Movies/*.mkv'): the
            # lender lends what it matches there, as one loan.
            if folders.is_pattern(rel):
                rel = folders.check_pattern(rel)
            else:
                rel = folders.folder_pattern(rel)
            if not any(lib == library and folders.matches(rel, p) for lib, p in known):
                raise NotFoundError(
                    f"{node} shares no {path!r} as far as this node knows; `mesh ls --node {node}`"
                )
        request = BorrowRequest(
            lender=lender, library=library, path=rel, duration_ms=duration_ms, created_ms=now_ms
        )
        env = self.local.replica.write(request)
        return Request(
            id=_request_id(self.local.node_id, env.seq),
            borrower=self.local.node_id,
            request=request,
            seq=env.seq,
            answer="",
        )

    # -- borrow requests, the lender's side ------------------------------------------------

    def requests(self) -> list[Request]:
        """Borrow requests this node wrote or received, with their answers."""
        me = self.local.node_id
        granted = {
            (
                lent.lender,
                lent.binding.borrower,
                lent.binding.library,
                lent.binding.path,
            ): lent.binding.created_ms
            for lent in self.bindings()
        }
        denials: dict[tuple[NodeId, NodeId, int], str] = {}
        for env, record in self._live(Kind.DENIAL):
            if isinstance(record, Denial):
                denials[(env.origin, record.borrower, record.request_seq)] = record.reason
        out = []
        for env, record in self._live(Kind.BORROW_REQUEST):
            if not isinstance(record, BorrowRequest) or me not in (env.origin, record.lender):
                continue
            answer = ""
            made = granted.get((record.lender, env.origin, record.library, record.path))
            if made is not None and made >= record.created_ms:
                answer = "granted"
            elif (record.lender, env.origin, env.seq) in denials:
                answer = f"denied: {denials[(record.lender, env.origin, env.seq)]}"
            out.append(
                Request(
                    id=_request_id(env.origin, env.seq),
                    borrower=env.origin,
                    request=record,
                    seq=env.seq,
                    answer=answer,
                )
            )
        return out

    def answer_request(self, request_id: str, approve: bool, reason: str, now_ms: int) -> Request:
        me = self.local.node_id
        found = [
            r
            for r in self.requests()
            if r.id.startswith(request_id.lower()) and r.request.lender == me
        ]
        if not found:
            raise NotFoundError(f"no borrow request {request_id!r}; `mesh requests` lists them")
        if len(found) > 1:
            raise InvalidArgumentError(f"{request_id!r} matches {len(found)} requests")
        request = found[0]
        if request.answer:
            raise InvalidArgumentError(f"request {request.id} is already {request.answer}")
        self._answer(request, approve, reason, now_ms)
        return request

    def _answer_by_policy(self, request: Request, ask_first: bool, now_ms: int) -> None:
        """Answer a borrow request as its library says: refused at once to a member it is
        not shared with (`mesh share --with`), left for `mesh approve` where it asks first
        (`--ask`, or lending.ask_first), granted at once otherwise."""
        library = self.local.index.find_library(request.request.library)
        if library is not None and not library.may_borrow(request.borrower):
            why = f"library {request.request.library!r} is not shared with you"
            self._answer(request, False, why, now_ms)
        elif library is None or not library.asks(ask_first):
            self._answer(request, True, "", now_ms)  # an unknown library is denied there

    def answer_pending(self, now_ms: int, *, ask_first: bool) -> None:
        """Answer the unanswered borrow requests made to this node that no one needs to be
        asked about (each as its library says)."""
        me = self.local.node_id
        for request in self.requests():
            if request.request.lender == me and not request.answer:
                self._answer_by_policy(request, ask_first, now_ms)

    def _answer(self, request: Request, approve: bool, reason: str, now_ms: int) -> None:
        r = request.request
        until = now_ms + r.duration_ms if r.duration_ms else 0
        if (
            approve
            and folders.is_pattern(r.path)
            and self.local.index.entry(r.library, r.path) is None
        ):
            try:
                self._lend_folder(r.library, r.path, "pattern", request.borrower, until, now_ms)
                return
            except MeshError as exc:
                approve, reason = False, str(exc)
        if approve:
            try:
                entry = self._own_file(f"{r.library}/{r.path}")
            except NotFoundError as exc:
                approve, reason = False, str(exc)
        if approve:
            self._write_binding(entry, request.borrower, until, now_ms)
        else:
            self.local.replica.write(
                Denial(
                    borrower=request.borrower,
                    request_seq=request.seq,
                    library=r.library,
                    path=r.path,
                    reason=reason or "the lender said no",
                )
            )


def _request_id(borrower: NodeId, seq: int) -> str:
    digest = hashlib.sha256(borrower.raw + seq.to_bytes(8, "big")).hexdigest()
    return digest[:REQUEST_ID_CHARS]


__all__ = [
    "MEMBER_SEPARATOR",
    "Lending",
    "Lent",
    "Request",
    "active",
    "content_of",
    "copy_parts",
    "member_key",
]
