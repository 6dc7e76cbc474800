"""Abuse by a member or a LAN outsider: oversized messages, idle and stalled connections,
gossip floods, and a lender trying to fill the borrower's disk.

(A loan over the quota is refused and nothing fetched: tests/node/test_lending.py,
test_over_the_quota_is_refused_and_nothing_is_fetched; a chunk longer than the manifest
says is never written: tests/fs/test_borrowed.py,
test_a_chunk_of_the_wrong_length_or_index_is_refused.)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import resource
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from mesh.core.envelope import Envelope
from mesh.core.epoch import Epoch
from mesh.core.gossip import PROTOCOL_VERSION, Batch, Hello, VectorFrame
from mesh.core.records import Kind
from mesh.core.vector import VersionVector
from mesh.node.local import now_ms
from mesh.security.identity import Identity
from mesh.transport import options
from mesh.transport.peer_client import target
from mesh.transport.tls import client_credentials
from mesh.v1 import mesh_pb2_grpc
from mesh.wire import gossip as wire_gossip
from tests.node.conftest import NodeHandle, mesh_of, wait_for
from tests.node.test_gossip import share_and_scan
from tests.node.test_lending import folder_with, lend, loans, start

Make = Callable[[str], NodeHandle]
EPOCH = Epoch(int(time.time() * 1000), 7)


def raw_channel(me: Identity, peer: NodeHandle) -> grpc.aio.Channel:
    """A pinned channel to `peer` as `me`, without mesh's own send limit: a hostile member
    is not bound by our client code."""
    assert peer.daemon is not None
    opts = [(k, v) for k, v in options.channel_options(1, 1) if k != "grpc.max_send_message_length"]
    return grpc.aio.secure_channel(
        target("127.0.0.1", peer.daemon.port),
        client_credentials(me, peer.daemon.identity.cert_der),
        options=[*opts, ("grpc.max_send_message_length", 64 << 20)],
    )


def hello(me: Identity) -> object:
    return wire_gossip.to_wire(
        Hello(node_id=me.node_id, epoch=EPOCH, protocol_version=PROTOCOL_VERSION)
    )


def oversized_batch(me: Identity) -> object:
    """A batch of 140 records of 64 KiB: each one allowed, together over the 8 MiB limit."""
    envs = tuple(
        Envelope(origin=me.node_id, epoch=EPOCH, seq=i, kind=Kind.ENTRY, body=b"x" * (64 << 10))
        for i in range(1, 141)
    )
    batch = Batch(
        origin=me.node_id, epoch=EPOCH, after_seq=0, through_seq=140, envelopes=envs, batch_id=1
    )
    return wire_gossip.to_wire(batch)


def identity_of(h: NodeHandle) -> Identity:
    with h.local() as node:
        return node.identity


async def beside_a_bystander(nodes: Make) -> tuple[NodeHandle, NodeHandle, Identity]:
    """a running with c in session with it, and the identity of b, the member that turns
    hostile: what b does must leave a serving c."""
    a, b, c = nodes("a"), nodes("b"), nodes("c")
    mesh_of(a, b, c)
    hostile = identity_of(b)
    await a.start()
    await c.start(static_peers=(a.address,))
    assert a.daemon is not None and c.daemon is not None
    await wait_for(lambda: a.daemon.session(c.daemon.node_id), what="c's stream")  # type: ignore[union-attr]
    return a, c, hostile


async def test_a_message_over_the_size_limit_is_refused_and_other_peers_are_unaffected(
    nodes: Make,
) -> None:
    a, c, hostile = await beside_a_bystander(nodes)
    assert a.daemon is not None and c.daemon is not None
    kept = a.daemon.session(c.daemon.node_id)
    channel = raw_channel(hostile, a)
    try:
        call = mesh_pb2_grpc.MeshStub(channel).Gossip()
        await call.write(hello(hostile))
        await call.write(oversized_batch(hostile))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            while True:
                await asyncio.wait_for(call.read(), 10)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await channel.close()
    # c's stream is the same one, and still alive: a ping goes both ways after the attack.
    assert a.daemon.session(c.daemon.node_id) is kept
    heard = kept.last_heard
    await wait_for(lambda: kept.last_heard > heard, within=5, what="c to be heard again")
    assert not a.daemon.session(hostile.node_id)


async def settle(lender: NodeHandle, ids: list[str], within: float = 15) -> dict[str, str]:
    """The phases of these loans as the lender sees them, once each is settled."""
    deadline = time.monotonic() + within
    while True:
        phases = {i: line.phase for i, line in (await loans(lender)).items() if i in ids}
        if len(phases) == len(ids) and set(phases.values()) <= {"held", "refused", "failed"}:
            return phases
        assert time.monotonic() < deadline, phases
        await asyncio.sleep(0.05)


async def accept_together(borrower: NodeHandle, ids: list[str]) -> None:
    """Once all these loans wait for acceptance, accept them in one step: the agent then
    starts every pull in the same pass, as when loans arrive together."""
    d = borrower.daemon
    assert d is not None

    async def waiting() -> bool:
        lines = await loans(borrower)
        return all(i in lines and lines[i].phase == "awaiting acceptance" for i in ids)

    deadline = time.monotonic() + 15
    while not await waiting():
        assert time.monotonic() < deadline, await loans(borrower)
        await asyncio.sleep(0.05)
    await d.store(lambda: [d.lending.answer_loan(i, True, now_ms()) for i in ids])


async def test_a_borrower_cannot_be_made_to_fill_its_disk_past_its_policy(
    nodes: Make, tmp_path: Path
) -> None:
    # Three lenders (so the pulls do not share a staging file, see the test below) each
    # lend 600 bytes to a laptop whose quota is 1000; the laptop accepts all three at once.
    lenders = [nodes(f"tower{i}") for i in range(3)]
    laptop = nodes("laptop")
    mesh_of(lenders[0], *lenders[1:], laptop)
    loan_ids = []
    for i, lender in enumerate(lenders):
        await start(lender, tmp_path)
        folder = await folder_with(tmp_path, f"big{i}", {f"f{i}": bytes([i]) * 600})
        await share_and_scan(lender, folder, "Big")
        loan_ids.append((lender, (await lend(lender, f"Big/f{i}", "laptop")).id))
    await start(
        laptop,
        tmp_path,
        static_peers=tuple(h.address for h in lenders),
        quota=1000,
        borrow_ask_first=True,
    )
    await accept_together(laptop, [i for _, i in loan_ids])
    phases = [(await settle(lender, [i]))[i] for lender, i in loan_ids]
    on_disk = sum(
        p.stat().st_size for p in (tmp_path / "laptop-borrowed").rglob("*") if p.is_file()
    )
    assert phases.count("held") == 1, phases
    assert on_disk <= 1000


async def test_loans_from_one_lender_arriving_together_never_share_a_staging_file(
    nodes: Make, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tower, laptop = nodes("tower"), nodes("laptop")
    mesh_of(tower, laptop)
    await start(tower, tmp_path)
    files = {f"f{i}": bytes([i]) * 600 for i in range(4)}
    await share_and_scan(tower, await folder_with(tmp_path, "big", files), "Big")
    ids = [(await lend(tower, f"Big/{name}", "laptop")).id for name in files]
    await start(laptop, tmp_path, static_peers=(tower.address,), borrow_ask_first=True)
    await accept_together(laptop, ids)
    assert set((await settle(tower, ids)).values()) == {"held"}
    for name, data in files.items():
        assert (tmp_path / "laptop-borrowed" / "tower" / "Big" / name).read_bytes() == data
    # Each was right the first time: no pull found another's bytes in its staging file.
    assert not [r for r in caplog.records if "does not have the content hash" in r.getMessage()]


def half_a_client_hello() -> bytes:
    """The first half of a real TLS ClientHello: a handshake that never completes."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    return hello[: len(hello) // 2]


