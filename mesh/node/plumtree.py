"""One gossip session's side of Plumtree (the decisions are core/broadcast.py's): the session
asks it what to offer the replica for the peer, lets it announce on a lazy link, tells it
of each batch applied (a duplicate prunes the link) and of the peer's Tree frames, and
runs its `run` task, which grafts the link when a clock the peer announced has not come
down this node's tree within `GRAFT_AFTER_S`.

With a peer older than protocol 5 it stays out of the way: every link eager, no frames.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from mesh.core.broadcast import LatestNews, TreeLink
from mesh.core.gossip import Batch, GossipFrame, TreeFrame
from mesh.core.ids import NodeId
from mesh.core.peer_holds import PeerHolds
from mesh.core.vector import VersionVector
from mesh.node.changes import ChangeSignal

# How long a node waits for a clock it heard announced to come down its tree before it
# grafts the announcer's link: a change crosses thirty nodes in a few tenths of a second.
GRAFT_AFTER_S = 0.5


class SessionTree:
    def __init__(
        self,
        send: Callable[[GossipFrame], Awaitable[None]],
        our_vector: Callable[[], Awaitable[VersionVector]],
        peer: NodeId,
        news: LatestNews,
        holds: PeerHolds,
    ) -> None:
        self._holds = holds
        self._send = send
        self._our_vector = our_vector
        self._peer = peer
        self._news = news
        self.enabled = False  # the peer speaks protocol 5 (set after the hellos)
        self.link = TreeLink()
        self._grafted = asyncio.Event()  # wakes the sender
        self._heard = asyncio.Event()  # wakes `run`
        self._prune_sent = False  # since the last graft this node sent
        self.prunes_sent = 0
        self.grafts_sent = 0

    async def offer(self, believed: VersionVector) -> VersionVector:
        """What to ask the replica for, given what the peer holds as the sender believes:
        on a lazy link, nothing it lacks is pushed."""
        if not self.link.lazy:
            return believed
        return self.link.covered(believed, await self._our_vector())

    async def announce(self, believed: VersionVector) -> None:
        """On a lazy link, tell the peer the clocks it lacks (each once)."""
        if self.link.lazy:
            have = self.link.announcements(await self._our_vector(), believed)
            if have:
                await self._send(TreeFrame(have=have))

    async def wait_change(self, changes: ChangeSignal, version: int) -> None:
        """Until the replica changes after `version`, or the peer grafts this link."""
        if not self.enabled:
            await changes.wait(version)
            return
        waits = [
            asyncio.ensure_future(changes.wait(version)),
            asyncio.ensure_future(self._grafted.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        self._grafted.clear()

    async def applied(
        self,
        batches: Sequence[Batch],
        applied: Sequence[bool],
        held: VersionVector,
        now: VersionVector,
    ) -> None:
        """The peer's `batches` were applied, taking this node from `held` to `now`: one
        that lost a race to another link prunes this link."""
        if not self.enabled:
            return
        news, peer = self._news, self._peer
        lost = any(news.duplicate(b, peer, held, a) for b, a in zip(batches, applied, strict=True))
        brought = any(not held.covers(b.origin, b.epoch, b.through_seq) for b in batches)
        news.advanced({b.origin for b in batches}, peer, held, now)
        if brought and self.link.lazy:
            # A tree link is eager both ways (Plumtree): news from the peer makes this
            # node push to it again.
            self.link.grafted()
            self._grafted.set()
        if lost and not self._prune_sent and news.may_prune(peer):
            self._prune_sent = True
            self.link.pruned()  # both ways: this node only announces to it too
            news.pruned.add(peer)
            self.prunes_sent += 1
            await self._send(TreeFrame(prune=True))

    async def on_frame(self, frame: TreeFrame) -> None:
        if frame.prune and self._news.may_prune(self._peer):
            self.link.pruned()
            self._prune_sent = True  # the link is out of the tree both ways
            self._news.pruned.add(self._peer)
        elif frame.prune:
            # This node's last eager link: the peer no longer pushes to it, but it keeps
            # pushing to the peer, or its own writes would spread by digests and grafts
            # alone (news from it makes the peer's side eager again).
            self.link.lazy = False
        if frame.graft:
            self._holds.told(frame.have)  # what it holds: push only what it lacks
            self.link.grafted()
            self._grafted.set()
            self._prune_sent = False
            self._news.pruned.discard(self._peer)
        if frame.have and not frame.graft:
            self.link.heard(frame.have, await self._our_vector(), time.monotonic())
            self._heard.set()

    async def run(self) -> None:
        """Graft the link when an announced clock is still lacking after the wait."""
        self._news.linked.add(self._peer)
        try:
            await self._grafting()
        finally:
            self._news.linked.discard(self._peer)
            self._news.pruned.discard(self._peer)

    async def _grafting(self) -> None:
        while True:
            self._heard.clear()
            due = self.link.due(GRAFT_AFTER_S)
            if due is None:
                await self._heard.wait()
                continue
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            ours = await self._our_vector()
            if self.link.to_graft(ours, time.monotonic(), GRAFT_AFTER_S):
                self._prune_sent = False
                self._news.pruned.discard(self._peer)
                self.link.grafted()  # both ways: the tree's link again
                self._grafted.set()
                self.grafts_sent += 1
                await self._send(TreeFrame(graft=True, have=ours))
