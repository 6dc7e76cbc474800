"""A member relaying signed records it altered or forged under another origin.

A stranger cannot get this far (see test_handshake.py); a member can. Here member b talks
gossip to a over a real mutual-TLS stream, frame by frame, and offers records of origin c
that c never wrote as they arrive. Each batch must be refused (its ack says so), logged with
the reason, and leave a's replica as it was; the genuine record at the end is taken, so the
refusals are for the forgery and nothing else.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

import pytest

from mesh.core.clock_proof import ClockProof, proof_bytes
from mesh.core.envelope import Envelope, signing_bytes
from mesh.core.epoch import Epoch
from mesh.core.gossip import PROTOCOL_VERSION, Ack, Batch, Hello, VectorFrame
from mesh.core.ids import NodeId
from mesh.core.records import (
    Addresses,
    Admission,
    Binding,
    BorrowRequest,
    Content,
    Kind,
    LibraryRecord,
    Record,
)
from mesh.core.vector import Clock, VersionVector
from mesh.security import identity as ident
from mesh.security.identity import Identity
from mesh.transport.gossip_stream import GossipStream
from mesh.wire import records as wire_records
from tests.node.conftest import NodeHandle, mesh_of, wait_for

Make = Callable[[str], NodeHandle]
EPOCH = Epoch(int(time.time() * 1000), 42)


def envelope(origin: NodeId, record: Record, signer: Identity | None, seq: int = 1) -> Envelope:
    kind, body = wire_records.encode(record)
    signature = b""
    if signer is not None:
        signature = signer.sign(signing_bytes(origin, EPOCH, seq, kind, body))
    return Envelope(origin=origin, epoch=EPOCH, seq=seq, kind=kind, body=body, signature=signature)


def clock_proof(signer: Identity, seq: int) -> ClockProof:
    """`signer`'s word that its writes in EPOCH reach `seq`, as it signs it itself."""
    signature = signer.sign(proof_bytes(signer.node_id, EPOCH, seq))
    return ClockProof(epoch=EPOCH, seq=seq, signature=signature)


class Member:
    """b's end of a gossip stream to a, driven by hand."""

    def __init__(self, me: Identity, stream: GossipStream) -> None:
        self.me = me
        self.stream = stream
        self._ids = iter(range(1, 1 << 30))

    async def open(self) -> None:
        await self.stream.send(
            Hello(node_id=self.me.node_id, epoch=EPOCH, protocol_version=PROTOCOL_VERSION)
        )
        await self.stream.send(VectorFrame(vector=VersionVector()))

    async def offer(self, env: Envelope, proof: ClockProof | None = None) -> Ack:
        """Send one record as a batch of its own (from the origin's start); a's ack of it."""
        batch_id = next(self._ids)
        await self.stream.send(
            Batch(
                origin=env.origin,
                epoch=env.epoch,
                after_seq=0,
                through_seq=env.seq,
                envelopes=(env,),
                batch_id=batch_id,
                proof=proof,
            )
        )
        while True:  # a's own batches and pings come in between: skip them
            frame = await self.stream.recv()
            assert frame is not None, "a ended the stream"
            if isinstance(frame, Ack) and frame.batch_id == batch_id:
                return frame


