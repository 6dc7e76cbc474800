"""Who is online beyond this node's own sessions: presence reports sent, relayed and read
(the rules are `core/liveness.py`'s).

The daemon calls `sessions_changed` when a session opens at both ends or ends, and
`session_opened` when one opens; a session hands over each presence frame it receives
(`on_presence`). Frames go only to peers that speak protocol 3; each send is a task of its
own, so a slow peer never holds up the others or the session that brought the news.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Protocol

from mesh.core.gossip import PRESENCE_VERSION
from mesh.core.ids import NodeId
from mesh.core.liveness import PresenceFrame, PresenceTable
from mesh.node.session import Session


class LivenessHost(Protocol):
    node_id: NodeId

    def member_ids(self) -> Iterable[NodeId]: ...

    def open_sessions(self) -> list[Session]: ...


def _speaks_presence(session: Session) -> bool:
    hello = session.peer_hello
    return hello is not None and hello.protocol_version >= PRESENCE_VERSION


class Liveness:
    def __init__(self, host: LivenessHost) -> None:
        self._host = host
        self.table = PresenceTable(host.node_id)
        self._online: set[NodeId] | None = None  # reachable(), until the table changes
        self._sending: set[asyncio.Task[None]] = set()

    def online(self, node: NodeId) -> bool:
        if self._online is None:
            self._online = self.table.reachable()
        return node in self._online

    def _live(self) -> list[Session]:
        return [s for s in self._host.open_sessions() if s.announced and s.peer_vector is not None]

    def sessions_changed(self) -> None:
        # Microseconds of the wall clock: a restarted node's reports are newer than its last.
        report = self.table.own(time.time_ns() // 1000, {s.peer for s in self._live()})
        if report is not None:
            self._online = None
            self._send(PresenceFrame(reports=(report,)), self._live(), except_peer=None)

    def session_opened(self, session: Session) -> None:
        self.sessions_changed()
        reports = tuple(self.table.reports.values())
        if reports:
            self._send(PresenceFrame(reports=reports), [session], except_peer=None)

    def on_presence(self, session: Session, frame: PresenceFrame) -> None:
        news = self.table.merge(frame.reports, set(self._host.member_ids()))
        if news:
            self._online = None
            self._send(PresenceFrame(reports=tuple(news)), self._live(), except_peer=session.peer)

    def members_changed(self) -> None:
        self.table.forget(set(self._host.member_ids()))
        self._online = None

    def _send(self, frame: PresenceFrame, to: list[Session], except_peer: NodeId | None) -> None:
        for session in to:
            if session.peer != except_peer and _speaks_presence(session):
                task = asyncio.ensure_future(session.tell(frame))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)
