"""Envelopes: how records travel and are stored, with their body bytes never re-encoded.

A signature covers the envelope's identity as well as its body: the origin, epoch,
sequence number and kind are bound to the bytes, so nobody can replay an old signed body
under a newer sequence number to undo what its origin wrote since.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from mesh.core.epoch import Epoch
from mesh.core.ids import NodeId
from mesh.core.records import Kind

_SIGNING_DOMAIN = b"mesh record v1\x00"


@dataclass(frozen=True, kw_only=True, slots=True)
class Envelope:
    origin: NodeId
    epoch: Epoch
    seq: int
    kind: Kind
    body: bytes
    signature: bytes = b""

    def signing_bytes(self) -> bytes:
        return signing_bytes(self.origin, self.epoch, self.seq, self.kind, self.body)

    @property
    def size(self) -> int:
        """Roughly what it costs on the wire (for batch size bounds)."""
        return len(self.body) + len(self.signature) + 64


def signing_bytes(origin: NodeId, epoch: Epoch, seq: int, kind: Kind, body: bytes) -> bytes:
    """What the origin signs: a fixed domain tag, the envelope's identity, the body's digest."""
    head = struct.pack(">QQQI", epoch.created_ms, epoch.nonce, seq, int(kind))
    return _SIGNING_DOMAIN + origin.raw + head + hashlib.sha256(body).digest()
