"""Presence frames (protocol 3) on the wire: they round-trip, and oversized ones are refused."""

from __future__ import annotations

import hashlib

import pytest

from mesh.core.errors import ProtocolError
from mesh.core.ids import NodeId
from mesh.core.liveness import MAX_PEERS, Presence, PresenceFrame
from mesh.v1 import gossip_pb2
from mesh.wire import gossip

IDS = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(MAX_PEERS + 2)]


def test_presence_frames_round_trip() -> None:
    a, b, c = (NodeId(raw) for raw in IDS[:3])
    frame = PresenceFrame(
        reports=(
            Presence(origin=a, version=10**15, peers=frozenset({b, c})),
            Presence(origin=b, version=1, peers=frozenset()),
        )
    )
    wire = gossip.to_wire(frame)
    parsed = gossip_pb2.GossipFrame.FromString(wire.SerializeToString())
    assert gossip.from_wire(parsed) == frame


def test_a_report_of_too_many_sessions_or_a_short_id_is_refused() -> None:
    msg = gossip_pb2.GossipFrame()
    msg.presence.reports.add(origin=IDS[0], version=1, peers=IDS[1 : MAX_PEERS + 2])
    with pytest.raises(ProtocolError):
        gossip.from_wire(msg)
    short = gossip_pb2.GossipFrame()
    short.presence.reports.add(origin=b"\x01" * 5, version=1)
    with pytest.raises(ProtocolError):
        gossip.from_wire(short)
