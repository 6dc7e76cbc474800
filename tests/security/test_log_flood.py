"""A member cannot fill a node's log: malformed requests are answered, not crashed on, and
the lines a peer causes are rate limited per peer and kind (a summary says how many more)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable

import grpc
import pytest

from mesh.core.gossip import Hello
from mesh.node import session as session_module
from mesh.node.peer_log import PeerLog
from tests.node.conftest import NodeHandle, mesh_of, wait_for
from tests.security.test_abuse import beside_a_bystander, raw_channel
from tests.security.test_relayed_records import Member

Make = Callable[[str], NodeHandle]
STREAMS = 300


def _crashes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if "raised by servicer method" in r.getMessage() or r.exc_info
    ]


async def test_malformed_manifest_and_fetch_requests_are_invalid_arguments_not_tracebacks(
    nodes: Make, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = nodes("a"), nodes("b")
    mesh_of(a, b)
    with b.local() as node:
        member = node.identity
    await a.start()
    channel = raw_channel(member, a)
    manifest = channel.unary_unary(
        "/mesh.v1.Mesh/Manifest", request_serializer=bytes, response_deserializer=bytes
    )
    fetch = channel.unary_stream(
        "/mesh.v1.Transfer/Fetch", request_serializer=bytes, response_deserializer=bytes
    )
    junk = [b"\xff\xff\x01garbage", b"\x0a\xff\xff\xff\xff\x0f", os.urandom(64), os.urandom(4096)]
    caplog.set_level(logging.DEBUG)
    try:
        for data in junk:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await manifest(data, timeout=5)
            assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, caught.value
            call = fetch(data, timeout=5)
            with contextlib.suppress(grpc.aio.AioRpcError):
                async for _ in call:
                    pass
            assert await call.code() is grpc.StatusCode.INVALID_ARGUMENT, await call.details()
        assert not _crashes(caplog), _crashes(caplog)[0]
    finally:
        await channel.close()


async def test_a_flood_of_streams_from_one_member_writes_a_bounded_log_and_a_summary(
    nodes: Make, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """b opens and drops 300 gossip streams: a writes a few lines about them, then one
    summary per kind once the window closes; c's lines are still written."""
    now = [0.0]
    peer_log = PeerLog(clock=lambda: now[0])
    monkeypatch.setattr(session_module, "peer_log", peer_log)
    a, c, hostile = await beside_a_bystander(nodes)
    assert a.daemon is not None and c.daemon is not None
    b_name = hostile.node_id.short()
    caplog.set_level(logging.INFO, logger="mesh.node.session")
    channel = a.dial(hostile)
    streams: list[Member] = []
    try:
        # Each new stream from b takes the place of the one open before it.
        for _ in range(STREAMS):
            member = Member(hostile, channel.gossip())
            streams.append(member)
            await member.open()
            assert isinstance(await member.stream.recv(), Hello)
        await wait_for(
            lambda: a.daemon.session(hostile.node_id) is not None,  # type: ignore[union-attr]
            what="b's last stream",
        )
        opened = a.daemon.session(hostile.node_id)
    finally:
        for member in streams:
            member.stream.close()
        await channel.close()
    assert opened is not None
    await wait_for(opened.closed.is_set, what="b's last stream to end")
    about_b = [r.getMessage() for r in caplog.records if b_name in r.getMessage()]
    # A burst per kind at most, not one per stream. (Streams that replace each other are
    # logged at debug only, so most floods write next to nothing; the rate limit is the
    # bound for whatever a member's streams still cause at INFO and above.)
    assert len(about_b) <= 4 * 10, about_b
    caplog.clear()
    now[0] += 60
    peer_log.flush()
    summaries = [r.getMessage() for r in caplog.records if "more like this from" in r.getMessage()]
    assert all(b_name in s for s in summaries), summaries
    assert len(summaries) <= 4, summaries  # one per kind
    # c, a member that did nothing wrong, is not silenced by b's flood.
    caplog.clear()
    await c.halt()
    await wait_for(
        lambda: any("c" in r.getMessage() and "closed" in r.getMessage() for r in caplog.records),
        what="a's line about c's stream",
    )
