"""SPAKE2, typed: the `spake2` package (as magic-wormhole uses it) behind two small classes."""

from __future__ import annotations

from typing import Any

import spake2
from spake2.ed25519_basic import NotOnCurve

from mesh.core.errors import ProtocolError

# A side byte and an Ed25519 point: anything else is refused before the library sees it.
MESSAGE_BYTES = 33

_JOINER = b"mesh pairing v1: joiner"
_INVITER = b"mesh pairing v1: inviter"


class _Side:
    def __init__(self, impl: Any) -> None:
        self._impl = impl
        self.message: bytes = bytes(impl.start())

    def finish(self, peer_message: bytes) -> bytes:
        """The shared key (32 bytes) from the other side's message."""
        if len(peer_message) != MESSAGE_BYTES:
            raise ProtocolError(f"a SPAKE2 message of {len(peer_message)} bytes")
        try:
            return bytes(self._impl.finish(peer_message))
        except (spake2.SPAKEError, NotOnCurve, ValueError, TypeError) as exc:
            raise ProtocolError("malformed SPAKE2 message") from exc


class JoinerSpake(_Side):
    def __init__(self, password: bytes) -> None:
        super().__init__(spake2.SPAKE2_A(password, idA=_JOINER, idB=_INVITER))


class InviterSpake(_Side):
    def __init__(self, password: bytes) -> None:
        super().__init__(spake2.SPAKE2_B(password, idA=_JOINER, idB=_INVITER))
