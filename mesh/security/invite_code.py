"""Invite codes: a number and two words, easy to read aloud ("417-copper-walrus").

The number is a public **nameplate**: the invitation's mDNS announcement carries it, so that
`mesh join CODE` finds the one invitation its code belongs to among several open on the LAN
(as magic-wormhole's channel numbers do). The two words are the secret: 256 x 256 = 65,536
equally likely pairs. The whole code is the password of a SPAKE2 exchange, which allows no
offline guessing, and an invitation closes after five wrong tries, so an attacker on the LAN
has at most 5 in 65,536 (about 1 in 13,000) of joining in place of the person invited, and
only while the invitation is open (10 minutes by default).
"""

from __future__ import annotations

import difflib
import re
import secrets

from mesh.core.errors import InvalidArgumentError
from mesh.security.words import WORDS

_INDEX = {w: i for i, w in enumerate(WORDS)}
_SEPARATORS = re.compile(r"[\s\-_.]+")


def generate() -> str:
    number = secrets.randbelow(1000)
    return f"{number}-{secrets.choice(WORDS)}-{secrets.choice(WORDS)}"


def nameplate(code: str) -> int:
    """The public number of a (normalized) code."""
    return int(code.split("-", 1)[0])


def normalize(text: str) -> str:
    """The canonical spelling of a code as typed; InvalidArgumentError says what is wrong."""
    parts = [p for p in _SEPARATORS.split(text.strip().lower()) if p]
    if len(parts) != 3 or not parts[0].isdigit():
        raise InvalidArgumentError(
            f"{text!r} is not an invite code; it looks like 417-copper-walrus"
        )
    number = int(parts[0])
    if number >= 1000:
        raise InvalidArgumentError(f"invite codes start with a number below 1000, not {number}")
    for word in parts[1:]:
        if word not in _INDEX:
            near = difflib.get_close_matches(word, WORDS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise InvalidArgumentError(f"{word!r} is not a word of invite codes{hint}")
    return f"{number}-{parts[1]}-{parts[2]}"
