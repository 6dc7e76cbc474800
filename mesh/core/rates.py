"""Transfer speeds from progress samples: bytes per second over the last few seconds.

A loan's progress reaches `mesh status` as a byte count now and then (the borrower's agent
live, or its status record by gossip, at most once a second); the speed is the slope over
the samples of the last `window_s`, so one late update neither stops nor doubles it. Pure:
the caller passes `now`.
"""

from __future__ import annotations

import collections
from collections.abc import Hashable, Iterable


class Rates:
    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._samples: dict[Hashable, collections.deque[tuple[float, int]]] = {}

    def sample(self, key: Hashable, done: int, now: float) -> None:
        samples = self._samples.get(key)
        if samples is None or (samples and done < samples[-1][1]):
            # First sample, or progress went back (a new version, a restarted pull).
            samples = self._samples[key] = collections.deque()
        samples.append((now, done))
        while len(samples) > 2 and samples[1][0] <= now - self.window_s:
            samples.popleft()

    def rate(self, key: Hashable) -> float | None:
        """Bytes per second, or None until samples span some time."""
        samples = self._samples.get(key)
        if not samples or len(samples) < 2:
            return None
        (t0, d0), (t1, d1) = samples[0], samples[-1]
        if t1 <= t0:
            return None
        return (d1 - d0) / (t1 - t0)

    def keep(self, keys: Iterable[Hashable]) -> None:
        """Forget every key but these (loans that ended)."""
        wanted = set(keys)
        for key in [k for k in self._samples if k not in wanted]:
            del self._samples[key]


__all__ = ["Rates"]
