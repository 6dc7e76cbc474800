"""The Control service on a Unix socket in the home's 0700 run folder (the CLI's way in).

Access is the file system's: only the user who owns the home can reach the socket.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import grpc

from mesh.core.entries import IndexedEntry
from mesh.core.errors import MeshError
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
from mesh.transport.errors import status_of
from mesh.v1 import control_pb2 as pb
from mesh.v1 import control_pb2_grpc
from mesh.wire import control as wire

log = logging.getLogger(__name__)
_PAGE = 2000


class ControlHandlers(Protocol):
    async def status(self) -> NodeStatus: ...

    async def share(
        self,
        root: str,
        name: str | None,
        *,
        open_to_mesh: bool | None,
        borrowers: Sequence[str] | None,
        ask: bool | None,
    ) -> LibraryInfo: ...

    async def unshare(self, name: str) -> int: ...

    def scan(self, names: list[str]) -> AsyncIterator[ScanProgress]: ...

    async def entries(self, include_deleted: bool, libraries: list[str]) -> list[IndexedEntry]: ...

    async def invite(self, ttl_s: float, cancel: bool) -> InviteInfo: ...

    async def join(self, code: str, host: str, port: int) -> tuple[NodeId, list[MemberView]]: ...

    async def members(self) -> tuple[NodeId, list[MemberView]]: ...

    async def remove(self, name: str, keep: Sequence[str], dry_run: bool) -> RemovalPlan: ...

    async def browse(self, node: str | None, pattern: str | None) -> list[IndexedEntry]: ...

    async def add_peer(self, host: str, port: int) -> PeerCheck: ...

    async def lend(self, path: str, to: str, until_ms: int) -> LoanLine: ...

    async def act_on_loan(self, loan: str, action: str) -> LoanLine: ...

    async def loans(self, mine: bool, files: bool = False) -> list[LoanLine]: ...

    async def borrow(self, node: str, path: str, duration_ms: int) -> RequestLine: ...

    async def requests(self) -> list[RequestLine]: ...

    async def mount(self, action: str, target: str) -> tuple[str, str, str]: ...

    async def answer(self, request: str, approve: bool, reason: str) -> RequestLine: ...


# grpc ships no type information; a servicer context is Any to mypy.
Context: TypeAlias = Any


@contextlib.asynccontextmanager
async def _mapped(context: Context) -> AsyncIterator[None]:
    try:
        yield
    except MeshError as exc:
        await context.abort(status_of(exc), str(exc))


class _ControlServicer(control_pb2_grpc.ControlServicer):
    def __init__(self, handlers: ControlHandlers) -> None:
        self._h = handlers

    async def Status(self, request: pb.StatusRequest, context: Context) -> pb.NodeStatus:  # noqa: N802
        async with _mapped(context):
            return wire.status_to_wire(await self._h.status())
        raise AssertionError("unreachable")

    async def Share(self, request: pb.ShareRequest, context: Context) -> pb.LibraryInfo:  # noqa: N802
        async with _mapped(context):
            info = await self._h.share(
                request.root,
                request.name or None,
                open_to_mesh=request.open if request.set_open else None,
                borrowers=list(request.borrowers) if request.set_borrowers else None,
                ask=wire.ask_from_wire(request.ask),
            )
            return wire.library_to_wire(info)
        raise AssertionError("unreachable")

    async def Unshare(self, request: pb.UnshareRequest, context: Context) -> pb.UnshareReply:  # noqa: N802
        async with _mapped(context):
            return pb.UnshareReply(deleted=await self._h.unshare(request.name))
        raise AssertionError("unreachable")

    async def Scan(  # noqa: N802
        self, request: pb.ScanRequest, context: Context
    ) -> AsyncIterator[pb.ScanProgress]:
        async with _mapped(context):
            async for progress in self._h.scan(list(request.libraries)):
                yield wire.progress_to_wire(progress)

    async def List(  # noqa: N802
        self, request: pb.ListRequest, context: Context
    ) -> AsyncIterator[pb.EntryPage]:
        async with _mapped(context):
            items = await self._h.entries(request.include_deleted, list(request.libraries))
            for start in range(0, max(len(items), 1), _PAGE):
                page = items[start : start + _PAGE]
                yield pb.EntryPage(entries=[wire.entry_to_wire(i) for i in page])

    async def Invite(self, request: pb.InviteRequest, context: Context) -> pb.InviteReply:  # noqa: N802
        async with _mapped(context):
            return wire.invite_to_wire(await self._h.invite(request.ttl_s, request.cancel))
        raise AssertionError("unreachable")

    async def Join(self, request: pb.JoinRequest, context: Context) -> pb.MemberList:  # noqa: N802
        async with _mapped(context):
            root, members = await self._h.join(request.code, request.host, request.port)
            return wire.members_to_wire(root, members)
        raise AssertionError("unreachable")

    async def Members(self, request: pb.Empty, context: Context) -> pb.MemberList:  # noqa: N802
        async with _mapped(context):
            return wire.members_to_wire(*await self._h.members())
        raise AssertionError("unreachable")

    async def Remove(  # noqa: N802
        self, request: pb.RemoveRequest, context: Context
    ) -> pb.RemoveReply:
        async with _mapped(context):
            plan = await self._h.remove(request.name, list(request.keep), request.dry_run)
            return wire.removal_to_wire(plan)
        raise AssertionError("unreachable")

    async def Browse(  # noqa: N802
        self, request: pb.BrowseRequest, context: Context
    ) -> AsyncIterator[pb.EntryPage]:
        async with _mapped(context):
            items = await self._h.browse(request.node or None, request.pattern or None)
            for start in range(0, max(len(items), 1), _PAGE):
                page = items[start : start + _PAGE]
                yield pb.EntryPage(entries=[wire.entry_to_wire(i) for i in page])

    async def AddPeer(self, request: pb.PeerAddRequest, context: Context) -> pb.PeerAddReply:  # noqa: N802
        async with _mapped(context):
            check = await self._h.add_peer(request.host, request.port)
            return pb.PeerAddReply(
                node_id=check.node_id.raw if check.node_id is not None else b"",
                name=check.name,
                problem=check.problem,
            )
        raise AssertionError("unreachable")

    async def Lend(self, request: pb.LendRequest, context: Context) -> pb.LoanView:  # noqa: N802
        async with _mapped(context):
            line = await self._h.lend(request.path, request.to, request.until_ms)
            return wire.loan_to_wire(line)
        raise AssertionError("unreachable")

    async def ActOnLoan(self, request: pb.LoanAction, context: Context) -> pb.LoanView:  # noqa: N802
        async with _mapped(context):
            action = pb.LoanAction.Action.Name(request.action).lower()
            return wire.loan_to_wire(await self._h.act_on_loan(request.loan, action))
        raise AssertionError("unreachable")

    async def Loans(self, request: pb.LoansRequest, context: Context) -> pb.LoanList:  # noqa: N802
        async with _mapped(context):
            lines = await self._h.loans(request.mine, request.files)
            return pb.LoanList(loans=[wire.loan_to_wire(line) for line in lines])
        raise AssertionError("unreachable")

    async def Borrow(self, request: pb.BorrowMessage, context: Context) -> pb.RequestView:  # noqa: N802
        async with _mapped(context):
            line = await self._h.borrow(request.node, request.path, request.duration_ms)
            return wire.request_to_wire(line)
        raise AssertionError("unreachable")

    async def Requests(self, request: pb.Empty, context: Context) -> pb.RequestList:  # noqa: N802
        async with _mapped(context):
            lines = await self._h.requests()
            return pb.RequestList(requests=[wire.request_to_wire(line) for line in lines])
        raise AssertionError("unreachable")

    async def Answer(self, request: pb.AnswerMessage, context: Context) -> pb.RequestView:  # noqa: N802
        async with _mapped(context):
            line = await self._h.answer(request.request, request.approve, request.reason)
            return wire.request_to_wire(line)
        raise AssertionError("unreachable")

    async def Mount(self, request: pb.MountRequest, context: Context) -> pb.MountReply:  # noqa: N802
        async with _mapped(context):
            action = pb.MountRequest.Action.Name(request.action).lower()
            folder, url, message = await self._h.mount(action, request.target)
            return pb.MountReply(folder=folder, url=url, message=message)
        raise AssertionError("unreachable")


class ControlServer:
    def __init__(self, handlers: ControlHandlers, socket_path: Path) -> None:
        self._path = socket_path
        self._server = grpc.aio.server(options=options.control_options())
        control_pb2_grpc.add_ControlServicer_to_server(_ControlServicer(handlers), self._server)

    async def start(self) -> None:
        # The caller holds the home's lock, so a socket file left here is from a dead daemon.
        self._path.unlink(missing_ok=True)
        self._server.add_insecure_port(f"unix:{self._path}")
        await self._server.start()

    async def stop(self, grace: float) -> None:
        await self._server.stop(grace)
        self._path.unlink(missing_ok=True)
        # The socket's folder may be a fallback under /tmp (a home too deep for sun_path);
        # leave nothing behind there. rmdir only takes an empty folder, and the next start
        # makes it again.
        with contextlib.suppress(OSError):
            self._path.parent.rmdir()
