"""Simulated meshes of 2-12 nodes: random writes, topologies, partitions, lossy streams,
database losses and removals; then the partitions heal and anti-entropy runs until nothing
changes, and every member must hold the same records and compute the same members.

Checked throughout: no node ever goes back to an older version of a key, so a deleted record
never comes back. Checked at the end: convergence (records, tombstones, vectors, members),
byte-identical envelopes, no retired-epoch records but membership ones, nothing of a removed
origin past its cutoff but membership records, and only admissions that count make members.

Simulated nodes sign with HMAC (`FakeSigner`) to keep examples fast; the hand-built case at
the end uses real P-256 keys. HYPOTHESIS_PROFILE=long runs many more examples.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import event, given, note
from hypothesis import strategies as st

from mesh.core.entries import LibraryEntry
from mesh.core.envelope import Envelope
from mesh.core.epoch import Epoch
from mesh.core.gossip import Batch
from mesh.core.ids import NodeId
from mesh.core.membership import Membership
from mesh.core.records import (
    MEMBERSHIP_KINDS,
    Addresses,
    Admission,
    Binding,
    Content,
    LibraryRecord,
    LoanState,
    LoanStatus,
    Record,
    VectorRecord,
)
from mesh.core.replica import Outcome, Replica
from mesh.core.replica_store import ReplicaStore
from mesh.core.vector import Clock
from mesh.wire.records import decode
from tests.core.fakes import (
    STORE_FACTORIES,
    FakeSigner,
    RealSigner,
    RecordingStore,
    StoreFactory,
    fake_verify,
    live_of,
    make_replica,
    real_verify,
    tombstones_of,
)

SIGNERS = [FakeSigner(bytes([i]) * 8) for i in range(100)]  # 12 here, 100 in test_overlay_sim
ROOT = SIGNERS[0]
BATCH_BYTES = 400  # small, so streams come in several batches that can be lost


def _point(env: Envelope) -> Clock:
    return Clock(env.epoch, env.seq)


@dataclass
class SimNode:
    index: int
    signer: FakeSigner
    store: RecordingStore  # checks on every put that no key goes back to an older version
    replica: Replica

    @property
    def id(self) -> NodeId:
        return self.signer.node_id

    def view(self) -> Membership:
        return self.replica.membership


@dataclass(frozen=True)
class Faults:
    """What goes wrong with one stream's batches."""

    drop: frozenset[int] = frozenset()
    duplicate: frozenset[int] = frozenset()
    swap: int | None = None  # swap batches swap and swap+1
    cut: int | None = None  # the stream breaks before this batch


