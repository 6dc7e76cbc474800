"""Node ids: the SHA-256 of a node's certificate, in a form people can read and check.

The text form is base32 split into four groups of 13 characters, each followed by a check
character (a Luhn mod 32 sum over the group), written as eight blocks of seven separated by
dashes. Any single mistyped character, and nearly every swap of two neighbours, fails the
check of its group, so `mesh` can say which part of an id is wrong instead of quietly naming
a different node.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass

from mesh.core.errors import InvalidArgumentError

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_GROUP = 13
_GROUPS = 4
_BLOCK = 7
ID_BYTES = 32


def _luhn32(text: str) -> str:
    """Luhn mod N check character over `text` in the base32 alphabet."""
    factor = 1
    total = 0
    n = len(ALPHABET)
    for ch in reversed(text):
        addend = factor * ALPHABET.index(ch)
        factor = 1 if factor == 2 else 2
        total += addend // n + addend % n
    return ALPHABET[(n - total % n) % n]


@dataclass(frozen=True, order=True, slots=True)
class NodeId:
    """A node's identity: 32 bytes, the SHA-256 of its DER certificate."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != ID_BYTES:
            raise InvalidArgumentError(f"a node id is {ID_BYTES} bytes, not {len(self.raw)}")

    @classmethod
    def of_certificate(cls, der: bytes) -> NodeId:
        return cls(hashlib.sha256(der).digest())

    @classmethod
    def parse(cls, text: str) -> NodeId:
        """Read the checked text form (dashes and spaces optional, any case)."""
        cleaned = "".join(ch for ch in text.upper() if ch not in "- ")
        with_checks = (_GROUP + 1) * _GROUPS
        if len(cleaned) != with_checks:
            raise InvalidArgumentError(
                f"a node id has {with_checks} characters (A-Z, 2-7), this has {len(cleaned)}"
            )
        if bad := sorted({ch for ch in cleaned if ch not in ALPHABET}):
            raise InvalidArgumentError(f"a node id uses only A-Z and 2-7, not {''.join(bad)!r}")
        body = []
        for i in range(_GROUPS):
            group = cleaned[i * (_GROUP + 1) : (i + 1) * (_GROUP + 1)]
            if _luhn32(group[:-1]) != group[-1]:
                raise InvalidArgumentError(
                    f"node id {text!r} has a typo in characters {i * 14 + 1}-{i * 14 + 14}"
                )
            body.append(group[:-1])
        b32 = "".join(body)
        node_id = cls(base64.b32decode(b32 + "===="))
        # The last character carries four spare bits; only one spelling is canonical.
        if node_id.text().replace("-", "") != cleaned:
            raise InvalidArgumentError(f"node id {text!r} has a typo in its last characters")
        return node_id

    def text(self) -> str:
        """The full checked form: eight dash-separated blocks of seven characters."""
        return _text(self.raw)

    def short(self) -> str:
        """The first block: enough to tell the nodes of one household apart."""
        return self.text()[:_BLOCK]

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return f"NodeId({self.short()})"


@functools.lru_cache(maxsize=1024)
def _text(raw: bytes) -> str:
    """NodeId.text, kept for the few ids a node meets: a borrower's checks name the
    lender's folder of every copy (10,000 for a big folder loan) each time."""
    b32 = base64.b32encode(raw).decode("ascii").rstrip("=")
    groups = [b32[i * _GROUP : (i + 1) * _GROUP] for i in range(_GROUPS)]
    checked = "".join(g + _luhn32(g) for g in groups)
    blocks = [checked[i : i + _BLOCK] for i in range(0, len(checked), _BLOCK)]
    return "-".join(blocks)
