"""What a live change costs on an established stream: the record goes to the peer once and
does not come back to the node that wrote it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from mesh.core.ids import NodeId
from mesh.node.daemon import Daemon
from mesh.store.index import ScanBatch
from tests.node.conftest import NodeHandle, mesh_of, wait_for

Make = Callable[[str], NodeHandle]


def running(h: NodeHandle) -> Daemon:
    assert h.daemon is not None
    return h.daemon


async def holds(h: NodeHandle, origin: NodeId) -> int:
    clock = (await running(h).our_vector()).get(origin)
    return clock.seq if clock is not None else 0


async def test_a_record_pushed_live_is_not_sent_back(nodes: Make, tmp_path: Path) -> None:
    a, b = nodes("a"), nodes("b")
    mesh_of(a, b)
    folder = tmp_path / "files"
    folder.mkdir()
    await a.start()
    await b.start(static_peers=(a.address,))
    da, db = running(a), running(b)
    await da.store(da.local.share, str(folder), "lib")
    a_id, b_id = da.node_id, db.node_id
    target = await holds(a, a_id)

    deadline = time.monotonic() + 10
    while await holds(b, a_id) < target or await holds(a, b_id) < await holds(b, b_id):
        assert time.monotonic() < deadline, "a and b never caught up with each other"
        await asyncio.sleep(0.02)
    session_a, session_b = da.session(b_id), db.session(a_id)
    assert session_a is not None and session_b is not None
    sent_back, received = session_b.records_sent, session_a.records_received
    for i in range(3):
        rows = [(f"f{i}", i, i, i, bytes(16), bytes(16))]
        await da.store(da.local.index.apply, "lib", ScanBatch(new=rows))
        seq = await holds(a, a_id)
        await wait_for(
            lambda seq=seq: (c := session_a.acked.get(a_id)) is not None and c.seq >= seq
        )
    assert session_a.records_sent >= 3
    # b took them from a: it offered a nothing back (a would have ignored its own records).
    assert session_b.records_sent == sent_back
    assert session_a.records_received == received
