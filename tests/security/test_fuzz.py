"""Fuzzing every decoder and handler that takes peer input, for a bounded number of examples.

Each target takes what hypothesis makes (random bytes, valid messages with bytes flipped,
inserted or cut, and values at the edges) and must either give a checked value or refuse
with the error its callers handle: ProtocolError on the wire, InvalidPathError for paths,
None for a TXT record. Any other exception is a crash a peer could cause. The number of
examples is the `fuzz` profile's (MESH_FUZZ_EXAMPLES, 150 by default; more by hand with
e.g. MESH_FUZZ_EXAMPLES=20000), with no deadline so a slow CI runner cannot flake.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import DecodeError, Message
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mesh.core.envelope import Envelope
from mesh.core.epoch import Epoch
from mesh.core.errors import AlreadyExistsError, InvalidPathError, ProtocolError, RefusedError
from mesh.core.gossip import PROTOCOL_VERSION, Ack, Batch, Hello, Ping, VectorFrame
from mesh.core.ids import NodeId
from mesh.core.pairing import InvitationState, PairingPayload
from mesh.core.paths import check_name, check_portable_name, check_relative
from mesh.core.records import Kind
from mesh.core.replica import Outcome
from mesh.discovery.mdns import parse_txt
from mesh.home import Home
from mesh.node.local import LocalNode
from mesh.node.pairing import Admitted, Invitation, PairingDesk
from mesh.security.pairing import Inviter, Joiner
from mesh.transport import options
from mesh.transport.tls import client_credentials
from mesh.v1 import gossip_pb2, pairing_pb2, transfer_pb2
from mesh.wire import envelope as wire_envelope
from mesh.wire import gossip as wire_gossip
from mesh.wire import pairing as wire_pairing
from mesh.wire import records as wire_records
from mesh.wire import transfer as wire_transfer
from tests import strategies as s
from tests.node.conftest import NodeHandle, mesh_of

Make = Callable[[str], NodeHandle]

FUZZ = settings(
    max_examples=int(os.environ.get("MESH_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """A valid encoding, then a few random edits: flips, insertions, cuts."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(0, 4))):
        edit = draw(st.sampled_from(["flip", "insert", "cut"]))
        at = draw(st.integers(0, len(data)))
        if edit == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif edit == "cut":
            del data[at : at + draw(st.integers(1, 8))]
    return bytes(data)


def inputs(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=400), mutated(valid))


def parse(message_type: type[Message], data: bytes) -> Any:
    """What gRPC hands a handler: the parsed message, or None where parsing fails (gRPC
    itself then ends the call before any of our code runs)."""
    try:
        return message_type.FromString(data)
    except (DecodeError, RecursionError):
        return None


def refuses_or_decodes(decode: Callable[[], object]) -> None:
    with contextlib.suppress(ProtocolError):
        decode()


_record_bytes = s.records.map(lambda r: wire_records.record_to_wire(r).SerializeToString())
_envelope_bytes = s.envelopes.map(wire_envelope.to_bytes)


@FUZZ
@given(kind=st.sampled_from(list(Kind)), body=inputs(_record_bytes))
def test_fuzz_record_bodies(kind: Kind, body: bytes) -> None:
    refuses_or_decodes(lambda: wire_records.decode(kind, body))


@FUZZ
@given(inputs(_envelope_bytes))
def test_fuzz_envelopes(data: bytes) -> None:
    refuses_or_decodes(lambda: wire_envelope.from_bytes(data))


def _frame_bytes(env: Envelope) -> bytes:
    batch = Batch(
        origin=env.origin, epoch=env.epoch, after_seq=env.seq - 1, through_seq=env.seq,
        envelopes=(env,), batch_id=1,
    )  # fmt: skip
    return wire_gossip.to_wire(batch).SerializeToString()


@FUZZ
@given(inputs(s.envelopes.map(_frame_bytes)))
def test_fuzz_gossip_frames(data: bytes) -> None:
    msg = parse(gossip_pb2.GossipFrame, data)
    if msg is not None:
        refuses_or_decodes(lambda: wire_gossip.from_wire(msg))


