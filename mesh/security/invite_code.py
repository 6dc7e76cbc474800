"""Invite codes: a number and two words, easy to read aloud ("417-copper-walrus").

About 26 bits: plenty against an attacker who gets one guess per try and five tries in all
(the code is the password of a SPAKE2 exchange, which allows no offline guessing).
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
