"""Plumtree's link state (core/broadcast.py): eager until pruned, digests once per clock on
a lazy link, grafts for clocks still lacking after the wait, and nothing more for a
forged digest than a graft."""

from __future__ import annotations

import hashlib

from mesh.core.broadcast import LatestNews, TreeLink
from mesh.core.envelope import Envelope
from mesh.core.epoch import Epoch
from mesh.core.gossip import Batch
from mesh.core.ids import NodeId
from mesh.core.peer_holds import PeerHolds
from mesh.core.records import Kind
from mesh.core.vector import Clock, VersionVector

A, B = (NodeId(hashlib.sha256(bytes([i])).digest()) for i in range(2))
E = Epoch(1, 1)


def vv(**seqs: int) -> VersionVector:
    return VersionVector({{"a": A, "b": B}[k]: Clock(E, seq) for k, seq in seqs.items()})


def test_an_eager_link_offers_what_the_peer_lacks_and_announces_nothing() -> None:
    link = TreeLink()
    assert link.covered(vv(a=1), vv(a=3, b=2)) == vv(a=1)
    assert link.announcements(vv(a=3), vv(a=1)) == VersionVector()


def test_a_pruned_link_pushes_nothing_and_announces_each_clock_once() -> None:
    link = TreeLink()
    link.pruned()
    assert link.covered(vv(a=1), vv(a=3, b=2)) == vv(a=3, b=2)
    assert link.announcements(vv(a=3, b=2), vv(a=1, b=2)) == vv(a=3)
    assert link.announcements(vv(a=3, b=2), vv(a=1, b=2)) == VersionVector()
    assert link.announcements(vv(a=4, b=2), vv(a=1, b=2)) == vv(a=4)
    link.grafted()
    assert link.covered(vv(a=1), vv(a=4)) == vv(a=1)


def test_a_clock_heard_and_still_lacking_is_grafted_after_the_wait() -> None:
    link = TreeLink()
    link.heard(vv(a=3, b=1), vv(a=1, b=1), now=10.0)  # b is held already
    assert link.due(0.5) == 10.5
    assert link.to_graft(vv(a=1), now=10.2, after_s=0.5) == []
    link.heard(vv(a=4), vv(a=1), now=10.3)  # a later clock keeps the first time heard
    assert link.to_graft(vv(a=1), now=10.5, after_s=0.5) == [A]
    assert link.due(0.5) is None


def test_a_clock_that_arrived_down_the_tree_is_not_grafted() -> None:
    link = TreeLink()
    link.heard(vv(a=3), vv(a=1), now=0.0)
    assert link.to_graft(vv(a=3), now=5.0, after_s=0.5) == []
    assert link.due(0.5) is None


def test_a_forged_digest_costs_a_graft_and_nothing_else() -> None:
    link = TreeLink()
    link.heard(vv(a=10**9), vv(a=1), now=0.0)
    assert link.to_graft(vv(a=1), now=1.0, after_s=0.5) == [A]
    assert link.to_graft(vv(a=1), now=2.0, after_s=0.5) == []  # asked once per digest


def batch(*kinds: Kind) -> Batch:
    envs = tuple(
        Envelope(origin=A, epoch=E, seq=i + 1, kind=k, body=b"", signature=b"")
        for i, k in enumerate(kinds)
    )
    return Batch(origin=A, epoch=E, after_seq=0, through_seq=len(envs), envelopes=envs)


def test_a_duplicate_repeats_the_latest_news_another_peer_brought() -> None:
    news = LatestNews()
    news.advanced([A], B, vv(a=1), vv(a=3))  # B brought records 2-3 of A
    late = batch(Kind.ENTRY, Kind.ENTRY, Kind.ENTRY)  # 1-3 of A, from another peer
    assert news.duplicate(late, A, vv(a=3), applied=True)
    assert not news.duplicate(late, B, vv(a=3), applied=True)  # from B itself
    assert not news.duplicate(late, A, vv(a=2), applied=True)  # it brought something
    assert not news.duplicate(late, A, vv(a=3), applied=False)  # refused or ignored
    # A sender's merely old belief: records older than the latest news are no race lost.
    news.advanced([A], B, vv(a=3), vv(a=9))
    assert not news.duplicate(late, A, vv(a=9), applied=True)


def test_a_loose_membership_record_is_never_a_duplicate() -> None:
    news = LatestNews()
    news.advanced([A], B, vv(), vv(a=1))
    assert not news.duplicate(batch(Kind.ADMISSION), A, vv(a=1), applied=True)
    assert not news.duplicate(batch(), A, vv(a=1), applied=True)


def test_a_graft_tells_what_the_peer_holds_so_only_what_it_lacks_is_pushed() -> None:
    holds = PeerHolds(B)
    holds.start(vv(a=1))  # as the session opened; only digests went since
    holds.told(vv(a=7, b=2))
    assert holds.sent == vv(a=7, b=2)
    holds.told(vv(a=3))  # never back
    assert holds.sent == vv(a=7, b=2)
