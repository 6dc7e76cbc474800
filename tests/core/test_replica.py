"""The replica, rule by rule: the store contract, every reason to refuse a batch, and every
rule for taking one (epochs, own records, relaying, membership, tombstones, removals).

Nodes here use real P-256 identities and the real wire encoding. Every test that takes
`make_store` runs once per store in `STORE_FACTORIES`.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import pytest

from mesh.core.clock_proof import ClockProof, covered_digest, proof_bytes
from mesh.core.entries import LibraryEntry
from mesh.core.envelope import Envelope
from mesh.core.epoch import Epoch
from mesh.core.errors import InvalidArgumentError, StoreError
from mesh.core.gossip import Batch
from mesh.core.ids import NodeId
from mesh.core.records import (
    SIGNED_KINDS,
    Addresses,
    Admission,
    Binding,
    BindingEnd,
    Content,
    Kind,
    LoanState,
    LoanStatus,
    Record,
    Removal,
    VectorRecord,
    key_of,
)
from mesh.core.replica import ApplyResult, Outcome, Replica
from mesh.core.replica_store import Changes, EpochDrop, Put, ReplicaStore
from mesh.core.vector import Clock, VersionVector
from mesh.wire.records import decode, encode
from tests.core.fakes import (
    STORE_FACTORIES,
    RealSigner,
    StoreFactory,
    live_of,
    make_replica,
    real_verify,
)

E1 = Epoch(1_000, 1)
E2 = Epoch(2_000, 2)
E3 = Epoch(3_000, 3)

R, A, B, C, X = (RealSigner.generate() for _ in range(5))  # X is never admitted
T = TypeVar("T")


@pytest.fixture(scope="module", params=sorted(STORE_FACTORIES))
def make_store(request: pytest.FixtureRequest) -> StoreFactory:
    return STORE_FACTORIES[request.param]


@dataclass
class Node:
    signer: RealSigner
    store: ReplicaStore
    replica: Replica

    @property
    def id(self) -> NodeId:
        return self.signer.node_id


def node(
    signer: RealSigner,
    make_store: StoreFactory,
    *,
    epoch: Epoch = E1,
    store: ReplicaStore | None = None,
    verify: Callable[[bytes, bytes, bytes], bool] = real_verify,
) -> Node:
    store = make_store() if store is None else store
    replica = make_replica(signer, root=R.node_id, store=store, epoch=epoch, verify=verify)
    return Node(signer, store, replica)


def sync(
    src: Node, dst: Node, max_bytes: int = 1 << 20, *, relay_membership: bool = True
) -> list[ApplyResult]:
    """Everything `dst` lacks, from `src`, applied in order."""
    batches = src.replica.missing(
        dst.replica.vector(), max_bytes, relay_membership=relay_membership
    )
    return [dst.replica.apply(batch, src.id) for batch in batches]


def founded(make_store: StoreFactory, *others: RealSigner) -> tuple[Node, ...]:
    """The root with its genesis, having admitted `others`, each synced from the root."""
    root = node(R, make_store)
    root.replica.admit(R.certificate, "root", 1)
    nodes = [node(s, make_store) for s in others]
    for i, n in enumerate(nodes):
        root.replica.admit(n.signer.certificate, f"node{i}", 2 + i)
    for n in nodes:
        sync(root, n)
    return (root, *nodes)


def entry(path: str, *, deleted: bool = False, size: int = 1) -> LibraryEntry:
    return LibraryEntry(
        library="lib",
        path=path,
        size=size,
        mtime_ns=1,
        hash=b"h" * 16,
        chunk_root=b"c" * 16,
        deleted=deleted,
    )


def binding(borrower: NodeId, path: str = "f") -> Binding:
    return Binding(
        borrower=borrower,
        library="lib",
        path=path,
        content=Content(hash=b"h" * 16, size=1, chunk_root=b"c" * 16),
    )


def envelope_of(signer: RealSigner, epoch: Epoch, seq: int, record: Record) -> Envelope:
    """An envelope as `signer` would write it (signed when its kind is)."""
    kind, body = encode(record)
    env = Envelope(origin=signer.node_id, epoch=epoch, seq=seq, kind=kind, body=body)
    if kind in SIGNED_KINDS:
        env = dataclasses.replace(env, signature=signer.sign(env.signing_bytes()))
    return env


def only(items: Iterable[T]) -> T:
    (item,) = list(items)
    return item


def paths(n: Node, origin: NodeId) -> dict[str, bool]:
    """origin's live library entries at `n`: path -> whether the store holds a tombstone."""
    found = {}
    for key, env in live_of(n.store).items():
        record = decode(env.kind, env.body)
        if env.origin == origin and isinstance(record, LibraryEntry):
            dead = n.store.tombstones(origin, env.epoch, env.seq - 1, env.seq, max_count=1)
            found[record.path] = key in dead
    return found


# -- the store contract ----------------------------------------------------------------------


def _raw(
    origin: NodeId, epoch: Epoch, seq: int, kind: Kind = Kind.ENTRY, size: int = 10
) -> Envelope:
    return Envelope(origin=origin, epoch=epoch, seq=seq, kind=kind, body=b"x" * size)


def _put(key: bytes, env: Envelope, deleted: bool = False) -> Put:
    return Put(key=key, envelope=env, deleted=deleted)


def _key(name: bytes, origin: NodeId | None = None, kind: Kind = Kind.ENTRY) -> bytes:
    """A record key as `key_of` makes them: the kind, the origin (R's unless given), then
    what the record is about (here just `name`)."""
    return bytes([int(kind)]) + (origin or R.node_id).raw + name


