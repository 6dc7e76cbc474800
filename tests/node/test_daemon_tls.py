"""Members reach each other over mutual TLS; nobody else reaches anything."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import grpc
import pytest

from mesh.core.gossip import Ping
from mesh.security import identity as ident
from tests.node.conftest import NodeHandle, mesh_of, wait_for

Make = Callable[[str], NodeHandle]


def sessions(h: NodeHandle) -> list[object]:
    assert h.daemon is not None
    return h.daemon.sessions.all()


async def test_two_members_hold_one_gossip_stream(nodes: Make) -> None:
    a, b = nodes("a"), nodes("b")
    mesh_of(a, b)
    # A short keepalive: the backstop ping waited for below comes every ten of them.
    await b.start(keepalive_s=0.1)
    await a.start(static_peers=(b.address,), keepalive_s=0.1)
    assert b.daemon is not None and a.daemon is not None
    # b learns a's address only now, so both sides dial: exactly one stream must survive.
    b.daemon.peers.add_address("127.0.0.1", a.daemon.port)
    await wait_for(lambda: len(sessions(a)) == 1 and len(sessions(b)) == 1, what="streams")
    await asyncio.sleep(0.5)  # let a possible duplicate settle
    sa, sb = a.daemon.sessions.all(), b.daemon.sessions.all()
    assert len(sa) == 1 and len(sb) == 1
    # Both ends kept the same stream. Which one depends on timing (b does not dial a peer
    # it already has a stream with); the tie-break itself is tested in test_session.py.
    assert sa[0].initiator == sb[0].initiator
    # The stream is live: the dialler's pings are answered.
    dialler = sa[0] if sa[0].initiator == a.daemon.node_id else sb[0]
    await wait_for(lambda: dialler.rtt_s is not None, what="pongs")


async def test_a_dial_race_leaves_one_stream_and_says_nothing(
    nodes: Make, caplog: pytest.LogCaptureFixture
) -> None:
    """Both members learn the other's address in the same instant, five times over (each
    round a fresh start of both): one stream, one "open" on each side, no warning, and a
    stop that each side reports as such."""
    a, b = nodes("a"), nodes("b")
    mesh_of(a, b)
    caplog.set_level(logging.INFO)
    for _ in range(5):
        caplog.clear()
        # A short keepalive: the session's backstop ping, which the test waits for below,
        # comes every ten of them.
        await a.start(keepalive_s=0.1)
        await b.start(keepalive_s=0.1)
        assert a.daemon is not None and b.daemon is not None
        a.daemon.peers.add_address("127.0.0.1", b.daemon.port)
        b.daemon.peers.add_address("127.0.0.1", a.daemon.port)

        def opened() -> list[str]:
            return [m for m in caplog.messages if m.startswith("gossip stream with")]

        await wait_for(
            lambda: len(sessions(a)) == 1 and len(sessions(b)) == 1 and len(opened()) == 2,
            what="one stream, announced on both sides",
        )
        (sa,), (sb,) = a.daemon.sessions.all(), b.daemon.sessions.all()
        assert sa.initiator == sb.initiator
        # The stream is live: the dialler's pings are answered. Which stream that is may
        # still change: the tie-break can replace the one seen above by the other dial,
        # whose dialler is the other node.
        both = (a.daemon, b.daemon)
        await wait_for(
            lambda ds=both: any(x.rtt_s for d in ds for x in d.sessions.all()),  # type: ignore[misc]
            what="pongs",
        )
        assert sorted(opened()) == ["gossip stream with a open", "gossip stream with b open"]
        # Both stop at once: each parts from the other (neither waits for the other to
        # close first), and each says once that the stream closed.
        took = await asyncio.gather(a.halt(), b.halt())
        assert max(took) < 1.0, took
        closed = [m for m in caplog.messages if "closed" in m]
        assert len(closed) == 2, closed
        loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert loud == []


async def test_either_side_can_dial(nodes: Make) -> None:
    a, b = nodes("a"), nodes("b")
    mesh_of(a, b)
    await a.start()
    await b.start(static_peers=(a.address,))
    await wait_for(lambda: len(sessions(a)) == 1 and len(sessions(b)) == 1, what="stream")
    assert b.daemon is not None
    assert sessions(a)[0].initiator == b.daemon.node_id  # type: ignore[attr-defined]


async def test_a_valid_certificate_that_is_not_a_member_is_refused_at_the_handshake(
    nodes: Make,
) -> None:
    a = nodes("a")
    await a.start()
    assert a.daemon is not None
    stranger = ident.generate()
    channel = a.dial(stranger)
    try:
        stream = channel.gossip()
        with pytest.raises(Exception) as info:
            await stream.send(Ping(nonce=1))
            await stream.recv()
        cause = info.value.__cause__
        assert isinstance(cause, grpc.aio.AioRpcError)
        assert cause.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake failed
    finally:
        await channel.close()
    assert sessions(a) == []
    assert a.daemon.server.calls.count(stranger.node_id) == 0


async def test_a_node_that_does_not_trust_us_refuses_us(nodes: Make) -> None:
    a, c = nodes("a"), nodes("c")
    with c.local() as node:
        node.admit(*a.identity())  # c counts a as a member, but a never heard of c
    with a.local() as node:
        node.found_mesh()
    await a.start()
    await c.start(static_peers=(a.address,))
    await asyncio.sleep(1.0)
    assert sessions(a) == [] and sessions(c) == []


async def test_removing_a_member_ends_its_stream_within_a_second(nodes: Make) -> None:
    a, b = nodes("a"), nodes("b")
    mesh_of(a, b)
    await a.start()
    await b.start(static_peers=(a.address,))
    await wait_for(lambda: len(sessions(a)) == 1 and len(sessions(b)) == 1, what="stream")
    assert a.daemon is not None and b.daemon is not None
    began = time.monotonic()
    await a.daemon.remove(b.daemon.node_id)
    await wait_for(lambda: not sessions(a) and not sessions(b), within=1.0, what="stream end")
    assert time.monotonic() - began < 1.0
    assert not a.daemon.is_member(b.daemon.node_id)
    # And it stays out: b keeps retrying, a keeps refusing.
    await asyncio.sleep(0.5)
    assert not sessions(a) and not sessions(b)


async def test_a_member_added_while_running_is_trusted_without_restart(nodes: Make) -> None:
    a, b = nodes("a"), nodes("b")
    with a.local() as node:
        node.found_mesh()
    await a.start()
    assert a.daemon is not None
    await a.daemon.admit(*b.identity())
    local = a.daemon.local
    records = await a.daemon.store(lambda: list(local.records.membership()))
    with b.local() as node:
        node.join_mesh(a.daemon.node_id, records)
    await b.start(static_peers=(a.address,))
    await wait_for(lambda: len(sessions(a)) == 1, what="stream after admission")


async def test_shutdown_is_quick_with_open_streams(nodes: Make) -> None:
    a, b = nodes("a"), nodes("b")
    mesh_of(a, b)
    await a.start()
    await b.start(static_peers=(a.address,))
    await wait_for(lambda: len(sessions(b)) == 1, what="stream")
    assert await a.halt() < 5.0
    assert await b.halt() < 5.0