async def test_a_member_relaying_altered_or_forged_signed_records_is_refused_and_logged(
    nodes: Make, caplog: pytest.LogCaptureFixture
) -> None:
    a, b, c, d = nodes("a"), nodes("b"), nodes("c"), nodes("d")
    mesh_of(a, b, c, d)
    with b.local() as node:
        b_id = node.identity
    with c.local() as node:
        c_id = node.identity
    with d.local() as node:
        d_id = node.identity
    d_node = d_id.node_id
    await a.start()
    assert a.daemon is not None
    c_node = c_id.node_id
    content = Content(hash=b"h" * 16, size=5, chunk_root=b"r" * 16)
    lend = Binding(borrower=b_id.node_id, library="Movies", path="heat.mkv", content=content)
    ask = BorrowRequest(lender=a.daemon.node_id, library="Movies", path="heat.mkv")
    genuine_ask = envelope(c_node, ask, c_id)
    altered_body = wire_records.encode(dataclasses.replace(ask, path="other.mkv"))[1]
    stranger = ident.generate()
    cases = {
        # b writes records only c may write, under c's origin, signed with its own key
        "a binding forged under c": envelope(c_node, lend, b_id),
        "addresses forged under c": envelope(c_node, Addresses(hosts=("10.6.6.6",), port=1), b_id),
        "an admission forged under c": envelope(
            c_node,
            Admission(node_id=stranger.node_id, certificate=stranger.cert_der, name="x"),
            b_id,
        ),
        # c's genuine record, altered or moved by b on the way
        "c's borrow request with its path altered": dataclasses.replace(
            genuine_ask, body=altered_body
        ),
        "c's borrow request renumbered": dataclasses.replace(genuine_ask, seq=2),
        "c's borrow request moved to another epoch": dataclasses.replace(
            genuine_ask, epoch=Epoch(EPOCH.created_ms, 43)
        ),
        "c's borrow request relabelled as d's": dataclasses.replace(genuine_ask, origin=d_node),
        "c's borrow request without its signature": dataclasses.replace(genuine_ask, signature=b""),
    }
    channel = a.dial(b_id)
    replica = a.daemon.local.replica
    try:
        member = Member(b_id, channel.gossip())
        await member.open()
        with caplog.at_level(logging.WARNING, logger="mesh.node.session"):
            for what, env in cases.items():
                caplog.clear()
                ack = await member.offer(env)
                assert ack.refused, what
                assert "signature" in ack.reason, (what, ack.reason)
                assert any(
                    "refused records of" in r.getMessage() and "signature" in r.getMessage()
                    for r in caplog.records
                ), what
                assert replica.clock(env.origin) is None, what
            # The same record as c signed it is taken: the refusals were for the forgery.
            ack = await member.offer(genuine_ask)
            assert not ack.refused, ack.reason
            assert replica.clock(c_node) is not None
        # Unsigned kinds are trusted as far as the member that relays them (README), within
        # the history their origin signed (d's clock proof: its writes reach seq 1).
        made_up = envelope(d_node, LibraryRecord(name="Movies"), None)
        assert (await member.offer(made_up)).refused
        ack = await member.offer(made_up, clock_proof(d_id, 1))
        assert not ack.refused, ack.reason
        member.stream.close()
    finally:
        await channel.close()


async def test_records_of_origins_nobody_admitted_are_refused(
    nodes: Make, caplog: pytest.LogCaptureFixture
) -> None:
    """A member cannot invent origins: each would grow every replica and every version
    vector for good, and past 4096 origins no node could send its vector any more."""
    a, b = nodes("a"), nodes("b")
    mesh_of(a, b)
    with b.local() as node:
        b_id = node.identity
    await a.start()
    assert a.daemon is not None
    replica = a.daemon.local.replica
    before = replica.vector()
    channel = a.dial(b_id)
    try:
        member = Member(b_id, channel.gossip())
        await member.open()
        with caplog.at_level(logging.WARNING, logger="mesh.node.session"):
            for _ in range(5):
                invented = ident.generate().node_id
                ack = await member.offer(envelope(invented, LibraryRecord(name="Junk"), None))
                assert ack.refused and "never admitted" in ack.reason, ack.reason
        assert replica.vector() == before
        assert sum("never admitted" in r.getMessage() for r in caplog.records) == 5
        member.stream.close()
    finally:
        await channel.close()