def test_store_replaces_by_key_and_ranges_ascend(make_store: StoreFactory) -> None:
    store = make_store()
    o = R.node_id
    store.commit(Changes(puts=tuple(_put(_key(b"k%d" % i), _raw(o, E1, i)) for i in (1, 2, 3))))
    store.commit(Changes(puts=(_put(_key(b"k1"), _raw(o, E1, 4)),)))
    assert store.get(_key(b"k1")) == _raw(o, E1, 4)
    assert store.get(_key(b"nothing")) is None
    assert store.get(b"short") is None

    def seqs(after: int, through: int, count: int = 100, size: int = 1 << 20) -> list[int]:
        found = store.envelopes(o, E1, after, through, max_count=count, max_bytes=size)
        return [e.seq for e in found]

    assert seqs(0, 10) == [2, 3, 4]
    assert seqs(2, 10) == [3, 4]
    assert seqs(0, 3) == [2, 3]
    assert seqs(0, 10, count=2) == [2, 3]
    one = _raw(o, E1, 2).size
    assert seqs(0, 10, size=2 * one) == [2, 3]
    assert seqs(0, 10, size=2 * one - 1) == [2]
    assert seqs(0, 10, size=0) == [2]  # the first one whatever its size
    assert seqs(4, 10) == []
    assert store.envelopes(o, E2, 0, 10, max_count=9, max_bytes=1 << 20) == []


def test_store_lists_tombstones_until_replaced_or_removed(make_store: StoreFactory) -> None:
    store = make_store()
    o = R.node_id
    store.commit(
        Changes(
            puts=(
                _put(_key(b"a"), _raw(o, E1, 1), deleted=True),
                _put(_key(b"b"), _raw(o, E1, 2), deleted=False),
                _put(_key(b"c"), _raw(o, E1, 3), deleted=True),
                _put(_key(b"d"), _raw(o, E1, 4), deleted=True),
            )
        )
    )
    assert list(store.tombstones(o, E1, 0, 10, max_count=10)) == [
        _key(b"a"),
        _key(b"c"),
        _key(b"d"),
    ]
    assert list(store.tombstones(o, E1, 1, 3, max_count=10)) == [_key(b"c")]
    assert list(store.tombstones(o, E1, 0, 10, max_count=2)) == [_key(b"a"), _key(b"c")]
    store.commit(Changes(removes=(_key(b"a"),), puts=(_put(_key(b"c"), _raw(o, E1, 5)),)))
    assert list(store.tombstones(o, E1, 0, 10, max_count=10)) == [_key(b"d")]
    assert store.get(_key(b"a")) is None


def test_store_drops_keep_membership_records(make_store: StoreFactory) -> None:
    store = make_store()
    o, p = R.node_id, A.node_id
    store.commit(
        Changes(
            puts=(
                _put(_key(b"e1"), _raw(o, E1, 1)),
                _put(_key(b"m1", kind=Kind.ADMISSION), _raw(o, E1, 2, Kind.ADMISSION)),
                _put(_key(b"r1", kind=Kind.REMOVAL), _raw(o, E1, 3, Kind.REMOVAL)),
                _put(_key(b"e2"), _raw(o, E2, 1)),
                _put(_key(b"pe", p), _raw(p, E1, 1)),
            ),
            clocks=((o, Clock(E2, 1)), (p, Clock(E1, 1))),
        )
    )
    assert {e.seq for e in store.membership()} == {2, 3}
    store.commit(Changes(drops=(EpochDrop(origin=o, before=E2),)))
    assert store.get(_key(b"e1")) is None
    assert (
        store.get(_key(b"m1", kind=Kind.ADMISSION)) is not None
        and store.get(_key(b"r1", kind=Kind.REMOVAL)) is not None
    )
    assert store.get(_key(b"e2")) is not None and store.get(_key(b"pe", p)) is not None
    # Re-putting a key with a version of another epoch takes it out of the old range.
    store.commit(
        Changes(puts=(_put(_key(b"m1", kind=Kind.ADMISSION), _raw(o, E2, 2, Kind.ADMISSION)),))
    )
    assert store.envelopes(o, E1, 0, 9, max_count=9, max_bytes=1 << 20) == [
        _raw(o, E1, 3, Kind.REMOVAL)
    ]
    assert [e.seq for e in store.envelopes(o, E2, 0, 9, max_count=9, max_bytes=1 << 20)] == [1, 2]
    # A drop takes every older epoch at once.
    store.commit(Changes(puts=(_put(_key(b"e3"), _raw(o, E3, 1)),)))
    store.commit(Changes(drops=(EpochDrop(origin=o, before=E3),)))
    assert store.get(_key(b"e2")) is None and store.get(_key(b"e3")) is not None
    assert {e.seq for e in store.membership()} == {2, 3}
    store.commit(Changes(clocks=((o, Clock(E2, 3)),)))
    assert store.clock(o) == Clock(E2, 3)
    assert store.vector() == VersionVector({o: Clock(E2, 3), p: Clock(E1, 1)})
    assert store.clock(X.node_id) is None


def test_store_keeps_the_last_clock_proof_given_per_origin(make_store: StoreFactory) -> None:
    store = make_store()
    assert store.proof(R.node_id) is None
    first, second = (
        ClockProof(epoch=e, seq=s, signature=b"s%d" % s) for e, s in ((E1, 3), (E2, 1))
    )
    store.commit(Changes(proofs=((R.node_id, first), (A.node_id, first))))
    store.commit(Changes(proofs=((R.node_id, second),)))
    assert store.proof(R.node_id) == second
    assert store.proof(A.node_id) == first
    assert store.proof(X.node_id) is None


# -- refusals ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    id: str
    mutate: Callable[[Batch], Batch]
    reason: str


def _with(batch: Batch, i: int, **changes: object) -> Batch:
    envs = list(batch.envelopes)
    envs[i] = dataclasses.replace(envs[i], **changes)  # type: ignore[arg-type]
    return dataclasses.replace(batch, envelopes=tuple(envs))


