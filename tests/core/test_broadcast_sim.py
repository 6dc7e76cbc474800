"""Plumtree (core/broadcast.py) over the bounded partial views of test_overlay_sim, up to 100
nodes, with partitions, churn (nodes down and back, one losing its database), a removal
and a member that announces clocks nobody wrote.

Sessions come and go as in test_overlay_sim. Each round, over every session and in each
direction, the sender pushes what the peer lacks (as the peer's vector at the round's start
tells) of the origins its link is eager for, and announces the clocks of the others
(`TreeLink.announcements`); the links' streams then deliver in a random order, each in
order, so a node hears of a record from several peers in one round as it would from
concurrent pushes. A node pushed a batch that repeats the latest news another peer brought
it (`LatestNews.duplicate`) prunes that link, both ways; news from a peer makes the link
eager both ways; a node that heard a clock announced and still lacks it `GRAFT_ROUNDS`
later grafts that link, both ways. Streams deliver whole here, so no
batch is in flight across a prune and the last-eager-link guard (`may_prune`) is not
needed. The same scenario runs with every link eager (the flood nodes ran before
Plumtree, which `FLOOD` is) for comparison.

Checked: every write reaches every node that is linked; after the partition, the churn and
the heal, every node holds the same records, byte for byte, the same vectors and members
(`World.check_converged`: relayed bytes are the origin's, only counted admissions make
members); the replica's own checks (signed clocks, no member moves another's clock) run on
every batch, and no clock anywhere passes what its origin wrote, whatever the liar
announced; and records pushed that were already held (duplicates) fall to a fraction of
the flood's once the trees have formed.
"""

from __future__ import annotations

import os

import pytest

from mesh.core.broadcast import LatestNews, TreeLink
from mesh.core.gossip import Batch
from mesh.core.replica import Outcome
from mesh.core.vector import Clock, VersionVector
from tests.core.test_overlay_sim import OverlayWorld
from tests.core.test_replica_sim import BATCH_BYTES

SIZES = [30] if os.environ.get("CI") else [30, 100]
GRAFT_ROUNDS = 2  # how long a node waits for an announced clock down its tree


class TreeWorld(OverlayWorld):
    def __init__(self, size: int, seed: int, *, plumtree: bool) -> None:
        super().__init__(size, seed)
        self.plumtree = plumtree
        self.trees: dict[tuple[int, int], TreeLink] = {}  # (this node, peer) -> its link
        self.news = [LatestNews() for _ in range(size)]
        self.pushed = 0  # records pushed
        self.duplicates = 0  # of them, already held when they arrived
        self.grafts = 0
        self.liar: int | None = None  # announces clocks nobody wrote
        self.steady = (0, 0)  # records pushed and duplicates of them, over the steady writes

    def exchange(self) -> None:
        directed = [(i, j) for link in self.links for i in link for j in link if i != j]
        for pair in directed:
            self.trees.setdefault(pair, TreeLink())  # a new session: eager for all
        for pair in list(self.trees):
            if pair not in directed:
                del self.trees[pair]
        nodes = self.world.nodes
        vectors = {k: nodes[k].replica.vector() for link in self.links for k in link}
        streams: list[tuple[int, int, list[Batch]]] = []
        digests: list[tuple[int, int, VersionVector]] = []
        for i, j in directed:
            tree = self.trees[(i, j)]
            offer = tree.covered(vectors[j], vectors[i])
            streams.append((i, j, list(nodes[i].replica.missing(offer, BATCH_BYTES))))
            have = tree.announcements(vectors[i], vectors[j])
            if i == self.liar and tree.lazy:
                have = VersionVector(
                    {o: Clock(c.epoch, c.seq + 1000) for o, c in vectors[i].items()}
                )
            if have:
                digests.append((i, j, have))
        self.rng.shuffle(streams)
        for i, j, batches in streams:
            for batch in batches:
                held = nodes[j].replica.vector()
                result = nodes[j].replica.apply(batch, nodes[i].id)
                applied = result.outcome is Outcome.APPLIED
                self.pushed += len(batch.envelopes)
                if applied:
                    self.duplicates += len(batch.envelopes) - len(result.stored)
                news, back = self.news[j], self.trees[(j, i)]
                if not self.plumtree:
                    continue
                if not held.covers(batch.origin, batch.epoch, batch.through_seq):
                    back.grafted()  # news from i: j pushes to i again (eager both ways)
                elif news.duplicate(batch, nodes[i].id, held, applied):
                    self.trees[(i, j)].pruned()  # j's PRUNE, heard by i; both ways
                    back.pruned()
                news.advanced([batch.origin], nodes[i].id, held, nodes[j].replica.vector())
        for i, j, have in digests:
            self.trees[(j, i)].heard(have, nodes[j].replica.vector(), self.rounds)
        for j, i in directed:
            graft = self.trees[(j, i)].to_graft(
                nodes[j].replica.vector(), self.rounds, GRAFT_ROUNDS
            )
            if graft:
                self.trees[(i, j)].grafted()  # j's GRAFT, heard by i; both ways
                self.trees[(j, i)].grafted()
                self.grafts += 1

    def clocks_within_writes(self) -> bool:
        """No node holds a clock past what its origin wrote in that epoch."""
        wrote: dict[tuple[object, object], int] = {}
        for origin, epoch, seq in self.world.written:
            wrote[(origin, epoch)] = max(wrote.get((origin, epoch), 0), seq)
        return all(
            clock.seq <= wrote.get((origin, clock.epoch), 0)
            for k in range(self.size)
            if k not in self.down
            for origin, clock in self.world.nodes[k].replica.vector().items()
        )


