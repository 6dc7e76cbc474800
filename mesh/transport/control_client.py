"""The CLI's side of the Control socket: the same calls as a local node, over the daemon."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from mesh.core.entries import IndexedEntry
from mesh.core.errors import DaemonNotRunningError, MeshError
from mesh.core.ids import NodeId
from mesh.core.progress import ScanProgress
from mesh.core.status import (
    InviteInfo,
    LibraryInfo,
    LoanLine,
    MemberView,
    NodeStatus,
    PeerCheck,
    RemovalPlan,
    RequestLine,
)
from mesh.transport import options
from mesh.transport.errors import error_of
from mesh.v1 import control_pb2 as pb
from mesh.v1 import control_pb2_grpc
from mesh.wire import control as wire

_CALL_TIMEOUT_S = 30.0


class ControlClient:
    def __init__(self, socket_path: Path) -> None:
        self._path = socket_path
        self._channel = grpc.insecure_channel(
            f"unix:{socket_path}", options=options.control_options()
        )
        self._stub = control_pb2_grpc.ControlStub(self._channel)

    def _call(self, fn: Callable[..., Any], request: Any, **kw: Any) -> Any:
        try:
            return fn(request, **kw)
        except grpc.RpcError as exc:
            raise self._error(exc) from exc

    def _error(self, exc: grpc.RpcError) -> MeshError:
        code = exc.code()
        if code == grpc.StatusCode.UNAVAILABLE and "unix:" in str(exc.details()):
            return DaemonNotRunningError(
                f"the daemon does not answer on {self._path}; is `mesh up` still running?"
            )
        return error_of(code, exc.details())

    def ping(self, timeout: float = 2.0) -> None:
        """Raise DaemonNotRunningError unless the daemon answers within `timeout`."""
        # A Status call waiting for the connection, not `channel_ready_future`: that one
        # starts gRPC's connectivity poller, and closing the channel then waits for its
        # next 0.2 s tick, a third of the time a quick command like `mesh invite` took.
        try:
            self._stub.Status(pb.StatusRequest(), timeout=timeout, wait_for_ready=True)
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
                raise DaemonNotRunningError(
                    f"the daemon does not answer on {self._path}; is `mesh up` still running?"
                ) from exc
            raise self._error(exc) from exc

    def status(self) -> NodeStatus:
        msg = self._call(self._stub.Status, pb.StatusRequest(), timeout=_CALL_TIMEOUT_S)
        return wire.status_from_wire(msg)

    def share(
        self,
        root: str,
        name: str | None = None,
        *,
        open_to_mesh: bool | None = None,
        borrowers: Sequence[str] | None = None,
        ask: bool | None = None,
    ) -> LibraryInfo:
        request = pb.ShareRequest(
            root=root,
            name=name or "",
            open=bool(open_to_mesh),
            set_open=open_to_mesh is not None,
            borrowers=borrowers or (),
            set_borrowers=borrowers is not None,
            ask=wire.ask_to_wire(ask),
        )
        return wire.library_from_wire(
            self._call(self._stub.Share, request, timeout=_CALL_TIMEOUT_S)
        )

    def unshare(self, name: str) -> int:
        reply = self._call(
            self._stub.Unshare, pb.UnshareRequest(name=name), timeout=_CALL_TIMEOUT_S
        )
        return int(reply.deleted)

    def scan(
        self, names: Sequence[str] = (), on_progress: Callable[[ScanProgress], None] | None = None
    ) -> ScanProgress:
        last = ScanProgress()
        stream: Any = self._call(self._stub.Scan, pb.ScanRequest(libraries=list(names)))
        try:
            for msg in stream:
                last = wire.progress_from_wire(msg)
                if on_progress is not None:
                    on_progress(last)
        except grpc.RpcError as exc:
            raise self._error(exc) from exc
        finally:
            stream.cancel()
        return last

    def entries(
        self, *, include_deleted: bool = False, libraries: Sequence[str] = ()
    ) -> list[IndexedEntry]:
        request = pb.ListRequest(include_deleted=include_deleted, libraries=list(libraries))
        out: list[IndexedEntry] = []
        try:
            for page in self._call(self._stub.List, request, timeout=_CALL_TIMEOUT_S):
                out.extend(wire.entry_from_wire(e) for e in page.entries)
        except grpc.RpcError as exc:
            raise self._error(exc) from exc
        return out

    def invite(self, ttl_s: float, *, cancel: bool = False) -> InviteInfo:
        reply = self._call(
            self._stub.Invite, pb.InviteRequest(ttl_s=ttl_s, cancel=cancel), timeout=_CALL_TIMEOUT_S
        )
        return wire.invite_from_wire(reply)

    def join(self, code: str, host: str, port: int) -> tuple[NodeId, list[MemberView]]:
        request = pb.JoinRequest(code=code, host=host, port=port)
        return wire.members_from_wire(self._call(self._stub.Join, request, timeout=120))

    def members(self) -> tuple[NodeId, list[MemberView]]:
        reply = self._call(self._stub.Members, pb.Empty(), timeout=_CALL_TIMEOUT_S)
        return wire.members_from_wire(reply)

    def remove(self, name: str, keep: Sequence[str] = (), *, dry_run: bool = False) -> RemovalPlan:
        request = pb.RemoveRequest(name=name, keep=keep, dry_run=dry_run)
        return wire.removal_from_wire(
            self._call(self._stub.Remove, request, timeout=_CALL_TIMEOUT_S)
        )

    def browse(self, node: str | None = None, pattern: str | None = None) -> list[IndexedEntry]:
        request = pb.BrowseRequest(node=node or "", pattern=pattern or "")
        out: list[IndexedEntry] = []
        try:
            for page in self._call(self._stub.Browse, request, timeout=_CALL_TIMEOUT_S):
                out.extend(wire.entry_from_wire(e) for e in page.entries)
        except grpc.RpcError as exc:
            raise self._error(exc) from exc
        return out

    def add_peer(self, host: str, port: int) -> PeerCheck:
        reply = self._call(
            self._stub.AddPeer, pb.PeerAddRequest(host=host, port=port), timeout=_CALL_TIMEOUT_S
        )
        node_id = NodeId(reply.node_id) if reply.node_id else None
        return PeerCheck(node_id=node_id, name=reply.name, problem=reply.problem)

    def lend(self, path: str, to: str, until_ms: int) -> LoanLine:
        request = pb.LendRequest(path=path, to=to, until_ms=until_ms)
        return wire.loan_from_wire(self._call(self._stub.Lend, request, timeout=_CALL_TIMEOUT_S))

    def act_on_loan(self, loan: str, action: str) -> LoanLine:
        request = pb.LoanAction(loan=loan, action=pb.LoanAction.Action.Value(action.upper()))
        reply = self._call(self._stub.ActOnLoan, request, timeout=_CALL_TIMEOUT_S)
        return wire.loan_from_wire(reply)

    def loans(self, mine: bool = False, files: bool = False) -> list[LoanLine]:
        request = pb.LoansRequest(mine=mine, files=files)
        reply = self._call(self._stub.Loans, request, timeout=_CALL_TIMEOUT_S)
        return [wire.loan_from_wire(v) for v in reply.loans]

    def borrow(self, node: str, path: str, duration_ms: int) -> RequestLine:
        request = pb.BorrowMessage(node=node, path=path, duration_ms=duration_ms)
        reply = self._call(self._stub.Borrow, request, timeout=_CALL_TIMEOUT_S)
        return wire.request_from_wire(reply)

    def requests(self) -> list[RequestLine]:
        reply = self._call(self._stub.Requests, pb.Empty(), timeout=_CALL_TIMEOUT_S)
        return [wire.request_from_wire(v) for v in reply.requests]

    def answer(self, request: str, approve: bool, reason: str = "") -> RequestLine:
        message = pb.AnswerMessage(request=request, approve=approve, reason=reason)
        reply = self._call(self._stub.Answer, message, timeout=_CALL_TIMEOUT_S)
        return wire.request_from_wire(reply)

    def mount(self, action: str, target: str = "") -> tuple[str, str, str]:
        """The mount, streams and pins (issue 21): (folder, url, message)."""
        request = pb.MountRequest(
            action=pb.MountRequest.Action.Value(action.upper()), target=target
        )
        reply = self._call(self._stub.Mount, request, timeout=_CALL_TIMEOUT_S)
        return reply.folder, reply.url, reply.message

    def close(self) -> None:
        self._channel.close()
