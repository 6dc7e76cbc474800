"""Session handshake rules, over an in-memory stream pair (the transport is tested for real
in test_daemon_tls.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from mesh.core.epoch import Epoch
from mesh.core.errors import PeerUnavailableError
from mesh.core.gossip import PROTOCOL_VERSION, Batch, GossipFrame, Hello
from mesh.core.ids import NodeId
from mesh.core.replica import ApplyResult
from mesh.core.vector import VersionVector
from mesh.node.changes import ChangeSignal
from mesh.node.peers import SessionRegistry
from mesh.node.session import BACKSTOP_PINGS, Session


class MemoryStream:
    def __init__(self, peer: NodeId, initiator: NodeId) -> None:
        self.peer = peer
        self.initiator = initiator
        self.inbox: asyncio.Queue[GossipFrame | None] = asyncio.Queue()
        self.other: MemoryStream | None = None
        self.closed = False
        self.address = "memory"

    async def send(self, frame: GossipFrame) -> None:
        if self.closed or self.other is None or self.other.closed:
            raise PeerUnavailableError("closed")
        self.other.inbox.put_nowait(frame)

    async def recv(self) -> GossipFrame | None:
        return await self.inbox.get()

    async def aclose(self, within: float) -> None:
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.other is not None:
                self.other.inbox.put_nowait(None)


def pair(a: NodeId, b: NodeId, initiator: NodeId) -> tuple[MemoryStream, MemoryStream]:
    at_a, at_b = MemoryStream(b, initiator), MemoryStream(a, initiator)
    at_a.other, at_b.other = at_b, at_a
    return at_a, at_b


@dataclass
class Host:
    node_id: NodeId
    name: str
    epoch: Epoch = field(default_factory=lambda: Epoch(1, 1))
    registry: SessionRegistry = field(init=False)
    changes: ChangeSignal = field(default_factory=ChangeSignal)
    stopping: bool = False

    def __post_init__(self) -> None:
        self.registry = SessionRegistry(self.node_id)

    # An empty replica: these tests are about the handshake (gossip runs for real in
    # tests/node/test_gossip.py).
    async def our_vector(self) -> VersionVector:
        return VersionVector()

    async def batches_for(self, peer: VersionVector, max_bytes: int) -> list[Batch]:
        return []

    async def membership_for(self, peer: VersionVector) -> list[Batch]:
        return []

    async def apply_all(
        self, batches: Sequence[Batch], peer: NodeId
    ) -> tuple[list[ApplyResult], VersionVector]:
        raise AssertionError("no batches are sent here")

    def admit_session(self, session: Session) -> bool:
        return self.registry.admit(session)

    def release(self, session: Session) -> bool:
        return self.registry.release(session)

    def announce(self, session: Session) -> bool:
        return self.registry.announce(session)


A = NodeId(b"\x01" * 32)
B = NodeId(b"\x02" * 32)


def sessions(ha: Host, hb: Host, initiator: NodeId) -> tuple[Session, Session]:
    sa, sb = pair(ha.node_id, hb.node_id, initiator)
    return (
        Session(ha, sa, keepalive_s=0.05, timeout_s=0.5),  # type: ignore[arg-type]
        Session(hb, sb, keepalive_s=0.05, timeout_s=0.5),  # type: ignore[arg-type]
    )


async def test_hello_then_the_dialler_pings_and_both_hear_each_other() -> None:
    ha, hb = Host(A, "a"), Host(B, "b")
    s1, s2 = sessions(ha, hb, A)  # a dialled
    tasks = [asyncio.create_task(s.run()) for s in (s1, s2)]
    for _ in range(100):
        if s1.rtt_s is not None:
            break
        await asyncio.sleep(0.01)
    assert s1.peer_name == "b" and s2.peer_name == "a"
    # Only the dialler pings (pinging both ways doubled an idle mesh's traffic); the other
    # end hears the pings, so neither takes the other for silent.
    assert s1.rtt_s is not None and s2.rtt_s is None
    heard = s2.last_heard
    for _ in range(100):
        if s2.last_heard > heard:
            break
        await asyncio.sleep(0.01)
    assert s2.last_heard > heard
    s1.close()
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    assert ha.registry.all() == [] and hb.registry.all() == []


async def test_an_incompatible_version_is_a_clear_error_on_both_sides(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ha, hb = Host(A, "a"), Host(B, "b")
    sa, sb = pair(A, B, A)
    s1 = Session(ha, sa, keepalive_s=0.05, timeout_s=0.5)  # type: ignore[arg-type]
    # b is a newer mesh: it speaks a version a does not know, and would accept a's.
    s2 = Session(hb, sb, keepalive_s=0.05, timeout_s=0.5, version=99, compatible=range(1, 100))  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        await asyncio.wait_for(asyncio.gather(s1.run(), s2.run()), 3)
    messages = [r.getMessage() for r in caplog.records]
    assert any("incompatible protocol" in m and "upgrade the older mesh" in m for m in messages)
    assert any("a ended the stream: incompatible protocol" in m for m in messages)
    assert ha.registry.all() == [] and hb.registry.all() == []


async def test_a_hello_naming_another_node_is_refused() -> None:
    ha, hb = Host(A, "a"), Host(NodeId(b"\x03" * 32), "impostor")
    sa, sb = pair(A, B, A)  # the TLS session says b, the hello says someone else
    s1 = Session(ha, sa, keepalive_s=0.05, timeout_s=0.5)  # type: ignore[arg-type]
    s2 = Session(hb, sb, keepalive_s=0.05, timeout_s=0.5)  # type: ignore[arg-type]
    await asyncio.wait_for(asyncio.gather(s1.run(), s2.run()), 3)
    assert s1.peer_hello is None
    assert ha.registry.all() == []


def test_duplicates_keep_the_stream_the_lower_id_dialled() -> None:
    registry = SessionRegistry(B)
    host = Host(B, "b")
    from_a = Session(host, MemoryStream(A, A), keepalive_s=1, timeout_s=1)  # type: ignore[arg-type]
    from_b = Session(host, MemoryStream(A, B), keepalive_s=1, timeout_s=1)  # type: ignore[arg-type]
    assert registry.admit(from_b)
    assert registry.admit(from_a)  # A < B: a's stream wins, b's is closed
    assert registry.get(A) is from_a
    assert not registry.admit(from_b)
    again = Session(host, MemoryStream(A, A), keepalive_s=1, timeout_s=1)  # type: ignore[arg-type]
    assert registry.admit(again)  # a redialled: the newer stream replaces the old one


async def test_the_dialler_pings_a_protocol_3_peer_every_keepalive_a_newer_one_rarely() -> None:
    # From protocol 4 gRPC's keepalive watches the link at both ends; an older peer still
    # takes a session silent for keepalive + timeout for dead, so it gets its pings.
    for version, period in ((3, 0.05), (PROTOCOL_VERSION, 0.05 * BACKSTOP_PINGS)):
        ha, hb = Host(A, "a"), Host(B, "b")
        sa, sb = pair(A, B, A)
        s1 = Session(ha, sa, keepalive_s=0.05, timeout_s=0.5)  # type: ignore[arg-type]
        s2 = Session(hb, sb, keepalive_s=0.05, timeout_s=0.5, version=version)  # type: ignore[arg-type]
        tasks = [asyncio.create_task(s.run()) for s in (s1, s2)]
        for _ in range(100):
            if s1.peer_hello is not None and s2.peer_hello is not None:
                break
            await asyncio.sleep(0.01)
        assert s1._ping_period() == pytest.approx(period)
        assert s2._ping_period() == pytest.approx(0.05 * BACKSTOP_PINGS)
        s1.close()
        await asyncio.wait_for(asyncio.gather(*tasks), 2)


async def test_a_reunion_carried_on_by_a_stream_not_yet_announced_still_ends_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A redial replaces the announced stream quietly; if the node stops before the peer
    admitted the new one (its vector not yet come), the log still closes the reunion: every
    "open" has its "closed" (tests/lan/test_quiet_logs.py saw one missing)."""
    a, b = NodeId(b"\x05" * 32), NodeId(b"\x06" * 32)  # ids no other test logs about
    ha, hb = Host(a, "a"), Host(b, "b")
    s1, s2 = sessions(ha, hb, a)
    with caplog.at_level(logging.INFO, logger="mesh.node.session"):
        first = [asyncio.create_task(s.run()) for s in (s1, s2)]
        for _ in range(200):
            if s1.announced and s2.announced:
                break
            await asyncio.sleep(0.01)
        assert s1.announced and s2.announced
        # a dials again; b's hello arrives, b's vector (its admission) not yet.
        at_a, at_b = pair(a, b, a)
        at_a.inbox.put_nowait(
            Hello(node_id=b, epoch=hb.epoch, protocol_version=PROTOCOL_VERSION, name="b")
        )
        s3 = Session(ha, at_a, keepalive_s=0.05, timeout_s=0.5)  # type: ignore[arg-type]
        third = asyncio.create_task(s3.run())
        await asyncio.wait_for(asyncio.gather(*first), 2)  # the old stream yielded to it
        assert ha.registry.get(b) is s3 and not s3.announced
        s3.close(stopping=True)
        at_b.close()  # b's end goes too, as b reads the parting
        await asyncio.wait_for(third, 2)
    said = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("gossip stream with b")
    ]
    assert said == ["gossip stream with b open", "gossip stream with b closed by this node"]