class World:
    def __init__(
        self, size: int, make_store: StoreFactory, log: Callable[[str], None] = lambda _: None
    ) -> None:
        self.make_store = make_store
        self.log = log
        self.outcomes: dict[str, int] = {}
        self.time = 10
        self.nodes = [self._fresh(i) for i in range(size)]
        self.side: frozenset[int] | None = None  # nodes cut off from the others, if any
        self.healed = False  # full anti-entropy: every node reaches every other
        self.written: dict[tuple[NodeId, Epoch, int], Envelope] = {}

    def _fresh(self, i: int) -> SimNode:
        self.time += 1
        store = RecordingStore(self.make_store())
        replica = make_replica(
            SIGNERS[i],
            root=ROOT.node_id,
            store=store,
            epoch=Epoch(self.time, i),
            verify=fake_verify,
        )
        return SimNode(i, SIGNERS[i], store, replica)

    # -- operations ------------------------------------------------------------------------

    def write(self, i: int, slot: int, what: str) -> None:
        n = self.nodes[i]
        other = self.nodes[(i + 1 + slot) % len(self.nodes)].id
        record: Record
        match what:
            case "entry" | "tombstone":
                record = LibraryEntry(
                    library="lib",
                    path=f"p{slot}",
                    size=self.time,
                    mtime_ns=1,
                    hash=b"h" * 16,
                    chunk_root=b"c" * 16,
                    deleted=what == "tombstone",
                )
            case "library":
                record = LibraryRecord(name=f"lib{slot % 2}", removed=slot >= 2)
            case "binding":
                if other == n.id:
                    return
                record = Binding(
                    borrower=other,
                    library="lib",
                    path=f"p{slot}",
                    content=Content(hash=b"h" * 16, size=self.time, chunk_root=b"c" * 16),
                )
            case "status":
                if other == n.id:
                    return
                record = LoanStatus(
                    lender=other,
                    library="lib",
                    path=f"p{slot}",
                    hash=b"h" * 16,
                    state=LoanState.FETCHING,
                    bytes_done=self.time,
                )
            case _:
                record = Addresses(hosts=(f"10.0.0.{slot}",), port=self.time % 65536)
        self._record(n.replica.write(record))

    def _record(self, env: Envelope) -> None:
        self.written[env.origin, env.epoch, env.seq] = env
        self.time += 1

    def admit(self, i: int, j: int) -> None:
        n = self.nodes[i]
        if i == j and (i != 0 or n.replica.membership.members):
            return  # only the genesis is a self-admission worth writing
        if i != j and not n.replica.membership.is_member(n.id):
            # As LocalNode.admit does: a node that is in no mesh founds its own first (only
            # the root can), so no admission precedes its admitter's genesis.
            if i != 0:
                return
            self.admit(0, 0)
        self._record(n.replica.admit(SIGNERS[j].certificate, f"node{j}", self.time))

    def remove(self, i: int, j: int) -> None:
        if i != j:
            self._record(self.nodes[i].replica.remove(SIGNERS[j].node_id, self.time))

    def lose(self, i: int) -> None:
        """Node i loses its database and starts again in a newer epoch."""
        self.nodes[i] = self._fresh(i)

    def linked(self, i: int, j: int) -> bool:
        """Whether a stream can run: no partition between them, and mutual trust (TLS)."""
        if i == j:
            return False
        if self.healed:
            return True
        if self.side is not None and ((i in self.side) != (j in self.side)):
            return False
        a, b = self.nodes[i], self.nodes[j]

        def trusts(x: SimNode, y: SimNode) -> bool:
            # A node with no members yet is pairing: it trusts who it pairs with.
            return not x.view().members or x.view().is_member(y.id)

        return trusts(a, b) and trusts(b, a)

    def sync(self, i: int, j: int, faults: Faults = Faults()) -> None:
        """One stream from i to j: what j lacks by its vector, through the faults."""
        if not self.linked(i, j):
            return
        src, dst = self.nodes[i], self.nodes[j]
        batches: list[Batch] = list(src.replica.missing(dst.replica.vector(), BATCH_BYTES))
        delivered: list[Batch] = []
        for k, batch in enumerate(batches):
            if k == faults.cut:
                break
            if k in faults.drop:
                continue
            delivered.append(batch)
            if k in faults.duplicate:
                delivered.append(batch)
        if faults.swap is not None and faults.swap + 1 < len(delivered):
            k = faults.swap
            delivered[k], delivered[k + 1] = delivered[k + 1], delivered[k]
        for batch in delivered:
            result = dst.replica.apply(batch, src.id)
            label = result.outcome.name.lower()
            if result.dropped:
                label = "dropped an epoch"
            elif result.outcome is Outcome.APPLIED and not result.stored:
                continue
            self.outcomes[label] = self.outcomes.get(label, 0) + 1

    # -- checks ----------------------------------------------------------------------------

    def settle(self) -> int:
        """Heal, then anti-entropy (publishing vectors, purging) until nothing changes.

        Healing also lifts the trust check: two nodes that removed each other concurrently
        never talk again in a real mesh, but the claim under test is that the same records
        give every node the same state, so here every record reaches every node.
        """
        self.side = None
        self.healed = True
        for rounds in itertools.count(1):
            assert rounds < 4 * len(self.nodes) + 20, "anti-entropy did not settle"
            before = sum(n.store.commits for n in self.nodes)
            for n in self.nodes:
                if (env := n.replica.publish_vector()) is not None:
                    self._record(env)
            for i, j in itertools.permutations(range(len(self.nodes)), 2):
                self.sync(i, j)
            for n in self.nodes:
                n.replica.purge()
            if sum(n.store.commits for n in self.nodes) == before:
                return rounds
        raise AssertionError("unreachable")

    def consensus(self) -> Membership | None:
        """The one membership that all of its own members hold (None: no mesh survived)."""
        views = [n.view() for n in self.nodes]
        if not any(v.members for v in views):
            return None  # e.g. the root lost its database before its genesis spread
        agreed = [
            v
            for v in views
            if v.members
            and all(
                self.nodes[i].view() == v
                for i, s in enumerate(SIGNERS[: len(self.nodes)])
                if v.is_member(s.node_id)
            )
        ]
        assert agreed, "no membership is held by all of its members"
        assert all(v == agreed[0] for v in agreed)
        return agreed[0]

    def check_converged(self) -> Membership | None:
        view = self.consensus()
        if view is None:
            return None
        group = [n for n in self.nodes if view.is_member(n.id)]
        self.log(f"members: {sorted(n.index for n in group)}; removed: {len(view.removed)}")
        first = group[0]
        expected = live_of(first.store)
        dead = tombstones_of(first.store)
        for n in group[1:]:
            assert live_of(n.store) == expected, f"nodes {first.index} and {n.index} differ"
            assert tombstones_of(n.store) == dead
            assert n.replica.vector() == first.replica.vector()
        for n in self.nodes:
            for env in live_of(n.store).values():
                # Relayed bytes are the origin's bytes.
                assert self.written[env.origin, env.epoch, env.seq] == env
        vector = first.replica.vector()
        records = {k: decode(e.kind, e.body) for k, e in expected.items()}
        for env in expected.values():
            if env.kind not in MEMBERSHIP_KINDS:
                # Nothing of a retired epoch survives but membership records, nor anything
                # of a removed origin past its cutoff.
                assert env.epoch == vector[env.origin].epoch
                assert view.counts(env.origin, env.epoch, env.seq)
        # Every member but the root has an admission that counts.
        for member in view.members:
            if member == ROOT.node_id:
                continue
            assert any(
                isinstance(record, Admission)
                and record.node_id == member
                and env.origin != member
                and (view.is_member(env.origin) or env.origin in view.removed)
                and view.counts(env.origin, env.epoch, env.seq)
                for (record, env) in ((records[k], e) for k, e in expected.items())
            )
        return view


