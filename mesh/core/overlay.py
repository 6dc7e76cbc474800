"""The gossip overlay: which members a node keeps gossip sessions with (its active view).

Theory of operation. Every node knows every member (membership is replicated whole), so the
passive view of HyParView is simply the member list, and the active view is chosen from it:

- In a small mesh (at most `full_mesh_up_to` others) a node keeps a session with everyone:
  what a household mesh was before, and the cheapest way to spread anything.
- Otherwise it dials `ring_links` members that follow it on a ring of the members ordered by
  node id, skipping those it could not reach lately, and `random_links` members picked by
  its own random order (a salt it draws at start), again skipping unreachable ones. Its ring
  predecessors and whoever picked it at random dial it in turn, so a node holds about
  2 * (ring_links + random_links) sessions whatever the mesh's size.

The ring keeps the overlay connected: each reachable member's first reachable successor is
dialled, so the members that can reach each other form one cycle, in a partition each side
its own; once the partition heals, the skipped successors are tried again and the cycles
join (the node marks a member unreachable only for a while). The random links make the
diameter logarithmic, so a record crosses a 30-node mesh in a few hops, not fifteen.

A session this node dialled to a member it no longer wants (the ring moved when a member
joined or came back) is pruned, but only once every member it does want has a session:
the overlay never shrinks while a repair is under way.

The sessions a node holds are bounded (`max_sessions`), as HyParView bounds its active
view: whoever picks a node at random dials it, so without a bound a node's in-degree is
whatever chance makes it (ten sessions for the busiest of thirty, each costing gRPC's
wake-ups). A node always accepts a session, then, if it holds more than the bound, ends
as many others as it must (`to_evict`): first those it dialled to members its view no
longer holds, then some that others dialled. It keeps the newest (a node that just joined
may know no one else), those with members of its own view, and the `ring_guard` dialled
by the members nearest before it on the ring (its ring predecessors, whatever partition
or churn made them so): the ring, which keeps the overlay connected, is never cut. The
evicted dialler takes the evicting node for unreachable for a long while (node/overlay.py)
and picks another at random in its place; the bound leaves room (a node's own view plus
its ring predecessors is well under it), so the search ends after a hop or two, and the
overlay then stays put: the simulation at 100 nodes (tests/core/test_overlay_sim.py) sees
no session opened once it settled.

Pure: the caller passes the member set, what it could not reach lately and which sessions
are open.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from mesh.core.ids import NodeId


@dataclass(frozen=True, kw_only=True, slots=True)
class OverlayShape:
    ring_links: int = 1
    random_links: int = 2
    full_mesh_up_to: int = 5  # others; a mesh this small keeps a session with everyone
    max_sessions: int = 7  # held at once, both directions (at least full_mesh_up_to)
    ring_guard: int = 2  # sessions dialled by the nearest predecessors, never evicted


def active_view(
    self_id: NodeId,
    members: Iterable[NodeId],
    unreachable: Collection[NodeId],
    salt: bytes,
    shape: OverlayShape = OverlayShape(),
) -> frozenset[NodeId]:
    """The members `self_id` wants gossip sessions with (itself excluded)."""
    others = sorted(set(members) - {self_id}, key=lambda n: n.raw)
    if len(others) <= shape.full_mesh_up_to:
        return frozenset(others)
    reachable = [n for n in others if n not in unreachable]
    after = [n for n in reachable if n.raw > self_id.raw]
    before = [n for n in reachable if n.raw < self_id.raw]
    wanted = list((after + before)[: shape.ring_links])
    size = len(wanted) + shape.random_links
    for node in sorted(reachable, key=lambda n: hashlib.sha256(salt + n.raw).digest()):
        if len(wanted) >= size:
            break
        if node not in wanted:
            wanted.append(node)
    return frozenset(wanted)


def to_prune(
    dialled: Collection[NodeId], wanted: Collection[NodeId], connected: Collection[NodeId]
) -> frozenset[NodeId]:
    """Sessions this node dialled that it may close now: to members it does not want, once
    every member it wants has a session (a repair never leaves the node with fewer)."""
    if any(node not in connected for node in wanted):
        return frozenset()
    return frozenset(node for node in dialled if node not in wanted)


def to_evict(
    self_id: NodeId,
    dialled: Iterable[NodeId],
    incoming: Iterable[NodeId],
    keep: Collection[NodeId],
    salt: bytes,
    shape: OverlayShape = OverlayShape(),
) -> frozenset[NodeId]:
    """Which sessions to end so that at most `shape.max_sessions` stay: of those this node
    `dialled` (to prune) and of those others dialled (`incoming`, to evict). `keep` is what
    must stay whoever dialled it: the newest session, the members of this node's own view,
    and peers that would not understand an eviction. Sessions this node dialled to members
    its view no longer holds go first (they wait only for a repair to finish); then
    incoming ones, by the node's own random order, but for the `ring_guard` whose
    diallers are nearest before this node on the ring."""
    dialled, incoming = list(dialled), list(incoming)
    surplus = len(dialled) + len(incoming) - shape.max_sessions
    if surplus <= 0:
        return frozenset()
    size = 1 << (8 * len(self_id.raw))

    def behind(node: NodeId) -> int:  # how far before this node on the ring
        return (int.from_bytes(self_id.raw) - int.from_bytes(node.raw)) % size

    nearest = sorted(incoming, key=behind)[shape.ring_guard :]
    candidates = sorted(
        (n for n in nearest if n not in keep),
        key=lambda n: hashlib.sha256(salt + n.raw).digest(),
    )
    stale = sorted((n for n in dialled if n not in keep), key=lambda n: n.raw)
    return frozenset((stale + candidates)[:surplus])
