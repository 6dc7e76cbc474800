"""The pairing exchange: right codes agree, wrong codes fail on the inviter's side first, and
nothing sealed can be read or altered without the key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.core.errors import InvalidArgumentError, ProtocolError
from mesh.security import invite_code
from mesh.security.pairing import Inviter, Joiner, WrongCodeError
from mesh.security.words import WORDS


def exchange(joiner_code: str, inviter_code: str) -> tuple[Joiner, Inviter, bytes]:
    j, i = Joiner(joiner_code), Inviter(inviter_code)
    reply = i.on_spake(j.start())
    confirm = j.on_spake(reply)
    return j, i, confirm


def test_the_same_code_gives_a_shared_channel() -> None:
    code = invite_code.generate()
    j, i, confirm = exchange(code, code)
    tag, inviter_channel = i.on_confirm(confirm)
    joiner_channel = j.on_confirm(tag)
    sealed = joiner_channel.seal(b"certificate and name")
    assert b"certificate" not in sealed
    assert inviter_channel.open(sealed) == b"certificate and name"
    assert joiner_channel.open(inviter_channel.seal(b"members")) == b"members"


def test_a_wrong_code_is_caught_by_the_inviter_before_it_reveals_anything() -> None:
    _, i, confirm = exchange("1-apple-river", "2-apple-river")
    with pytest.raises(WrongCodeError):
        i.on_confirm(confirm)


def test_an_impostor_inviter_is_caught_by_the_joiner() -> None:
    j, _, _ = exchange("1-apple-river", "1-apple-river")
    with pytest.raises(WrongCodeError):
        j.on_confirm(b"\0" * 32)


def test_sealed_messages_cannot_be_altered_replayed_or_reflected() -> None:
    code = "5-cedar-otter"
    j, i, confirm = exchange(code, code)
    tag, ich = i.on_confirm(confirm)
    jch = j.on_confirm(tag)
    sealed = jch.seal(b"hello")
    tampered = bytes([sealed[0] ^ 1]) + sealed[1:]
    with pytest.raises(ProtocolError):
        ich.open(tampered)
    # the failed open consumed a nonce, so even the genuine message is now out of order
    with pytest.raises(ProtocolError):
        ich.open(sealed)
    # a message sealed by the joiner cannot be fed back to the joiner
    with pytest.raises(ProtocolError):
        jch.open(jch.seal(b"echo"))


def test_malformed_spake_messages_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError):
        Joiner("1-apple-river").on_spake(b"junk")
    with pytest.raises(ProtocolError):
        Inviter("1-apple-river").on_spake(b"\x00" * 10)


def test_transcripts_of_different_runs_share_nothing() -> None:
    # The wire shows only SPAKE2 messages and tags; two runs with one code differ entirely.
    code = "9-violin-tiger"
    j1, _, c1 = exchange(code, code)
    j2, _, c2 = exchange(code, code)
    assert j1.start() != j2.start() and c1 != c2


@given(st.integers(0, 999), st.sampled_from(WORDS), st.sampled_from(WORDS))
def test_codes_normalize_however_they_are_typed(n: int, a: str, b: str) -> None:
    canonical = f"{n}-{a}-{b}"
    assert invite_code.normalize(canonical) == canonical
    assert invite_code.normalize(f"  {n} {a.upper()}  {b} ") == canonical
    assert invite_code.normalize(f"{n}_{a}.{b}") == canonical


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("apple-river", "not an invite code"),
        ("1000-apple-river", "below 1000"),
        ("3-aple-river", "did you mean 'maple'"),
        ("", "not an invite code"),
    ],
)
def test_mistyped_codes_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        invite_code.normalize(text)


def test_generated_codes_are_valid_and_varied() -> None:
    codes = {invite_code.generate() for _ in range(200)}
    assert len(codes) > 190
    for code in codes:
        assert invite_code.normalize(code) == code
