"""Acks of protocol 3 name only the acked batch's origin (core/gossip.py)."""

from __future__ import annotations

import hashlib

from mesh.core.epoch import Epoch
from mesh.core.gossip import ack_vector, acked_vector
from mesh.core.ids import NodeId
from mesh.core.vector import Clock, VersionVector

A, B, C = (NodeId(hashlib.sha256(bytes([i])).digest()) for i in range(3))
E = Epoch(1, 1)


def test_a_slim_ack_names_the_origin_only_and_a_protocol_2_ack_everything() -> None:
    vector = VersionVector({A: Clock(E, 5), B: Clock(E, 2)})
    assert ack_vector(vector, A, slim=True) == VersionVector({A: Clock(E, 5)})
    assert ack_vector(vector, C, slim=True) == VersionVector()
    assert ack_vector(vector, A, slim=False) == vector


def test_the_sender_merges_a_slim_ack_into_what_it_believes() -> None:
    believed = VersionVector({A: Clock(E, 3), B: Clock(E, 2)})
    told = VersionVector({A: Clock(E, 5)})
    assert acked_vector(believed, told, A, slim=True) == VersionVector(
        {A: Clock(E, 5), B: Clock(E, 2)}
    )
    # The receiver holds nothing of the origin (it dropped the epoch, say): forgotten.
    assert acked_vector(believed, VersionVector(), A, slim=True) == VersionVector({B: Clock(E, 2)})
    assert acked_vector(believed, told, A, slim=False) == told