_transfer_valid = st.builds(
    lambda h, lender, first, count: transfer_pb2.FetchRequest(
        hash=h, lender=lender.raw, first_chunk=first, count=count
    ).SerializeToString(),
    s.hashes, s.node_ids, st.integers(0, (1 << 32) - 1), st.integers(0, 1 << 30),
)  # fmt: skip


@FUZZ
@given(inputs(_transfer_valid))
def test_fuzz_transfer_requests_and_answers(data: bytes) -> None:
    for message_type, decode in [
        (transfer_pb2.FetchRequest, wire_transfer.fetch_request_from_wire),
        (transfer_pb2.ManifestRequest, wire_transfer.manifest_request_from_wire),
        (transfer_pb2.Manifest, wire_transfer.manifest_from_wire),
    ]:
        msg = parse(message_type, data)
        if msg is not None:
            refuses_or_decodes(lambda: decode(msg))  # noqa: B023 - called at once
    # A Fetch answer is raw bytes, one chunk per message: any bytes at all.
    refuses_or_decodes(lambda: wire_transfer.chunk_from_wire(0, data))


_payload_valid = st.builds(
    lambda cert, name, hosts: wire_pairing.payload_to_bytes(
        PairingPayload(certificate=cert, name=name, protocol_version=1, hosts=tuple(hosts))
    ),
    st.binary(max_size=300), s.node_names, st.lists(s.hosts, max_size=3),
)  # fmt: skip


@FUZZ
@given(inputs(_payload_valid))
def test_fuzz_pairing_payloads_and_frames(data: bytes) -> None:
    refuses_or_decodes(lambda: wire_pairing.payload_from_bytes(data))
    msg = parse(pairing_pb2.PairingFrame, data)
    if msg is not None:
        refuses_or_decodes(lambda: wire_pairing.frame_from_wire(msg))


@FUZZ
@given(spake=st.binary(max_size=300), confirm=st.binary(max_size=64), sealed=st.binary())
@example(spake=b"A\x02", confirm=b"", sealed=b"")  # found by this test: not on the curve
@example(spake=b"B" + b"\x02" * 32, confirm=b"", sealed=b"")
def test_fuzz_pairing_messages(spake: bytes, confirm: bytes, sealed: bytes) -> None:
    """The inviter and joiner state machines, each message in turn from an attacker."""
    code = "7-apple-river"
    inviter = Inviter(code)
    try:
        inviter.on_spake(spake)
        inviter.on_confirm(confirm)
    except (ProtocolError, RefusedError):  # WrongCodeError is a RefusedError
        pass
    joiner = Joiner(code)
    joiner.start()
    try:
        joiner.on_spake(spake)
        channel = joiner.on_confirm(confirm)
        channel.open(sealed)
    except (ProtocolError, RefusedError):
        pass


@FUZZ
@given(st.one_of(st.text(max_size=300), st.lists(st.text(max_size=20), max_size=8).map("/".join)))
def test_fuzz_path_validation(text: str) -> None:
    for check in (check_relative, check_name, check_portable_name):
        with contextlib.suppress(InvalidPathError):
            assert check(text) == text


_txt_values = st.one_of(
    st.none(),
    st.binary(max_size=100),
    s.node_ids.map(lambda n: str(n).encode()),
    s.node_ids.map(lambda n: str(n).lower().encode()[:-1]),
)


@FUZZ
@given(st.dictionaries(st.one_of(st.just(b"id"), st.binary(max_size=10)), _txt_values))
def test_fuzz_txt_parsing(properties: dict[bytes, bytes | None]) -> None:
    claimed = parse_txt(properties)
    assert claimed is None or isinstance(claimed, NodeId)


@st.composite
def _batches(draw: st.DrawFn, origins: list[NodeId]) -> Batch:
    """Batches of real-looking records from known and unknown origins, wire-checked."""
    origin = draw(st.sampled_from(origins) | s.node_ids)
    epoch = draw(st.sampled_from([Epoch(1, 1), Epoch(2, 0)]) | s.epochs)
    after = draw(st.integers(0, 5))
    envs = []
    seq = after
    for record_bytes, kind, signature in draw(
        st.lists(
            st.tuples(inputs(_record_bytes), st.sampled_from(list(Kind)), st.binary(max_size=72)),
            max_size=4,
        )
    ):
        seq += draw(st.integers(1, 3))
        envs.append(
            Envelope(
                origin=origin, epoch=epoch, seq=seq, kind=kind, body=record_bytes,
                signature=signature,
            )
        )  # fmt: skip
    through = max(seq, after + draw(st.integers(0, 3)))
    return Batch(
        origin=origin, epoch=epoch, after_seq=after, through_seq=through, envelopes=tuple(envs),
        batch_id=1,
    )  # fmt: skip


