"""The pure parts of discovery: which announced addresses are dialled, which invitation a
`mesh join` without an address pairs with. No namespace needed."""

from __future__ import annotations

import pytest

from mesh.core.errors import PeerUnavailableError
from mesh.discovery.hints import PairingHint
from mesh.discovery.invitations import places
from mesh.discovery.mdns import _dialable, parse_nameplate


@pytest.mark.parametrize(
    ("host", "dialable"),
    [
        ("10.1.2.3", True),
        ("fd00::5", True),
        ("fe80::1%eth0", True),
        ("fe80::1", False),  # heard over IPv4: no scope, cannot be dialled
        ("not an address", False),
    ],
)
def test_dialable(host: str, dialable: bool) -> None:
    assert _dialable(host) is dialable


def test_places_are_the_invitations_of_the_codes_number_best_address_first() -> None:
    mine = PairingHint(
        instance="a", hosts=("fe80::1%eth0", "fd00::2", "10.0.0.2"), port=6375, nameplate=417
    )
    other = PairingHint(instance="b", hosts=("10.0.0.3",), port=6375, nameplate=12)
    assert places([mine, other], 417) == [
        ("10.0.0.2", 6375),
        ("fd00::2", 6375),
        ("fe80::1%eth0", 6375),
    ]
    # Two inviters whose codes share the number: both are places to try.
    twin = PairingHint(instance="c", hosts=("10.0.0.4",), port=7001, nameplate=417)
    assert places([other, twin, mine], 417)[0] == ("10.0.0.4", 7001)


def test_no_place_says_what_was_found_instead() -> None:
    with pytest.raises(PeerUnavailableError, match="no open invitation for a code starting 7"):
        places([], 7)
    other = PairingHint(instance="b", hosts=("10.0.0.3",), port=6375, nameplate=12)
    with pytest.raises(
        PeerUnavailableError, match=r"1 other invitation open, for codes starting 12"
    ):
        places([other], 7)


def test_an_inviter_without_a_nameplate_is_tried_only_when_alone() -> None:
    old = PairingHint(instance="a", hosts=("10.0.0.2",), port=6375)
    assert places([old], 417) == [("10.0.0.2", 6375)]
    other = PairingHint(instance="b", hosts=("10.0.0.3",), port=6375, nameplate=12)
    with pytest.raises(PeerUnavailableError):
        places([old, other], 417)  # trying it could cost its inviter a try


@pytest.mark.parametrize(
    ("txt", "nameplate"),
    [
        ({b"n": b"417"}, 417),
        ({b"n": b"0"}, 0),
        ({}, None),
        ({b"n": b"1000"}, None),
        ({b"n": b"x1"}, None),
        ({b"n": None}, None),
    ],
)
def test_parse_nameplate(txt: dict[bytes, bytes | None], nameplate: int | None) -> None:
    assert parse_nameplate(txt) == nameplate
