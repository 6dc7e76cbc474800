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
