"""The partial view (core/overlay.py): small, connected among the members that can reach each
other, repaired around unreachable members, and never pruned while a repair is under way."""

from __future__ import annotations

import hashlib
import random

from hypothesis import given
from hypothesis import strategies as st

from mesh.core.ids import NodeId
from mesh.core.overlay import OverlayShape, active_view, to_evict, to_prune

SHAPE = OverlayShape()


def ids(n: int) -> list[NodeId]:
    return [NodeId(hashlib.sha256(bytes([i, 7])).digest()) for i in range(n)]


def edges(
    nodes: list[NodeId], down: set[NodeId], salts: dict[NodeId, bytes]
) -> dict[NodeId, set[NodeId]]:
    """The sessions the live nodes end up with: each dials its view, sessions go both ways."""
    graph: dict[NodeId, set[NodeId]] = {n: set() for n in nodes if n not in down}
    for node, peers in graph.items():
        for peer in active_view(node, nodes, down, salts[node]):
            peers.add(peer)
            graph[peer].add(node)
    return graph


def connected(graph: dict[NodeId, set[NodeId]]) -> bool:
    if not graph:
        return True
    start = next(iter(graph))
    seen, todo = {start}, [start]
    while todo:
        for peer in graph[todo.pop()]:
            if peer not in seen:
                seen.add(peer)
                todo.append(peer)
    return len(seen) == len(graph)


def test_a_small_mesh_keeps_a_session_with_everyone() -> None:
    nodes = ids(6)
    assert active_view(nodes[0], nodes, set(), b"s") == frozenset(nodes[1:])


def test_a_large_view_is_the_ring_successor_and_random_picks() -> None:
    nodes = ids(30)
    me = nodes[0]
    view = active_view(me, nodes, set(), b"salt")
    assert len(view) == SHAPE.ring_links + SHAPE.random_links
    successor = min((n for n in nodes if n.raw > me.raw), default=min(nodes, key=lambda n: n.raw))
    assert successor in view
    assert me not in view
    # Each node's own salt, its own picks: over a few salts the random links differ.
    assert len({active_view(me, nodes, set(), bytes([k])) for k in range(5)}) > 1


def test_an_unreachable_member_is_replaced() -> None:
    nodes = ids(30)
    me = nodes[3]
    view = active_view(me, nodes, set(), b"salt")
    gone = set(view)
    again = active_view(me, nodes, gone, b"salt")
    assert not again & gone
    assert len(again) == len(view)


@given(
    size=st.integers(7, 120),
    down_share=st.floats(0, 0.6),
    seed=st.integers(0, 2**32),
)
def test_the_live_members_stay_connected_with_bounded_sessions(
    size: int, down_share: float, seed: int
) -> None:
    rng = random.Random(seed)
    nodes = ids(size)
    down = {n for n in nodes if rng.random() < down_share}
    salts = {n: rng.randbytes(8) for n in nodes}
    graph = edges(nodes, down, salts)
    assert connected(graph)
    # Each dials ring_links + random_links; what it accepts is its predecessor's ring link
    # and others' random picks: a handful, never a share of the mesh. (Picks are random, so
    # the most any node holds is a matter of chance: about twice the mean at 120 nodes.)
    out = SHAPE.ring_links + SHAPE.random_links
    assert all(len(peers) <= 5 * out for peers in graph.values())
    if len(graph) > 20:
        assert sum(len(p) for p in graph.values()) / len(graph) <= 2 * out + 1


def test_a_partition_leaves_each_side_connected_and_the_heal_joins_them() -> None:
    rng = random.Random(5)
    nodes = ids(60)
    salts = {n: rng.randbytes(8) for n in nodes}
    left = set(nodes[::2])
    right = set(nodes) - left
    # Each side takes the other for unreachable.
    graph: dict[NodeId, set[NodeId]] = {n: set() for n in nodes}
    for node in nodes:
        away = right if node in left else left
        for peer in active_view(node, nodes, away, salts[node]):
            graph[node].add(peer)
            graph[peer].add(node)
    assert connected({n: graph[n] & left for n in left})
    assert connected({n: graph[n] & right for n in right})
    assert connected(edges(nodes, set(), salts))


def test_pruning_waits_until_every_wanted_member_is_connected() -> None:
    a, b, c, d = ids(4)
    assert to_prune({a, b, d}, {a, b, c}, {a, b, d}) == frozenset()  # c still missing
    assert to_prune({a, b, d}, {a, b, c}, {a, b, c, d}) == {d}
    assert to_prune({a}, {a, b}, {a, b}) == frozenset()


def behind(me: NodeId, node: NodeId) -> int:
    return (int.from_bytes(me.raw) - int.from_bytes(node.raw)) % (1 << 256)


def test_within_the_bound_nothing_is_evicted() -> None:
    me, *others = ids(SHAPE.max_sessions + 1)
    assert to_evict(me, others[:3], others[3:], set(), b"s") == frozenset()


def test_over_the_bound_the_stale_dialled_go_first_then_random_incoming() -> None:
    me, *others = ids(12)
    dialled, incoming = others[:4], others[4:]  # 11 sessions, 4 over the bound of 7
    view = set(dialled[:3])  # the fourth was dialled before the view moved on
    newest = incoming[0]
    ending = to_evict(me, dialled, incoming, {newest, *view}, b"salt")
    assert len(ending) == 11 - SHAPE.max_sessions
    assert dialled[3] in ending
    assert not ending & {newest, *view}
    # The ring predecessors' sessions stay: the ring keeps the overlay connected.
    guard = sorted(incoming, key=lambda n: behind(me, n))[: SHAPE.ring_guard]
    assert not ending & set(guard)


@given(held=st.integers(0, 30), kept=st.integers(0, 6), seed=st.integers(0, 2**32))
def test_eviction_keeps_what_must_stay_and_meets_the_bound_when_it_can(
    held: int, kept: int, seed: int
) -> None:
    rng = random.Random(seed)
    me, *others = ids(held + 1)
    dialled = [n for n in others if rng.random() < 0.3]
    incoming = [n for n in others if n not in dialled]
    keep = set(rng.sample(others, min(kept, len(others))))
    ending = to_evict(me, dialled, incoming, keep, rng.randbytes(8))
    assert not ending & keep
    assert ending <= set(others)
    guard = sorted(incoming, key=lambda n: behind(me, n))[: SHAPE.ring_guard]
    assert not ending & set(guard)
    endable = (set(others) - keep) - set(guard)
    assert len(ending) == min(max(0, held - SHAPE.max_sessions), len(endable))