def test_a_stop_between_a_duplicate_and_its_replacement_still_closes_the_reunion() -> None:
    """The peer ends the announced stream as a duplicate (its other dial replaces it); if
    this node stops before the replacement opens, no session is left to say the reunion
    closed: the registry names it, and the stop says so (tests/lan/test_quiet_logs.py saw
    an "open" with no "closed" at an all-at-once stop)."""
    a, b = NodeId(b"\x07" * 32), NodeId(b"\x08" * 32)
    ha = Host(a, "a")
    hello = Hello(node_id=b, epoch=ha.epoch, protocol_version=PROTOCOL_VERSION, name="b")
    first = Session(ha, MemoryStream(b, a), keepalive_s=1, timeout_s=1)  # type: ignore[arg-type]
    first.peer_hello = hello
    registry = ha.registry
    assert registry.admit(first) and registry.announce(first)
    assert registry.unclosed() == []  # its own session will say it
    first.duplicate = True
    assert not registry.release(first)
    assert registry.unclosed() == ["b"]
    second = Session(ha, MemoryStream(b, b), keepalive_s=1, timeout_s=1)  # type: ignore[arg-type]
    second.peer_hello = hello
    assert registry.admit(second)
    assert registry.unclosed() == []  # the replacement's end is logged (release says so)
    assert registry.release(second)