def _append(batch: Batch, env: Envelope) -> Batch:
    return dataclasses.replace(
        batch, envelopes=(*batch.envelopes, env), through_seq=max(env.seq, batch.through_seq)
    )


# The pending batch is R's (after 2, through 5]: an entry (3), a binding to A (4, signed), an
# entry (5). Index 1 is the signed one.
def _damaged(signature: bytes) -> bytes:
    return signature[:-1] + bytes([signature[-1] ^ 1])  # always another byte


REFUSALS = [
    Refusal(
        "a hole", lambda b: dataclasses.replace(b, after_seq=3, envelopes=b.envelopes[1:]), "hole"
    ),
    Refusal("a backwards range", lambda b: dataclasses.replace(b, through_seq=1), "backwards"),
    Refusal("another origin", lambda b: _with(b, 0, origin=A.node_id), "origin and epoch"),
    Refusal("another epoch", lambda b: _with(b, 0, epoch=E2), "origin and epoch"),
    Refusal(
        "seqs not ascending",
        lambda b: dataclasses.replace(b, envelopes=b.envelopes[::-1]),
        "out of order",
    ),
    Refusal(
        "a seq past the end", lambda b: dataclasses.replace(b, through_seq=4), "past the batch"
    ),
    Refusal(
        "a seq at or before the start",
        lambda b: dataclasses.replace(b, after_seq=3),
        "out of order",
    ),
    Refusal("a missing signature", lambda b: _with(b, 1, signature=b""), "bad signature"),
    Refusal(
        "a damaged signature",
        lambda b: _with(b, 1, signature=_damaged(b.envelopes[1].signature)),
        "bad signature",
    ),
    Refusal(
        "a signature by another key",
        lambda b: _with(b, 1, signature=A.sign(b.envelopes[1].signing_bytes())),
        "bad signature",
    ),
    Refusal(
        "a signature over another seq",
        lambda b: _with(b, 1, signature=envelope_of(R, E1, 9, binding(A.node_id)).signature),
        "bad signature",
    ),
    Refusal(
        "a body changed under its signature",
        lambda b: _with(b, 1, body=encode(binding(A.node_id, "g"))[1]),
        "bad signature",
    ),
    Refusal("an undecodable body", lambda b: _with(b, 0, body=b"\xff\xff\xff"), "undecodable"),
    Refusal(
        "a body of another kind",
        lambda b: _with(b, 0, kind=Kind.ADMISSION),
        "undecodable",
    ),
    Refusal(
        "a key its origin may not write",
        lambda b: _append(b, envelope_of(R, E1, 6, binding(R.node_id))),
        "its own lender",
    ),
    Refusal(
        "an admission whose certificate is another node's",
        lambda b: _append(
            b,
            envelope_of(
                R, E1, 6, Admission(node_id=A.node_id, certificate=B.certificate, name="x")
            ),
        ),
        "does not hash",
    ),
    Refusal(
        "a new epoch not starting at 0",
        lambda b: dataclasses.replace(
            b,
            epoch=E2,
            envelopes=tuple(envelope_of(R, E2, e.seq, decode(e.kind, e.body)) for e in b.envelopes),
        ),
        "hole",
    ),
]


@pytest.mark.parametrize("case", REFUSALS, ids=[c.id for c in REFUSALS])
def test_a_batch_breaking_a_rule_is_refused_whole(case: Refusal, make_store: StoreFactory) -> None:
    root, a = founded(make_store, A)
    root.replica.write(entry("one"))
    root.replica.write(binding(A.node_id))
    root.replica.write(entry("two"))
    good = only(root.replica.missing(a.replica.vector()))
    assert (good.after_seq, good.through_seq) == (2, 5)
    before, clock = live_of(a.store), a.store.clock(R.node_id)

    result = a.replica.apply(case.mutate(good), R.node_id)
    assert result.outcome is Outcome.REFUSED
    assert case.reason in result.reason
    assert (result.stored, result.changed, result.clock) == ((), (), clock)
    assert live_of(a.store) == before and a.store.clock(R.node_id) == clock
    # The rest of the stream is unaffected: the good batch still applies.
    assert a.replica.apply(good, R.node_id).outcome is Outcome.APPLIED
    assert a.store.clock(R.node_id) == Clock(E1, 5)


def test_signed_records_of_an_origin_without_a_known_certificate_wait(
    make_store: StoreFactory,
) -> None:
    root, a = founded(make_store, A)
    x = node(X, make_store)
    x.replica.write(Addresses(hosts=("10.0.0.9",), port=1))
    result = only(sync(x, a))
    assert result.outcome is Outcome.REFUSED and "no certificate" in result.reason
    # Once an admission of X is known (whoever wrote it), its signature can be checked.
    root.replica.admit(X.certificate, "x", 5)
    sync(root, a)
    assert [r.outcome for r in sync(x, a)] == [Outcome.APPLIED]


# -- clock proofs ----------------------------------------------------------------------------------