# -- the property ------------------------------------------------------------------------------

_faults = st.builds(
    Faults,
    drop=st.frozensets(st.integers(0, 6), max_size=2),
    duplicate=st.frozensets(st.integers(0, 6), max_size=2),
    swap=st.none() | st.integers(0, 5),
    cut=st.none() | st.integers(0, 8),
)
_kinds = st.sampled_from(
    ["entry", "entry", "tombstone", "library", "binding", "status", "addresses"]
)


# How often each operation comes up (hypothesis shrinks towards the first).
_WEIGHTS = {
    "write": 8,
    "sync": 5,
    "lossy sync": 4,
    "gossip": 2,
    "partition": 1,
    "heal": 1,
    "admit": 1,
    "remove": 1,
    "lose": 1,
    "publish": 2,
    "purge": 3,
}
_CODES = [code for code, weight in _WEIGHTS.items() for _ in range(weight)]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, int, list[tuple[object, ...]]]:
    size = draw(st.integers(2, 12))
    node = st.integers(0, size - 1)
    admitted = draw(st.integers(1, size - 1))  # the root admits nodes 1..admitted at once
    ops: list[tuple[object, ...]] = []
    for code in draw(st.lists(st.sampled_from(_CODES), min_size=10, max_size=100)):
        match code:
            case "write":
                ops.append(("write", draw(node), draw(st.integers(0, 3)), draw(_kinds)))
            case "sync" | "lossy sync":
                faults = draw(_faults) if code == "lossy sync" else Faults()
                ops.append(("sync", draw(node), draw(node), faults))
            case "gossip":
                ops.append(("gossip", draw(st.randoms(use_true_random=False))))
            case "partition":
                ops.append(("partition", draw(st.frozensets(node, min_size=1))))
            case "heal":
                ops.append(("heal",))
            case "admit" | "remove":
                ops.append((code, draw(node), draw(node)))
            case _:
                ops.append((code, draw(node)))
    return size, admitted, ops


