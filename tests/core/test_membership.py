"""Membership from admission and removal records: one table row per rule, then properties
(any arrival order gives the same answer; what counts obeys the rules)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.core.epoch import Epoch
from mesh.core.ids import NodeId
from mesh.core.membership import Membership, Signed, admitted_through, compute
from mesh.core.records import Admission, Removal
from mesh.core.vector import Clock

E1 = Epoch(1, 0)
E2 = Epoch(2, 0)


def _cert(name: str) -> bytes:
    return b"certificate of " + name.encode()


IDS = {name: NodeId.of_certificate(_cert(name)) for name in "RABCDX"}
NAMES = {node_id: name for name, node_id in IDS.items()}
ROOT = IDS["R"]


def adm(
    signer: str,
    target: str,
    seq: int,
    *,
    epoch: Epoch = E1,
    ms: int = 0,
    name: str = "",
    cert: bytes | None = None,
) -> Signed:
    record = Admission(
        node_id=IDS[target],
        certificate=_cert(target) if cert is None else cert,
        name=name or target.lower(),
        admitted_ms=ms,
    )
    return Signed(origin=IDS[signer], epoch=epoch, seq=seq, record=record)


def rem(
    signer: str,
    target: str,
    seq: int,
    last: int,
    *,
    last_epoch: Epoch = E1,
    epoch: Epoch = E1,
    ms: int = 0,
) -> Signed:
    record = Removal(node_id=IDS[target], last_epoch=last_epoch, last_seq=last, removed_ms=ms)
    return Signed(origin=IDS[signer], epoch=epoch, seq=seq, record=record)


GENESIS = adm("R", "R", 1)


@dataclass(frozen=True)
class Case:
    id: str
    records: list[Signed]
    members: str
    removed: dict[str, Clock]


# Ids are hashes, so which of two same-depth nodes sorts first is fixed but arbitrary.
_FIRST, _SECOND = sorted("AB", key=lambda n: IDS[n].raw)
assert sorted("ABD", key=lambda n: IDS[n].raw) == ["D", "A", "B"]  # the repair case needs it

CASES = [
    Case("nothing", [], "", {}),
    Case("the genesis makes the root a member", [GENESIS], "R", {}),
    Case("nothing is grounded without the genesis", [adm("R", "A", 2)], "", {}),
    Case("the root admits", [GENESIS, adm("R", "A", 2)], "RA", {}),
    Case("a member admits", [GENESIS, adm("R", "A", 2), adm("A", "B", 1)], "RAB", {}),
    Case("another self-admission grants nothing", [GENESIS, adm("A", "A", 1)], "R", {}),
    Case("an admission by a non-member does not count", [GENESIS, adm("A", "B", 1)], "R", {}),
    Case(
        "admissions in a cycle away from the root do not count",
        [GENESIS, adm("A", "B", 1), adm("B", "A", 1)],
        "R",
        {},
    ),
    Case(
        "a certificate that does not hash to the node id is ignored",
        [GENESIS, adm("R", "A", 2, cert=b"someone else's")],
        "R",
        {},
    ),
    Case(
        "a removal ends membership",
        [GENESIS, adm("R", "A", 2), rem("R", "A", 3, last=5)],
        "R",
        {"A": Clock(E1, 5)},
    ),
    Case(
        "admissions the removed node signed before its cutoff stay valid",
        [GENESIS, adm("R", "A", 2), adm("A", "B", 3), rem("R", "A", 3, last=5)],
        "RB",
        {"A": Clock(E1, 5)},
    ),
    Case(
        "admissions the removed node signed after its cutoff do not count",
        [GENESIS, adm("R", "A", 2), adm("A", "B", 7), rem("R", "A", 3, last=5)],
        "R",
        {"A": Clock(E1, 5)},
    ),
    Case(
        "a newer epoch than the cutoff's is past it",
        [GENESIS, adm("R", "A", 2), adm("A", "B", 1, epoch=E2), rem("R", "A", 3, last=5)],
        "R",
        {"A": Clock(E1, 5)},
    ),
    Case(
        "an older epoch than the cutoff's is within it",
        [
            GENESIS,
            adm("R", "A", 2),
            adm("A", "B", 9),
            rem("R", "A", 3, last=1, last_epoch=E2),
        ],
        "RB",
        {"A": Clock(E2, 1)},
    ),
    Case(
        "a removal signed after the signer's own cutoff does not count",
        [
            GENESIS,
            adm("R", "A", 2),
            adm("R", "B", 3),
            rem("R", "A", 4, last=5),
            rem("A", "B", 8, last=1),
        ],
        "RB",
        {"A": Clock(E1, 5)},
    ),
    Case(
        "a removal signed before the signer's own cutoff counts",
        [
            GENESIS,
            adm("R", "A", 2),
            adm("R", "B", 3),
            rem("R", "A", 4, last=5),
            rem("A", "B", 4, last=1),
        ],
        "R",
        {"A": Clock(E1, 5), "B": Clock(E1, 1)},
    ),
    Case(
        "removal is permanent: a later admission does not undo it",
        [GENESIS, adm("R", "A", 2), adm("R", "B", 3), rem("R", "A", 4, last=5), adm("B", "A", 9)],
        "RB",
        {"A": Clock(E1, 5)},
    ),
    Case(
        "a removal by a non-member does not count",
        [GENESIS, adm("R", "A", 2), rem("X", "A", 1, last=1)],
        "RA",
        {},
    ),
    Case(
        "with several removals the earliest cutoff holds",
        [
            GENESIS,
            adm("R", "A", 2),
            adm("R", "B", 3),
            adm("A", "C", 4),
            rem("R", "A", 4, last=5),
            rem("B", "A", 1, last=3),
        ],
        "RB",
        {"A": Clock(E1, 3)},
    ),
    Case(
        "mutual removal with the root: the root wins",
        [GENESIS, adm("R", "A", 2), rem("A", "R", 2, last=1), rem("R", "A", 3, last=1)],
        "R",
        {"A": Clock(E1, 1)},
    ),
    Case(
        "mutual removal: the signer closer to the root wins",
        [
            GENESIS,
            adm("R", "A", 2),
            adm("A", "B", 1),
            rem("A", "B", 2, last=0),
            rem("B", "A", 1, last=1),
        ],
        "RA",
        {"B": Clock(E1, 0)},
    ),
    Case(
        "mutual removal at the same depth: the lower node id wins",
        [
            GENESIS,
            adm("R", "A", 2),
            adm("R", "B", 3),
            rem("A", "B", 1, last=0),
            rem("B", "A", 1, last=0),
        ],
        "R" + _FIRST,
        {_SECOND: Clock(E1, 0)},
    ),
    Case(
        "the root can be removed; its later admissions do not count",
        [GENESIS, adm("R", "A", 2), adm("R", "B", 3), rem("A", "R", 1, last=2)],
        "A",
        {"R": Clock(E1, 2)},
    ),
    Case(
        "a removal that would void its own signer's admission does not count",
        [GENESIS, adm("R", "A", 2), rem("A", "R", 1, last=1)],
        "RA",
        {},
    ),
    Case(
        "a removal of the root past its own admission counts",
        [GENESIS, adm("R", "A", 2), adm("R", "B", 3), rem("A", "R", 1, last=2)],
        "A",
        {"R": Clock(E1, 2)},
    ),
    Case(
        # D sorts first of the three (ids are hashes), so its removal of A is tried first;
        # once B's removal of R counts, D (admitted by R after R's cutoff) has no standing,
        # and its removal is set aside again.
        "a tie-break that later loses its standing is undone",
        [
            GENESIS,
            adm("R", "B", 2),
            adm("R", "A", 3),
            adm("R", "D", 1, epoch=E2),
            rem("A", "R", 1, last=1),
            rem("B", "R", 1, last=2),
            rem("D", "A", 1, last=1),
        ],
        "B",
        {"R": Clock(E1, 2)},
    ),
    Case(
        "a node cannot remove itself",
        [GENESIS, adm("R", "A", 2), rem("A", "A", 1, last=0)],
        "RA",
        {},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_membership_rules(case: Case) -> None:
    for order in (case.records, list(reversed(case.records))):
        result = compute(ROOT, order)
        assert {NAMES[m] for m in result.members} == set(case.members)
        assert {NAMES[x]: r.cutoff for x, r in result.removed.items()} == case.removed
        for name in case.members:
            assert result.is_member(IDS[name])
            assert result.counts(IDS[name], E2, 1 << 40)
        for name, cutoff in case.removed.items():
            assert not result.is_member(IDS[name])
            assert result.cutoff(IDS[name]) == cutoff
            assert result.counts(IDS[name], cutoff.epoch, cutoff.seq)
            assert not result.counts(IDS[name], cutoff.epoch, cutoff.seq + 1)


def test_member_details_come_from_the_admission_first_in_the_chain_not_a_date() -> None:
    result = compute(
        ROOT,
        [
            adm("R", "R", 1, ms=10, name="tower"),
            adm("R", "A", 2, ms=20, name="laptop"),
            adm("R", "B", 3, ms=30, name="phone"),
            # B re-admits A under another name, dated before everything: it changes nothing
            adm("B", "A", 1, ms=5, name="old-laptop-name"),
        ],
    )
    root = result.members[ROOT]
    assert (root.name, root.admitted_by, root.admitted_ms) == ("tower", ROOT, 10)
    assert root.certificate == _cert("R")
    a = result.members[IDS["A"]]
    assert (a.name, a.claimed, a.admitted_by, a.admitted_ms) == ("laptop", "laptop", ROOT, 20)


def test_a_name_a_node_claimed_itself_is_one_no_other_member_can_change() -> None:
    records = [
        GENESIS,
        adm("R", "B", 2, name="mallory"),
        adm("B", "A", 1, name="nobody"),  # B admits A first and names it
        adm("R", "A", 3, name="laptop"),
        adm("A", "A", 1, name="laptop"),  # A's own claim
        adm("A", "A", 2, name="later"),  # only a node's first claim counts
        adm("B", "A", 2, name="renamed", ms=-1),
        adm("B", "B", 1, name="r"),  # B may claim a name for itself (the root's is taken)
    ]
    result = compute(ROOT, records)
    assert result.members[IDS["A"]].name == "laptop"
    assert result.members[IDS["B"]].name == f"r~{IDS['B'].short()}"
    assert result.members[IDS["B"]].claimed == "r"
    assert [m.node_id for m in result.by_name("r")] == [ROOT]
    # Without its claim, A is named by the admission first in the chain (B's place (2,),
    # then B's write 1, comes before the root's write 3), whatever the dates say.
    unclaimed = [r for r in records if r.origin != IDS["A"]]
    assert compute(ROOT, unclaimed).members[IDS["A"]].name == "nobody"


@pytest.mark.parametrize("seed", range(5))
def test_a_claimed_name_is_held_by_the_first_in_the_admission_chain(seed: int) -> None:
    records = [
        GENESIS,
        adm("R", "A", 2, name="tower"),
        adm("R", "B", 3, name="b"),
        adm("B", "C", 1, name="c"),
        adm("C", "B", 1, name="tower", ms=-5),  # C "re-admits" B as tower: changes nothing
        adm("B", "B", 1, name="tower"),  # B claims tower itself: A was first
        adm("C", "C", 1, name="tower"),
    ]
    random.Random(seed).shuffle(records)
    result = compute(ROOT, records)
    a, b, c = (result.members[IDS[n]] for n in "ABC")
    assert a.name == "tower"
    assert b.name == f"tower~{IDS['B'].short()}"
    assert c.name == f"tower~{IDS['C'].short()}"
    assert [m.node_id for m in result.by_name("tower")] == [IDS["A"]]
    assert result.duplicate_names == (("tower", tuple(sorted(IDS[n] for n in "ABC"))),)


def test_a_removed_members_claim_and_admissions_past_its_cutoff_do_not_count() -> None:
    result = compute(
        ROOT,
        [
            GENESIS,
            adm("R", "A", 2, name="a"),
            adm("R", "B", 3, name="b"),
            rem("R", "B", 4, last=1),
            adm("B", "A", 1, name="x"),  # within B's cutoff, but A is placed by R first
            adm("B", "D", 2, name="d"),  # past B's cutoff
            adm("B", "B", 3, name="a"),
        ],
    )
    assert sorted(m.name for m in result.members.values()) == ["a", "r"]


def test_removal_details_and_certificates_of_non_members() -> None:
    result = compute(
        ROOT,
        [
            GENESIS,
            adm("R", "A", 2),
            adm("X", "D", 1),  # X is no member, but D's certificate is still D's
            rem("R", "A", 3, last=5, ms=77),
        ],
    )
    removed = result.removed[IDS["A"]]
    assert (removed.removed_by, removed.removed_ms, removed.cutoff) == (ROOT, 77, Clock(E1, 5))
    assert result.certificates[IDS["D"]] == _cert("D")
    assert not result.is_member(IDS["D"])


def test_duplicate_names_are_reported_deterministically() -> None:
    records = [
        GENESIS,
        adm("R", "A", 2, name="laptop"),
        adm("R", "B", 3, name="laptop"),
        adm("R", "C", 4, name="phone"),
    ]
    result = compute(ROOT, records)
    holders = tuple(sorted((IDS["A"], IDS["B"])))
    assert result.duplicate_names == (("laptop", holders),)
    # A was admitted first (the root's write 2): it keeps the name, B gets its id added.
    assert [m.node_id for m in result.by_name("laptop")] == [IDS["A"]]
    assert [m.node_id for m in result.by_name(f"laptop~{IDS['B'].short()}")] == [IDS["B"]]
    assert compute(ROOT, reversed(records)).duplicate_names == result.duplicate_names


def test_rank_puts_admitters_first() -> None:
    result = compute(ROOT, [GENESIS, adm("R", "A", 2), adm("A", "B", 1), adm("B", "C", 1)])
    order = sorted([IDS["C"], IDS["X"], IDS["B"], ROOT, IDS["A"]], key=result.rank)
    assert order == [ROOT, IDS["A"], IDS["B"], IDS["C"], IDS["X"]]


def test_empty_membership() -> None:
    empty = Membership(root=ROOT)
    assert not empty.is_member(ROOT)
    assert empty.counts(ROOT, E1, 1)


# -- properties --------------------------------------------------------------------------

_nodes = st.sampled_from("RABCD")
_points = st.tuples(st.sampled_from([E1, E2]), st.integers(1, 6))
_admissions = st.builds(lambda s, t, p: adm(s, t, p[1], epoch=p[0]), _nodes, _nodes, _points)
_removals = st.builds(
    lambda s, t, p, c: rem(s, t, p[1], last=c[1], last_epoch=c[0], epoch=p[0]),
    _nodes,
    _nodes,
    _points,
    _points,
)


def _dedupe(records: list[Signed]) -> list[Signed]:
    """One record per (origin, epoch, seq) and per key, as a store would hold them."""
    points: dict[tuple[NodeId, Epoch, int], Signed] = {}
    for s in records:
        points.setdefault((s.origin, s.epoch, s.seq), s)
    keys: dict[tuple[type, NodeId, NodeId], Signed] = {}
    for s in points.values():
        key = (type(s.record), s.origin, s.record.node_id)
        if key not in keys or s.point > keys[key].point:
            keys[key] = s
    return list(keys.values())


record_sets = st.lists(st.one_of(_admissions, _removals), max_size=14).map(
    lambda rs: _dedupe([GENESIS, *rs])
)


@given(record_sets, st.randoms(use_true_random=False))
def test_any_arrival_order_gives_the_same_membership(
    records: list[Signed], rng: random.Random
) -> None:
    expected = compute(ROOT, records)
    shuffled = list(records)
    rng.shuffle(shuffled)
    assert compute(ROOT, shuffled) == expected


@given(record_sets)
def test_what_counts_obeys_the_rules(records: list[Signed]) -> None:
    result = compute(ROOT, records)
    cutoffs = {x: r.cutoff for x, r in result.removed.items()}

    def within(signer: NodeId, point: Clock) -> bool:
        return signer not in cutoffs or point <= cutoffs[signer]

    # Admitted (members and removed members alike) under the final cutoffs, from scratch.
    admitted: set[NodeId] = set()
    grew = True
    while grew:
        grew = False
        for s in records:
            x = s.record.node_id
            if (
                not isinstance(s.record, Admission)
                or x in admitted
                or not within(s.origin, s.point)
            ):
                continue
            if (s.origin == x == ROOT) or (s.origin != x and s.origin in admitted):
                admitted.add(x)
                grew = True
    assert set(result.members) == admitted - set(result.removed)

    for member in result.members:
        assert member not in result.removed
        if member == ROOT:
            assert any(
                s.origin == ROOT == s.record.node_id and within(ROOT, s.point) for s in records
            )
            continue
        # Some admission of it counts: its signer was admitted and signed within its cutoff.
        assert any(
            isinstance(s.record, Admission)
            and s.record.node_id == member
            and s.origin != member
            and s.origin in admitted
            and within(s.origin, s.point)
            for s in records
        ), NAMES[member]
    for s in records:
        # Every admission that counts makes a member, unless its node is removed.
        x = s.record.node_id
        counts = s.origin in admitted and within(s.origin, s.point)
        grants = s.origin != x or x == ROOT
        if isinstance(s.record, Admission) and counts and grants and x not in result.removed:
            assert x in result.members
    for removed, info in result.removed.items():
        # The removal that set the cutoff names it and came from an admitted signer.
        assert any(
            isinstance(s.record, Removal)
            and s.record.node_id == removed
            and s.origin == info.removed_by
            and Clock(s.record.last_epoch, s.record.last_seq) == info.cutoff
            and s.origin in admitted
            for s in records
        )


REMOVAL_CHAIN = [
    GENESIS,
    adm("R", "A", 2),
    adm("R", "B", 3),
    adm("A", "C", 1),  # C stands only on A
    adm("C", "D", 1),  # D on C, so on A
    adm("A", "X", 2),  # X was admitted by A ...
    adm("B", "X", 1),  # ... and by B: it does not stand on A alone
]


@pytest.mark.parametrize(
    ("target", "keep", "going"),
    [
        ("A", "", "CD"),
        ("A", "C", ""),  # a kept member keeps those it admitted
        ("A", "D", "C"),
        ("C", "", "D"),
        ("B", "", ""),
        ("D", "", ""),
    ],
)
def test_the_members_that_stand_only_on_a_members_admissions(
    target: str, keep: str, going: str
) -> None:
    found = admitted_through(ROOT, REMOVAL_CHAIN, IDS[target], {IDS[k] for k in keep})
    assert found == sorted(IDS[n] for n in going)
    # Removing them with it leaves none of what it did behind.
    removals = [rem("R", n, 10 + i, last=5) for i, n in enumerate(target + going)]
    after = compute(ROOT, [*REMOVAL_CHAIN, *removals])
    assert not any(after.is_member(IDS[n]) for n in target + going)
    assert all(after.is_member(IDS[n]) for n in "RABCDX" if n not in target + going)


_named_admissions = st.builds(
    lambda s, t, p, n: adm(s, t, p[1], epoch=p[0], name=n),
    _nodes,
    _nodes,
    _points,
    st.sampled_from(["tower", "laptop", "r"]),
)
named_record_sets = st.lists(st.one_of(_named_admissions, _removals), max_size=14).map(
    lambda rs: _dedupe([GENESIS, *rs])
)


@given(named_record_sets, st.randoms(use_true_random=False))
def test_names_are_unique_and_the_same_whatever_the_arrival_order(
    records: list[Signed], rng: random.Random
) -> None:
    result = compute(ROOT, records)
    shuffled = list(records)
    rng.shuffle(shuffled)
    again = compute(ROOT, shuffled)
    assert {x: m.name for x, m in again.members.items()} == {
        x: m.name for x, m in result.members.items()
    }
    names = [m.name for m in result.members.values()]
    assert len(names) == len(set(names))
    for m in result.members.values():
        assert m.name in (m.claimed, f"{m.claimed}~{m.node_id.short()}")
        # A claim made by the node itself is never overridden by another's admission.
        if m.node_id in result.claims:
            assert m.claimed == result.claims[m.node_id]
