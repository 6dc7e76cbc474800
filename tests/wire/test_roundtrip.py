"""Every wire message maps to core values and back without loss, and hostile bytes only
ever produce ProtocolError."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.core.clock_proof import ClockProof
from mesh.core.errors import ProtocolError
from mesh.core.gossip import Ack, Batch, GossipError, Hello, Ping, VectorFrame
from mesh.core.pairing import MemberInfo, PairingPayload
from mesh.core.records import Kind, Record, kind_of
from mesh.core.transfer import Chunk, FetchRequest, Manifest, ManifestRequest
from mesh.v1 import gossip_pb2, records_pb2, transfer_pb2
from mesh.wire import envelope, gossip, pairing, records, transfer
from tests import strategies as s


@given(s.records)
def test_record_bodies_round_trip(record: Record) -> None:
    kind, body = records.encode(record)
    assert kind == kind_of(record)
    assert records.decode(kind, body) == record
    # Deterministic: the same record always gives the same bytes (signatures depend on it).
    assert records.encode(record)[1] == body


@given(s.envelopes)
def test_envelopes_round_trip_with_body_bytes_unchanged(env: object) -> None:
    data = envelope.to_bytes(env)  # type: ignore[arg-type]
    back = envelope.from_bytes(data)
    assert back == env


batches = st.builds(
    Batch,
    origin=s.node_ids,
    epoch=s.epochs,
    after_seq=st.integers(0, 1000),
    through_seq=st.integers(1000, 2000),
    envelopes=st.lists(s.envelopes, max_size=4).map(tuple),
    batch_id=st.integers(0, s.U63),
).flatmap(
    # With or without its origin's clock proof (of the batch's epoch: that is all the wire
    # carries).
    lambda b: st.one_of(
        st.just(b),
        st.builds(
            lambda seq, signature: dataclasses.replace(
                b, proof=ClockProof(epoch=b.epoch, seq=seq, signature=signature)
            ),
            st.integers(0, s.U63),
            st.binary(max_size=72),
        ),
    )
)
frames = st.one_of(
    st.builds(
        Hello,
        node_id=s.node_ids,
        epoch=s.epochs,
        protocol_version=st.integers(0, 2**32 - 1),
        name=st.one_of(st.just(""), s.node_names),
    ),
    st.builds(VectorFrame, vector=s.vectors),
    batches,
    st.builds(
        Ack,
        batch_id=st.integers(0, s.U63),
        vector=s.vectors,
        refused=st.booleans(),
        reason=st.text(max_size=50),
    ),
    st.builds(Ping, nonce=st.integers(0, 2**64 - 1), pong=st.booleans()),
    st.builds(GossipError, code=st.text(max_size=20), message=st.text(max_size=100)),
)


@given(frames)
def test_gossip_frames_round_trip(frame: object) -> None:
    msg = gossip.to_wire(frame)  # type: ignore[arg-type]
    again = gossip_pb2.GossipFrame.FromString(msg.SerializeToString())
    assert gossip.from_wire(again) == frame


@given(
    st.builds(ManifestRequest, hash=s.hashes, lender=s.node_ids, binding=st.none() | s.envelopes),
    st.builds(
        FetchRequest,
        hash=s.hashes,
        lender=s.node_ids,
        first_chunk=st.integers(0, 2**32 - 1),
        count=st.integers(0, 1 << 20),
        binding=st.none() | s.envelopes,
    ),
)
def test_transfer_messages_round_trip(mreq: ManifestRequest, freq: FetchRequest) -> None:
    assert transfer.manifest_request_from_wire(transfer.manifest_request_to_wire(mreq)) == mreq
    assert transfer.fetch_request_from_wire(transfer.fetch_request_to_wire(freq)) == freq


def test_a_fetched_chunk_over_the_chunk_size_is_refused() -> None:
    assert transfer.chunk_from_wire(3, b"x" * 10) == Chunk(index=3, data=b"x" * 10)
    with pytest.raises(ProtocolError, match="over"):
        transfer.chunk_from_wire(0, b"x" * ((1 << 20) + 1))


@given(st.integers(0, 5 << 20), st.data())
def test_manifest_round_trips(size: int, data: st.DataObject) -> None:
    n = (size + (1 << 20) - 1) >> 20
    m = Manifest(
        hash=data.draw(s.hashes),
        size=size,
        chunk_size=1 << 20,
        chunk_hashes=data.draw(st.binary(min_size=16 * n, max_size=16 * n)),
    )
    assert transfer.manifest_from_wire(transfer.manifest_to_wire(m)) == m


def test_manifest_with_a_wrong_chunk_list_is_refused() -> None:
    msg = transfer_pb2.Manifest(
        hash=b"h" * 16, size=3 << 20, chunk_size=1 << 20, chunk_hashes=b"x" * 32
    )
    with pytest.raises(ProtocolError, match="chunk list"):
        transfer.manifest_from_wire(msg)


members = st.builds(
    MemberInfo, node_id=s.node_ids, certificate=st.binary(max_size=300), name=s.node_names
)


@given(
    st.builds(
        PairingPayload,
        certificate=st.binary(max_size=600),
        name=s.node_names,
        protocol_version=st.integers(0, 100),
        members=st.lists(members, max_size=4).map(tuple),
        records=st.lists(st.binary(max_size=100), max_size=4).map(tuple),
        refusal=st.text(max_size=50),
        hosts=st.lists(s.hosts, max_size=3).map(tuple),
        port=st.integers(0, 65535),
    )
)
def test_pairing_payload_round_trips(payload: PairingPayload) -> None:
    assert pairing.payload_from_bytes(pairing.payload_to_bytes(payload)) == payload


@given(st.sampled_from(list(Kind)), st.binary(max_size=200))
def test_decoding_arbitrary_bytes_gives_a_record_or_protocol_error(kind: Kind, body: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        records.decode(kind, body)


@given(st.binary(max_size=300))
def test_decoding_arbitrary_frames_gives_a_frame_or_protocol_error(data: bytes) -> None:
    try:
        msg = gossip_pb2.GossipFrame.FromString(data)
    except Exception:
        return
    with contextlib.suppress(ProtocolError):
        gossip.from_wire(msg)
    with contextlib.suppress(ProtocolError):
        pairing.payload_from_bytes(data)
    with contextlib.suppress(ProtocolError):
        envelope.from_bytes(data)


@pytest.mark.parametrize(
    "bad",
    [
        records_pb2.LibraryEntry(
            library="lib", path="../etc/passwd", hash=b"h" * 16, chunk_root=b"r" * 16
        ),
        records_pb2.LibraryEntry(library="lib", path="/abs", hash=b"h" * 16, chunk_root=b"r" * 16),
        records_pb2.LibraryEntry(library="lib", path="a//b", hash=b"h" * 16, chunk_root=b"r" * 16),
        records_pb2.LibraryEntry(library="lib", path="a\\b", hash=b"h" * 16, chunk_root=b"r" * 16),
        records_pb2.LibraryEntry(
            library="lib", path="a\x00b", hash=b"h" * 16, chunk_root=b"r" * 16
        ),
        records_pb2.LibraryEntry(library="..", path="a", hash=b"h" * 16, chunk_root=b"r" * 16),
        records_pb2.LibraryEntry(library="lib", path="a", hash=b"short", chunk_root=b"r" * 16),
    ],
)
def test_unsafe_entries_are_refused(bad: records_pb2.LibraryEntry) -> None:
    with pytest.raises(ProtocolError):
        records.decode(Kind.ENTRY, bad.SerializeToString())


def test_envelope_with_unknown_kind_or_seq_zero_is_refused() -> None:
    base = dict(origin=b"o" * 32, seq=1, kind=1, body=b"")
    with pytest.raises(ProtocolError, match="kind"):
        envelope.from_wire(records_pb2.Envelope(**{**base, "kind": 99}))  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="start at 1"):
        envelope.from_wire(records_pb2.Envelope(**{**base, "seq": 0}))  # type: ignore[arg-type]