def test_a_relayed_batch_moves_a_clock_only_as_far_as_its_origin_signed(
    make_store: StoreFactory,
) -> None:
    """A (relaying R's records to B) cannot move B's clock of R to an epoch R never started
    or a seq R never wrote: every node would drop R's records, or skip its next writes."""
    root, a, b = founded(make_store, A, B)
    root.replica.write(entry("p"))  # R's seq 4
    sync(root, a)
    genuine = a.store.proof(R.node_id)
    assert genuine is not None and (genuine.epoch, genuine.seq) == (E1, 4)
    far = (1 << 63) - 1

    def doom(epoch: Epoch, through: int, *envs: Envelope, proof: ClockProof | None = None) -> Batch:
        after = 0 if epoch != E1 else 3
        return Batch(
            origin=R.node_id,
            epoch=epoch,
            after_seq=after,
            through_seq=through,
            envelopes=envs,
            proof=proof,
        )

    forged = {
        "a far epoch": doom(E3, 0),
        "a far seq": doom(E1, far),
        "an unsigned record at a far seq": doom(E1, far, envelope_of(R, E1, far, entry("x"))),
        "a proof A signed": doom(
            E1,
            far,
            proof=ClockProof(epoch=E1, seq=far, signature=A.sign(proof_bytes(R.node_id, E1, far))),
        ),
        "R's proof stretched": doom(E1, 5, proof=genuine),
        "R's proof moved to another epoch": doom(
            E3, 4, proof=dataclasses.replace(genuine, epoch=E3)
        ),
        "R's proof renumbered": doom(E1, 9, proof=dataclasses.replace(genuine, seq=9)),
    }
    for what, batch in forged.items():
        result = b.replica.apply(batch, A.node_id)
        assert result.outcome is Outcome.REFUSED, what
        assert "signature" in result.reason, (what, result.reason)
        assert b.replica.clock(R.node_id) == Clock(E1, 3), what
        assert b.store.proof(R.node_id) != batch.proof, what
    # What R wrote reaches B through A, with R's proof passed on unchanged.
    assert {r.outcome for r in sync(a, b)} == {Outcome.APPLIED}
    assert paths(b, R.node_id) == {"p": False}
    assert b.replica.clock(R.node_id) == Clock(E1, 4)
    assert b.store.proof(R.node_id) == genuine
    # A newer epoch R really started reaches B through A, even before R writes anything in it.
    reborn = node(R, make_store, epoch=E2)
    sync(reborn, a, relay_membership=False)
    assert a.replica.clock(R.node_id) == Clock(E2, 0)
    sync(a, b, relay_membership=False)
    assert b.replica.clock(R.node_id) == Clock(E2, 0)
    assert paths(b, R.node_id) == {}


def test_a_relay_cannot_leave_out_records_its_origin_wrote(make_store: StoreFactory) -> None:
    root, a, b = founded(make_store, A, B)
    root.replica.write(binding(B.node_id))  # R lends to B (seq 4)
    sync(root, a)
    before = b.replica.clock(R.node_id)
    [batch] = [x for x in a.replica.missing(b.replica.vector()) if x.origin == R.node_id]
    result = b.replica.apply(dataclasses.replace(batch, envelopes=()), A.node_id)
    assert result.outcome is Outcome.REFUSED and "missing" in result.reason, result.reason
    assert b.replica.clock(R.node_id) == before
    # The origin (or any member that holds them) sends them: nothing is left out.
    sync(root, b)
    assert b.store.get(key_of(R.node_id, binding(B.node_id))) is not None
    assert b.store.proof(R.node_id) == root.replica.missing(VersionVector()).__next__().proof


def test_records_left_out_of_earlier_pages_come_again_from_another_member(
    make_store: StoreFactory,
) -> None:
    """A relays R's records in pages, leaving a binding out of the first: B takes the first
    page (it cannot check it yet), finds the hole at the proof's seq, goes back to the last
    point it saw complete, and C fills it in."""
    root, a, b, c = founded(make_store, A, B, C)
    complete = b.replica.clock(R.node_id)
    assert complete is not None
    root.replica.write(binding(B.node_id, "left-out"))
    for i in range(30):
        root.replica.write(entry(f"p{i}"))
    sync(root, a)
    sync(root, c)
    pages = [x for x in a.replica.missing(b.replica.vector(), 1000) if x.origin == R.node_id]
    assert len(pages) > 2
    first = dataclasses.replace(
        pages[0], envelopes=tuple(e for e in pages[0].envelopes if e.kind != Kind.BINDING)
    )
    assert len(first.envelopes) < len(pages[0].envelopes)
    results = [b.replica.apply(p, A.node_id) for p in (first, *pages[1:])]
    assert [r.outcome for r in results[:-1]] == [Outcome.APPLIED] * (len(pages) - 1)
    assert results[-1].outcome is Outcome.REFUSED and "missing" in results[-1].reason
    assert b.replica.clock(R.node_id) == complete
    assert {r.outcome for r in sync(c, b)} == {Outcome.APPLIED}
    assert b.store.get(key_of(R.node_id, binding(B.node_id, "left-out"))) is not None
    assert b.replica.clock(R.node_id) == root.replica.clock(R.node_id)


def test_a_relay_cannot_keep_back_the_newer_version_of_a_record(
    make_store: StoreFactory,
) -> None:
    """R lends to B, then recalls the loan (a newer version of the same key): a relay that
    passes on the proof with the lending and without the recall is caught."""
    root, a, b = founded(make_store, A, B)
    lent = binding(B.node_id)
    root.replica.write(lent)
    sync(root, b)
    root.replica.write(Addresses(hosts=("10.0.0.1",), port=1))  # seq 5
    recalled = dataclasses.replace(lent, ended=BindingEnd.RECALLED)
    root.replica.write(recalled)  # seq 6, superseding seq 4
    sync(root, a)
    [batch] = [x for x in a.replica.missing(b.replica.vector()) if x.origin == R.node_id]
    kept_back = dataclasses.replace(
        batch, envelopes=tuple(e for e in batch.envelopes if e.kind != Kind.BINDING)
    )
    result = b.replica.apply(kept_back, A.node_id)
    assert result.outcome is Outcome.REFUSED and "missing" in result.reason
    sync(a, b)
    held = b.store.get(key_of(R.node_id, lent))
    assert held is not None and held.seq == 6


