"""Plumtree over the partial view: which origins' records go down each gossip link, and which
are only announced there.

Theory of operation. Each direction of a session's link either carries the records
(eager) or only digests: the clocks of the origins this node holds beyond what the peer
holds (lazy, "I have"). Every link starts eager: a new session (a node joining, a
partition healing) pushes all the peer lacks, as before. A node that is pushed a batch it
already held (a duplicate: another link was faster) asks the sender to make that link lazy
(PRUNE); so the eager links shrink to a spanning tree along the fastest paths, shared by
all origins (as in Plumtree's paper: a tree per origin would take a first flood per
origin to form, and most origins write rarely), and a change costs about one delivery per
node instead of one per link. Each sender announces on its lazy links each clock it holds
beyond what the peer holds, once. A node that hears of a clock it lacks and does not get
it within a short while (its tree parent left, or a link broke) asks that announcer for
it (GRAFT): the link turns eager, the sender pushes what the peer lacks, and the tree is
whole again.

The records themselves are checked as ever (signed clocks, no member moves another's
clock): a digest is only a hint that makes a node ask, never something it stores, and a
wrong or forged one costs a graft at most. Pruning is an optimisation only: whatever was
pruned, the digests and grafts bring every record to every node that is linked.

Pure: the caller sends, receives and keeps the time; this keeps, for one link, whether this
node pushes to the peer (`lazy`, `announced`) and what the peer announced that it may have
to graft (`heard`); and, for the node, who brought each origin's latest records
(`LatestNews`), which tells a lost race from a sender's merely old belief.

Not wired into the sessions yet: tests/core/test_broadcast_sim.py runs it over the
overlay's sessions. Wired in (2026-12-08, protocol 5 with a Tree frame, reverted), it cut
the bytes of one change at 30 nodes in three runs of five (115-149 kB against 159-165 kB)
but not in the other two (181, 212 kB), and a change then reached all in 0.19-0.94 s
against 0.11-0.37 s: on a live mesh the tree still broke (records took the 0.5 s graft
path), so it does not pay yet. Also needed there, found on the way: a session's side must
keep its last eager link when pruned (`may_prune` guards only this node's own prunes), a
graft must carry the grafting node's vector (`PeerHolds.told`), or the sender's old belief
makes it push again all the peer got elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable

from mesh.core.gossip import Batch
from mesh.core.ids import NodeId
from mesh.core.records import MEMBERSHIP_KINDS
from mesh.core.vector import Clock, VersionVector


class TreeLink:
    def __init__(self) -> None:
        self.lazy = False  # only announce to the peer (it pruned this link)
        self._announced: dict[NodeId, Clock] = {}  # the last clock announced, per origin
        self._heard: dict[NodeId, tuple[Clock, float]] = {}  # the peer has: clock, heard at

    # -- what this node sends the peer --------------------------------------------------

    def covered(self, offer: VersionVector, ours: VersionVector) -> VersionVector:
        """What to ask the replica for the peer's sake: `offer` (what the peer holds, as the
        sender believes) on an eager link; this node's own vector on a lazy one, so that
        the replica finds nothing to push."""
        if not self.lazy:
            return offer
        items = dict(offer.items())
        items.update(ours.items())
        return VersionVector(items)

    def announcements(self, ours: VersionVector, peer: VersionVector) -> VersionVector:
        """On a lazy link, the origins this node holds beyond what the peer holds, at the
        clocks it has not announced yet: the digest to send now (empty: nothing to send).
        Each clock is announced once."""
        if not self.lazy:
            return VersionVector()
        news: dict[NodeId, Clock] = {}
        for origin, clock in ours.items():
            if peer.covers(origin, clock.epoch, clock.seq):
                continue
            told = self._announced.get(origin)
            if told is not None and told >= clock:
                continue
            news[origin] = clock
            self._announced[origin] = clock
        return VersionVector(news)

    def pruned(self) -> None:
        """The peer got a record from elsewhere first: only announce from now on."""
        self.lazy = True

    def grafted(self) -> None:
        """The peer lacks what was announced: push again (all it lacks)."""
        self.lazy = False
        self._announced.clear()

    # -- what the peer sends this node ---------------------------------------------------

    def heard(self, have: VersionVector, ours: VersionVector, now: float) -> None:
        """The peer announced `have`: note the clocks this node lacks (a clock already
        awaited keeps the time it was first heard of)."""
        for origin, clock in have.items():
            if ours.covers(origin, clock.epoch, clock.seq):
                continue
            waiting = self._heard.get(origin)
            if waiting is None:
                self._heard[origin] = (clock, now)
            elif clock > waiting[0]:
                self._heard[origin] = (clock, waiting[1])

    def due(self, after_s: float) -> float | None:
        """When the first awaited clock will have waited `after_s` (None: none awaited)."""
        if not self._heard:
            return None
        return min(at for _, at in self._heard.values()) + after_s

    def to_graft(self, ours: VersionVector, now: float, after_s: float) -> list[NodeId]:
        """The origins to ask the peer for: announced at least `after_s` ago, and still
        lacking. Clocks this node got meanwhile (down its tree) are forgotten."""
        graft = []
        for origin, (clock, at) in list(self._heard.items()):
            if ours.covers(origin, clock.epoch, clock.seq):
                del self._heard[origin]
            elif now - at >= after_s:
                del self._heard[origin]
                graft.append(origin)
        return sorted(graft, key=lambda n: n.raw)


class LatestNews:
    """Per node: which peer brought the latest records of each origin, and which. A batch
    pushed on a link is a duplicate (the link is pruned) only if it repeats that latest
    news and another peer brought it: a race that link lost. A sender whose belief of what
    this node holds is merely old (it never pushed that origin since this node got it
    elsewhere, long ago) pushes old records, which its ack then corrects: no prune, or
    every link of a node might end pruned on stale beliefs alone."""

    def __init__(self) -> None:
        self._latest: dict[NodeId, tuple[NodeId, Clock | None, Clock]] = {}
        self.linked: set[NodeId] = set()  # peers with a Plumtree link
        self.pruned: set[NodeId] = set()  # of them, those this node pruned

    def may_prune(self, peer: NodeId) -> bool:
        """Whether another linked peer still pushes to this node. A batch already in
        flight when this node pruned its sender may still win a race; pruning the link
        it beat would leave the node with no eager link but the digests: the last one
        is kept."""
        return any(p != peer and p not in self.pruned for p in self.linked)

    def duplicate(self, batch: Batch, peer: NodeId, held: VersionVector, applied: bool) -> bool:
        """Whether `batch`, pushed by `peer`, lost a race to another link: applied, held
        already through its end (`held`, before it was applied), and overlapping the
        latest records of its origin, which another peer brought. A loose membership
        record (a retired epoch's admission or removal, which a session sends once as it
        opens, held or not) says nothing about the tree and is left out."""
        envs = batch.envelopes
        if not applied or not envs or not held.covers(batch.origin, batch.epoch, batch.through_seq):
            return False
        if (
            len(envs) == 1
            and envs[0].kind in MEMBERSHIP_KINDS
            and batch.after_seq + 1 == envs[0].seq == batch.through_seq
        ):
            return False
        latest = self._latest.get(batch.origin)
        if latest is None:
            return False
        by, before, after = latest
        if by == peer or after.epoch != batch.epoch:
            return False
        return before is None or before.epoch != batch.epoch or batch.through_seq > before.seq

    def advanced(
        self, origins: Iterable[NodeId], peer: NodeId, held: VersionVector, now: VersionVector
    ) -> None:
        """`peer`'s batches took these origins from `held` to `now`."""
        for origin in origins:
            after, before = now.get(origin), held.get(origin)
            if after is not None and (before is None or after > before):
                self._latest[origin] = (peer, before, after)


__all__ = ["LatestNews", "TreeLink"]
