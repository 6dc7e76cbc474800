"""Replicas gossiping over the partial view only (core/overlay.py), up to 100 nodes, with
partitions, churn (nodes down and back, one losing its database) and a removal.

Sessions are kept from round to round, as the daemons keep them: each round, every node
that is up dials the members of its active view it has no session with; the member it
dials admits the session and, holding more than the bound, ends some others dialled
(`to_evict`), whose diallers take it for unreachable for a while (`CROWDED_ROUNDS`) and
pick another; each node prunes the sessions it dialled to members it no longer wants;
then every session syncs both ways. Nobody talks to anyone outside these sessions. A node
takes the members it cannot reach (down, or across a partition) for unreachable, so its
view picks others, as node/overlay.py does after its grace period. Checked: no node ever
holds more than `max_sessions` sessions, whatever the mesh's size; a write reaches every
node in a few rounds (the random links keep the overlay's diameter small); each side of a
partition converges on its own; after the heal every node holds the same records, byte
for byte, the same vectors and the same members (`World.check_converged` of the replica
simulation, which also checks that relayed bytes are the origin's and that only counted
admissions make members), by the sessions alone; and once quiet, the overlay stays put.

The signatures are the simulation's HMAC stand-ins; signed clocks and "no member moves
another's clock" are the replica's own checks, which run on every batch here as in the
replica simulation. 100 nodes take a while: CI runs 30 (`CI` set in the environment).
"""

from __future__ import annotations

import os
import random

import pytest

from mesh.core.ids import NodeId
from mesh.core.overlay import OverlayShape, active_view, to_evict, to_prune
from tests.core.fakes import MemoryStore
from tests.core.test_replica_sim import World

SHAPE = OverlayShape()
SIZES = [30] if os.environ.get("CI") else [30, 100]


# How long an evicted dialler leaves the evicting member alone: 30 min of 3 s periods, as
# node/overlay.py does.
CROWDED_ROUNDS = 600


