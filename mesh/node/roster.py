"""The member list as `mesh members` shows it: membership joined with what the sessions and
the store know of each member (online, where, how far behind)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from mesh.core.errors import MeshError
from mesh.core.gossip import Ping
from mesh.core.ids import NodeId
from mesh.core.status import MemberView
from mesh.core.vector import VersionVector, lag
from mesh.transport.peer_client import target

if TYPE_CHECKING:
    from mesh.node.daemon import Daemon


async def member_views(daemon: Daemon) -> tuple[NodeId, list[MemberView]]:
    local = daemon.local

    def work() -> tuple[
        list[MemberView],
        dict[NodeId, tuple[str, int, int]],
        VersionVector,
        dict[NodeId, VersionVector],
    ]:
        views = local.member_views()
        published = {
            v.node_id: vector
            for v in views
            if not v.is_self and (vector := local.replica.published(v.node_id)) is not None
        }
        return views, local.addresses.last_seen(), local.replica.vector(), published

    views, seen, ours, published = await daemon.store(work)
    now, wall_ms = time.monotonic(), time.time() * 1000
    out = []
    for view in views:
        session = daemon.sessions.get(view.node_id)
        if view.is_self:
            out.append(view)
        elif session is None or session.peer_hello is None:
            host, port, seen_ms = seen.get(view.node_id, ("", 0, 0))
            # Online through others' sessions (presence reports), if not through ours.
            online = daemon.liveness.online(view.node_id)
            out.append(
                dataclasses.replace(
                    view,
                    online=online,
                    address=target(host, port) if host else "",
                    last_seen_s=0.0
                    if online
                    else max(0.0, (wall_ms - seen_ms) / 1000)
                    if seen_ms
                    else 0.0,
                    # What it acknowledged before it went, else what it last published.
                    unacked=lag(
                        ours,
                        daemon.acked.get(view.node_id)
                        or published.get(view.node_id, VersionVector()),
                        view.node_id,
                    ),
                )
            )
        else:
            out.append(
                dataclasses.replace(
                    view,
                    online=True,
                    address=session.address,
                    last_seen_s=max(0.0, now - session.last_heard),
                    unacked=session.unacked(ours),
                )
            )
    return daemon.membership.root, out


async def ask_the_quiet(daemon: Daemon, nodes: Iterable[NodeId]) -> None:
    """Ping each of `nodes` whose open session has been quiet for longer than a keepalive
    and its ping timeout, and wait (at most the ping timeout) for an answer.

    An idle link carries no frames between the session's backstop pings (gRPC's keepalive
    watches it underneath, out of the session's sight): without asking, a ledger took
    every idle peer for unreachable. A peer that is gone, or stopped but still
    acknowledging TCP (whose stream only the backstop ends), does not answer in time."""
    s = daemon.settings
    window = s.keepalive_s + s.ping_timeout_s
    quiet = {
        node: session
        for node in set(nodes)
        if (session := daemon.sessions.get(node)) is not None
        and session.peer_hello is not None
        and time.monotonic() - session.last_heard > window
    }
    if not quiet:
        return
    for session in quiet.values():
        session.heard.clear()
        # Any frame is news of the peer; the pong's nonce (0) matches no ping of the
        # session's own, so its round-trip bookkeeping ignores it. A write queued behind a
        # batch on a full link goes on after the wait (the stream shields it).
        with contextlib.suppress(MeshError, TimeoutError):
            await asyncio.wait_for(session.stream.send(Ping(nonce=0)), s.ping_timeout_s)
    # silent_since_ms then decides by when each was last heard.
    answers = [asyncio.ensure_future(session.heard.wait()) for session in quiet.values()]
    try:
        await asyncio.wait(answers, timeout=s.ping_timeout_s)
    finally:
        for answer in answers:
            answer.cancel()


def silent_since_ms(daemon: Daemon, node_id: NodeId, seen_ms: int, heard_ms: int) -> int:
    """When `node_id` was last heard from, if it is unreachable now; 0 while it answers.
    `seen_ms`: when it was last reached (the address book); `heard_ms`: anything else
    known to be from it then (its last loan status, say). All wall clock ms."""
    session = daemon.sessions.get(node_id)
    window = daemon.settings.keepalive_s + daemon.settings.ping_timeout_s
    if session is not None and session.peer_hello is not None:
        quiet = time.monotonic() - session.last_heard
        if quiet <= window:
            return 0
        return int((time.time() - quiet) * 1000)  # a link gone quiet, not yet closed
    if daemon.liveness.online(node_id):
        return 0  # others hold sessions with it
    # Nothing known: unheard of since this node started, at least.
    started_ms = int((time.time() - (time.monotonic() - daemon.started_at)) * 1000)
    return max(daemon.last_heard_ms.get(node_id, 0), seen_ms, heard_ms) or started_ms
