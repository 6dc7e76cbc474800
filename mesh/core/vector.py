"""Version vectors: for each origin, the epoch and the highest sequence number held."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from mesh.core.epoch import Epoch
from mesh.core.ids import NodeId


@dataclass(frozen=True, order=True, slots=True)
class Clock:
    """How far one origin's writes are known: its epoch and the last seq of that epoch."""

    epoch: Epoch
    seq: int


class VersionVector(Mapping[NodeId, Clock]):
    """An immutable map origin -> Clock."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[NodeId, Clock] | Iterable[tuple[NodeId, Clock]] = ()) -> None:
        self._items: dict[NodeId, Clock] = dict(items)

    def __getitem__(self, origin: NodeId) -> Clock:
        return self._items[origin]

    def __iter__(self) -> Iterator[NodeId]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, VersionVector):
            return self._items == other._items
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{o.short()}: {c.epoch}/{c.seq}" for o, c in self.items())
        return f"VersionVector({{{inner}}})"

    def with_clock(self, origin: NodeId, clock: Clock) -> VersionVector:
        items = dict(self._items)
        items[origin] = clock
        return VersionVector(items)

    def covers(self, origin: NodeId, epoch: Epoch, seq: int) -> bool:
        """Whether this vector has seen write `seq` of `origin` in `epoch` (or a later epoch)."""
        clock = self._items.get(origin)
        if clock is None:
            return False
        if clock.epoch != epoch:
            return clock.epoch > epoch
        return seq <= clock.seq


def lag(ours: VersionVector, theirs: VersionVector, peer: NodeId | None = None) -> int:
    """How many of the writes `ours` has seen `theirs` has not (by sequence numbers: a
    write superseded since still counts, so this is an upper bound). The writes of `peer`
    itself are left out: a peer is never behind on its own writes, and it never acks them
    (nobody sends a node its own records)."""
    missing = 0
    for origin, clock in ours.items():
        if origin == peer:
            continue
        seen = theirs.get(origin)
        if seen is None or seen.epoch < clock.epoch:
            missing += clock.seq
        elif seen.epoch == clock.epoch:
            missing += max(0, clock.seq - seen.seq)
    return missing
