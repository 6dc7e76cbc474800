"""Which source fetches which chunks of one pull, when several may serve it.

Sources pull work rather than being handed it: each takes the next run of missing chunks
when it is free, sized to what it has been measured to fetch in about a second (and near
the end to its share, by speed, of what is left), so a faster source takes more and every
source holds a bounded number of chunks at a time. When
nothing is left to take, a free source takes the untouched tail of the run that will end
last (split by the two sources' rates), and the whole rest of a run whose source has gone
quiet; a source that fails or sends a bad chunk gives its unfinished chunks back. Pure: the
caller passes the clock in.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

S = TypeVar("S")

MIN_RUN = 4
MAX_RUN = 64
FIRST_RUN = 16  # chunks asked of a source before its speed is known
RUN_SECONDS = 1.0  # what a run should last at a source's measured speed
QUIET_S = 2.0  # a source that delivered nothing for this long loses its whole run to a free one


@dataclass(eq=False)
class Run(Generic[S]):
    """Chunks [first, end) asked of `source`; `next` is the first one not yet received.
    Another source may lower `end` by taking the tail."""

    source: S
    first: int
    end: int
    next: int
    last_progress: float

    @property
    def left(self) -> int:
        return max(0, self.end - self.next)


@dataclass
class _Speed:
    """A source's measured rate, as an average weighted towards the recent past."""

    bytes_per_s: float = 0.0
    known: bool = False

    def add(self, rate: float) -> None:
        self.bytes_per_s = rate if not self.known else 0.7 * self.bytes_per_s + 0.3 * rate
        self.known = True


@dataclass
class PullPlan(Generic[S]):
    missing: list[int]
    chunk_size: int
    _queue: deque[tuple[int, int]] = field(init=False)
    _runs: list[Run[S]] = field(init=False, default_factory=list)
    _speeds: dict[S, _Speed] = field(init=False, default_factory=dict)
    _left: set[int] = field(init=False)

    def __post_init__(self) -> None:
        self._queue = deque(_ranges(self.missing))
        self._left = set(self.missing)

    @property
    def done(self) -> bool:
        return not self._left

    @property
    def active(self) -> bool:
        """Whether some source is still fetching a run."""
        return bool(self._runs)

    def speed(self, source: S) -> float:
        found = self._speeds.get(source)
        return found.bytes_per_s if found is not None else 0.0

    def _want(self, source: S) -> int:
        speed = self._speeds.get(source)
        if speed is None or not speed.known:
            return FIRST_RUN
        chunks = int(speed.bytes_per_s * RUN_SECONDS / self.chunk_size)
        return max(MIN_RUN, min(MAX_RUN, chunks))

    def _fair(self, source: S, want: int) -> int:
        """At most this source's share, by speed, of what is left to deal: near the end,
        a run sized for a second would leave the other sources idle while it finishes."""
        # Work still to do, dealt or not, split so that every source would finish together;
        # what this source is still fetching counts towards its share.
        left = sum(end - first for first, end in self._queue)
        left += sum(r.left for r in self._runs)
        mine = sum(r.left for r in self._runs if r.source == source)
        sources = {r.source for r in self._runs} | {source}
        total = sum(max(self.speed(s), 1.0) for s in sources)
        share = math.ceil(left * max(self.speed(source), 1.0) / total) - mine
        return max(1, min(want, share))

    def take(self, source: S, now: float) -> Run[S] | None:
        """The next run for `source` to fetch, or None if there is nothing it could help
        with now (wait for a change: a failure may give chunks back)."""
        want = self._fair(source, self._want(source))
        while self._queue:
            first, end = self._queue.popleft()
            if end - first > want:
                self._queue.appendleft((first + want, end))
                end = first + want
            return self._start(source, first, end, now)
        return self._take_tail(source, now)

    def prefer(self, index: int) -> None:
        """A reader waits for chunk `index`: the chunks not yet dealt are dealt from there
        on first (what follows it is what a reader reads next), the ones before it after."""
        if not self._queue or self._queue[0][0] == index:
            return
        ahead: list[tuple[int, int]] = []
        behind: list[tuple[int, int]] = []
        for first, end in self._queue:
            if end <= index:
                behind.append((first, end))
            elif first >= index:
                ahead.append((first, end))
            else:
                behind.append((first, index))
                ahead.append((index, end))
        self._queue = deque(sorted(ahead) + sorted(behind))

    def _take_tail(self, source: S, now: float) -> Run[S] | None:
        others = [r for r in self._runs if r.source != source and r.left > 0]
        quiet = [r for r in others if now - r.last_progress >= QUIET_S]
        if quiet:
            victim = max(quiet, key=lambda r: r.left)
            first, end = victim.next, victim.end
            victim.end = victim.next  # its source stops at its next chunk
            return self._start(source, first, end, now)
        mine = max(self.speed(source), 1.0)

        def finish_time(r: Run[S]) -> float:
            return r.left / max(self.speed(r.source), 1.0)

        for victim in sorted(others, key=finish_time, reverse=True):
            # Keep the chunk the victim is receiving; split the rest by speed.
            theirs = max(self.speed(victim.source), 1.0)
            tail = int((victim.left - 1) * mine / (mine + theirs))
            if tail >= 1:
                first = victim.end - tail
                end = victim.end
                victim.end = first
                return self._start(source, first, end, now)
        return None

    def _start(self, source: S, first: int, end: int, now: float) -> Run[S]:
        run = Run(source=source, first=first, end=end, next=first, last_progress=now)
        self._runs.append(run)
        return run

    def received(self, run: Run[S], index: int, now: float) -> bool:
        """Chunk `index` of `run` arrived; False if the run no longer wants it (another
        source took it), and the source should stop this run."""
        if index >= run.end or index not in self._left:
            return False
        run.next = index + 1
        run.last_progress = now
        return True

    def verified(self, index: int) -> None:
        self._left.discard(index)

    def finish(self, run: Run[S], *, nbytes: int, seconds: float) -> None:
        """`run` ended; what it left unverified goes back to be taken by any source."""
        if run in self._runs:
            self._runs.remove(run)
        if nbytes and seconds > 0:
            self._speeds.setdefault(run.source, _Speed()).add(nbytes / seconds)
        back = [i for i in range(run.first, run.end) if i in self._left]
        for first, end in reversed(_ranges(back)):
            last = end
            if self._queue and self._queue[0][0] == end:
                last = self._queue.popleft()[1]  # one range again, so it can go in one run
            self._queue.appendleft((first, last))


def _ranges(indexes: list[int]) -> list[tuple[int, int]]:
    """Sorted indexes as [first, end) ranges of consecutive ones."""
    out: list[tuple[int, int]] = []
    for i in sorted(indexes):
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


__all__ = ["MAX_RUN", "PullPlan", "Run"]
