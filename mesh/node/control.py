"""The Control service's handlers: the daemon's local work, as the CLI asks for it.

Each handler is a thin translation: it calls into the daemon's parts (the store thread,
lending, joining, scanning) and returns core values; control_server.py maps them to the wire.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from mesh.core.entries import IndexedEntry
from mesh.core.errors import InvalidArgumentError
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
from mesh.node import roster
from mesh.node.local import LocalNode, now_ms
from mesh.node.mount_control import kept_lines, mount_action
from mesh.node.roster import ask_the_quiet, silent_since_ms

if TYPE_CHECKING:
    from mesh.node.daemon import Daemon


class ControlHandlers:
    """The Control service's handlers: the daemon's local work, as the CLI asks for it."""

    def __init__(self, daemon: Daemon) -> None:
        self._d = daemon

    async def status(self) -> NodeStatus:
        return await self._d.status()

    async def share(
        self,
        root: str,
        name: str | None,
        *,
        open_to_mesh: bool | None,
        borrowers: Sequence[str] | None,
        ask: bool | None,
    ) -> LibraryInfo:
        local = self._d.local
        info = await self._d.store(
            local.share, root, name, open_to_mesh=open_to_mesh, borrowers=borrowers, ask=ask
        )
        self._d.watch.libraries_changed()
        return info

    async def unshare(self, name: str) -> int:
        count = await self._d.store(self._d.local.unshare, name)
        self._d.watch.libraries_changed()
        return count

    def scan(self, names: list[str]) -> AsyncIterator[ScanProgress]:
        return self._d.scan(names)

    async def entries(self, include_deleted: bool, libraries: list[str]) -> list[IndexedEntry]:
        return await self._d.read(
            LocalNode.entries, include_deleted=include_deleted, libraries=libraries
        )

    async def invite(self, ttl_s: float, cancel: bool) -> InviteInfo:
        await self._d.check_member()
        return await self._d.joining.invite(ttl_s, cancel)

    async def join(self, code: str, host: str, port: int) -> tuple[NodeId, list[MemberView]]:
        return await self._d.joining.join(code, host, port)

    async def members(self) -> tuple[NodeId, list[MemberView]]:
        # An idle session carries a frame only every backstop ping (gRPC's keepalive watches
        # the link underneath): ask the quiet ones, or LAST SEEN reads "25 s ago" for a
        # member that is right there.
        await ask_the_quiet(self._d, (session.peer for session in self._d.sessions.all()))
        return await roster.member_views(self._d)

    async def remove(self, name: str, keep: Sequence[str], dry_run: bool) -> RemovalPlan:
        await self._d.check_member()
        return await self._d.remove_named(name, keep, dry_run=dry_run)

    async def browse(self, node: str | None, pattern: str | None) -> list[IndexedEntry]:
        return await self._d.browse(node, pattern)

    async def add_peer(self, host: str, port: int) -> PeerCheck:
        await self._d.check_member()
        return await self._d.add_peer(host, port)

    async def lend(self, path: str, to: str, until_ms: int) -> LoanLine:
        await self._d.check_member()
        lending = self._d.lending
        return await self._d.store(lambda: lending.line(lending.lend(path, to, until_ms, now_ms())))

    async def act_on_loan(self, loan: str, action: str) -> LoanLine:
        await self._d.check_member()
        lending = self._d.lending

        def work() -> LoanLine:
            now = now_ms()
            if action == "recall":
                found = lending.recall(loan, now)
            elif action == "return":
                found = lending.give_back(loan, now)
            elif action in ("accept", "decline"):
                found = lending.answer_loan(loan, action == "accept", now)
            else:
                raise InvalidArgumentError(f"unknown loan action {action!r}")
            return lending.line(found)

        return await self._d.store(work)

    async def loans(self, mine: bool, files: bool = False) -> list[LoanLine]:
        d = self._d
        lending, agent, me = d.lending, d.agent, d.node_id

        def work() -> tuple[list[tuple[bytes, bool, LoanLine]], dict[NodeId, int]]:
            seen = {node: ms for node, (_h, _p, ms) in d.local.addresses.last_seen().items()}
            return [
                (lending.key_of_loan(loan), loan.open, lending.line(loan, files=files))
                for loan in lending.ledger(now_ms(), mine=mine)
            ], seen

        found_lines, seen = await d.store(work)
        # Before saying a side of this node's own open loans is unreachable, ask it.
        await ask_the_quiet(
            d,
            (
                line.borrower if line.lender == me else line.lender
                for _, still_open, line in found_lines
                if still_open and me in (line.lender, line.borrower)
            ),
        )
        lines = []
        for key, still_open, found in found_lines:
            live = agent.progress(key)  # fresher than the last status, on the borrower
            if live is not None and found.phase == "fetching":
                found = dataclasses.replace(found, bytes_done=live)  # noqa: PLW2901
            other = found.borrower if found.lender == me else found.lender
            if still_open and me in (found.lender, found.borrower):
                # What this node knows of the other side is as of when it last heard it.
                heard = found.updated_ms if other == found.borrower else 0
                silent = silent_since_ms(d, other, seen.get(other, 0), heard)
                if silent:
                    name = found.borrower_name if other == found.borrower else found.lender_name
                    found = dataclasses.replace(  # noqa: PLW2901
                        found, silent_since_ms=silent, silent_name=name
                    )
            lines.append(found)
        return await kept_lines(d, lines)

    async def borrow(self, node: str, path: str, duration_ms: int) -> RequestLine:
        await self._d.check_member()
        lending = self._d.lending
        return await self._d.store(
            lambda: lending.request_line(lending.borrow(node, path, duration_ms, now_ms()))
        )

    async def mount(self, action: str, target: str) -> tuple[str, str, str]:
        """The mount, streams and pins (issue 21): (folder, url, message)."""
        return await mount_action(self._d, action, target)

    async def requests(self) -> list[RequestLine]:
        lending = self._d.lending
        return await self._d.store(lambda: [lending.request_line(r) for r in lending.requests()])

    async def answer(self, request: str, approve: bool, reason: str) -> RequestLine:
        await self._d.check_member()
        lending = self._d.lending
        return await self._d.store(
            lambda: lending.request_line(lending.answer_request(request, approve, reason, now_ms()))
        )