def test_a_batch_ending_in_a_record_its_origin_signed_needs_no_proof(
    make_store: StoreFactory,
) -> None:
    _, a = founded(make_store, A)
    signed = Batch(
        origin=R.node_id,
        epoch=E1,
        after_seq=2,
        through_seq=3,
        envelopes=(envelope_of(R, E1, 3, binding(A.node_id)),),
    )
    assert a.replica.apply(signed, R.node_id).outcome is Outcome.APPLIED
    assert a.replica.clock(R.node_id) == Clock(E1, 3)
    # ... but only up to that record.
    beyond = dataclasses.replace(signed, through_seq=4)
    result = a.replica.apply(beyond, R.node_id)
    assert result.outcome is Outcome.REFUSED and "signature" in result.reason


def test_a_clock_proof_is_signed_and_verified_once_per_clock(make_store: StoreFactory) -> None:
    root, _ = founded(make_store, A)
    checked: list[bytes] = []

    def counting(certificate: bytes, data: bytes, signature: bytes) -> bool:
        if data.startswith(b"mesh clock"):
            checked.append(data)
        return real_verify(certificate, data, signature)

    fresh = node(A, make_store, verify=counting)
    for i in range(40):
        root.replica.write(entry(f"p{i}"))
    batches = list(root.replica.missing(fresh.replica.vector(), 400))
    assert len(batches) > 5
    # One signature for all of them, not one per call: ECDSA signatures differ every time.
    proofs = {b.proof for b in batches} | {b.proof for b in root.replica.missing(VersionVector())}
    assert len(proofs) == 1 and None not in proofs
    for batch in batches:
        assert fresh.replica.apply(batch, R.node_id).outcome is Outcome.APPLIED
    assert len(checked) == 1


# -- taking batches --------------------------------------------------------------------------------


def test_overlap_and_duplicates_are_harmless(make_store: StoreFactory) -> None:
    root, a = founded(make_store, A)
    for i in range(5):
        root.replica.write(entry(f"p{i}"))
    first = only(root.replica.missing(a.replica.vector()))
    assert a.replica.apply(first, R.node_id).outcome is Outcome.APPLIED
    before = live_of(a.store)
    again = a.replica.apply(first, R.node_id)
    assert again.outcome is Outcome.APPLIED and again.stored == ()
    root.replica.write(entry("p5"))
    overlapping = only(root.replica.missing(VersionVector({R.node_id: Clock(E1, 4)})))
    result = a.replica.apply(overlapping, R.node_id)
    assert [e.seq for e in result.stored] == [8]
    assert live_of(a.store) == {**before, **{k: e for k, e in live_of(root.store).items()}}
    assert a.replica.vector() == root.replica.vector().with_clock(A.node_id, Clock(E1, 0))


def test_records_of_our_own_origin_from_others_are_ignored(make_store: StoreFactory) -> None:
    _, a = founded(make_store, A)
    a.replica.write(entry("mine"))
    forged = Batch(
        origin=A.node_id,
        epoch=E1,
        after_seq=0,
        through_seq=5,
        envelopes=(envelope_of(A, E1, 2, entry("not mine")),),
    )
    for batch in (forged, dataclasses.replace(forged, epoch=E2, envelopes=())):
        result = a.replica.apply(batch, R.node_id)
        assert result.outcome is Outcome.IGNORED
    assert paths(a, A.node_id) == {"mine": False}
    assert a.replica.clock(A.node_id) == Clock(E1, 1)


def test_a_newer_epoch_drops_older_records_except_membership(make_store: StoreFactory) -> None:
    root, a = founded(make_store, A)
    root.replica.write(entry("old"))
    sync(root, a)
    old_batch = only(root.replica.missing(VersionVector()))
    # The root loses its database and starts epoch E2, writing anew.
    reborn = node(R, make_store, epoch=E2)
    reborn.replica.write(entry("new"))
    [result] = sync(reborn, a, relay_membership=False)
    assert result.outcome is Outcome.APPLIED
    assert result.dropped == (EpochDrop(origin=R.node_id, before=E2),)
    assert paths(a, R.node_id) == {"new": False}
    assert a.store.clock(R.node_id) == Clock(E2, 1)
    # Its genesis and admissions of E1 stay, so the membership stays.
    assert a.replica.membership.is_member(R.node_id) and a.replica.membership.is_member(A.node_id)
    # E1 is retired: never accepted again.
    refused = a.replica.apply(old_batch, R.node_id)
    assert refused.outcome is Outcome.REFUSED and "retired" in refused.reason


def test_retired_epoch_membership_reaches_peers_that_jumped_epochs(
    make_store: StoreFactory,
) -> None:
    root, a, b = founded(make_store, A, B)
    root.replica.admit(C.certificate, "c", 9)  # at seq 4, which B has not seen
    sync(root, a)
    reborn = node(R, make_store, epoch=E2)  # lost its database: E1 exists only at A and B
    reborn.replica.write(entry("new"))
    sync(reborn, a)
    sync(reborn, b)  # B jumps to E2 without R's admission of C
    assert a.replica.vector()[R.node_id] == b.replica.vector()[R.node_id]
    assert not b.replica.membership.is_member(C.node_id)
    # Equal vectors, yet A offers the retired epoch's membership records, and B takes them.
    results = [r for r in sync(a, b) if r.origin == R.node_id]
    assert {r.outcome for r in results} == {Outcome.APPLIED}
    assert [len(r.stored) for r in results] == [0, 0, 0, 1]  # B held the first three
    assert b.replica.membership.is_member(C.node_id)
    assert b.store.clock(R.node_id) == Clock(E2, 1)
    # A retired-epoch batch with anything else in it is refused.
    mixed = Batch(
        origin=R.node_id,
        epoch=E1,
        after_seq=0,
        through_seq=9,
        envelopes=(envelope_of(R, E1, 9, entry("zombie")),),
    )
    assert b.replica.apply(mixed, A.node_id).outcome is Outcome.REFUSED
    # And the reborn root gets its own genesis back from its peers.
    sync(a, reborn)
    assert reborn.replica.membership.members.keys() == {R.node_id, A.node_id, B.node_id, C.node_id}
    assert reborn.replica.clock(R.node_id) == Clock(E2, 1)


