"""Membership: who is in the mesh, computed from the admission and removal records alone.

Theory of operation
-------------------
Membership is a pure function of the membership records a node holds, so every node that
holds the same records computes the same member set, whatever order they arrived in.

* The mesh's **root** (the node that founded it) admits itself: that self-admission is the
  genesis. Any other self-admission grants nothing (it still publishes a certificate).
* "O admits X" counts when O was a member at the point (epoch, seq) where O wrote it.
* "R removes X" counts on the same condition, and makes X a non-member for good. Its
  **cutoff** (the last (epoch, seq) of X that counts) limits what X wrote: X's records past
  it do not count, those at or before it stay valid. With several counting removals of X the
  earliest cutoff holds.
* "O was a member at point p" means O was admitted by a counting admission (or is the root
  with its genesis) and no counting removal of O has a cutoff before p. Points of different
  origins cannot be ordered, so when O was admitted does not matter, only that it was.

Removals refer to each other (R removes X while X removes R), so "counts" is computed as a
fixpoint, the well-founded one: a removal is *certain* when it counts even if every removal
that might count does, and *possible* when it counts given only the certain ones. When the
two agree, that is the answer. When they do not (a cycle: two members removed each other
concurrently, neither having seen the other's record), the pending removal of the most
senior signer (the root first, then by distance from the root in the admission graph, then
by node id) is made to count, if it still counts by the rules once it does; otherwise (a
removal that cuts off the admission its own signer stands on) it is set aside for good. Then
the fixpoint is computed again (see `_Solver.solve`). In the answer every removal that counts
has a signer who was a member where it signed. Every node breaks ties the same way: the order
depends on the records only.

Names. A member's name is the one it **claimed** itself (its first self-admission, signed
with its own key; the root's genesis is one), or else the one its **admission** gave it. Its
admission is the one that places it first in the admission chain: the root's place is (),
and "O admits X" written at point p places X at O's place + (p,), compared
lexicographically; only points each signer gave its own writes are compared, never a
self-declared date. Names are unique: when several members claim one, the first of them in
chain order holds it and each other is shown as `name~ID7` (its short id; '~' is not
allowed in a claimed name). So no member can rename another that has made its claim, and
every node that holds the same records shows the same names.

Signatures are not checked here: the replica verified each record against its signer's
certificate before storing it. Certificates are taken from any admission whose certificate
hashes to the node id it names, so the binding of id to certificate is cryptographic and does
not depend on who wrote the admission.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from mesh.core.epoch import Epoch
from mesh.core.ids import NodeId
from mesh.core.records import Admission, Removal
from mesh.core.vector import Clock

_UNRANKED = 1 << 30


@dataclass(frozen=True, kw_only=True, slots=True)
class Signed:
    """A membership record with the point where its signer (the origin) wrote it."""

    origin: NodeId
    epoch: Epoch
    seq: int
    record: Admission | Removal

    @property
    def point(self) -> Clock:
        return Clock(self.epoch, self.seq)


@dataclass(frozen=True, kw_only=True, slots=True)
class Member:
    node_id: NodeId
    name: str  # unique in the mesh: the claimed name, or `claimed~ID7` if another holds it
    claimed: str  # the name the node claimed itself, or was given at its admission
    certificate: bytes
    admitted_by: NodeId  # the root for the root itself
    admitted_ms: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Removed:
    node_id: NodeId
    cutoff: Clock  # the last (epoch, seq) of this node that counts
    removed_by: NodeId
    removed_ms: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Membership:
    """The outcome of `compute`: treat the mappings as read-only."""

    root: NodeId
    members: Mapping[NodeId, Member] = field(default_factory=dict)
    removed: Mapping[NodeId, Removed] = field(default_factory=dict)
    # Every certificate known from an admission (members or not), by the id it hashes to.
    certificates: Mapping[NodeId, bytes] = field(default_factory=dict)
    # Distance from the root in the admission graph, for ordering origins admitters-first.
    depths: Mapping[NodeId, int] = field(default_factory=dict)
    # The names members claimed themselves (see the module's docstring), by id.
    claims: Mapping[NodeId, str] = field(default_factory=dict)
    # Claimed names that more than one member holds, holders by id (the first in the
    # admission chain keeps the name, the others are shown as `name~ID7`).
    duplicate_names: tuple[tuple[str, tuple[NodeId, ...]], ...] = ()

    def is_member(self, node_id: NodeId) -> bool:
        return node_id in self.members

    def cutoff(self, node_id: NodeId) -> Clock | None:
        removed = self.removed.get(node_id)
        return None if removed is None else removed.cutoff

    def counts(self, origin: NodeId, epoch: Epoch, seq: int) -> bool:
        """Whether a record written by `origin` at (epoch, seq) is within its cutoff (if any)."""
        cutoff = self.cutoff(origin)
        return cutoff is None or Clock(epoch, seq) <= cutoff

    def by_name(self, name: str) -> tuple[Member, ...]:
        return tuple(m for _, m in sorted(self.members.items()) if m.name == name)

    def rank(self, node_id: NodeId) -> tuple[int, bytes]:
        """Sort key putting admitters before the nodes they admitted."""
        return self.depths.get(node_id, _UNRANKED), node_id.raw


def _canonical(signed: Signed) -> tuple[bytes, Epoch, int]:
    return signed.origin.raw, signed.epoch, signed.seq


class _Solver:
    """One computation: the records in canonical order and the fixpoint over removals."""

    def __init__(self, root: NodeId, records: Iterable[Signed]) -> None:
        self.root = root
        ordered = sorted(records, key=_canonical)
        self.admissions = [
            s
            for s in ordered
            if isinstance(s.record, Admission)
            and NodeId.of_certificate(s.record.certificate) == s.record.node_id
        ]
        self.removals = [
            s for s in ordered if isinstance(s.record, Removal) and s.record.node_id != s.origin
        ]
        self.depths = self._depths()

    def _depths(self) -> dict[NodeId, int]:
        """Breadth-first distance from the root over all admissions (removals ignored)."""
        depths: dict[NodeId, int] = {}
        if any(s.origin == self.root == s.record.node_id for s in self.admissions):
            depths[self.root] = 0
        frontier = [self.root] if depths else []
        while frontier:
            reached: list[NodeId] = []
            for s in self.admissions:
                x = s.record.node_id
                if s.origin in frontier and x not in depths:
                    depths[x] = depths[s.origin] + 1
                    reached.append(x)
            frontier = reached
        return depths

    @staticmethod
    def _within(cutoffs: Mapping[NodeId, Clock], origin: NodeId, point: Clock) -> bool:
        cutoff = cutoffs.get(origin)
        return cutoff is None or point <= cutoff

    def admitted(self, cutoffs: Mapping[NodeId, Clock]) -> set[NodeId]:
        """Nodes admitted by counting admissions, given the cutoffs (a least fixpoint)."""
        admitted: set[NodeId] = set()
        for s in self.admissions:
            if s.origin == self.root == s.record.node_id and self._within(
                cutoffs, s.origin, s.point
            ):
                admitted.add(self.root)
        if not admitted:
            return admitted  # nothing is grounded without the genesis
        grew = True
        while grew:
            grew = False
            for s in self.admissions:
                x = s.record.node_id
                if x in admitted or x == s.origin:
                    continue
                if s.origin in admitted and self._within(cutoffs, s.origin, s.point):
                    admitted.add(x)
                    grew = True
        return admitted

    def cutoffs(self, removals: Iterable[int]) -> dict[NodeId, Clock]:
        cutoffs: dict[NodeId, Clock] = {}
        for i in removals:
            record = self.removals[i].record
            assert isinstance(record, Removal)
            cutoff = Clock(record.last_epoch, record.last_seq)
            known = cutoffs.get(record.node_id)
            if known is None or cutoff < known:
                cutoffs[record.node_id] = cutoff
        return cutoffs

    def counting(self, assumed: frozenset[int], excluded: frozenset[int]) -> frozenset[int]:
        """Removals (other than the excluded ones) that count if exactly `assumed` do."""
        cutoffs = self.cutoffs(assumed)
        admitted = self.admitted(cutoffs)
        return frozenset(
            i
            for i, s in enumerate(self.removals)
            if i not in excluded
            and s.origin in admitted
            and self._within(cutoffs, s.origin, s.point)
        )

    def _seniority(self, i: int) -> tuple[int, int, bytes, Epoch, int]:
        s = self.removals[i]
        return (
            0 if s.origin == self.root else 1,
            self.depths.get(s.origin, _UNRANKED),
            s.origin.raw,
            s.epoch,
            s.seq,
        )

    def _fixpoint(
        self, forced: frozenset[int], excluded: frozenset[int]
    ) -> tuple[frozenset[int], frozenset[int]]:
        """(certain, possible) removals: the well-founded fixpoint, `forced` ones counting."""
        certain = forced
        while True:
            possible = self.counting(certain, excluded) | forced
            again = self.counting(possible, excluded) | forced
            if again == certain:
                return certain, possible
            certain = again

    def solve(self) -> frozenset[int]:
        """The removals that count: the well-founded fixpoint, cycles broken by seniority.

        A pending removal is made to count only if it then still counts by the rules; one
        that would void its own signer's standing is set aside for good. If a later tie-break
        leaves an earlier one without standing, that one is set aside and the ties are broken
        again, so in the answer every removal that counts has a signer who was a member at
        its signing point. Each round sets aside at least one removal, so this ends.
        """
        excluded: frozenset[int] = frozenset()
        while True:
            forced: frozenset[int] = frozenset()
            while True:
                certain, possible = self._fixpoint(forced, excluded)
                pending = possible - certain
                if not pending:
                    break
                chosen = min(pending, key=self._seniority)
                trial, _ = self._fixpoint(forced | {chosen}, excluded)
                if forced | {chosen} <= self.counting(trial, excluded):
                    forced |= {chosen}
                else:
                    excluded |= {chosen}
            stale = forced - self.counting(certain, excluded)
            if not stale:
                return certain
            excluded |= stale


ChainKey = tuple[tuple[Epoch, int], ...]


def _counts(cutoffs: Mapping[NodeId, Clock], s: Signed) -> bool:
    cutoff = cutoffs.get(s.origin)
    return cutoff is None or s.point <= cutoff


def _chain_keys(
    root: NodeId,
    admissions: Iterable[Signed],
    admitted: set[NodeId],
    cutoffs: Mapping[NodeId, Clock],
) -> tuple[dict[NodeId, ChainKey], dict[NodeId, Signed]]:
    """Each admitted node's place in the admission chain from the root, and the admission
    that gives it: the root's key is (), and an admission O wrote at point p gives its node
    O's key + (p,); a node's key is the least of those (lexicographic, a prefix first).

    Only points the signers wrote themselves are compared, never a self-declared date, so a
    member cannot get ahead of the member that admitted it, nor of anyone admitted by one
    of its admitters before it.
    """
    by_signer: dict[NodeId, list[Signed]] = {}
    keys: dict[NodeId, ChainKey] = {}
    chosen: dict[NodeId, Signed] = {}
    for s in admissions:
        if not _counts(cutoffs, s) or s.origin not in admitted:
            continue
        if s.origin == s.record.node_id:
            if s.origin == root and root not in chosen:
                chosen[root] = s  # the genesis (the first one in canonical order)
            continue
        by_signer.setdefault(s.origin, []).append(s)
    if root not in chosen:
        return keys, chosen
    heap: list[tuple[ChainKey, bytes, NodeId, Signed]] = [((), root.raw, root, chosen[root])]
    while heap:
        key, _, node, s = heapq.heappop(heap)
        if node in keys:
            continue
        keys[node] = key
        chosen[node] = s
        for t in by_signer.get(node, ()):
            x = t.record.node_id
            if x not in keys and x in admitted:
                heapq.heappush(heap, ((*key, (t.epoch, t.seq)), x.raw, x, t))
    return keys, chosen


def _claims(
    admissions: Iterable[Signed], admitted: set[NodeId], cutoffs: Mapping[NodeId, Clock]
) -> dict[NodeId, str]:
    """The name each admitted node claimed itself: its first self-admission (in its own
    order) within its cutoff. Nobody else can sign one, so nobody else can rename it."""
    claims: dict[NodeId, tuple[Clock, str]] = {}
    for s in admissions:
        x = s.record.node_id
        if s.origin != x or x not in admitted or not _counts(cutoffs, s):
            continue
        assert isinstance(s.record, Admission)
        if x not in claims or s.point < claims[x][0]:
            claims[x] = (s.point, s.record.name)
    return {x: name for x, (_, name) in claims.items()}


def compute(root: NodeId, records: Iterable[Signed]) -> Membership:
    """The membership the given (verified) records establish. Deterministic in the set."""
    solver = _Solver(root, records)
    counting = solver.solve()
    cutoffs = solver.cutoffs(counting)
    admitted = solver.admitted(cutoffs)

    removed: dict[NodeId, Removed] = {}
    for i in sorted(counting, key=solver._seniority):
        s = solver.removals[i]
        record = s.record
        assert isinstance(record, Removal)
        if Clock(record.last_epoch, record.last_seq) != cutoffs[record.node_id]:
            continue
        if record.node_id not in removed:
            removed[record.node_id] = Removed(
                node_id=record.node_id,
                cutoff=cutoffs[record.node_id],
                removed_by=s.origin,
                removed_ms=record.removed_ms,
            )

    chain, chosen = _chain_keys(root, solver.admissions, admitted, cutoffs)
    claims = _claims(solver.admissions, admitted, cutoffs)
    admission = {x: s for x, s in chosen.items() if x not in removed and x in chain}

    # A claim's holder is the first in the admission chain to make it; the others are told
    # apart by their short id ('~' is not allowed in a claimed name, so nothing collides).
    holders: dict[str, list[NodeId]] = {}
    for x in sorted(admission, key=lambda n: (chain[n], n.raw)):
        record = admission[x].record
        assert isinstance(record, Admission)
        holders.setdefault(claims.get(x, record.name), []).append(x)
    members: dict[NodeId, Member] = {}
    for claimed, ids in holders.items():
        for i, x in enumerate(ids):
            s = admission[x]
            record = s.record
            assert isinstance(record, Admission)
            members[x] = Member(
                node_id=x,
                name=claimed if i == 0 else f"{claimed}~{x.short()}",
                claimed=claimed,
                certificate=record.certificate,
                admitted_by=s.origin,
                admitted_ms=record.admitted_ms,
            )
    members = dict(sorted(members.items()))
    duplicates = tuple(
        (name, tuple(sorted(ids))) for name, ids in sorted(holders.items()) if len(ids) > 1
    )

    certificates: dict[NodeId, bytes] = {}
    for s in solver.admissions:
        assert isinstance(s.record, Admission)
        certificates.setdefault(s.record.node_id, s.record.certificate)

    return Membership(
        root=root,
        members=members,
        removed=removed,
        certificates=certificates,
        depths=solver.depths,
        claims=claims,
        duplicate_names=duplicates,
    )


def admitted_through(
    root: NodeId,
    records: Iterable[Signed],
    node_id: NodeId,
    keep: Collection[NodeId] = (),
) -> list[NodeId]:
    """The members that are members only through `node_id`'s admissions (the nodes it
    admitted, those they admitted, and so on, unless someone else admitted them too): what
    removing `node_id` would leave behind, less the `keep` nodes and those they admitted
    (they stay on the admissions made before the removal). Sorted by id."""
    records = list(records)
    now = compute(root, records)
    without = compute(
        root,
        (
            s
            for s in records
            if not (
                s.origin == node_id
                and isinstance(s.record, Admission)
                and s.record.node_id != node_id
            )
        ),
    )
    going = {x for x in now.members if x != node_id and not without.is_member(x)}
    staying = going & set(keep)
    grew = True
    while grew:  # those a kept member admitted stay with it
        grew = False
        for s in records:
            x = s.record.node_id
            if isinstance(s.record, Admission) and s.origin in staying and x in going - staying:
                staying.add(x)
                grew = True
    return sorted(going - staying)
