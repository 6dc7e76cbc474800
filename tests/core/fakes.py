"""In-memory fakes for the replica's tests: a `ReplicaStore` in dicts, and signers.

`MemoryStore` follows the `ReplicaStore` contract exactly (size bounds, ascending order,
membership records surviving epoch drops), so the contract and property tests can run against
it and against the SQLite store alike: add a factory to `STORE_FACTORIES` and every test that
takes the `make_store` fixture runs against it too.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mesh.core.clock_proof import COVERED_KINDS, ClockProof
from mesh.core.envelope import Envelope
from mesh.core.epoch import Epoch
from mesh.core.ids import NodeId
from mesh.core.records import MEMBERSHIP_KINDS, key_of
from mesh.core.replica import Replica
from mesh.core.replica_store import MAX_SEQ, Changes, ReplicaStore
from mesh.core.vector import Clock, VersionVector
from mesh.store.database import Database
from mesh.store.records import SqliteReplicaStore
from mesh.wire.records import decode, encode


class _SeqIndex:
    """seq -> key for one (origin, epoch): a sorted list of seqs, deleted lazily."""

    __slots__ = ("keys", "seqs")

    def __init__(self) -> None:
        self.keys: dict[int, bytes] = {}
        self.seqs: list[int] = []

    def add(self, seq: int, key: bytes) -> None:
        if not self.seqs or seq > self.seqs[-1]:
            self.seqs.append(seq)  # the common case: writes arrive in seq order
        else:
            i = bisect.bisect_left(self.seqs, seq)
            if i == len(self.seqs) or self.seqs[i] != seq:
                self.seqs.insert(i, seq)
        self.keys[seq] = key

    def discard(self, seq: int) -> None:
        if self.keys.pop(seq, None) is not None and len(self.seqs) > 2 * len(self.keys) + 64:
            self.seqs = [s for s in self.seqs if s in self.keys]

    def range(self, after: int, through: int) -> Iterator[tuple[int, bytes]]:
        seqs = self.seqs
        for i in range(bisect.bisect_right(seqs, after), len(seqs)):
            seq = seqs[i]
            if seq > through:
                return
            key = self.keys.get(seq)
            if key is not None:
                yield seq, key

    def __len__(self) -> int:
        return len(self.keys)


class MemoryStore:
    """A `ReplicaStore` in memory."""

    def __init__(self) -> None:
        self._clocks: dict[NodeId, Clock] = {}
        self._proofs: dict[NodeId, ClockProof] = {}
        self._live: dict[bytes, tuple[Envelope, bool]] = {}
        self._streams: dict[tuple[NodeId, Epoch], _SeqIndex] = {}
        self._tombstones: dict[tuple[NodeId, Epoch], _SeqIndex] = {}
        self._membership: dict[bytes, Envelope] = {}
        self.commits = 0

    # -- ReplicaStore ------------------------------------------------------------------

    def vector(self) -> VersionVector:
        return VersionVector(self._clocks)

    def clock(self, origin: NodeId) -> Clock | None:
        return self._clocks.get(origin)

    def proof(self, origin: NodeId) -> ClockProof | None:
        return self._proofs.get(origin)

    def get(self, key: bytes) -> Envelope | None:
        held = self._live.get(key)
        return None if held is None else held[0]

    def envelopes(
        self,
        origin: NodeId,
        epoch: Epoch,
        after_seq: int,
        through_seq: int,
        *,
        max_count: int,
        max_bytes: int,
    ) -> Sequence[Envelope]:
        index = self._streams.get((origin, epoch))
        if index is None:
            return []
        found: list[Envelope] = []
        total = 0
        for _, key in index.range(after_seq, through_seq):
            if len(found) >= max_count:
                break
            env = self._live[key][0]
            total += env.size
            if found and total > max_bytes:
                break
            found.append(env)
        return found

    def covered(
        self, origin: NodeId, epoch: Epoch, through_seq: int
    ) -> Sequence[tuple[bytes, Envelope]]:
        index = self._streams.get((origin, epoch))
        if index is None:
            return []
        found = ((key, self._live[key][0]) for _, key in index.range(0, through_seq))
        return [(key, env) for key, env in found if env.kind in COVERED_KINDS]

    def tombstones(
        self, origin: NodeId, epoch: Epoch, after_seq: int, through_seq: int, *, max_count: int
    ) -> Sequence[bytes]:
        index = self._tombstones.get((origin, epoch))
        if index is None or max_count <= 0:
            return []
        found: list[bytes] = []
        for _, key in index.range(after_seq, through_seq):
            found.append(key)
            if len(found) >= max_count:
                break
        return found

    def membership(self) -> Sequence[Envelope]:
        return list(self._membership.values())

    def commit(self, changes: Changes) -> None:
        self.commits += 1
        for drop in changes.drops:
            for (origin, epoch), index in list(self._streams.items()):
                if origin != drop.origin or epoch >= drop.before:
                    continue
                for _, key in list(index.range(0, 1 << 64)):
                    if self._live[key][0].kind not in MEMBERSHIP_KINDS:
                        self._forget(key)
        for key in changes.removes:
            self._forget(key)
        for put in changes.puts:
            self._forget(put.key)
            env = put.envelope
            self._live[put.key] = (env, put.deleted)
            self._streams.setdefault((env.origin, env.epoch), _SeqIndex()).add(env.seq, put.key)
            if put.deleted:
                index = self._tombstones.setdefault((env.origin, env.epoch), _SeqIndex())
                index.add(env.seq, put.key)
            if env.kind in MEMBERSHIP_KINDS:
                self._membership[put.key] = env
        for origin, clock in changes.clocks:
            self._clocks[origin] = clock
        for origin, proof in changes.proofs:
            self._proofs[origin] = proof

    def _forget(self, key: bytes) -> None:
        held = self._live.pop(key, None)
        if held is None:
            return
        env, deleted = held
        stream = (env.origin, env.epoch)
        self._streams[stream].discard(env.seq)
        if deleted:
            self._tombstones[stream].discard(env.seq)
        self._membership.pop(key, None)

    # -- for tests -------------------------------------------------------------------------

    def live(self) -> dict[bytes, Envelope]:
        """Every live envelope by key."""
        return {key: env for key, (env, _) in self._live.items()}

    def is_tombstone(self, key: bytes) -> bool:
        held = self._live.get(key)
        return held is not None and held[1]


class RecordingStore:
    """Wraps any `ReplicaStore`: counts commits, and checks every put on its way in.

    The check is the replica's safety property: a key never goes back to an older version
    than one this store held before, even after that version was purged, so a deleted
    record never comes back.
    """

    def __init__(self, inner: ReplicaStore) -> None:
        self.inner = inner
        self.commits = 0
        self.high: dict[bytes, Clock] = {}

    def vector(self) -> VersionVector:
        return self.inner.vector()

    def clock(self, origin: NodeId) -> Clock | None:
        return self.inner.clock(origin)

    def proof(self, origin: NodeId) -> ClockProof | None:
        return self.inner.proof(origin)

    def get(self, key: bytes) -> Envelope | None:
        return self.inner.get(key)

    def envelopes(
        self,
        origin: NodeId,
        epoch: Epoch,
        after_seq: int,
        through_seq: int,
        *,
        max_count: int,
        max_bytes: int,
    ) -> Sequence[Envelope]:
        return self.inner.envelopes(
            origin, epoch, after_seq, through_seq, max_count=max_count, max_bytes=max_bytes
        )

    def covered(
        self, origin: NodeId, epoch: Epoch, through_seq: int
    ) -> Sequence[tuple[bytes, Envelope]]:
        return self.inner.covered(origin, epoch, through_seq)

    def tombstones(
        self, origin: NodeId, epoch: Epoch, after_seq: int, through_seq: int, *, max_count: int
    ) -> Sequence[bytes]:
        return self.inner.tombstones(origin, epoch, after_seq, through_seq, max_count=max_count)

    def membership(self) -> Sequence[Envelope]:
        return self.inner.membership()

    def commit(self, changes: Changes) -> None:
        for put in changes.puts:
            point = Clock(put.envelope.epoch, put.envelope.seq)
            high = self.high.get(put.key)
            assert high is None or point >= high, f"a key went back from {high} to {point}"
            self.high[put.key] = point
        self.commits += 1
        self.inner.commit(changes)


StoreFactory = Callable[[], ReplicaStore]


# The stores the contract and property tests run against. The SQLite store joins here.
def _sqlite_store() -> ReplicaStore:
    """The real SQLite store (schema, indexes, transactions), in memory."""
    return SqliteReplicaStore(Database(Path(":memory:")))


STORE_FACTORIES: dict[str, StoreFactory] = {"memory": MemoryStore, "sqlite": _sqlite_store}


def live_of(store: ReplicaStore) -> dict[bytes, Envelope]:
    """Every live envelope of any store, through the protocol only (for comparisons)."""
    found: dict[bytes, Envelope] = {}
    for origin, clock in store.vector().items():
        epochs = {clock.epoch} | {e.epoch for e in store.membership() if e.origin == origin}
        for epoch in epochs:
            for env in store.envelopes(
                origin, epoch, 0, MAX_SEQ, max_count=MAX_SEQ, max_bytes=MAX_SEQ
            ):
                found[_key_of(env)] = env
    for env in store.membership():
        found[_key_of(env)] = env
    return found


def tombstones_of(store: ReplicaStore) -> set[bytes]:
    """The keys of every tombstone in any store, through the protocol only."""
    found: set[bytes] = set()
    for origin, clock in store.vector().items():
        found.update(store.tombstones(origin, clock.epoch, 0, MAX_SEQ, max_count=MAX_SEQ))
    return found


def _key_of(env: Envelope) -> bytes:
    return key_of(env.origin, decode(env.kind, env.body))


# -- signers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeSigner:
    """An HMAC stand-in for a node key: fast, for simulations (anyone could forge it)."""

    seed: bytes
    certificate: bytes = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "certificate", b"fake certificate " + self.seed)

    @property
    def node_id(self) -> NodeId:
        return NodeId.of_certificate(self.certificate)

    def sign(self, data: bytes) -> bytes:
        return hmac.new(self.certificate, data, hashlib.sha256).digest()


def fake_verify(certificate: bytes, data: bytes, signature: bytes) -> bool:
    expected = hmac.new(certificate, data, hashlib.sha256).digest()
    return hmac.compare_digest(expected, signature)


@dataclass(frozen=True)
class RealSigner:
    """A real P-256 node identity (costs about a millisecond to make)."""

    certificate: bytes
    node_id: NodeId
    sign: Callable[[bytes], bytes]

    @classmethod
    def generate(cls) -> RealSigner:
        from mesh.security.identity import generate

        identity = generate()
        return cls(certificate=identity.cert_der, node_id=identity.node_id, sign=identity.sign)


def real_verify(certificate: bytes, data: bytes, signature: bytes) -> bool:
    from mesh.security.identity import verify

    return verify(certificate, data, signature)


def make_replica(
    signer: FakeSigner | RealSigner,
    *,
    root: NodeId,
    store: ReplicaStore,
    epoch: Epoch,
    verify: Callable[[bytes, bytes, bytes], bool],
) -> Replica:
    return Replica(
        self_id=signer.node_id,
        epoch=epoch,
        root=root,
        store=store,
        decode=decode,
        verify=verify,
        encode=encode,
        sign=signer.sign,
    )