def scenario(size: int, *, plumtree: bool, whole: bool = True) -> TreeWorld:
    """The run; `whole` false stops after the steady writes (the flood's comparison)."""
    sim = TreeWorld(size, seed=size, plumtree=plumtree)
    world = sim.world
    everyone = set(range(size))
    world.admit(0, 0)
    for j in range(1, size):
        world.admit(0, j)
    sim.rounds_until_agreed(everyone, 4 * size)

    # Steady: one write at a time, from anywhere; each reaches all in a few rounds.
    sim.pushed = sim.duplicates = 0
    for _ in range(20):
        sim.writes(1, sorted(everyone))
        sim.rounds_until_agreed(everyone, 20)
    sim.steady = (sim.pushed, sim.duplicates)
    if not whole:
        return sim

    # A partition; a liar among the left; writes on both sides; each side converges.
    left = set(sim.rng.sample(sorted(everyone), size // 3))
    right = everyone - left
    sim.liar = sorted(left)[0]
    world.side = frozenset(left)
    sim.writes(20, sorted(left))
    sim.writes(20, sorted(right))
    for _ in range(12):
        sim.round()
    assert sim.vectors_agree(left) and sim.vectors_agree(right)
    assert not sim.vectors_agree(everyone)
    assert sim.clocks_within_writes()

    # Churn: a tenth down, writes, one back with a lost database, a removal; then all up.
    world.side = None
    sim.down = set(sim.rng.sample(sorted(everyone - {0, sim.liar}), size // 10))
    sim.writes(30, sorted(everyone - sim.down))
    for _ in range(5):
        sim.round()
    back = sorted(sim.down)[0]
    sim.down.discard(back)
    world.lose(back)
    removed = sorted(everyone - sim.down - {0, back, sim.liar})[-1]
    world.remove(0, removed)
    sim.writes(10, sorted(everyone - sim.down - {removed}))
    sim.down = set()
    sim.rounds_until_agreed(everyone - {removed}, 40)
    view = world.check_converged()
    assert view is not None and len(view.members) == size - 1
    assert sim.clocks_within_writes()
    return sim


@pytest.mark.timeout(900)  # 100 nodes (outside CI) take minutes
@pytest.mark.parametrize("size", SIZES)
def test_plumtree_converges_and_cuts_duplicates(size: int) -> None:
    tree = scenario(size, plumtree=True)
    flood = scenario(size, plumtree=False, whole=False)
    (tree_pushed, tree_dups), (flood_pushed, flood_dups) = tree.steady, flood.steady
    print(
        f"{size} nodes, 20 single writes: flood pushed {flood_pushed} records, "
        f"{flood_dups} already held; Plumtree {tree_pushed}, {tree_dups}; "
        f"{tree.grafts} grafts over the whole run"
    )
    assert tree_dups * 2 <= flood_dups, (tree_dups, flood_dups)
    assert tree_pushed < flood_pushed
    assert tree.grafts > 0  # the liar's announcements and the churn made some