def test_fuzz_envelope_apply() -> None:
    """Batches a member relays, applied to a real node's replica (SQLite): each is applied,
    ignored or refused with a reason, and no forged record changes who is a member."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Home.resolve(Path(tmp) / "a")
        node, _ = LocalNode.init(home, "a")
        try:
            node.found_mesh()
            other = LocalNode.init(Home.resolve(Path(tmp) / "b"), "b")[0]
            node.admit(other.identity.cert_der, "b")
            other.close()
            members = set(node.membership.members)
            origins = [node.node_id, *members]

            @FUZZ
            @given(_batches(origins))
            def apply(batch: Batch) -> None:
                try:
                    checked = wire_gossip.from_wire(wire_gossip.to_wire(batch))
                except ProtocolError:
                    return
                assert isinstance(checked, Batch)
                result = node.replica.apply(checked, NodeId(b"\x01" * 32))
                assert result.outcome in Outcome
                if result.outcome is Outcome.REFUSED:
                    assert result.reason
                assert set(node.membership.members) == members

            apply()
        finally:
            node.close()


# -- the handlers of a running node --------------------------------------------------------

_FRAME = "/mesh.v1.Mesh/Gossip"
_EPOCH = Epoch(1, 1)
# A handler that crashes ends its call with UNKNOWN and gRPC logs "Unexpected ... raised by
# servicer method". Any other status is an answer: ours, or gRPC's own (a frame it cannot
# parse, or "Internal error from Core" when a client still writes to a call just ended).


def _answered(code: grpc.StatusCode, details: str | None) -> None:
    assert code != grpc.StatusCode.UNKNOWN, details


def _no_handler_crashed(caplog: pytest.LogCaptureFixture) -> None:
    crashes = [r for r in caplog.records if "raised by servicer method" in r.getMessage()]
    assert not crashes, crashes[0].getMessage()


def _valid_frames(member: NodeId) -> st.SearchStrategy[bytes]:
    return st.one_of(
        s.envelopes.map(lambda e: _frame_bytes(dataclasses.replace(e, origin=member))),
        s.envelopes.map(_frame_bytes),
        s.vectors.map(lambda v: wire_gossip.to_wire(VectorFrame(vector=v)).SerializeToString()),
        st.builds(
            lambda n, pong: wire_gossip.to_wire(Ping(nonce=n, pong=pong)).SerializeToString(),
            st.integers(0, (1 << 64) - 1),
            st.booleans(),
        ),
        st.builds(
            lambda i, v, r: wire_gossip.to_wire(
                Ack(batch_id=i, vector=v, refused=r, reason="no")
            ).SerializeToString(),
            st.integers(0, 10),
            s.vectors,
            st.booleans(),
        ),
    )


async def test_fuzz_peer_handlers(nodes: Make, caplog: pytest.LogCaptureFixture) -> None:
    """A member's gossip stream and transfer calls with fuzzed frames, against a real daemon
    over mutual TLS: no handler crashes (no call ends UNKNOWN), and the daemon goes on
    serving."""
    a, b = nodes("a"), nodes("b")
    mesh_of(a, b)
    with b.local() as node:
        member = node.identity
    await a.start()
    assert a.daemon is not None
    loop = asyncio.get_running_loop()
    channel = grpc.aio.secure_channel(
        f"127.0.0.1:{a.daemon.port}",
        client_credentials(member, a.daemon.identity.cert_der),
        options=options.channel_options(1, 1),
    )
    gossip = channel.stream_stream(_FRAME, request_serializer=bytes, response_deserializer=bytes)
    fetch = channel.unary_stream(
        "/mesh.v1.Mesh/Fetch", request_serializer=bytes, response_deserializer=bytes
    )
    manifest = channel.unary_unary(
        "/mesh.v1.Mesh/Manifest", request_serializer=bytes, response_deserializer=bytes
    )
    hello = wire_gossip.to_wire(
        Hello(node_id=member.node_id, epoch=_EPOCH, protocol_version=PROTOCOL_VERSION)
    ).SerializeToString()

    async def stream(frames: list[bytes]) -> None:
        call = gossip()
        try:
            for frame in [hello, *frames]:
                await call.write(frame)
            await call.done_writing()
            with contextlib.suppress(grpc.aio.AioRpcError):
                async for _ in call:
                    pass
            _answered(await call.code(), await call.details())
        finally:
            call.cancel()

    async def transfer(request: bytes) -> None:
        if parse(transfer_pb2.FetchRequest, request) is not None:
            call = fetch(request, timeout=5)
            with contextlib.suppress(grpc.aio.AioRpcError):
                async for _ in call:
                    pass
            _answered(await call.code(), await call.details())
        if parse(transfer_pb2.ManifestRequest, request) is not None:
            try:
                await manifest(request, timeout=5)
            except grpc.aio.AioRpcError as exc:
                _answered(exc.code(), exc.details())

    def on_loop(work: Any) -> None:
        asyncio.run_coroutine_threadsafe(work, loop).result(timeout=30)

    @settings(FUZZ, max_examples=max(20, FUZZ.max_examples // 3))
    @given(
        frames=st.lists(inputs(_valid_frames(member.node_id)), max_size=4),
        request=inputs(_transfer_valid),
    )
    def run(frames: list[bytes], request: bytes) -> None:
        on_loop(stream(frames))
        on_loop(transfer(request))
        _no_handler_crashed(caplog)

    try:
        await asyncio.to_thread(run)
        # Still serving: a fresh stream gets the hello.
        call = gossip()
        await call.write(hello)
        first = gossip_pb2.GossipFrame.FromString(await call.read())
        assert first.WhichOneof("frame") == "hello"
        call.cancel()
    finally:
        await channel.close()


async def _admit_nobody(certificate: bytes, name: str) -> Admitted:
    raise AlreadyExistsError(f"the name {name!r} is taken")


async def test_fuzz_pairing_listener(caplog: pytest.LogCaptureFixture) -> None:
    """Fuzzed pairing messages against a real invitation's listener: each exchange ends
    with a refusal or a closed stream, never a crash, and the invitation is still open for
    the right code (or locked after five wrong ones, as it should be)."""
    desk = PairingDesk("127.0.0.1", 0)
    invitation = Invitation(_admit_nobody, ttl_s=60)
    await desk.open(invitation)
    loop = asyncio.get_running_loop()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{desk.port}")
    pair = channel.stream_stream(
        "/mesh.v1.Pairing/Pair", request_serializer=bytes, response_deserializer=bytes
    )
    frame = st.one_of(
        st.binary(max_size=40).map(lambda b: pairing_pb2.PairingFrame(spake=b)),
        st.binary(max_size=40).map(lambda b: pairing_pb2.PairingFrame(confirm=b)),
        st.binary(max_size=60).map(lambda b: pairing_pb2.PairingFrame(sealed=b)),
        st.text(max_size=20).map(lambda t: pairing_pb2.PairingFrame(error=t)),
    ).map(lambda m: m.SerializeToString())

    async def exchange(frames: list[bytes]) -> None:
        call = pair()
        try:
            with contextlib.suppress(grpc.aio.AioRpcError):
                for f in frames:
                    await call.write(f)
                await call.done_writing()
                async for _ in call:
                    pass
            _answered(await call.code(), await call.details())
        finally:
            call.cancel()

    @settings(FUZZ, max_examples=max(20, FUZZ.max_examples // 3))
    @given(st.lists(inputs(frame), min_size=1, max_size=4))
    def run(frames: list[bytes]) -> None:
        asyncio.run_coroutine_threadsafe(exchange(frames), loop).result(timeout=30)
        _no_handler_crashed(caplog)
        assert invitation.state in (InvitationState.OPEN, InvitationState.LOCKED)

    try:
        await asyncio.to_thread(run)
    finally:
        await channel.close()
        await desk.stop()
