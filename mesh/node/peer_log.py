"""Log lines a peer causes, rate limited per peer and kind, so no member can fill the log.

Each (peer, kind) gets `burst` lines per `window_s`; past that the lines are counted, not
written, and one summary says "N more like this from mallory" when the window closes (at
the peer's next line of that kind, or at the daemon's next `flush`, whichever is first).
What one peer does never silences another: a flood from mallory leaves laptop's lines as
they were.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

BURST = 10
WINDOW_S = 60.0


@dataclass(slots=True)
class _Window:
    started: float
    written: int = 0
    dropped: int = 0
    level: int = logging.INFO
    logger: str = ""
    shown: str = ""


class PeerLog:
    def __init__(
        self,
        *,
        burst: int = BURST,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst = burst
        self._window_s = window_s
        self._clock = clock
        self._windows: dict[tuple[Hashable, str], _Window] = {}

    def log(
        self,
        logger: logging.Logger,
        level: int,
        peer: Hashable,
        shown: str,
        kind: str,
        msg: str,
        *args: object,
    ) -> None:
        """Write `msg % args` unless `peer` already caused `burst` lines of `kind` lately;
        `shown` is how the summary names it."""
        if not logger.isEnabledFor(level):
            return
        now = self._clock()
        key = (peer, kind)
        window = self._windows.get(key)
        if window is not None and now - window.started >= self._window_s:
            self._summarize(key, window)
            window = None
        if window is None:
            window = self._windows[key] = _Window(started=now, logger=logger.name, shown=shown)
        if window.written < self._burst:
            window.written += 1
            logger.log(level, msg, *args)
        else:
            window.dropped += 1
            window.level = max(window.level, level)

    def flush(self) -> None:
        """Summarize every window that has closed (the daemon calls it now and then)."""
        now = self._clock()
        for key, window in list(self._windows.items()):
            if now - window.started >= self._window_s:
                self._summarize(key, window)

    def _summarize(self, key: tuple[Hashable, str], window: _Window) -> None:
        del self._windows[key]
        if window.dropped:
            _, kind = key
            logging.getLogger(window.logger).log(
                window.level,
                "%d more like this from %s (%s) in the last %.0f s",
                window.dropped,
                window.shown,
                kind,
                self._window_s,
            )


# One for the whole process: a peer's sessions come and go, its counts stay.
peer_log = PeerLog()

__all__ = ["PeerLog", "peer_log"]
