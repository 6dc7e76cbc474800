"""A batch of library entries read off the wire comes with its entries decoded (keys and
tombstone flags, wire/gossip._decoded_entries), the same as the replica would make of them;
anything it cannot vouch for whole is left to the replica."""

from __future__ import annotations

from mesh.core.envelope import Envelope
from mesh.core.epoch import Epoch
from mesh.core.gossip import Batch
from mesh.core.ids import NodeId
from mesh.core.records import Kind, entry_key
from mesh.v1 import gossip_pb2
from mesh.wire import gossip as wire_gossip
from tests.wire.test_entries_bulk import body

ORIGIN, EPOCH = NodeId(b"\x05" * 32), Epoch(1_000, 3)


def batch(bodies: list[bytes], kinds: list[Kind] | None = None) -> Batch:
    kinds = kinds or [Kind.ENTRY] * len(bodies)
    envs = tuple(
        Envelope(origin=ORIGIN, epoch=EPOCH, seq=i + 1, kind=kind, body=data)
        for i, (kind, data) in enumerate(zip(kinds, bodies, strict=True))
    )
    return Batch(origin=ORIGIN, epoch=EPOCH, after_seq=0, through_seq=len(envs), envelopes=envs)


def read(sent: Batch, *, decode_entries: bool = True) -> Batch:
    data = wire_gossip.to_wire(sent).SerializeToString()
    frame = wire_gossip.from_wire(
        gossip_pb2.GossipFrame.FromString(data), decode_entries=decode_entries
    )
    assert isinstance(frame, Batch)
    return frame


def test_a_large_batch_of_entries_comes_decoded() -> None:
    bodies = [body(path=f"a/{i}.jpg", deleted=i % 3 == 0) for i in range(100)]
    got = read(batch(bodies))
    assert got == batch(bodies)  # what is decoded is no part of the batch's value
    assert got.decoded is not None
    assert got.decoded.keys == [entry_key(ORIGIN, "photos", f"a/{i}.jpg") for i in range(100)]
    assert got.decoded.deleted == [i % 3 == 0 for i in range(100)]
    assert read(batch(bodies), decode_entries=False).decoded is None


def test_what_it_cannot_vouch_for_whole_is_left_to_the_replica() -> None:
    good = [body(path=f"a/{i}.jpg") for i in range(100)]
    assert read(batch(good[:64])).decoded is None  # small: decoded inline anyway
    assert read(batch([*good[:50], body(path="../x"), *good[50:]])).decoded is None
    other = [Kind.ENTRY] * 99 + [Kind.LIBRARY]
    assert read(batch(good, other)).decoded is None