def run(
    size: int,
    admitted: int,
    ops: list[tuple[object, ...]],
    make_store: StoreFactory,
    log: Callable[[str], None] = lambda _: None,
) -> World:
    world = World(size, make_store, log)
    world.admit(0, 0)
    for j in range(1, admitted + 1):
        world.admit(0, j)
    for i, j in itertools.permutations(range(size), 2):
        world.sync(i, j)  # the mesh as it stood before things went wrong
    for op in ops:
        match op:
            case ("write", int(i), int(slot), str(what)):
                world.write(i, slot, what)
            case ("sync", int(i), int(j), Faults() as faults):
                world.sync(i, j, faults)
            case ("gossip", rng):
                # A round of streams between random pairs, in a random order.
                pairs = list(itertools.permutations(range(size), 2))
                rng.shuffle(pairs)  # type: ignore[attr-defined]
                for i, j in pairs[: size * 2]:
                    world.sync(i, j)
            case ("partition", frozenset() as side):
                world.side = side
            case ("heal",):
                world.side = None
            case ("admit", int(i), int(j)):
                world.admit(i, j)
            case ("remove", int(i), int(j)):
                world.remove(i, j)
            case ("lose", int(i)):
                world.lose(i)
            case ("publish", int(i)):
                if (env := world.nodes[i].replica.publish_vector()) is not None:
                    world._record(env)
            case ("purge", int(i)):
                world.nodes[i].replica.purge()
            case _:
                raise AssertionError(op)
    return world


@pytest.fixture(scope="module", params=sorted(STORE_FACTORIES))
def make_store(request: pytest.FixtureRequest) -> StoreFactory:
    return STORE_FACTORIES[request.param]


@given(scenarios())
def test_meshes_converge_after_healing(
    make_store: StoreFactory, scenario: tuple[int, int, list[tuple[object, ...]]]
) -> None:
    size, admitted, ops = scenario
    world = run(size, admitted, ops, make_store, note)
    for label in world.outcomes:
        event(f"a batch was {label}")
    rounds = world.settle()
    note(f"settled in {rounds} rounds")
    view = world.check_converged()
    event(f"{len(view.members) if view else 0} members at the end")
    if view is not None and view.removed:
        event("a removal counted")
    if any(op[0] == "lose" for op in ops):
        event("a node lost its database")


def test_a_root_that_lost_its_database_founds_again_before_it_admits(
    make_store: StoreFactory,
) -> None:
    """Found by hypothesis: the root lost its database, admitted node 1 before its new
    genesis, and node 1 (which had lost its own) refused the batch for good, since that
    admission came from no member. The admitter founds first, as LocalNode.admit does."""
    ops: list[tuple[object, ...]] = [
        ("lose", 0),
        ("admit", 0, 1),
        ("write", 0, 0, "entry"),
        ("lose", 1),
        ("write", 0, 0, "library"),
    ]
    world = run(2, 1, ops, make_store)
    world.settle()
    view = world.check_converged()
    assert view is not None and len(view.members) == 2


# -- a hand-built case, with real keys ---------------------------------------------------------


