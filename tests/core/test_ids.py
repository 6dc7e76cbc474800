"""Node ids: the checked text form round-trips, and typos are caught, not misread."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.core.errors import InvalidArgumentError
from mesh.core.ids import ALPHABET, NodeId

ids = st.binary(min_size=32, max_size=32).map(NodeId)


@given(ids)
def test_text_round_trips(node_id: NodeId) -> None:
    text = node_id.text()
    assert len(text) == 63 and text.count("-") == 7
    assert NodeId.parse(text) == node_id
    assert NodeId.parse(text.lower().replace("-", " ")) == node_id
    assert text.startswith(node_id.short())


@given(ids, st.integers(min_value=0, max_value=55), st.sampled_from(ALPHABET))
def test_any_single_character_typo_is_caught(node_id: NodeId, pos: int, ch: str) -> None:
    plain = node_id.text().replace("-", "")
    if plain[pos] == ch:
        return
    typo = plain[:pos] + ch + plain[pos + 1 :]
    with pytest.raises(InvalidArgumentError, match="typo"):
        NodeId.parse(typo)


@given(ids, st.integers(min_value=0, max_value=54))
def test_swapped_neighbours_are_caught(node_id: NodeId, pos: int) -> None:
    plain = node_id.text().replace("-", "")
    a, b = plain[pos], plain[pos + 1]
    # Luhn mod N catches swaps of neighbouring data characters except 'A' <-> '7' (values 0
    # and N-1); a swap touching a check character or crossing groups is outside its reach.
    if a == b or {a, b} == {"A", "7"} or pos % 14 >= 12:
        return
    swapped = plain[:pos] + b + a + plain[pos + 2 :]
    with pytest.raises(InvalidArgumentError):
        NodeId.parse(swapped)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "56 characters"),
        ("ABC", "56 characters"),
        ("1" * 56, "A-Z and 2-7"),
    ],
)
def test_malformed_text_is_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        NodeId.parse(text)


def test_of_certificate_is_sha256() -> None:
    der = b"certificate bytes"
    assert NodeId.of_certificate(der).raw == hashlib.sha256(der).digest()


def test_wrong_length_is_refused() -> None:
    with pytest.raises(InvalidArgumentError):
        NodeId(b"\x00" * 31)


def test_lag_counts_what_the_peer_lacks_but_not_its_own_writes() -> None:
    from mesh.core.epoch import Epoch
    from mesh.core.vector import Clock, VersionVector, lag

    a, b = NodeId(b"\x01" * 32), NodeId(b"\x02" * 32)
    e1, e2 = Epoch(1, 1), Epoch(2, 1)
    ours = VersionVector({a: Clock(e1, 10), b: Clock(e1, 7)})
    assert lag(ours, VersionVector({a: Clock(e1, 4)})) == 6 + 7
    assert lag(ours, VersionVector({a: Clock(e1, 4)}), peer=b) == 6
    assert lag(ours, ours) == 0
    newer = VersionVector({a: Clock(e2, 3)})
    assert lag(newer, VersionVector({a: Clock(e1, 99)})) == 3  # a new epoch counts whole
