"""Who is online, for a node that keeps sessions with a few members only (its partial view).

Theory of operation. Each node reports the members it holds a gossip session with, as a
`Presence`: its origin, a version that only grows (the node picks it), and those peers. A
node sends its own report to its sessions whenever its set of sessions changes, sends
everything it knows to a session that opens, and relays each report that is news to it
(a newer version of that origin) to its other sessions. Nothing is sent while nothing
changes: an idle mesh pays nothing for this, and a member that goes costs one report from
each of its few neighbours, relayed along the overlay.

A member is online, as this node sees it, when a chain of reports leads to it from this
node: its own sessions first, then the sessions each member so reached reports, and so on.
A member that died or was cut off is reported by nobody that is reached: its neighbours'
sessions with it end (at once for a killed process, within the keepalive window for a dead
link) and their new reports leave it out; its own last report is never followed, as
nobody reached leads to it. So a member killed anywhere shows offline everywhere within
the keepalive window plus a few relays, and on each side of a partition the other side
shows offline.

Reports are not signed: they only decide what `mesh members` shows and where pulls look
first; a member could lie about its own sessions, as it could switch them off. A node never
takes a report of its own origin from others.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from mesh.core.ids import NodeId

MAX_PEERS = 256  # sessions one report may list
MAX_REPORTS = 4096  # reports one frame may carry


@dataclass(frozen=True, kw_only=True, slots=True)
class Presence:
    origin: NodeId
    version: int
    peers: frozenset[NodeId]


@dataclass(frozen=True, kw_only=True, slots=True)
class PresenceFrame:
    reports: tuple[Presence, ...]


class PresenceTable:
    """The latest report of each member, and who is reachable through them."""

    def __init__(self, self_id: NodeId) -> None:
        self.self_id = self_id
        self.reports: dict[NodeId, Presence] = {}

    def own(self, version: int, peers: Collection[NodeId]) -> Presence | None:
        """Set this node's own report; it, if it differs from the last one (to send)."""
        last = self.reports.get(self.self_id)
        held = frozenset(peers)
        if last is not None and last.peers == held:
            return None
        version = max(version, last.version + 1 if last is not None else 0)
        report = Presence(origin=self.self_id, version=version, peers=held)
        self.reports[self.self_id] = report
        return report

    def merge(self, reports: Iterable[Presence], members: Collection[NodeId]) -> list[Presence]:
        """Take the reports that are news (newer, of a member, not of this node); those."""
        news = []
        for report in reports:
            if report.origin == self.self_id or report.origin not in members:
                continue
            last = self.reports.get(report.origin)
            if last is None or report.version > last.version:
                self.reports[report.origin] = report
                news.append(report)
        return news

    def forget(self, keep: Collection[NodeId]) -> None:
        """Drop the reports of those no longer members."""
        for origin in [o for o in self.reports if o not in keep and o != self.self_id]:
            del self.reports[origin]

    def reachable(self) -> set[NodeId]:
        """The members a chain of reports leads to from this node (itself excluded)."""
        seen = {self.self_id}
        todo = [self.self_id]
        while todo:
            report = self.reports.get(todo.pop())
            if report is None:
                continue
            for peer in report.peers:
                if peer not in seen:
                    seen.add(peer)
                    todo.append(peer)
        seen.discard(self.self_id)
        return seen
