"""Epochs: when an origin's sequence numbering began.

An epoch is (creation time in ms, random nonce), compared in that order. A node that loses
its database starts a newer epoch; peers then drop the older epoch's records of that origin
and never accept a retired epoch again.
"""

from __future__ import annotations

from dataclasses import dataclass

NONCE_BITS = 63


@dataclass(frozen=True, order=True, slots=True)
class Epoch:
    created_ms: int
    nonce: int

    def __str__(self) -> str:
        return f"{self.created_ms}.{self.nonce:x}"


ZERO = Epoch(0, 0)
