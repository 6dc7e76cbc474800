"""The sending side of the replica: the batches a peer lacks, paged within bounds, each
carrying its origin's clock proof (ours signed here, once per clock)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from mesh.core.clock_proof import ClockProof, covered_digest, proof_bytes
from mesh.core.envelope import Envelope
from mesh.core.epoch import Epoch
from mesh.core.gossip import Batch
from mesh.core.ids import NodeId
from mesh.core.membership import Membership
from mesh.core.replica_store import ReplicaStore
from mesh.core.vector import Clock, VersionVector

DEFAULT_BATCH_BYTES = 1 << 20
MAX_BATCH_RECORDS = 10_000

Sign = Callable[[bytes], bytes]


def _fit(envelopes: Sequence[Envelope], max_bytes: int, max_records: int) -> int:
    """How many of `envelopes` make one batch: within both bounds, but at least one."""
    total = 0
    for i, env in enumerate(envelopes[:max_records]):
        total += env.size
        if total > max_bytes and i > 0:
            return i
    return min(len(envelopes), max_records)


class Sender:
    """What this node sends of its replica over `store`. The vector and the membership are
    read through callables, when a generator reaches them, so that they are current."""

    def __init__(
        self,
        *,
        self_id: NodeId,
        store: ReplicaStore,
        sign: Sign,
        vector: Callable[[], VersionVector],
        membership: Callable[[], Membership],
    ) -> None:
        self._id = self_id
        self._store = store
        self._sign = sign
        self._vector = vector
        self._membership = membership
        self._own_proof: ClockProof | None = None  # our last signed clock, while it is current

    def missing(
        self,
        peer: VersionVector,
        max_bytes: int = DEFAULT_BATCH_BYTES,
        *,
        relay_membership: bool = True,
        max_records: int = MAX_BATCH_RECORDS,
    ) -> Iterator[Batch]:
        """Batches of what a peer with vector `peer` lacks, per origin, ascending.

        Origins come admitters first, so a peer learns a certificate before the signed
        records that need it. With `relay_membership`, the membership records our clock does
        not cover follow, one per batch (see core/replica_routes.py): ask for them when a stream
        starts, not on every push, since no vector tells whether the peer has them.
        """
        vector = self._vector()
        rank = self._membership().rank
        for origin in sorted(vector, key=rank):
            ours, theirs = vector[origin], peer.get(origin)
            if theirs is None or theirs.epoch < ours.epoch:
                after = 0
            elif theirs.epoch == ours.epoch and theirs.seq < ours.seq:
                after = theirs.seq
            else:
                continue
            proof = self._proof_of(origin, ours)
            yield from self._pages(
                origin, ours.epoch, after, ours.seq, max_bytes, max_records, proof
            )
        if relay_membership:
            yield from self.loose_membership(peer)

    def loose_membership(self, peer: VersionVector) -> Iterator[Batch]:
        """The membership records our clock does not cover and the peer's does not either,
        one per batch, admitters first (what `missing` adds with `relay_membership`)."""
        vector = self._vector()
        rank = self._membership().rank
        loose: list[Envelope] = []
        for env in self._store.membership():
            held, told = vector.get(env.origin), peer.get(env.origin)
            if held is not None and held.epoch == env.epoch and env.seq <= held.seq:
                continue  # in the origin's stream above
            if told is not None and told.epoch == env.epoch and env.seq <= told.seq:
                continue  # the peer's clock covers it
            loose.append(env)
        for env in sorted(loose, key=lambda e: (rank(e.origin), e.epoch, e.seq)):
            yield Batch(
                origin=env.origin,
                epoch=env.epoch,
                after_seq=env.seq - 1,
                through_seq=env.seq,
                envelopes=(env,),
            )

    def _pages(
        self,
        origin: NodeId,
        epoch: Epoch,
        after: int,
        through: int,
        max_bytes: int,
        max_records: int,
        proof: ClockProof | None,
    ) -> Iterator[Batch]:
        """The store's range as batches; the last one ends at `through` whatever it holds.
        Each carries `proof`, the origin's word that its writes reach `through`."""

        def page(start: int, count: int = max_records) -> Sequence[Envelope]:
            if start >= through:
                return ()
            return self._store.envelopes(
                origin, epoch, start, through, max_count=count, max_bytes=max_bytes
            )

        current = page(after)
        while True:
            # Whether anything follows is asked of one record, not a page read ahead: a
            # caller that takes a few batches at a time (daemon.batches_for) threw the
            # page after its last away, a fifth of what a sync's sender read and encoded.
            more = bool(current) and bool(page(current[-1].seq, 1))
            end = current[-1].seq if more else through
            yield Batch(
                origin=origin,
                epoch=epoch,
                after_seq=after,
                through_seq=end,
                envelopes=tuple(current),
                proof=proof,
            )
            if not more:
                return
            after, current = end, page(end)

    def _proof_of(self, origin: NodeId, clock: Clock) -> ClockProof | None:
        """The proof to send with `origin`'s records up to `clock`: of our own clock, signed
        here (once per clock); of another origin, the latest one held, if of that epoch."""
        if origin != self._id:
            held = self._store.proof(origin)
            return held if held is not None and held.epoch == clock.epoch else None
        proof = self._own_proof
        if proof is None or (proof.epoch, proof.seq) != (clock.epoch, clock.seq):
            covered = self._store.covered(self._id, clock.epoch, clock.seq)
            digest = covered_digest(env for _, env in covered)
            signature = self._sign(proof_bytes(self._id, clock.epoch, clock.seq, digest))
            proof = ClockProof(epoch=clock.epoch, seq=clock.seq, signature=signature, digest=digest)
            self._own_proof = proof
        return proof
