"""Reconnect delays: exponential with full jitter, so peers that lost each other at the same
moment do not all come back at the same moment."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    def __init__(
        self, minimum: float, maximum: float, rand: Callable[[], float] = random.random
    ) -> None:
        self._min = minimum
        self._max = maximum
        self._rand = rand
        self._attempt = 0

    def next(self) -> float:
        """The delay before the next attempt: uniform in [min, min * 2^attempts], capped."""
        ceiling = min(self._max, self._min * (1 << self._attempt))
        self._attempt = min(self._attempt + 1, 32)
        return self._min + (ceiling - self._min) * self._rand()

    def reset(self) -> None:
        self._attempt = 0