@pytest.mark.parametrize("how", ["a far epoch", "a far seq", "a made-up record at a far seq"])
async def test_a_member_cannot_move_another_members_clock(
    nodes: Make, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Under c's origin, b announces an epoch from the far future (every node would drop
    c's records, its bindings too, so the loans it lent end, and refuse c's real epoch as
    retired), or says c's current epoch runs to the last seq (every node would skip all c
    writes from then on), with or without an unsigned record of c's at that seq."""
    a, b, c = nodes("a"), nodes("b"), nodes("c")
    mesh_of(a, b, c)
    with b.local() as node:
        b_id = node.identity
    with c.local() as node:
        c_id = node.identity
    await a.start()
    assert a.daemon is not None
    channel = a.dial(b_id)
    try:
        member = Member(b_id, channel.gossip())
        await member.open()
        # c's genuine signed record, as c wrote it, reaches a.
        ask = BorrowRequest(lender=a.daemon.node_id, library="Movies", path="heat.mkv")
        assert not (await member.offer(envelope(c_id.node_id, ask, c_id))).refused
        far = (1 << 63) - 1
        doom = Batch(
            origin=c_id.node_id,
            epoch=Epoch(far, 0) if how == "a far epoch" else EPOCH,
            after_seq=0 if how == "a far epoch" else 1,
            through_seq=0 if how == "a far epoch" else far,
            envelopes=(
                (envelope(c_id.node_id, LibraryRecord(name="Junk"), None, seq=far),)
                if how == "a made-up record at a far seq"
                else ()
            ),
            batch_id=99,
        )
        with caplog.at_level(logging.WARNING, logger="mesh.node.session"):
            await member.stream.send(doom)
            while not isinstance(frame := await member.stream.recv(), Ack) or frame.batch_id != 99:
                assert frame is not None
        assert frame.refused, f"{how} c never wrote was taken"
        assert "signature" in frame.reason, frame.reason
        assert any(
            "refused records of" in r.getMessage() and "signature" in r.getMessage()
            for r in caplog.records
        )
        replica = a.daemon.local.replica
        assert replica.clock(c_id.node_id) == Clock(EPOCH, 1)
        # The stream goes on, and c's next write is taken, not skipped.
        again = dataclasses.replace(ask, path="again.mkv")
        assert not (await member.offer(envelope(c_id.node_id, again, c_id, seq=2))).refused
        assert replica.clock(c_id.node_id) == Clock(EPOCH, 2)
        member.stream.close()
    finally:
        await channel.close()


async def test_a_member_relaying_an_origins_records_cannot_leave_any_out(
    nodes: Make, caplog: pytest.LogCaptureFixture
) -> None:
    """b passes on c's records with c's own clock proof, but without the loan c made to a:
    a refuses the batch (its ack says records are missing), its clock of c does not move,
    and once c itself is online a holds the loan."""
    a, b, c = nodes("a"), nodes("b"), nodes("c")
    mesh_of(a, b, c)
    with b.local() as node:
        b_id = node.identity
    with a.local() as node:
        a_node = node.node_id
    content = Content(hash=b"h" * 16, size=5, chunk_root=b"r" * 16)
    lend = Binding(borrower=a_node, library="Movies", path="heat.mkv", content=content)
    with c.local() as node:
        node.replica.write(lend)
        node.replica.write(Addresses(hosts=("10.9.9.9",), port=1))
        c_node = node.node_id
        [whole] = [x for x in node.replica.missing(VersionVector()) if x.origin == c_node]
    assert whole.proof is not None and whole.proof.digest
    await a.start()
    assert a.daemon is not None
    replica = a.daemon.local.replica
    before = replica.clock(c_node)
    channel = a.dial(b_id)
    try:
        member = Member(b_id, channel.gossip())
        await member.open()
        batch_id = 77
        left_out = dataclasses.replace(
            whole,
            envelopes=tuple(e for e in whole.envelopes if e.kind is not Kind.BINDING),
            batch_id=batch_id,
        )
        with caplog.at_level(logging.WARNING, logger="mesh.node.session"):
            await member.stream.send(left_out)
            while not isinstance(frame := await member.stream.recv(), Ack) or (
                frame.batch_id != batch_id
            ):
                assert frame is not None
        assert frame.refused and "missing" in frame.reason, frame.reason
        assert any("missing" in r.getMessage() for r in caplog.records)
        assert replica.clock(c_node) == before
        member.stream.close()
    finally:
        await channel.close()
    await c.start(static_peers=(a.address,))
    await wait_for(
        lambda: any(True for _ in replica_records(a, Kind.BINDING, c_node)), what="c's loan at a"
    )


def replica_records(handle: NodeHandle, kind: Kind, origin: NodeId) -> list[Envelope]:
    assert handle.daemon is not None
    return list(handle.daemon.local.records.live(kind, origin))
