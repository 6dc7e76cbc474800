"""What a running node says about itself for `mesh status`: addresses, how each library is
followed and when it last changed, and how far behind each member is."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from mesh.core.ids import NodeId
from mesh.core.status import MemberView
from mesh.node.daemon import Daemon
from tests.node.conftest import NodeHandle, mesh_of, wait_for

Make = Callable[[str], NodeHandle]


def running(h: NodeHandle) -> Daemon:
    assert h.daemon is not None
    return h.daemon


async def member(h: NodeHandle, node_id: NodeId) -> MemberView:
    _, views = await running(h).members()
    return next(v for v in views if v.node_id == node_id)


async def test_addresses_libraries_and_lag(nodes: Make, tmp_path: Path) -> None:
    a, b = nodes("a"), nodes("b")
    mesh_of(a, b)
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "one").write_bytes(b"1")
    (folder / "two").write_bytes(b"2")
    da = await a.start()
    began_ms = time.time() * 1000
    await da.store(da.local.share, str(folder), "lib")
    async for _ in da.scan(["lib"]):
        pass
    da.watch.libraries_changed()
    st = await da.status()
    assert st.addresses == (f"127.0.0.1:{da.port}",)
    (lib,) = st.libraries
    assert (lib.files, lib.bytes) == (2, 2)
    assert began_ms - 1000 <= lib.changed_ms <= time.time() * 1000

    await wait_for(lambda: "lib" in da.watch.watched(), 5, "lib watched")
    assert (await da.status()).libraries[0].watch == "events"

    db = await b.start(static_peers=(a.address,))
    b_id = db.node_id
    in_sync = {"v": False}

    async def b_in_sync() -> bool:
        view = await member(a, b_id)
        in_sync["v"] = view.online and view.unacked == 0
        return in_sync["v"]

    deadline = time.monotonic() + 10
    while not await b_in_sync():
        assert time.monotonic() < deadline, "b never caught up"
        await asyncio.sleep(0.05)

    # A deletion leaves a tombstone, so b publishes the vector that covers it.
    (folder / "two").unlink()
    deadline = time.monotonic() + 10
    while await da.store(da.local.replica.published, b_id) is None:
        assert time.monotonic() < deadline, "a never got the vector b published"
        await asyncio.sleep(0.05)
    await b.halt()
    port = da.port
    await a.halt()

    # Restarted (on its port, so it has no new address to tell), a has no acknowledgement
    # from b: b's published vector tells its lag.
    da = await a.start(port=port)
    view = await member(a, b_id)
    assert not view.online
    # At most a's own vector record, which a may have published after b's (without b's,
    # every record a holds would count: 8 here).
    assert view.unacked <= 1
    (folder / "three").write_bytes(b"3")
    deadline = time.monotonic() + 5
    while (await member(a, b_id)).unacked <= view.unacked:
        assert time.monotonic() < deadline, "b's lag did not grow with a's change"
        await asyncio.sleep(0.05)


async def test_status_answers_while_the_store_thread_is_busy(nodes: Make, tmp_path: Path) -> None:
    """Control reads go through the read side's own connection (node/reading.py): a write
    transaction held open on the store thread, as a large sync's batches are, does not
    hold up `mesh status` or `mesh ls`."""
    a = nodes("a")
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "one").write_bytes(b"1")
    da = await a.start()
    await da.store(da.local.share, str(folder), "lib")
    async for _ in da.scan(["lib"]):
        pass
    inside, release = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def busy() -> None:
        with da.local.db.transaction() as conn:
            conn.execute("UPDATE libraries SET changed_ms = changed_ms")
            loop.call_soon_threadsafe(inside.set)
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result()

    holding = asyncio.ensure_future(da.store(busy))
    try:
        await asyncio.wait_for(inside.wait(), 10)
        status = await asyncio.wait_for(da.status(), 10)
        assert [lib.files for lib in status.libraries] == [1]
        assert len(await asyncio.wait_for(da.browse(None, None), 10)) == 1
        assert not holding.done()  # answered while the store thread still held its write
    finally:
        release.set()
        await holding


async def test_an_online_member_on_an_idle_link_is_last_seen_now(
    nodes: Make, tmp_path: Path
) -> None:
    """An idle session carries a frame only every backstop ping: `mesh members`, `peers`
    and `status` said "25.0 s ago" for a member right there. The daemon asks first."""
    from mesh.node.control import ControlHandlers

    a, b = nodes("a"), nodes("b")
    mesh_of(a, b)
    da = await a.start()
    db = await b.start(static_peers=(a.address,))
    await wait_for(lambda: da.sessions.get(db.node_id) is not None, 10, "a session")
    session = da.sessions.get(db.node_id)
    assert session is not None
    # Quiet for longer than a keepalive and its ping timeout: an idle link.
    session.last_heard = time.monotonic() - (da.settings.keepalive_s + 20)
    _, views = await ControlHandlers(da).members()
    seen = next(v for v in views if v.node_id == db.node_id)
    assert seen.online and seen.last_seen_s < 5, seen  # what the CLI shows as "now"
