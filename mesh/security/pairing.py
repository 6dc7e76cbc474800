"""The pairing exchange, sans I/O: SPAKE2 keyed by the invite code, key confirmation, then
an AEAD channel for the certificates, names and member records.

Theory of operation (joiner J, inviter I):

    J -> I  spake(J)                 I cannot tell a right code from a wrong one yet
    I -> J  spake(I)                 both derive K; neither has revealed anything testable
    J -> I  confirm(J)               I checks it: a wrong code counts as a failed attempt
    I -> J  confirm(I)               J checks it: J now knows it talks to the inviter
    J -> I  seal(J's payload)        certificate, name, protocol version
    I -> J  seal(I's payload)        certificate, name, members, membership records

K is bound to both SPAKE2 messages (the transcript), and each direction has its own
confirmation and AEAD keys, derived with HKDF. Only after checking J's confirmation does I
send anything derived from K, so an attacker who does not know the code gets exactly one
guess per attempt, online, and nothing to test codes against offline. Nonces are a
direction byte and a counter; the AEAD's associated data is the transcript hash.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mesh.core.errors import ProtocolError, RefusedError
from mesh.security.spake import InviterSpake, JoinerSpake


class WrongCodeError(RefusedError):
    """The other side did not prove knowledge of the same code."""


def _derive(key: bytes, transcript: bytes, label: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=transcript, info=b"mesh pairing v1 " + label
    ).derive(key)


class _Channel:
    """Keys of one side once K is known; seal/open in its own and the other direction."""

    def __init__(self, key: bytes, transcript: bytes, *, joiner: bool) -> None:
        self.transcript = transcript
        mine, theirs = (b"joiner", b"inviter") if joiner else (b"inviter", b"joiner")
        self._confirm_mine = _derive(key, transcript, b"confirm " + mine)
        self._confirm_theirs = _derive(key, transcript, b"confirm " + theirs)
        self._seal = ChaCha20Poly1305(_derive(key, transcript, b"aead " + mine))
        self._open = ChaCha20Poly1305(_derive(key, transcript, b"aead " + theirs))
        self._direction_mine = b"J" if joiner else b"I"
        self._direction_theirs = b"I" if joiner else b"J"
        self._sent = 0
        self._received = 0

    def confirmation(self) -> bytes:
        return hmac.new(self._confirm_mine, self.transcript, hashlib.sha256).digest()

    def check(self, tag: bytes) -> None:
        expected = hmac.new(self._confirm_theirs, self.transcript, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, tag):
            raise WrongCodeError("the invite code does not match")

    def seal(self, plaintext: bytes) -> bytes:
        nonce = self._direction_mine + struct.pack(">Q", self._sent) + b"\0\0\0"
        self._sent += 1
        return self._seal.encrypt(nonce, plaintext, self.transcript)

    def open(self, sealed: bytes) -> bytes:
        nonce = self._direction_theirs + struct.pack(">Q", self._received) + b"\0\0\0"
        self._received += 1
        try:
            return self._open.decrypt(nonce, sealed, self.transcript)
        except InvalidTag as exc:
            raise ProtocolError("a sealed pairing message failed its integrity check") from exc


def _transcript(joiner_msg: bytes, inviter_msg: bytes) -> bytes:
    h = hashlib.sha256(b"mesh pairing v1 transcript")
    for part in (joiner_msg, inviter_msg):
        h.update(struct.pack(">I", len(part)) + part)
    return h.digest()


class Joiner:
    def __init__(self, code: str) -> None:
        self._spake = JoinerSpake(code.encode())
        self.channel: _Channel | None = None

    def start(self) -> bytes:
        return self._spake.message

    def on_spake(self, inviter_msg: bytes) -> bytes:
        """The inviter's SPAKE2 message in, our confirmation out."""
        key = self._spake.finish(inviter_msg)
        self.channel = _Channel(key, _transcript(self._spake.message, inviter_msg), joiner=True)
        return self.channel.confirmation()

    def on_confirm(self, tag: bytes) -> _Channel:
        if self.channel is None:
            raise ProtocolError("a confirmation before the key exchange")
        self.channel.check(tag)
        return self.channel


class Inviter:
    def __init__(self, code: str) -> None:
        self._spake = InviterSpake(code.encode())
        self.channel: _Channel | None = None

    def on_spake(self, joiner_msg: bytes) -> bytes:
        """The joiner's SPAKE2 message in, ours out (derives K, reveals nothing of it)."""
        key = self._spake.finish(joiner_msg)
        self.channel = _Channel(key, _transcript(joiner_msg, self._spake.message), joiner=False)
        return self._spake.message

    def on_confirm(self, tag: bytes) -> tuple[bytes, _Channel]:
        """Check the joiner's confirmation (WrongCodeError), then give ours."""
        if self.channel is None:
            raise ProtocolError("a confirmation before the key exchange")
        self.channel.check(tag)
        return self.channel.confirmation(), self.channel
