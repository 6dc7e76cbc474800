"""A batch of library entries sent to a peer that speaks protocol 5 travels as columns (the
bodies framed in one blob, the seqs packed) and is read back as the same batch, with every
check an envelope's reading makes; any other batch, and any batch to an older peer, goes
envelope by envelope as before."""

from __future__ import annotations

import dataclasses

import pytest

from mesh.core.envelope import Envelope
from mesh.core.errors import ProtocolError
from mesh.core.gossip import Batch
from mesh.core.records import Kind, entry_key
from mesh.v1 import gossip_pb2
from mesh.wire import gossip as wire_gossip
from mesh.wire import records as wire_records
from tests.wire.test_batch_decoded import EPOCH, ORIGIN, batch
from tests.wire.test_entries_bulk import body


def sent(frame: Batch, *, columnar: bool = True) -> gossip_pb2.GossipFrame:
    data = wire_gossip.to_wire(frame, columnar=columnar).SerializeToString()
    return gossip_pb2.GossipFrame.FromString(data)


def read(msg: gossip_pb2.GossipFrame) -> Batch:
    frame = wire_gossip.from_wire(msg)
    assert isinstance(frame, Batch)
    return frame


def test_entries_travel_as_columns_and_read_back_the_same_batch_decoded() -> None:
    bodies = [body(path=f"a/{i}.jpg", deleted=i % 3 == 0) for i in range(100)]
    # A long path: its frame's length takes two bytes.
    bodies.append(body(path="b/" + "x" * 200 + ".jpg"))
    msg = sent(batch(bodies))
    assert not msg.batch.envelopes and len(msg.batch.entry_seqs) == 101
    got = read(msg)
    assert got == batch(bodies)
    assert got.decoded is not None
    assert got.decoded.keys[:2] == [entry_key(ORIGIN, "photos", f"a/{i}.jpg") for i in (0, 1)]
    assert got.decoded.deleted[:4] == [True, False, False, True]
    small = read(sent(batch(bodies[:3])))  # small batches as well
    assert small == batch(bodies[:3]) and small.decoded is not None


def test_to_an_older_peer_and_for_other_records_envelopes_go_one_by_one() -> None:
    entries = batch([body(path=f"a/{i}.jpg") for i in range(5)])
    assert len(sent(entries, columnar=False).batch.envelopes) == 5
    mixed = batch([body(path="a/0.jpg"), b""], [Kind.ENTRY, Kind.LIBRARY])
    assert len(sent(mixed).batch.envelopes) == 2
    signed = dataclasses.replace(
        entries,
        envelopes=tuple(dataclasses.replace(e, signature=b"s") for e in entries.envelopes),
    )
    assert len(sent(signed).batch.envelopes) == 5  # entries are never signed: no column for it
    other = Envelope(
        origin=ORIGIN,
        epoch=dataclasses.replace(EPOCH, nonce=9),
        seq=6,
        kind=Kind.ENTRY,
        body=body(path="a/x.jpg"),
    )
    stray = dataclasses.replace(entries, envelopes=(*entries.envelopes, other))
    assert len(sent(stray).batch.envelopes) == 6  # refused by the replica, as ever


def columns(seqs: list[int], blob: bytes, envelopes: int = 0) -> gossip_pb2.GossipFrame:
    msg = sent(batch([body(path="a/0.jpg")]))
    del msg.batch.entry_seqs[:]
    msg.batch.entry_seqs.extend(seqs)
    msg.batch.entries = blob
    for _ in range(envelopes):
        msg.batch.envelopes.add(origin=ORIGIN.raw, seq=1, kind=int(Kind.ENTRY))
    return msg


@pytest.mark.parametrize(
    ("seqs", "blob", "envelopes"),
    [
        ([1, 2], wire_records.frame_entries([body(path="a/0.jpg")]), 0),  # a seq too many
        ([1], wire_records.frame_entries([body(path="a/0.jpg")] * 2), 0),  # a body too many
        ([0], wire_records.frame_entries([body(path="a/0.jpg")]), 0),  # seqs start at 1
        ([1 << 63], wire_records.frame_entries([body(path="a/0.jpg")]), 0),
        ([1], b"\x12\x01x", 0),  # a frame of another field
        ([1], b"\x0a\x05ab", 0),  # a length past the end
        ([1], b"\x0a\x80", 0),  # a length cut off
        ([1], wire_records.frame_entries([b"x" * (64 * 1024 + 1)]), 0),  # a body too large
        ([1], wire_records.frame_entries([body(path="a/0.jpg")]), 1),  # both forms at once
        (list(range(1, 4098)), wire_records.frame_entries([body(path="a")] * 4097), 0),
    ],
)
def test_malformed_columns_are_the_peers_protocol_error(
    seqs: list[int], blob: bytes, envelopes: int
) -> None:
    with pytest.raises(ProtocolError):
        wire_gossip.from_wire(columns(seqs, blob, envelopes))


def test_an_entry_that_fails_its_checks_is_left_to_the_replica_to_name() -> None:
    bodies = [body(path="a/0.jpg"), body(path="../escape")]
    got = read(sent(batch(bodies)))
    assert got == batch(bodies) and got.decoded is None
