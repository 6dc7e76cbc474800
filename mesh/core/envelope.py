"""Envelopes: how records travel and are stored, with their body bytes never re-encoded.

A signature covers the envelope's identity as well as its body: the origin, epoch,
sequence number and kind are bound to the bytes, so nobody can replay an old signed body
under a newer sequence number to undo what its origin wrote since.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
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


# A sync makes envelopes by the hundred thousand (a sender's pages, a receiver's batches).
# The dataclass's own __init__ (keywords bound, then object.__setattr__ per field, as it is
# frozen) cost 1.2-1.7 us each here; setting the slots through their descriptors costs a
# quarter of that. The result is the same frozen Envelope.
_new = object.__new__
_set_origin, _set_epoch, _set_seq, _set_kind, _set_body, _set_signature = (
    Envelope.__dict__[name].__set__
    for name in ("origin", "epoch", "seq", "kind", "body", "signature")
)


def envelope(
    origin: NodeId, epoch: Epoch, seq: int, kind: Kind, body: bytes, signature: bytes = b""
) -> Envelope:
    """`Envelope(origin=..., ...)`, made faster (see above)."""
    env: Envelope = _new(Envelope)
    _set_origin(env, origin)
    _set_epoch(env, epoch)
    _set_seq(env, seq)
    _set_kind(env, kind)
    _set_body(env, body)
    _set_signature(env, signature)
    return env


def envelopes(
    origin: NodeId, epoch: Epoch, kind: Kind, seqs: Iterable[int], bodies: Iterable[bytes]
) -> list[Envelope]:
    """Unsigned envelopes of one origin, epoch and kind, one per (seq, body), made faster
    (see above)."""
    out: list[Envelope] = []
    append = out.append
    new, set_origin, set_epoch, set_seq = _new, _set_origin, _set_epoch, _set_seq
    set_kind, set_body, set_signature = _set_kind, _set_body, _set_signature
    for seq, body in zip(seqs, bodies, strict=True):
        env = new(Envelope)
        set_origin(env, origin)
        set_epoch(env, epoch)
        set_seq(env, seq)
        set_kind(env, kind)
        set_body(env, body)
        set_signature(env, b"")
        append(env)
    return out
