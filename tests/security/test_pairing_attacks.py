"""An attacker at the pairing listener: one guess per attempt, online, nothing to take home.

Single use and the lockout after 5 wrong codes are tested end to end with real `mesh`
processes in tests/cli/test_pairing_commands.py (test_a_used_code_fails_for_a_third_node,
test_five_wrong_codes_close_the_invitation); the exchange's cryptography in
tests/security/test_pairing.py. Here the wire: everything the inviter sends an attacker.
"""

from __future__ import annotations

import pytest

from mesh.core.errors import PeerUnavailableError, ProtocolError
from mesh.core.pairing import PairingFrame, Refusal
from mesh.node.pairing import Admitted, Invitation, PairingDesk
from mesh.security import invite_code
from mesh.security.pairing import Inviter, Joiner, WrongCodeError
from mesh.security.words import WORDS
from mesh.transport.pairing import PairingClient


async def _never_admit(certificate: bytes, name: str) -> Admitted:
    raise AssertionError("a wrong code must never reach the admission")


def _wrong(code: str) -> str:
    """A guess with the code's public number and a wrong secret (the words)."""
    number, first, second = code.split("-")
    other = WORDS[(WORDS.index(second) + 1) % len(WORDS)]
    return f"{number}-{first}-{other}"


async def test_a_spake2_exchange_with_a_wrong_code_reveals_nothing_usable() -> None:
    desk = PairingDesk("127.0.0.1", 0)
    invitation = Invitation(_never_admit, ttl_s=60)
    await desk.open(invitation)
    client = PairingClient("127.0.0.1", desk.port)
    heard: list[PairingFrame] = []
    try:
        attacker = Joiner(_wrong(invitation.code))
        stream = client.open()
        await stream.send(PairingFrame(spake=attacker.start(), nameplate=invitation.nameplate))
        heard.append(await stream.recv())
        await stream.send(PairingFrame(confirm=attacker.on_spake(heard[0].spake)))
        heard.append(await stream.recv())
        with pytest.raises(PeerUnavailableError):
            heard.append(await stream.recv())
    finally:
        await client.close()
        await desk.stop()
    # The inviter's SPAKE2 message and a refusal: no confirmation, nothing sealed, nothing
    # computed from the key, so there is no value to test candidate codes against offline.
    assert [f for f in heard if f.confirm or f.sealed] == []
    assert heard[1] == PairingFrame(error="wrong code", refusal=Refusal.WRONG_CODE, tries_left=4)
    assert invitation.failures == 1
    # And the SPAKE2 message itself rules no code out: every candidate, the right one among
    # them, gives a key and a confirmation, which the attacker has nothing to compare with.
    candidates = [invitation.code, *(invite_code.generate() for _ in range(20))]
    tags = {Joiner(code).on_spake(heard[0].spake) for code in candidates}
    assert len(tags) == len(candidates)


async def test_an_eavesdropper_who_later_learns_the_code_cannot_recompute_the_keys() -> None:
    """A passive recording of a good exchange plus the right code still gives no key: each
    side's secret exponent never travels, so the recording cannot even confirm the code."""
    code = invite_code.generate()
    joiner, inviter = Joiner(code), Inviter(code)
    hello = joiner.start()
    reply = inviter.on_spake(hello)
    confirm = joiner.on_spake(reply)
    tag, channel = inviter.on_confirm(confirm)
    sealed = channel.seal(b"certificate and members")
    # Replaying the recorded inviter message with the right code: a different key.
    replay = Joiner(code)
    assert replay.on_spake(reply) != confirm
    with pytest.raises(WrongCodeError):
        replay.on_confirm(tag)
    assert replay.channel is not None
    with pytest.raises(ProtocolError):
        replay.channel.open(sealed)
