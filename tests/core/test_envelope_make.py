"""The fast envelope makers (core/envelope.py) make the same frozen Envelope as its own
constructor."""

from __future__ import annotations

import dataclasses

import pytest

from mesh.core.envelope import Envelope, envelope, envelopes
from mesh.core.epoch import Epoch
from mesh.core.ids import NodeId
from mesh.core.records import Kind

ORIGIN, E = NodeId(b"\x07" * 32), Epoch(1_000, 9)


def test_envelope_equals_the_constructors_and_stays_frozen() -> None:
    made = envelope(ORIGIN, E, 5, Kind.BINDING, b"body", b"sig")
    built = Envelope(
        origin=ORIGIN, epoch=E, seq=5, kind=Kind.BINDING, body=b"body", signature=b"sig"
    )
    assert made == built and hash(made) == hash(built) and repr(made) == repr(built)
    assert envelope(ORIGIN, E, 5, Kind.ENTRY, b"b") == Envelope(
        origin=ORIGIN, epoch=E, seq=5, kind=Kind.ENTRY, body=b"b"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.seq = 6  # type: ignore[misc]


def test_envelopes_make_one_per_seq_and_body() -> None:
    made = envelopes(ORIGIN, E, Kind.ENTRY, [1, 2, 4], [b"a", b"b", b"c"])
    assert made == [
        Envelope(origin=ORIGIN, epoch=E, seq=s, kind=Kind.ENTRY, body=b)
        for s, b in ((1, b"a"), (2, b"b"), (4, b"c"))
    ]
    assert envelopes(ORIGIN, E, Kind.ENTRY, [], []) == []
    with pytest.raises(ValueError):
        envelopes(ORIGIN, E, Kind.ENTRY, [1], [])
