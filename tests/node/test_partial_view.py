"""Nine real daemons on 127.0.0.1, more than a full mesh is kept for: each holds sessions
with a few members only (its partial view), yet what one shares reaches all, every member
shows every other online (presence reports), and a member that stops shows offline
everywhere while the others' overlay closes around it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from mesh.core.ids import NodeId
from mesh.core.overlay import OverlayShape
from mesh.node.daemon import Daemon
from tests.node.conftest import NodeHandle, mesh_of, wait_for
from tests.node.test_gossip import Make, browse, running, share_and_scan

SIZE = 9  # more than OverlayShape().full_mesh_up_to + 1
# The bound on the sessions a node holds (core/overlay.py): past it, it evicts some others
# dialled, which pick another member.
MOST_SESSIONS = OverlayShape().max_sessions


def online(d: Daemon) -> set[NodeId]:
    with_session = {s.peer for s in d.sessions.all() if s.peer_vector is not None}
    return with_session | {n for n in d.member_ids() if d.liveness.online(n)}


def describe(daemons: list[Daemon]) -> str:
    """Each node's sessions, view and who it shows online (for a failure's message)."""
    names = {d.node_id: d.name for d in daemons}
    lines = []
    for d in daemons:
        lines.append(
            f"{d.name}: sessions {sorted(names[s.peer] for s in d.sessions.all())}, "
            f"view {sorted(names[n] for n in d.overlay.wanted())}, "
            f"online {sorted(names[n] for n in online(d))}"
        )
    return "\n".join(lines)


async def until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_records_and_presence_cross_a_mesh_of_partial_views(
    nodes: Make, tmp_path: Path
) -> None:
    handles: list[NodeHandle] = [nodes(f"n{i}") for i in range(SIZE)]
    root, *others = handles
    mesh_of(root, *others)
    await root.start()
    for h in others:
        await h.start(static_peers=(root.address,))
    daemons = [running(h) for h in handles]
    ids = {d.node_id for d in daemons}

    def sessions() -> list[int]:
        return [len(d.sessions.all()) for d in daemons]

    def all_online() -> bool:
        return all(online(d) == ids - {d.node_id} for d in daemons)

    def dialled_only_its_view(d: Daemon) -> bool:
        dialled = {s.peer for s in d.sessions.all() if s.initiator == d.node_id}
        return dialled <= d.overlay.wanted()

    async def settled() -> bool:
        # Joiners first reach the root alone (the one address they know), then their
        # views, and prune the root's session unless their view holds it. What a node
        # accepts is others' choice: a popular one may hold more, but not the whole mesh
        # everywhere.
        return (
            all_online()
            and all(dialled_only_its_view(d) for d in daemons)
            and sum(sessions()) < SIZE * (SIZE - 1) * 3 // 4
        )

    try:
        await until(settled, 30, "every member online everywhere, over partial views")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{describe(daemons)}") from None
    assert max(sessions()) <= MOST_SESSIONS, describe(daemons)

    folder = tmp_path / "music"
    folder.mkdir()
    (folder / "a.flac").write_bytes(b"a" * 1000)
    writer = handles[4]
    await share_and_scan(writer, folder)

    async def everyone_lists_it() -> bool:
        for h in handles:
            if not any(e.entry.path == "a.flac" for e in await browse(h, writer.name)):
                return False
        return True

    await until(everyone_lists_it, 20, "the entry everywhere")

    # A member stops: every other shows it offline, and the rest stay online for all.
    gone = handles[2]
    gone_id = running(gone).node_id
    await gone.halt()
    rest = [d for d in daemons if d.node_id != gone_id]

    def closed_around() -> bool:
        want = ids - {gone_id}
        return all(online(d) == want - {d.node_id} for d in rest)

    await wait_for(closed_around, 30, "the stopped member offline, the rest online")
