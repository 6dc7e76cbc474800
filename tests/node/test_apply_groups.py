"""Batches received together are applied in shared transactions, but a batch holding a
membership record is committed on its own (the replica takes membership into memory as it
applies it, which must never run ahead of the disk)."""

from __future__ import annotations

from mesh.core.envelope import Envelope
from mesh.core.epoch import Epoch
from mesh.core.gossip import Batch
from mesh.core.ids import NodeId
from mesh.core.records import Kind
from mesh.node.applying import _transactions

ORIGIN = NodeId(b"\x07" * 32)
EPOCH = Epoch(1, 1)


def batch(first: int, *kinds: Kind) -> Batch:
    envs = tuple(
        Envelope(origin=ORIGIN, epoch=EPOCH, seq=first + i, kind=kind, body=b"")
        for i, kind in enumerate(kinds)
    )
    return Batch(
        origin=ORIGIN,
        epoch=EPOCH,
        after_seq=first - 1,
        through_seq=first + len(kinds) - 1,
        envelopes=envs,
    )


def test_consecutive_batches_share_one_transaction() -> None:
    batches = [batch(1, Kind.ENTRY, Kind.ENTRY), batch(3, Kind.ENTRY), batch(4, Kind.LIBRARY)]
    assert [list(g) for g in _transactions(batches)] == [batches]


def test_a_batch_with_membership_records_is_committed_alone() -> None:
    b1, b2 = batch(1, Kind.ENTRY), batch(2, Kind.ENTRY, Kind.ADMISSION)
    b3, b4, b5 = batch(4, Kind.ENTRY), batch(5, Kind.REMOVAL), batch(6, Kind.ENTRY)
    groups = [list(g) for g in _transactions([b1, b2, b3, b4, b5])]
    assert groups == [[b1], [b2], [b3], [b4], [b5]]
    assert [list(g) for g in _transactions([b2, b1, b3])] == [[b2], [b1, b3]]
    assert list(_transactions([])) == []