def test_body_bytes_are_relayed_unchanged(make_store: StoreFactory) -> None:
    _, a, b = founded(make_store, A, B)
    # A field this version does not know (number 99) survives relaying through A.
    kind, body = encode(binding(B.node_id))
    body += b"\x9a\x06\x05later"
    env = Envelope(origin=R.node_id, epoch=E1, seq=4, kind=kind, body=body)
    env = dataclasses.replace(env, signature=R.sign(env.signing_bytes()))
    # R's proof, as R signs it with its records: its digest covers the body as it is.
    digest = covered_digest([env])
    proof = ClockProof(
        epoch=E1, seq=4, signature=R.sign(proof_bytes(R.node_id, E1, 4, digest)), digest=digest
    )
    batch = Batch(
        origin=R.node_id, epoch=E1, after_seq=3, through_seq=4, envelopes=(env,), proof=proof
    )
    assert a.replica.apply(batch, R.node_id).outcome is Outcome.APPLIED
    sync(a, b)
    key = key_of(R.node_id, binding(B.node_id))
    assert b.store.get(key) == env


def test_only_signed_kinds_are_verified(make_store: StoreFactory) -> None:
    root, _ = founded(make_store, A)
    calls: list[bytes] = []

    def counting(certificate: bytes, data: bytes, signature: bytes) -> bool:
        calls.append(data)
        return real_verify(certificate, data, signature)

    fresh = node(A, make_store, verify=counting)
    for i in range(10):
        root.replica.write(entry(f"p{i}"))
    root.replica.write(
        LoanStatus(lender=A.node_id, library="l", path="p", hash=b"h" * 16, state=LoanState.HELD)
    )
    root.replica.write(binding(A.node_id))
    sync(root, fresh)
    # The genesis, A's admission, the binding, and R's clock proof (once for all of it).
    assert len(calls) == 4
    assert sum(data.startswith(b"mesh clock") for data in calls) == 1
    sync(root, fresh)
    assert len(calls) == 4  # nothing new, nothing verified


def test_missing_ends_at_our_clock_over_superseded_records(make_store: StoreFactory) -> None:
    (root,) = founded(make_store)
    root.replica.write(entry("p"))  # 2
    root.replica.write(entry("q"))  # 3
    root.replica.write(entry("p", size=2))  # 4 supersedes 2
    root.replica.write(entry("q", size=2))  # 5 supersedes 3
    batch = only(root.replica.missing(VersionVector({R.node_id: Clock(E1, 1)})))
    assert [e.seq for e in batch.envelopes] == [4, 5]
    assert (batch.after_seq, batch.through_seq) == (1, 5)
    root.replica.write(entry("p", size=3))  # 6 supersedes 4
    root.replica.write(entry("p", size=4))  # 7 supersedes 6
    # The newest of (5, 7] that a peer at 5 lacks is 7; a peer at 6 gets (6, 7].
    batch = only(root.replica.missing(VersionVector({R.node_id: Clock(E1, 5)})))
    assert (batch.after_seq, batch.through_seq, len(batch.envelopes)) == (5, 7, 1)
    root.replica.write(entry("q", size=3))  # 8 supersedes 5
    root.replica.write(entry("q", size=4))  # 9 supersedes 8
    # A peer at 7 lacks only superseded writes, yet learns it is now at 9.
    root.replica.write(entry("p", size=5))  # 10 supersedes 7
    batch = only(root.replica.missing(VersionVector({R.node_id: Clock(E1, 7)})))
    assert (batch.after_seq, batch.through_seq) == (7, 10)
    assert [e.seq for e in batch.envelopes] == [9, 10]
    assert not list(root.replica.missing(root.replica.vector()))


def test_missing_respects_the_size_bound(make_store: StoreFactory) -> None:
    root, a = founded(make_store, A)
    for i in range(40):
        root.replica.write(entry(f"p{i}", size=i))
    root.replica.write(entry("p3", deleted=True))
    root.replica.write(entry("p39", size=1))  # the newest of the range
    bound = (
        4 * next(iter(root.store.envelopes(R.node_id, E1, 5, 99, max_count=1, max_bytes=0))).size
    )
    batches = [b for b in root.replica.missing(a.replica.vector(), bound) if b.origin == R.node_id]
    assert len(batches) > 5
    for earlier, later in itertools.pairwise(batches):
        assert earlier.through_seq == later.after_seq
    for batch in batches:
        assert sum(e.size for e in batch.envelopes) <= bound or len(batch.envelopes) == 1
    assert batches[0].after_seq == 2 and batches[-1].through_seq == 44
    for batch in batches:
        assert a.replica.apply(batch, R.node_id).outcome is Outcome.APPLIED
    assert live_of(a.store) == live_of(root.store) | {}
    one_each = list(root.replica.missing(VersionVector(), 1))
    assert all(len(b.envelopes) == 1 for b in one_each)


def test_a_new_epoch_is_announced_before_any_write(make_store: StoreFactory) -> None:
    root, a = founded(make_store, A)
    a.replica.write(entry("old"))
    sync(a, root)
    reborn = node(A, make_store, epoch=E2)
    assert reborn.replica.vector() == VersionVector({A.node_id: Clock(E2, 0)})
    announce = [b for b in reborn.replica.missing(root.replica.vector()) if b.origin == A.node_id]
    assert [(b.epoch, b.after_seq, b.through_seq, b.envelopes) for b in announce] == [
        (E2, 0, 0, ())
    ]
    root.replica.apply(announce[0], A.node_id)
    assert paths(root, A.node_id) == {}
    # The reborn node is not offered its own old records, and ignores them if sent.
    assert all(b.origin != A.node_id for b in root.replica.missing(reborn.replica.vector()))