@contextlib.contextmanager
def open_files(at_least: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < at_least:
        if hard != resource.RLIM_INFINITY and hard < at_least:
            pytest.skip(f"needs {at_least} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (at_least, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_500_idle_connections_and_50_stalled_handshakes_do_not_stop_a_member_being_served(
    nodes: Make,
) -> None:
    a, b = nodes("a"), nodes("b")
    mesh_of(a, b)
    member = identity_of(b)
    with open_files(4096):
        await a.start()
        assert a.daemon is not None
        loop = asyncio.get_running_loop()
        stalled = half_a_client_hello()
        socks: list[socket.socket] = []
        try:
            for i in range(550):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.setblocking(False)
                await loop.sock_connect(s, ("127.0.0.1", a.daemon.port))
                if i >= 500:
                    await loop.sock_sendall(s, stalled)
            channel = a.dial(member)
            began = time.monotonic()
            try:
                stream = channel.gossip()
                first = await asyncio.wait_for(stream.recv(), 5)
                assert isinstance(first, Hello) and first.node_id == a.daemon.node_id
                stream.close()
            finally:
                await channel.close()
            served_in = time.monotonic() - began
            # The attackers are all still connected: they were not simply dropped first.
            alive = sum(1 for s in socks if _still_open(s))
        finally:
            for s in socks:
                s.close()
        assert served_in < 5
        assert alive == 550


def _still_open(s: socket.socket) -> bool:
    """Whether the server has not closed this connection (nothing to read, no EOF)."""
    try:
        return s.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError as exc:
        return exc.errno not in (errno.ECONNRESET, errno.EPIPE)


FLOOD_BUDGET = 32 << 20  # what a busy node may hold of one member's unread frames


async def test_a_gossip_flood_from_one_member_is_throttled_within_a_bounded_memory_budget(
    nodes: Make, tmp_path: Path
) -> None:
    a, c, hostile = await beside_a_bystander(nodes)
    assert a.daemon is not None and c.daemon is not None
    # Half a megabyte of junk records per batch, the same bytes again and again.
    envs = tuple(
        Envelope(origin=hostile.node_id, epoch=EPOCH, seq=i, kind=Kind.ENTRY, body=b"y" * 1000)
        for i in range(1, 501)
    )
    flood = wire_gossip.to_wire(
        Batch(
            origin=hostile.node_id,
            epoch=EPOCH,
            after_seq=0,
            through_seq=500,
            envelopes=envs,
            batch_id=1,
        )
    )
    channel = raw_channel(hostile, a)
    gate = threading.Event()
    busy: asyncio.Future[object] | None = None
    flooding: asyncio.Task[int] | None = None
    try:
        call = mesh_pb2_grpc.MeshStub(channel).Gossip()
        await call.write(hello(hostile))
        await call.write(wire_gossip.to_wire(VectorFrame(vector=VersionVector())))
        # While a is busy (its store thread held up), the flooder's writes stop once a few
        # frames are in flight: a reads one frame at a time, and flow control does the rest.
        busy = asyncio.ensure_future(a.daemon.store(gate.wait))
        pushed = 0
        while True:
            # A write that cannot complete is left pending, not cancelled (that would end
            # the call): it completes once a reads again.
            write = asyncio.ensure_future(call.write(flood))
            done, _ = await asyncio.wait({write}, timeout=1.0)
            if not done:
                break
            write.result()
            pushed += flood.ByteSize()
            assert pushed < FLOOD_BUDGET, "the flood was never held back"
        gate.set()
        await busy
        await asyncio.wait_for(write, 10)

        async def keep_flooding() -> int:
            sent = 0
            with contextlib.suppress(grpc.aio.AioRpcError):
                while True:
                    await call.write(flood)
                    sent += 1
            return sent

        # a works through the flood, and still serves c: what a shares reaches c.
        flooding = asyncio.create_task(keep_flooding())
        folder = await folder_with(tmp_path, "docs", {"a.txt": b"hello"})
        await share_and_scan(a, folder, "Docs")
        a_id = a.daemon.node_id
        want = a.daemon.local.replica.clock(a_id)
        await wait_for(
            lambda: c.daemon.local.replica.clock(a_id) == want,  # type: ignore[union-attr]
            within=5,
            what="a's share to reach c during the flood",
        )
        assert not flooding.done(), "the flood stopped: it proved nothing"
    finally:
        gate.set()
        if busy is not None:
            await busy
        if flooding is not None:
            flooding.cancel()
            await asyncio.gather(flooding, return_exceptions=True)
        await channel.close()
