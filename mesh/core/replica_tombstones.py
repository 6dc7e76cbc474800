"""Tombstones of the replica: when this node publishes its version vector (only when that
lets someone purge), and which tombstones every current member's latest published vector
covers, to be forgotten (see the theory of operation in core/replica_routes.py)."""

from __future__ import annotations

from collections.abc import Callable

from mesh.core.envelope import Envelope
from mesh.core.ids import NodeId
from mesh.core.membership import Membership
from mesh.core.records import Kind, Record, VectorRecord, key_of
from mesh.core.replica_store import Changes, ReplicaStore
from mesh.core.vector import VersionVector

PURGE_LIMIT = 10_000

Decode = Callable[[Kind, bytes], Record]


def vector_key(origin: NodeId) -> bytes:
    """The key of `origin`'s published version vector."""
    return key_of(origin, VectorRecord(VersionVector()))


class Tombstones:
    """The publishing of our vector and the purge of tombstones, over `store`. The vector and
    the membership are read through callables, when needed, so that they are current; our
    vector is written with `write` (the replica's own write)."""

    def __init__(
        self,
        *,
        self_id: NodeId,
        store: ReplicaStore,
        decode: Decode,
        write: Callable[[Record], Envelope],
        vector: Callable[[], VersionVector],
        membership: Callable[[], Membership],
    ) -> None:
        self._id = self_id
        self._store = store
        self._decode = decode
        self._write = write
        self._vector = vector
        self._membership = membership

    def publish_vector(self) -> Envelope | None:
        """Write our vector when it covers a tombstone our last published one did not.

        Call it after applying what a peer sent (debounced): it writes nothing otherwise,
        so vectors are gossiped only while there is something to purge. Only members'
        vectors count for purging, so a node that is not (or no longer) one says nothing:
        past its cutoff, each vector it wrote would be one more tombstone to cover.
        """
        if not self._membership().is_member(self._id):
            return None
        vector = self._vector()
        last = self.published(self._id)
        for origin, clock in vector.items():
            seen = last.get(origin) if last is not None else None
            if seen is not None and seen.epoch > clock.epoch:
                continue
            covered = seen.seq if seen is not None and seen.epoch == clock.epoch else 0
            if covered < clock.seq and self._store.tombstones(
                origin, clock.epoch, covered, clock.seq, max_count=1
            ):
                return self._write(VectorRecord(vector))
        return None

    def purge(self, *, limit: int = PURGE_LIMIT) -> tuple[bytes, ...]:
        """Forget tombstones every current member's latest published vector covers."""
        vectors: list[VersionVector] = []
        for member in self._membership().members:
            published = self.published(member)
            if published is None:
                return ()  # a member we have not heard from yet may still need them
            vectors.append(published)
        if not vectors:
            return ()
        keys: list[bytes] = []
        for origin, clock in self._vector().items():
            bound = clock.seq
            for published in vectors:
                theirs = published.get(origin)
                if theirs is None or theirs.epoch < clock.epoch:
                    bound = 0
                    break
                if theirs.epoch == clock.epoch:
                    bound = min(bound, theirs.seq)
            if bound > 0:
                keys.extend(
                    self._store.tombstones(
                        origin, clock.epoch, 0, bound, max_count=limit - len(keys)
                    )
                )
            if len(keys) >= limit:
                break
        if keys:
            self._store.commit(Changes(removes=tuple(keys)))
        return tuple(keys)

    def published(self, origin: NodeId) -> VersionVector | None:
        """The vector `origin` last published (what it held then), if it published one."""
        envelope = self._store.get(vector_key(origin))
        if envelope is None:
            return None
        record = self._decode(envelope.kind, envelope.body)
        return record.vector if isinstance(record, VectorRecord) else None