def test_admitters_come_first_so_one_pass_is_enough(make_store: StoreFactory) -> None:
    root, a = founded(make_store, A)
    a.replica.admit(B.certificate, "b", 5)
    b = node(B, make_store)
    b.replica.write(Addresses(hosts=("10.0.0.2",), port=2))
    b.replica.admit(C.certificate, "c", 6)
    c = node(C, make_store)
    c.replica.write(binding(B.node_id))
    for src, dst in ((root, a), (a, b), (b, c), (c, b), (b, a), (a, root)):
        sync(src, dst)
    fresh = node(X, make_store)
    results = sync(root, fresh)
    assert [r.outcome for r in results] == [Outcome.APPLIED] * 4
    assert [r.origin for r in results] == [R.node_id, A.node_id, B.node_id, C.node_id]
    assert live_of(fresh.store) == live_of(root.store)


def test_records_of_every_origin_are_relayed(make_store: StoreFactory) -> None:
    root, a, b = founded(make_store, A, B)
    a.replica.write(entry("from a"))
    a.replica.write(binding(B.node_id))
    sync(a, root)
    sync(root, b)  # B learns A's records without ever reaching A
    assert paths(b, A.node_id) == {"from a": False}
    assert live_of(b.store) == live_of(root.store)


# -- local writes ------------------------------------------------------------------------------


def test_write_numbers_signs_and_supersedes(make_store: StoreFactory) -> None:
    (root,) = founded(make_store)
    first = root.replica.write(entry("p"))
    signed = root.replica.write(binding(A.node_id))
    second = root.replica.write(entry("p", size=5))
    assert (first.seq, signed.seq, second.seq) == (2, 3, 4)
    assert first.signature == b"" and second.signature == b""
    assert real_verify(R.certificate, signed.signing_bytes(), signed.signature)
    assert root.store.get(key_of(R.node_id, entry("p"))) == second
    assert [
        e.seq for e in root.store.envelopes(R.node_id, E1, 0, 9, max_count=9, max_bytes=1 << 20)
    ] == [1, 3, 4]
    assert root.replica.vector() == VersionVector({R.node_id: Clock(E1, 4)})


def test_write_refuses_what_this_node_may_not_write(make_store: StoreFactory) -> None:
    (root,) = founded(make_store)
    with pytest.raises(InvalidArgumentError, match="own lender"):
        root.replica.write(binding(R.node_id))
    with pytest.raises(InvalidArgumentError, match="does not hash"):
        root.replica.write(Admission(node_id=A.node_id, certificate=B.certificate, name="a"))
    assert root.replica.clock(R.node_id) == Clock(E1, 1)


def test_a_new_own_epoch_takes_over_and_an_older_one_is_refused(make_store: StoreFactory) -> None:
    store = make_store()
    old = node(R, make_store, store=store)
    old.replica.admit(R.certificate, "root", 1)
    old.replica.write(entry("p"))
    new = node(R, make_store, epoch=E2, store=store)
    assert new.replica.vector() == VersionVector({R.node_id: Clock(E2, 0)})
    new.replica.write(entry("q"))
    assert paths(new, R.node_id) == {"q": False}
    assert new.replica.membership.is_member(R.node_id)  # its genesis of E1 stays
    with pytest.raises(StoreError):
        node(R, make_store, epoch=E1, store=store)


# -- vectors and tombstones ---------------------------------------------------------------------


def test_vectors_are_published_only_to_let_someone_purge(make_store: StoreFactory) -> None:
    root, a = founded(make_store, A)
    root.replica.write(entry("p"))
    assert root.replica.publish_vector() is None  # no tombstone: nothing to say
    root.replica.write(entry("p", deleted=True))
    published = root.replica.publish_vector()
    assert published is not None and published.kind is Kind.VECTOR
    assert decode(published.kind, published.body) == VectorRecord(
        VersionVector({R.node_id: Clock(E1, 4), A.node_id: Clock(E1, 0)})
    ) or decode(published.kind, published.body) == VectorRecord(
        VersionVector({R.node_id: Clock(E1, 4)})
    )
    assert root.replica.publish_vector() is None  # said already
    sync(root, a)
    assert a.replica.publish_vector() is not None  # A now holds the tombstone
    assert a.replica.publish_vector() is None
    sync(a, root)
    assert root.replica.publish_vector() is None  # a vector record is no tombstone
    sync(root, a)
    assert a.replica.publish_vector() is None


def test_purge_waits_for_every_member_and_deleted_records_never_return(
    make_store: StoreFactory,
) -> None:
    root, a, b = founded(make_store, A, B)
    root.replica.write(entry("p"))
    sync(root, a)
    sync(root, b)
    behind = only(root.replica.missing(VersionVector({R.node_id: Clock(E1, 3)})))  # has "p" live
    root.replica.write(entry("p", deleted=True))
    sync(root, a)
    for n in (root, a):
        n.replica.publish_vector()
    sync(a, root)
    assert root.replica.purge() == ()  # B has not published a vector yet
    sync(root, b)
    b.replica.publish_vector()
    sync(b, root)
    sync(root, a)
    sync(a, b)
    tombstone = key_of(R.node_id, entry("p"))
    for n in (root, a, b):
        assert n.replica.purge() == (tombstone,)
        assert n.store.get(tombstone) is None
        # A peer that is behind sends the old live version again: our clock covers it.
        result = n.replica.apply(behind, B.node_id)
        assert result.stored == () and n.store.get(tombstone) is None
    assert live_of(root.store) == live_of(a.store) == live_of(b.store)
    # A node that comes back empty never sees "p" either.
    fresh = node(C, make_store)
    sync(root, fresh)
    assert paths(fresh, R.node_id) == {}


