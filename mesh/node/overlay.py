"""The node's partial view: which members it keeps gossip sessions with, kept whole as
members fail, leave and come back (the decisions are `core/overlay.py`'s).

The peer manager asks `wants(peer)` before it dials a member, and parks the address's loop
(`wait`) while the answer is no. A member this node wants but has had no session with for
`grace_s` is taken as unreachable for `hold_s` (whatever kept it away: no address, a failed
dial, a refused stream), so the view picks another in its place; after `hold_s` it is
tried again, which is how the ring closes again after a partition heals. Every period this
also prunes the sessions this node dialled to members it no longer wants (once those it
wants are all connected).

Accepting a session is never refused: the other end chose it. But once a session is
admitted, a node holding more than its bound ends sessions others dialled
(`core/overlay.to_evict`) with "crowded"; a dialler told so takes that member for
unreachable for `crowded_s` (30 min by default, much longer than `hold_s`: the member is
no less crowded for a retry, and each retry would cost a handshake and another eviction
there, every `hold_s`, for as long as the mesh stays as it is) and its view picks another
member.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable
from typing import Protocol

from mesh.core.gossip import EVICTION_VERSION
from mesh.core.ids import NodeId
from mesh.core.overlay import OverlayShape, active_view, to_evict, to_prune
from mesh.node.changes import ChangeSignal
from mesh.node.session import Session

log = logging.getLogger(__name__)


class OverlayHost(Protocol):
    node_id: NodeId

    def member_ids(self) -> Iterable[NodeId]: ...

    def open_sessions(self) -> list[Session]: ...


class Overlay:
    def __init__(
        self,
        host: OverlayHost,
        *,
        grace_s: float,
        hold_s: float,
        period_s: float,
        crowded_s: float | None = None,
        shape: OverlayShape | None = None,
    ) -> None:
        self._host = host
        self._grace_s = grace_s
        self._hold_s = hold_s
        self._crowded_s = 60 * hold_s if crowded_s is None else crowded_s
        self._period_s = period_s
        self._shape = shape or OverlayShape()
        self._salt = os.urandom(16)  # this node's own random order of the members
        self._unreachable: dict[NodeId, float] = {}  # member -> until (monotonic)
        self._missing_since: dict[NodeId, float] = {}  # wanted, without a session, since
        self.changed = ChangeSignal()

    def wanted(self) -> frozenset[NodeId]:
        return active_view(
            self._host.node_id,
            self._host.member_ids(),
            self._unreachable.keys(),
            self._salt,
            self._shape,
        )

    def wants(self, peer: NodeId) -> bool:
        """Whether to dial `peer`: a member of the view; or any member while this node has
        no session at all (a node that just joined knows one address, its inviter's, which
        its view need not hold: through it, it learns where the others are)."""
        return peer in self.wanted() or not self._host.open_sessions()

    def members_changed(self) -> None:
        self.changed.bump()

    def sessions_changed(self) -> None:
        """A session opened or ended: parked dials look again (see `wants`)."""
        self.changed.bump()

    def admitted(self, newest: Session) -> None:
        """A session was admitted: if this node now holds more than its bound, end those
        `to_evict` picks: prune sessions it dialled that its view dropped, evict sessions
        others dialled (never one with an older peer, which would only dial again)."""
        me = self._host.node_id
        sessions = self._host.open_sessions()
        keep = {newest.peer, *self.wanted()}
        keep.update(s.peer for s in sessions if s.initiator != me and not _evictable(s))
        ending = to_evict(
            me,
            [s.peer for s in sessions if s.initiator == me],
            [s.peer for s in sessions if s.initiator != me],
            keep,
            self._salt,
            self._shape,
        )
        for session in sessions:
            if session.peer not in ending:
                continue
            if session.initiator == me:
                log.debug("too many sessions: pruning the one with %s", session.peer_name)
                session.close(pruned=True)
            else:
                log.debug("too many sessions: ending the one %s dialled", session.peer_name)
                session.close(crowded=True)

    def crowded_out(self, peer: NodeId, now: float) -> None:
        """`peer` ended a session this node dialled, as it holds too many: pick another."""
        self._unreachable[peer] = now + self._crowded_s
        self._missing_since.pop(peer, None)
        self.changed.bump()

    async def wait(self, version: int) -> None:
        """Until the view changes after `version`."""
        await self.changed.wait(version)

    def tend(self, now: float) -> None:
        """One period's upkeep: expire and add unreachable marks, prune dialled sessions."""
        moved = False
        for node, until in list(self._unreachable.items()):
            if now >= until:
                del self._unreachable[node]
                moved = True
        sessions = [s for s in self._host.open_sessions() if s.peer_vector is not None]
        connected = {s.peer for s in sessions}
        wanted = self.wanted()
        for node in list(self._missing_since):
            if node not in wanted or node in connected:
                del self._missing_since[node]
        for node in wanted - connected:
            since = now - self._missing_since.setdefault(node, now)
            if since >= self._grace_s:
                log.debug(
                    "no session with %s for %.1f s: picking another", node.short(), now - since
                )
                self._unreachable[node] = now + self._hold_s
                del self._missing_since[node]
                moved = True
        if moved:
            self.changed.bump()
            wanted = self.wanted()
        me = self._host.node_id
        dialled = {s.peer for s in sessions if s.initiator == me}
        for node in to_prune(dialled, wanted, connected):
            for session in sessions:
                if session.peer == node and session.initiator == me:
                    log.debug("pruning the gossip stream with %s", session.peer_name)
                    session.close(pruned=True)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._period_s)
            self.tend(time.monotonic())


def _evictable(session: Session) -> bool:
    hello = session.peer_hello
    return hello is not None and hello.protocol_version >= EVICTION_VERSION