class OverlayWorld:
    def __init__(self, size: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.world = World(size, MemoryStore)
        self.size = size
        self.down: set[int] = set()
        self.salts = [self.rng.randbytes(8) for _ in range(size)]
        self.sessions: list[int] = []  # per round, the most sessions any node held
        self.links: dict[frozenset[int], int] = {}  # open sessions -> the node that dialled
        self.crowded: dict[tuple[int, int], int] = {}  # (dialler, evictor) -> until round
        self.dials = 0  # sessions opened so far
        self.evictions = 0
        self.rounds = 0
        # A node keeps its id when it loses its database.
        self._index = {n.id: i for i, n in enumerate(self.world.nodes)}

    def index(self, node: NodeId) -> int:
        return self._index[node]

    def reachable(self, i: int, j: int) -> bool:
        return j not in self.down and i not in self.down and self.world.linked(i, j)

    def peers(self, i: int) -> set[int]:
        return {j for link in self.links for j in link if i in link and j != i}

    def view(self, i: int) -> frozenset[NodeId]:
        node = self.world.nodes[i]
        members = node.view().members
        away = {
            n
            for n in members
            if n != node.id
            and (
                not self.reachable(i, self.index(n))
                or self.crowded.get((i, self.index(n)), -1) > self.rounds
            )
        }
        return active_view(node.id, members, away, self.salts[i], SHAPE)

    def admit(self, i: int, newest: int) -> None:
        """`i` admitted a session with `newest`: it ends what `to_evict` picks."""
        held = self.peers(i)
        dialled = [self.world.nodes[j].id for j in held if self.links[frozenset((i, j))] == i]
        incoming = [self.world.nodes[j].id for j in held if self.links[frozenset((i, j))] != i]
        keep = {self.world.nodes[newest].id, *self.view(i)}
        for node in to_evict(self.world.nodes[i].id, dialled, incoming, keep, self.salts[i], SHAPE):
            j = self.index(node)
            del self.links[frozenset((i, j))]
            if node in incoming:
                self.crowded[(j, i)] = self.rounds + CROWDED_ROUNDS
                self.evictions += 1
        assert len(self.peers(i)) <= SHAPE.max_sessions

    def round(self) -> None:
        """Sessions that broke end; every node that is up dials its view and prunes; every
        session syncs both ways."""
        self.rounds += 1
        for link in list(self.links):
            i, j = sorted(link)
            if not self.reachable(i, j):
                del self.links[link]
        order = [i for i in range(self.size) if i not in self.down]
        self.rng.shuffle(order)
        for i in order:
            wanted = self.view(i)
            for peer in wanted:
                j = self.index(peer)
                if frozenset((i, j)) in self.links or not self.reachable(i, j):
                    continue
                self.links[frozenset((i, j))] = i
                self.dials += 1
                self.admit(j, i)
                if frozenset((i, j)) in self.links:
                    self.admit(i, j)
            held = self.peers(i)
            dialled = {self.world.nodes[j].id for j in held if self.links[frozenset((i, j))] == i}
            connected = {self.world.nodes[j].id for j in held}
            for node in to_prune(dialled, wanted, connected):
                del self.links[frozenset((i, self.index(node)))]
        self.exchange()
        self.sessions.append(max((len(self.peers(i)) for i in range(self.size)), default=0))

    def exchange(self) -> None:
        """Every session syncs both ways (anti-entropy by vectors; test_broadcast_sim
        pushes along Plumtree's trees instead)."""
        for link in list(self.links):
            i, j = sorted(link)
            self.world.sync(i, j)
            self.world.sync(j, i)

    def vectors_agree(self, group: set[int]) -> bool:
        vectors = [self.world.nodes[i].replica.vector() for i in group]
        return all(v == vectors[0] for v in vectors)

    def rounds_until_agreed(self, group: set[int], limit: int) -> int:
        for rounds in range(1, limit + 1):
            self.round()
            if self.vectors_agree(group):
                return rounds
        raise AssertionError(f"no agreement within {limit} rounds")

    def writes(self, count: int, among: list[int]) -> None:
        kinds = ["entry", "entry", "tombstone", "library", "binding", "status", "addresses"]
        for _ in range(count):
            i = self.rng.choice(among)
            self.world.write(i, self.rng.randrange(4), self.rng.choice(kinds))


@pytest.mark.parametrize("size", SIZES)
def test_gossip_over_partial_views_converges_through_partitions_and_churn(size: int) -> None:
    sim = OverlayWorld(size, seed=size)
    world = sim.world
    everyone = set(range(size))
    # The root admits everyone; membership itself spreads over the views.
    world.admit(0, 0)
    for j in range(1, size):
        world.admit(0, j)
    sim.rounds_until_agreed(everyone, 4 * size)

    # A write spreads in a few rounds: the overlay's diameter is small.
    sim.writes(1, [size // 2])
    spread = sim.rounds_until_agreed(everyone, 20)
    assert spread <= 8, spread

    # A partition: each side writes, and converges on its own.
    left = set(sim.rng.sample(sorted(everyone), size // 3))
    right = everyone - left
    world.side = frozenset(left)
    sim.writes(20, sorted(left))
    sim.writes(20, sorted(right))
    for _ in range(10):
        sim.round()
    assert sim.vectors_agree(left) and sim.vectors_agree(right)
    assert not sim.vectors_agree(everyone)

    # Churn: a tenth of the nodes go down, the others write, one loses its database and
    # comes back; a member is removed.
    world.side = None
    sim.down = set(sim.rng.sample(sorted(everyone - {0}), size // 10))
    up = sorted(everyone - sim.down)
    sim.writes(30, up)
    for _ in range(5):
        sim.round()
    back = sorted(sim.down)[0]
    sim.down.discard(back)
    world.lose(back)
    removed = sorted(everyone - sim.down - {0, back})[-1]
    world.remove(0, removed)
    sim.writes(10, sorted(everyone - sim.down - {removed}))

    # Everyone back up: the views alone bring every member to the same state.
    sim.down = set()
    members = everyone - {removed}
    sim.rounds_until_agreed(members, 40)
    view = world.check_converged()
    assert view is not None and len(view.members) == size - 1
    # Sessions per node: never more than the bound, whatever the mesh's size.
    assert max(sim.sessions) <= SHAPE.max_sessions, sim.sessions

    # Quiet: once settled, nobody dials any more (no eviction sends a dialler round).
    for _ in range(5):
        sim.round()
    dials = sim.dials
    for _ in range(20):
        sim.round()
    assert sim.dials == dials, (sim.dials, dials)
    print(f"{size} nodes: {sim.dials} sessions opened, {sim.evictions} evicted")
