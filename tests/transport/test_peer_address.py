"""The address a peer's stream came from, as gRPC names it and as mesh shows and dials it."""

from __future__ import annotations

import socket

from mesh.transport.peer_server import _address


def test_ipv4() -> None:
    assert _address("ipv4:10.0.0.2:51514") == "10.0.0.2"


def test_ipv6_as_grpc_encodes_it_with_the_zone_named() -> None:
    index, name = socket.if_nameindex()[0]  # lo, or whatever this machine has first
    peer = f"ipv6:%5Bfe80::7c1d:54ff:fedc:107f%25{index}%5D:6374"
    assert _address(peer) == f"fe80::7c1d:54ff:fedc:107f%{name}"


def test_ipv6_without_a_zone_and_an_unknown_zone() -> None:
    assert _address("ipv6:%5B2001:db8::1%5D:6374") == "2001:db8::1"
    assert _address("ipv6:%5Bfe80::1%25999999%5D:6374") == "fe80::1%999999"
    assert _address("ipv6:[::1]:6374") == "::1"