def test_three_nodes_partition_and_a_database_loss_converge(make_store: StoreFactory) -> None:
    tower, laptop, phone = (RealSigner.generate() for _ in range(3))
    stores: dict[str, ReplicaStore] = {}
    nodes: dict[str, Replica] = {}

    def start(name: str, signer: RealSigner, epoch: Epoch) -> None:
        stores[name] = make_store()
        nodes[name] = make_replica(
            signer, root=tower.node_id, store=stores[name], epoch=epoch, verify=real_verify
        )

    def sync(src: str, dst: str) -> None:
        for batch in nodes[src].missing(nodes[dst].vector(), 300):
            result = nodes[dst].apply(batch, nodes[src].self_id)
            assert result.outcome is not Outcome.REFUSED, result.reason

    def everyone() -> None:
        for _ in range(2):
            for src, dst in itertools.permutations(nodes, 2):
                sync(src, dst)

    def entry(path: str, deleted: bool = False) -> LibraryEntry:
        return LibraryEntry(
            library="music",
            path=path,
            size=3,
            mtime_ns=1,
            hash=b"h" * 16,
            chunk_root=b"c" * 16,
            deleted=deleted,
        )

    start("tower", tower, Epoch(100, 1))
    start("laptop", laptop, Epoch(100, 2))
    start("phone", phone, Epoch(100, 3))
    nodes["tower"].admit(tower.certificate, "tower", 1)
    nodes["tower"].admit(laptop.certificate, "laptop", 2)
    nodes["tower"].admit(phone.certificate, "phone", 3)
    everyone()
    for name in ("a.flac", "b.flac", "c.flac"):
        nodes["laptop"].write(entry(name))
    content = Content(hash=b"h" * 16, size=3, chunk_root=b"c" * 16)
    nodes["laptop"].write(
        Binding(borrower=phone.node_id, library="music", path="a.flac", content=content)
    )
    everyone()

    # Partition: the phone alone. The laptop deletes a file, the tower and the phone write.
    nodes["laptop"].write(entry("b.flac", deleted=True))
    nodes["tower"].write(Addresses(hosts=("192.168.1.2",), port=7000))
    nodes["phone"].write(
        LoanStatus(
            lender=laptop.node_id,
            library="music",
            path="a.flac",
            hash=b"h" * 16,
            state=LoanState.HELD,
        )
    )
    sync("laptop", "tower")
    sync("tower", "laptop")

    # The laptop loses its database and comes back in a newer epoch; it hears from the
    # tower only, and writes again.
    start("laptop", laptop, Epoch(200, 9))
    sync("tower", "laptop")
    assert nodes["laptop"].membership == nodes["tower"].membership
    nodes["laptop"].write(entry("a.flac"))
    nodes["laptop"].write(entry("d.flac", deleted=True))
    sync("laptop", "tower")

    # The partition heals; vectors are published, and tombstones purged.
    everyone()
    for node in nodes.values():
        node.publish_vector()
    everyone()
    for node in nodes.values():
        node.purge()

    lives = [live_of(store) for store in stores.values()]
    assert lives[0] == lives[1] == lives[2]  # Envelope equality: byte-identical
    vectors = [node.vector() for node in nodes.values()]
    assert vectors[0] == vectors[1] == vectors[2]
    views = [node.membership for node in nodes.values()]
    assert views[0] == views[1] == views[2]
    assert set(views[0].members) == {tower.node_id, laptop.node_id, phone.node_id}
    laptops = [e for e in lives[0].values() if e.origin == laptop.node_id]
    assert {e.epoch for e in laptops} == {Epoch(200, 9)}  # 100.2 is gone, its binding too
    records = [decode(e.kind, e.body) for e in laptops]
    # d.flac's tombstone was purged; the published vector stays.
    assert [r for r in records if not isinstance(r, VectorRecord)] == [entry("a.flac")]
    assert any(e.origin == phone.node_id for e in lives[0].values())


@pytest.mark.parametrize("seed", range(3))
def test_a_long_random_run_settles(seed: int, make_store: StoreFactory) -> None:
    """A denser run than hypothesis draws: 12 nodes, many writes, a loss and a removal."""
    import random

    rng = random.Random(seed)
    size = 12
    ops: list[tuple[object, ...]] = []
    kinds = ["entry", "entry", "tombstone", "library", "binding", "status", "addresses"]
    for step in range(300):
        roll = rng.random()
        if step == 100:
            ops.append(("lose", rng.randrange(1, size)))
        elif step == 200:
            ops.append(("remove", 0, rng.randrange(1, size)))
        elif roll < 0.5:
            ops.append(("write", rng.randrange(size), rng.randrange(4), rng.choice(kinds)))
        elif roll < 0.9:
            i, j = rng.sample(range(size), 2)
            faults = Faults(
                drop=frozenset({rng.randrange(4)}) if rng.random() < 0.2 else frozenset()
            )
            ops.append(("sync", i, j, faults))
        elif roll < 0.95:
            ops.append(("partition", frozenset(rng.sample(range(size), 4))))
        else:
            ops.append(("heal",))
    world = run(size, size - 1, ops, make_store)
    world.settle()
    world.check_converged()
