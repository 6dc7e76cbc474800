"""Peer addresses as a user types them (`mesh peer add`, `network.peers`): HOST[:PORT]."""

from __future__ import annotations

import pytest

from mesh.config import DEFAULT_PORT, parse_peer


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("tower.local", ("tower.local", DEFAULT_PORT)),
        ("10.0.0.2:7000", ("10.0.0.2", 7000)),
        ("[fe80::1%eth0]:7000", ("fe80::1%eth0", 7000)),
        ("fe80::1", ("fe80::1", DEFAULT_PORT)),
    ],
)
def test_a_host_with_or_without_a_port(text: str, parsed: tuple[str, int]) -> None:
    assert parse_peer(text) == parsed


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("not a host:xx", "the port 'xx' is not a number"),
        ("[::1]:http", "the port 'http' is not a number"),
        ("tower:", "the port '' is not a number"),
        ("two words", "is not HOST[:PORT]"),
        ("tower:70000", "is not HOST[:PORT]"),
    ],
)
def test_a_bad_address_is_named_in_plain_words(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("[", r"\[")) as caught:
        parse_peer(text)
    assert "int()" not in str(caught.value)