def test_a_member_whose_vector_is_behind_holds_the_purge_back(make_store: StoreFactory) -> None:
    root, a, b = founded(make_store, A, B)
    root.replica.write(entry("p"))
    sync(root, a)
    sync(root, b)
    b.replica.write(entry("b's", deleted=True))
    assert b.replica.publish_vector() is not None  # it knows the root up to "p", not past
    root.replica.write(entry("p", deleted=True))
    sync(root, a)
    for n in (root, a):
        n.replica.publish_vector()
    sync(a, root)
    sync(b, root)
    sync(b, a)
    assert root.replica.purge() == () and a.replica.purge() == ()
    sync(root, b)  # B gets the tombstone, and says so
    assert b.replica.publish_vector() is not None
    tombstone = key_of(R.node_id, entry("p"))
    for _ in range(2):
        for src, dst in itertools.permutations((root, a, b), 2):
            src.replica.publish_vector()
            sync(src, dst)
        for n in (root, a, b):
            n.replica.purge()
    assert live_of(root.store) == live_of(a.store) == live_of(b.store)
    assert root.store.get(tombstone) is None
    assert paths(root, B.node_id) == {}


def test_a_removed_members_vector_does_not_hold_purges_back(make_store: StoreFactory) -> None:
    root, _ = founded(make_store, A)
    root.replica.write(entry("p", deleted=True))
    root.replica.publish_vector()
    assert root.replica.purge() == ()
    root.replica.remove(A.node_id, 10)
    assert len(root.replica.purge()) == 1


# -- removals ------------------------------------------------------------------------------------


def test_a_removed_origins_records_after_its_cutoff_do_not_count(
    make_store: StoreFactory,
) -> None:
    root, a, b = founded(make_store, A, B)
    a.replica.write(entry("early"))  # A's seq 1
    sync(a, root)
    root.replica.remove(A.node_id, 10)  # cutoff (E1, 1)
    a.replica.write(entry("late"))  # 2, past the cutoff
    a.replica.admit(C.certificate, "c", 11)  # 3, past the cutoff
    sync(a, b)  # B has not heard of the removal yet
    assert paths(b, A.node_id) == {"early": False, "late": False}
    assert b.replica.membership.is_member(C.node_id)
    [result] = [r for r in sync(root, b) if r.origin == R.node_id]
    assert result.membership_changed
    # "late" is now a tombstone whatever it says; "early" is kept; C's admission does not
    # count (but stays: membership records are never dropped).
    assert key_of(A.node_id, entry("late")) in result.changed
    assert paths(b, A.node_id) == {"early": False, "late": True}
    assert not b.replica.membership.is_member(C.node_id)
    assert not b.replica.membership.is_member(A.node_id)
    # What comes past the cutoff later is taken as a tombstone too, not refused.
    a.replica.write(entry("later"))
    [later] = [r for r in sync(a, b) if r.origin == A.node_id]
    assert later.outcome is Outcome.APPLIED
    assert paths(b, A.node_id) == {"early": False, "late": True, "later": True}
    sync(b, root)
    assert live_of(b.store) == live_of(root.store)
    # Once both published their vectors, the tombstones go; "early" stays.
    for src, dst in ((root, b), (b, root)):
        src.replica.publish_vector()
        sync(src, dst)
    for n in (root, b):
        assert len(n.replica.purge()) == 2
        assert paths(n, A.node_id) == {"early": False}


def test_a_key_rewritten_past_the_cutoff_counts_nowhere(make_store: StoreFactory) -> None:
    root, a, b = founded(make_store, A, B)
    a.replica.write(entry("p"))  # 1
    a.replica.write(entry("q"))  # 2
    sync(a, root)
    a.replica.write(entry("p", size=9))  # 3 supersedes 1
    sync(a, b)  # B holds q@2 and p@3; the root holds p@1 and q@2
    root.replica.remove(A.node_id, 10)  # cutoff (E1, 2)
    sync(root, b)
    sync(b, root)
    # Both agree: p's last write is past the cutoff, so p has no version that counts.
    assert paths(b, A.node_id) == paths(root, A.node_id) == {"p": True, "q": False}
    assert live_of(b.store) == live_of(root.store)


def test_a_removed_origins_newer_epoch_retires_its_older_one_everywhere(
    make_store: StoreFactory,
) -> None:
    root, a, b = founded(make_store, A, B)
    a.replica.write(entry("p"))
    sync(a, root)
    sync(a, b)
    reborn = node(A, make_store, epoch=E2)
    reborn.replica.write(entry("q"))
    sync(reborn, b)  # B retired A's E1 for E2...
    root.replica.remove(A.node_id, 10)  # ...while the root removes A at (E1, 1)
    sync(root, b)
    sync(b, root)
    assert live_of(b.store) == live_of(root.store)
    assert paths(b, A.node_id) == {"q": True}  # past the cutoff: a tombstone
    assert b.store.clock(A.node_id) == root.store.clock(A.node_id) == Clock(E2, 1)


def test_a_removal_that_stops_counting_gives_records_back(make_store: StoreFactory) -> None:
    root, a, b = founded(make_store, A, B)
    b.replica.write(entry("p"))
    sync(b, a)
    a.replica.write(Removal(node_id=B.node_id, last_epoch=E1, last_seq=0))  # none of B counts
    assert paths(a, B.node_id) == {"p": True}
    # The root removes A with a cutoff before A's removal of B: that removal no longer counts.
    sync(a, root)
    root.replica.remove(A.node_id, 6)
    root.replica.write(Removal(node_id=A.node_id, last_epoch=E1, last_seq=0, removed_ms=7))
    sync(root, a)
    assert a.replica.membership.is_member(B.node_id)
    assert paths(a, B.node_id) == {"p": False}
