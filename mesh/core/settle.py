"""Settling: a changed file is indexed only once it has stopped changing.

Theory of operation. Every file-system event about a path (or a poll that saw it change)
`touch`es it: the path is pending and its quiet period starts again. Once it has been quiet
for `settle_s` it is `due`, and the caller looks at the file and `confirm`s what it saw: its
(size, mtime) and how old that mtime is. The path is settled when that is what was seen at
the last look (if there was one) and the mtime is not younger than `settle_s`; otherwise
its quiet period starts again. So a writer that keeps writing, with or without events
(polling, writes through a mapping), keeps its file pending. Pending paths are what every
scan leaves alone, so a file is never hashed half-written because a neighbour settled.

Pure: the caller passes `now` (monotonic seconds, never going back) and does the looking.
Pending paths are kept in the order of their quiet periods' start (a touched path moves to
the end), so finding what is due costs what is due, however many files a big copy touched.
"""

from __future__ import annotations

from dataclasses import dataclass

Key = tuple[str, str]  # (library, path relative to its root)
Signature = tuple[int, int] | None  # (size, mtime_ns); None: the file is not there


@dataclass(slots=True)
class _Pending:
    since: float  # last event, or last look that found a change
    looked: bool = False
    seen: Signature = None


class Settler:
    def __init__(self, settle_s: float) -> None:
        self.settle_s = settle_s
        self._pending: dict[Key, _Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def touch(self, key: Key, now: float) -> None:
        """Something happened to `key`: wait for it to be quiet again."""
        pending = self._pending.pop(key, None)
        if pending is None:
            pending = _Pending(since=now)
        pending.since = now
        self._pending[key] = pending  # to the end: the order stays that of `since`

    def saw(self, key: Key, seen: Signature, now: float) -> None:
        """A poller saw `key` change to `seen`: as `touch`, and the first look can already
        tell whether it moved since."""
        self.touch(key, now)
        pending = self._pending[key]
        pending.looked, pending.seen = True, seen

    def due(self, now: float) -> list[Key]:
        """Paths quiet for settle_s: look at them, then `confirm`."""
        ready = now - self.settle_s
        found = []
        for key, p in self._pending.items():
            if p.since > ready:
                break
            found.append(key)
        return found

    def next_due(self) -> float | None:
        """When the next path becomes due (None if nothing is pending)."""
        first = next(iter(self._pending.values()), None)
        return None if first is None else first.since + self.settle_s

    def confirm(self, key: Key, seen: Signature, mtime_age_s: float, now: float) -> bool:
        """What a look at a due path found; True (and no longer pending) if it settled."""
        pending = self._pending.get(key)
        if pending is None:
            return True
        if pending.since > now - self.settle_s:
            return False  # touched again since it was due
        moved = pending.looked and pending.seen != seen
        fresh = seen is not None and 0 <= mtime_age_s < self.settle_s
        if moved or fresh:
            self.touch(key, now)
            pending.looked, pending.seen = True, seen
            return False
        del self._pending[key]
        return True

    def pending_in(self, library: str) -> frozenset[str]:
        """The paths of `library` still settling: a scan must leave them alone."""
        return frozenset(path for lib, path in self._pending if lib == library)

    def forget(self, library: str) -> None:
        """Drop a library's pending paths (it was unshared, or is rescanned whole)."""
        for key in [k for k in self._pending if k[0] == library]:
            del self._pending[key]


__all__ = ["Key", "Settler", "Signature"]
