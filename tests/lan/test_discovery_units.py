"""The pure parts of discovery: which announced addresses are dialled, which invitation a
`mesh join` without an address pairs with. No namespace needed."""

from __future__ import annotations

import pytest

from mesh.core.errors import InvalidArgumentError, PeerUnavailableError
from mesh.discovery.hints import PairingHint
from mesh.discovery.invitations import pick
from mesh.discovery.mdns import _dialable


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


def test_pick_prefers_ipv4_and_refuses_none_or_several() -> None:
    one = PairingHint(instance="a", hosts=("fe80::1%eth0", "fd00::2", "10.0.0.2"), port=6375)
    assert pick([one]) == ("10.0.0.2", 6375)
    with pytest.raises(PeerUnavailableError, match="no open invitation"):
        pick([])
    other = PairingHint(instance="b", hosts=("10.0.0.3",), port=6375)
    with pytest.raises(InvalidArgumentError, match=r"2 invitations are open.*--at"):
        pick([one, other])
