"""What the daemon does when membership changes: taking the new membership (trust, the
view, calls of members gone), telling a removed caller, learning this node's own removal,
`mesh remove` and `mesh peer add`.

Functions of the running daemon, as roster.py's are: the daemon keeps the membership and
the parts these touch; this module holds the steps, so daemon.py stays composition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mesh.core.errors import InvalidArgumentError, MeshError, PeerUnavailableError, RefusedError
from mesh.core.ids import NodeId
from mesh.core.status import PeerCheck, RemovalPlan
from mesh.fs.lender_links import link_names
from mesh.node import removal
from mesh.transport.peer_client import target
from mesh.transport.tls import probe_certificate
from mesh.wire import envelope as wire_envelope

if TYPE_CHECKING:
    from mesh.node.daemon import Daemon

log = logging.getLogger(__name__)


async def reload(d: Daemon) -> None:
    """Take the membership the records now say; trust follows, removed nodes are cut off
    now."""
    old = d.membership
    new = await d.store(lambda: d.local.membership)
    gone = set(old.members) - set(new.members)
    renamed = {m.node_id: m.name for m in new.members.values()}
    if renamed != {m.node_id: m.name for m in old.members.values()}:
        await asyncio.to_thread(link_names, d.borrowed.root, renamed)
    d.adopt(new)
    d.overlay.members_changed()
    d.liveness.members_changed()
    for peer in gone:
        cancelled = d.server.cancel_peer(peer)
        d.sessions.close(peer)
        await d.peers.drop(peer)
        log.info("%s is no longer a member: %d open calls ended", peer.short(), cancelled)


async def farewell(d: Daemon, node_id: NodeId) -> list[bytes]:
    """For a removed node that calls: the records that show its removal, serialized."""
    if node_id not in d.membership.removed:
        return []
    records = await d.store(removal.proof, d.local, node_id)
    return [wire_envelope.to_bytes(e) for e in records]


async def learn_removal(d: Daemon, records: tuple[bytes, ...], by: NodeId) -> None:
    """A member refused this node as removed: check its records and, if they show it,
    stop dialling."""
    envelopes = []
    for raw in records:
        with contextlib.suppress(MeshError):
            envelopes.append(wire_envelope.from_bytes(raw))
    removed = await d.store(removal.learn, d.local, envelopes)
    await d.reload_members()
    if not removed:
        log.warning("%s says this node was removed, but its records do not show it", by.short())
        return
    found = await d.store(d.local.removal)
    assert found is not None
    log.warning("%s; not dialling the members any more", removal.describe(*found))
    d.peers.halt()


async def add_peer(d: Daemon, host: str, port: int) -> PeerCheck:
    """Check whose node answers at host:port and keep a connection to it if a member's."""
    where = target(host, port)
    try:
        der = await probe_certificate(host, port, d.settings.handshake_timeout_s)
    except PeerUnavailableError as exc:
        d.peers.add_address(host, port)  # it may be asleep: keep trying
        return PeerCheck(node_id=None, problem=str(exc))
    node_id = NodeId.of_certificate(der)
    if node_id == d.node_id:
        raise InvalidArgumentError(f"{where} is this node itself")
    member = d.member(node_id)
    if member is None:
        raise RefusedError(
            f"{where} is node {node_id.short()}, which is not a member of this mesh; "
            "invite it first (`mesh invite` here, `mesh join` there)"
        )
    d.peers.add_address(host, port)
    return PeerCheck(node_id=node_id, name=member.name)


async def remove_named(
    d: Daemon, name: str, keep: Sequence[str] = (), *, dry_run: bool = False
) -> RemovalPlan:
    """`mesh remove`: the member and those standing only on its admissions (but for
    `keep`); their open calls end now."""
    plan = await d.store(lambda: d.local.remove(name, keep, dry_run=dry_run))
    if plan.done:
        await d.reload_members()
    return plan


__all__ = ["add_peer", "farewell", "learn_removal", "reload", "remove_named"]
