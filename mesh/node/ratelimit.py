"""The node's bandwidth limit: one token bucket for serving and one for pulling.

Every transfer of a direction takes from the same bucket, so the cap holds for the node as
a whole however many loans and sources are active. A taker that overdraws the bucket waits
until the debt is paid back at the limit's rate; the next taker then finds the debt and
waits behind it, so concurrent transfers share the rate instead of each getting all of it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from mesh.core.chunks import CHUNK_SIZE


class RateLimit:
    def __init__(self, bytes_per_s: int, *, burst: int = CHUNK_SIZE) -> None:
        self.bytes_per_s = bytes_per_s
        self._burst = burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    async def take(self, nbytes: int) -> None:
        """Account for `nbytes` moved; wait while this direction is over its limit."""
        if self.bytes_per_s <= 0:
            return
        now = time.monotonic()
        refill = (now - self._stamp) * self.bytes_per_s
        self._tokens = min(float(self._burst), self._tokens + refill) - nbytes
        self._stamp = now
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self.bytes_per_s)


@dataclass
class Limits:
    """Serving and pulling caps of one node (Settings.limit each; 0: none)."""

    rate: int = 0
    serve: RateLimit = field(init=False)
    pull: RateLimit = field(init=False)

    def __post_init__(self) -> None:
        self.serve = RateLimit(self.rate)
        self.pull = RateLimit(self.rate)


__all__ = ["Limits", "RateLimit"]
