"""The replica: this node's copy of every origin's records, merged by the rules of DESIGN.md.

Theory of operation
-------------------
Every record has one writer, its origin, which numbers its writes 1, 2, 3, ... within an
epoch. For each origin the store keeps a clock (epoch, seq): "I hold everything live that
this origin wrote in this epoch up to seq". A newer write of a key replaces the older, so the
live records of an origin have holes; a batch `(origin, epoch, after, through]` says
"everything live in that range is here", and an empty range is a valid batch.

A batch is routed by this table (`_ROUTES`), on where it falls against our clock of its
origin and on whether it holds membership records only:

    situation                                   anything           membership only
    ------------------------------------------  -----------------  ---------------
    OWN: our origin, our epoch or newer         IGNORE             IGNORE
    OWN_OLDER: our origin, an older epoch       RELAY (rest ign.)  RELAY
    FROM_ZERO: a newer epoch (or a first one),  NEW_EPOCH          NEW_EPOCH
      starting at 0
    CONTINUES: our epoch, starting at or below  SAME_EPOCH         SAME_EPOCH
      our seq
    HOLE: would leave a hole                    REFUSE             RELAY
    RETIRED: an epoch older than ours           REFUSE             RELAY

NEW_EPOCH retires the older epochs (their records are dropped, membership records kept) and
SAME_EPOCH skips what our seq covers; both move the clock to the batch's end. RELAY takes
membership records key by key, keeping the newest version, and leaves the clock alone: it
claims no coverage, so it can never hide a hole. Records our clock covers are never taken
again, so a purged tombstone cannot let the record it deleted come back from a peer that is
behind: that record's seq is covered. Retired epochs are exactly the epochs older than the
clock's (epochs are ordered and a clock never moves back), so they need no list of their own.

A clock moves only as far as its origin signed (mesh/core/clock_proof.py): a batch that
would move it must carry the origin's clock proof covering the batch's end, or end with a
record the origin signed. Otherwise a member relaying a batch could announce an epoch or a
seq the origin never reached, and every node would drop the origin's records or skip its
next writes. The latest proof verified of each origin is kept and sent on with that
origin's batches; ours is signed when our clock has moved and our records go out.

A batch of an origin that no admission names is refused, unless it holds membership records
only or its origin is the root (whose genesis admits itself): a member relaying records
cannot invent origins, each of which would grow every replica and vector for good.

A refused batch stores nothing; the stream goes on, and the peer offers it again next time
(our clock did not move). Every check that can refuse runs before anything is committed;
one `Changes` value is committed per batch.

Membership records are never dropped, whatever happens to their origin, so that every node
ends up with the same ones and computes the same members. Those of retired epochs are in no
vector (a peer may have jumped epochs through a node that never had them): `missing` offers
every membership record our clock does not cover, one per batch, after the streams of all
origins, and RELAY takes them.

Removals: a removed origin's records past its cutoff do not count. They are still taken and
relayed, but stored as tombstones, whatever they say, and purged like any tombstone. Refusing
them instead would make the outcome depend on arrival order: a node that took a write past
the cutoff before it heard of the removal no longer holds the version it superseded, and a
batch describes what is live at its sender, so no node could tell which peers still send the
earlier version. As tombstones, every node supersedes the same versions and ends up holding
(then purging) the same records. When a removal starts or stops counting, the origin's stored
records past the cutoff are flagged again.

Tombstones: each member publishes its vector as a VECTOR record, but only when that lets
someone purge: when it holds a tombstone its last published vector does not cover. Vector
records are not tombstones, so receiving or writing one never calls for another and gossip
settles. (A non-member publishes nothing: its vector does not count, and a removed node's
vectors would be tombstones themselves, past its cutoff.) A tombstone is purged once the
latest published vector of every current member covers it; our clock then still covers its
seq, so nothing it superseded is taken again.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass

from mesh.core.clock_proof import COVERED_KINDS, ClockProof, covered_digest, proof_bytes
from mesh.core.envelope import Envelope, signing_bytes
from mesh.core.epoch import ZERO, Epoch
from mesh.core.errors import InvalidArgumentError, ProtocolError, StoreError
from mesh.core.gossip import Batch
from mesh.core.ids import NodeId
from mesh.core.membership import Membership, Signed, admitted_through, compute
from mesh.core.records import (
    MEMBERSHIP_KINDS,
    SIGNED_KINDS,
    Admission,
    Kind,
    Record,
    Removal,
    VectorRecord,
    check,
    is_deleted,
    key_of,
    kind_of,
)
from mesh.core.replica_store import (
    MAX_SEQ,
    Changes,
    EpochDrop,
    Put,
    ReplicaStore,
)
from mesh.core.vector import Clock, VersionVector

DEFAULT_BATCH_BYTES = 1 << 20
MAX_BATCH_RECORDS = 10_000
PURGE_LIMIT = 10_000

Decode = Callable[[Kind, bytes], Record]
Encode = Callable[[Record], tuple[Kind, bytes]]
Verify = Callable[[bytes, bytes, bytes], bool]  # certificate DER, data, signature
Sign = Callable[[bytes], bytes]


class Outcome(enum.Enum):
    APPLIED = "applied"  # taken (applying is idempotent: it may have added nothing)
    IGNORED = "ignored"  # nothing of it can count here; not an error
    REFUSED = "refused"  # it breaks a rule; nothing of it was stored


@dataclass(frozen=True, kw_only=True, slots=True)
class ApplyResult:
    origin: NodeId
    from_peer: NodeId
    outcome: Outcome
    reason: str = ""  # why it was refused
    stored: tuple[Envelope, ...] = ()  # envelopes that became live
    changed: tuple[bytes, ...] = ()  # keys whose live record was written
    dropped: tuple[EpochDrop, ...] = ()  # ranges forgotten wholesale
    clock: Clock | None = None  # the origin's clock afterwards
    membership_changed: bool = False


class _Situation(enum.Enum):
    """Where a batch falls against our clock of its origin."""

    OWN = "own"
    OWN_OLDER = "own older epoch"
    FROM_ZERO = "a newer epoch from 0"
    CONTINUES = "continues our epoch"
    HOLE = "would leave a hole"
    RETIRED = "a retired epoch"


class _Route(enum.Enum):
    NEW_EPOCH = "new epoch"
    SAME_EPOCH = "same epoch"
    RELAY = "relay"  # membership records key by key; the clock stays
    IGNORE = "ignore"
    REFUSE = "refuse"


# (situation, holds membership records only) -> route; see the table at the top.
_ROUTES: dict[tuple[_Situation, bool], _Route] = {
    (_Situation.OWN, False): _Route.IGNORE,
    (_Situation.OWN, True): _Route.IGNORE,
    (_Situation.OWN_OLDER, False): _Route.RELAY,
    (_Situation.OWN_OLDER, True): _Route.RELAY,
    (_Situation.FROM_ZERO, False): _Route.NEW_EPOCH,
    (_Situation.FROM_ZERO, True): _Route.NEW_EPOCH,
    (_Situation.CONTINUES, False): _Route.SAME_EPOCH,
    (_Situation.CONTINUES, True): _Route.SAME_EPOCH,
    (_Situation.HOLE, False): _Route.REFUSE,
    (_Situation.HOLE, True): _Route.RELAY,
    (_Situation.RETIRED, False): _Route.REFUSE,
    (_Situation.RETIRED, True): _Route.RELAY,
}


def _point(envelope: Envelope) -> Clock:
    return Clock(envelope.epoch, envelope.seq)


def _dead(envelope: Envelope, record: Record, membership: Membership) -> bool:
    """Whether a record is stored as a tombstone: deleted, or past its removed origin's
    cutoff (membership records excepted: they are never dropped)."""
    if is_deleted(record):
        return True
    if not membership.removed or envelope.kind in MEMBERSHIP_KINDS:
        return False
    return not membership.counts(envelope.origin, envelope.epoch, envelope.seq)


def vector_key(origin: NodeId) -> bytes:
    """The key of `origin`'s published version vector."""
    return key_of(origin, VectorRecord(VersionVector()))


def _check_shape(batch: Batch) -> None:
    """Refuse a batch whose envelopes disagree with its header or are out of order."""
    if batch.after_seq < 0 or batch.through_seq < batch.after_seq:
        raise ProtocolError(f"a batch range ({batch.after_seq}, {batch.through_seq}] is backwards")
    last = batch.after_seq
    for env in batch.envelopes:
        if env.origin != batch.origin or env.epoch != batch.epoch:
            raise ProtocolError(f"record {env.seq} is not of the batch's origin and epoch")
        if env.seq <= last:
            raise ProtocolError(f"record {env.seq} is out of order (after {last})")
        if env.seq > batch.through_seq:
            raise ProtocolError(f"record {env.seq} is past the batch end {batch.through_seq}")
        last = env.seq


def _fit(envelopes: Sequence[Envelope], max_bytes: int, max_records: int) -> int:
    """How many of `envelopes` make one batch: within both bounds, but at least one."""
    total = 0
    for i, env in enumerate(envelopes[:max_records]):
        total += env.size
        if total > max_bytes and i > 0:
            return i
    return min(len(envelopes), max_records)


class Replica:
    """This node's replica over a `ReplicaStore`. Not thread-safe: one caller at a time."""

    def __init__(
        self,
        *,
        self_id: NodeId,
        epoch: Epoch,
        root: NodeId,
        store: ReplicaStore,
        decode: Decode,
        verify: Verify,
        encode: Encode,
        sign: Sign,
    ) -> None:
        self._id = self_id
        self._epoch = epoch
        self._root = root
        self._store = store
        self._decode = decode
        self._verify = verify
        self._encode = encode
        self._sign = sign
        self._own_proof: ClockProof | None = None  # our last signed clock, while it is current
        # The last proof of each origin whose signature was checked (so a proof carried by
        # many batches is verified once), kept in the store only once found complete.
        self._checked: dict[NodeId, ClockProof] = {}
        own = store.clock(self_id)
        if own is not None and own.epoch > epoch:
            raise StoreError(
                f"the store holds this node's writes of epoch {own.epoch}, newer than {epoch}"
            )
        self._records: dict[bytes, Signed] = {}
        for env in store.membership():
            record = decode(env.kind, env.body)
            if isinstance(record, Admission | Removal):
                self._records[key_of(env.origin, record)] = Signed(
                    origin=env.origin, epoch=env.epoch, seq=env.seq, record=record
                )
        self._membership = compute(root, self._records.values())

    # -- reading -------------------------------------------------------------------------

    @property
    def self_id(self) -> NodeId:
        return self._id

    @property
    def epoch(self) -> Epoch:
        return self._epoch

    @property
    def membership(self) -> Membership:
        return self._membership

    def admitted_through(self, node_id: NodeId, keep: Collection[NodeId] = ()) -> list[NodeId]:
        """Members that stand only on `node_id`'s admissions (core/membership.py)."""
        return admitted_through(self._root, self._records.values(), node_id, keep)

    def clock(self, origin: NodeId) -> Clock | None:
        if origin == self._id:
            return self._own_clock()
        return self._store.clock(origin)

    def vector(self) -> VersionVector:
        """Our version vector; our own entry is in our current epoch even before a write."""
        vector = self._store.vector()
        own = self._own_clock()
        return vector if vector.get(self._id) == own else vector.with_clock(self._id, own)

    def _own_clock(self) -> Clock:
        stored = self._store.clock(self._id)
        if stored is not None and stored.epoch == self._epoch:
            return stored
        return Clock(self._epoch, 0)

    # -- local writes ----------------------------------------------------------------------

    def write(self, record: Record) -> Envelope:
        """Write `record` as this node: the next seq of our epoch, signed if its kind is."""
        try:
            check(self._id, record)
            if isinstance(record, Admission):
                self._check_certificate(record)
        except ProtocolError as exc:
            raise InvalidArgumentError(str(exc)) from exc
        if (
            isinstance(record, Admission)
            and record.node_id == self._id
            and key_of(self._id, record) in self._records
        ):
            # Written again, it would move behind the records it certifies (a peer could
            # then not check them), so a node's self-admission is written once.
            raise InvalidArgumentError("this node's self-admission is already written")
        kind, body = self._encode(record)
        if kind != kind_of(record):
            raise InvalidArgumentError(f"encode gave kind {kind.name} for a {kind_of(record).name}")
        try:
            # Peers decode with the same checks: a record they refuse would hold back
            # every later record of ours at each of them, so it is never written.
            self._decode(kind, body)
        except ProtocolError as exc:
            raise InvalidArgumentError(f"peers would refuse this record: {exc}") from exc
        stored = self._store.clock(self._id)
        clock = Clock(self._epoch, self._own_clock().seq + 1)
        signature = b""
        if kind in SIGNED_KINDS:
            signature = self._sign(signing_bytes(self._id, clock.epoch, clock.seq, kind, body))
        envelope = Envelope(
            origin=self._id,
            epoch=clock.epoch,
            seq=clock.seq,
            kind=kind,
            body=body,
            signature=signature,
        )
        key = key_of(self._id, record)
        membership, records = self._membership, self._records
        if isinstance(record, Admission | Removal):
            mine = Signed(origin=self._id, epoch=clock.epoch, seq=clock.seq, record=record)
            records = {**self._records, key: mine}
            membership = compute(self._root, records.values())
        put = Put(key=key, envelope=envelope, deleted=_dead(envelope, record, membership))
        self._store.commit(
            Changes(
                # Our first write in a new epoch retires the old one here too.
                drops=(
                    (EpochDrop(origin=self._id, before=self._epoch),)
                    if stored is not None and stored.epoch < self._epoch
                    else ()
                ),
                puts=(*self._reflag(membership, {key}), put),
                clocks=((self._id, clock),),
            )
        )
        self._records, self._membership = records, membership
        return envelope

    def admit(self, certificate: bytes, name: str, now_ms: int) -> Envelope:
        """Admit the node of `certificate` (as the root, admitting itself is the genesis)."""
        node_id = NodeId.of_certificate(certificate)
        return self.write(
            Admission(node_id=node_id, certificate=certificate, name=name, admitted_ms=now_ms)
        )

    def remove(self, node_id: NodeId, now_ms: int) -> Envelope:
        """Remove `node_id`, naming what we hold of it as the last of its records that count."""
        last = self._store.clock(node_id) or Clock(ZERO, 0)
        return self.write(
            Removal(node_id=node_id, last_epoch=last.epoch, last_seq=last.seq, removed_ms=now_ms)
        )

    def publish_vector(self) -> Envelope | None:
        """Write our vector when it covers a tombstone our last published one did not.

        Call it after applying what a peer sent (debounced): it writes nothing otherwise,
        so vectors are gossiped only while there is something to purge. Only members'
        vectors count for purging, so a node that is not (or no longer) one says nothing:
        past its cutoff, each vector it wrote would be one more tombstone to cover.
        """
        if not self._membership.is_member(self._id):
            return None
        vector = self.vector()
        last = self._published(self._id)
        for origin, clock in vector.items():
            seen = last.get(origin) if last is not None else None
            if seen is not None and seen.epoch > clock.epoch:
                continue
            covered = seen.seq if seen is not None and seen.epoch == clock.epoch else 0
            if covered < clock.seq and self._store.tombstones(
                origin, clock.epoch, covered, clock.seq, max_count=1
            ):
                return self.write(VectorRecord(vector))
        return None

    def purge(self, *, limit: int = PURGE_LIMIT) -> tuple[bytes, ...]:
        """Forget tombstones every current member's latest published vector covers."""
        vectors: list[VersionVector] = []
        for member in self._membership.members:
            published = self._published(member)
            if published is None:
                return ()  # a member we have not heard from yet may still need them
            vectors.append(published)
        if not vectors:
            return ()
        keys: list[bytes] = []
        for origin, clock in self.vector().items():
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
        return self._published(origin)

    def _published(self, origin: NodeId) -> VersionVector | None:
        envelope = self._store.get(vector_key(origin))
        if envelope is None:
            return None
        record = self._decode(envelope.kind, envelope.body)
        return record.vector if isinstance(record, VectorRecord) else None

    # -- what a peer lacks -----------------------------------------------------------------

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
        not cover follow, one per batch (see the module notes): ask for them when a stream
        starts, not on every push, since no vector tells whether the peer has them.
        """
        vector = self.vector()
        rank = self._membership.rank
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
        vector = self.vector()
        rank = self._membership.rank
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

        def page(start: int) -> Sequence[Envelope]:
            if start >= through:
                return ()
            return self._store.envelopes(
                origin, epoch, start, through, max_count=max_records, max_bytes=max_bytes
            )

        current = page(after)
        while True:
            following = page(current[-1].seq) if current else ()
            end = current[-1].seq if following else through
            yield Batch(
                origin=origin,
                epoch=epoch,
                after_seq=after,
                through_seq=end,
                envelopes=tuple(current),
                proof=proof,
            )
            if not following:
                return
            after, current = end, following

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

    # -- applying what a peer sent ---------------------------------------------------------

    def apply(self, batch: Batch, from_peer: NodeId) -> ApplyResult:
        """Apply one batch atomically, or refuse all of it (with the reason)."""
        try:
            return self._apply(batch, from_peer)
        except ProtocolError as exc:
            # The reason travels in the result: the caller logs it with the peer's name.
            return ApplyResult(
                origin=batch.origin,
                from_peer=from_peer,
                outcome=Outcome.REFUSED,
                reason=str(exc),
                clock=self.clock(batch.origin),
            )

    def _situation(self, batch: Batch, clock: Clock | None) -> _Situation:
        if batch.origin == self._id:
            return _Situation.OWN_OLDER if batch.epoch < self._epoch else _Situation.OWN
        if clock is None or batch.epoch > clock.epoch:
            return _Situation.FROM_ZERO if batch.after_seq == 0 else _Situation.HOLE
        if batch.epoch == clock.epoch:
            return _Situation.CONTINUES if batch.after_seq <= clock.seq else _Situation.HOLE
        return _Situation.RETIRED

    def _apply(self, batch: Batch, from_peer: NodeId) -> ApplyResult:
        _check_shape(batch)
        origin = batch.origin
        clock = self.clock(origin)
        situation = self._situation(batch, clock)
        membership_only = bool(batch.envelopes) and all(
            env.kind in MEMBERSHIP_KINDS for env in batch.envelopes
        )
        route = _ROUTES[situation, membership_only]
        if (
            route is not _Route.IGNORE
            and not membership_only
            and origin != self._root  # its genesis admits itself, in this very batch
            and origin not in self._membership.certificates
        ):
            # Nobody ever admitted this origin: a member relaying it made it up (it would
            # otherwise grow every replica and vector without bound), or its admission has
            # not reached us yet, and the batch is offered again once it has.
            raise ProtocolError(
                f"no certificate known for {origin.short()}: it was never admitted here"
            )
        if route is _Route.REFUSE:
            if situation is _Situation.RETIRED:
                assert clock is not None
                raise ProtocolError(f"epoch {batch.epoch} is retired (we hold {clock.epoch})")
            held = "nothing" if clock is None else f"{clock.epoch} up to {clock.seq}"
            raise ProtocolError(
                f"a hole: the batch starts after {batch.epoch}/{batch.after_seq}, we hold {held}"
            )
        if route is _Route.IGNORE:
            return ApplyResult(
                origin=origin, from_peer=from_peer, outcome=Outcome.IGNORED, clock=clock
            )

        drops: tuple[EpochDrop, ...] = ()
        new_clock = clock
        if route is _Route.RELAY:
            fresh = [env for env in batch.envelopes if env.kind in MEMBERSHIP_KINDS]
            careful = True
        else:
            floor = clock.seq if route is _Route.SAME_EPOCH and clock is not None else 0
            if route is _Route.NEW_EPOCH and clock is not None:
                drops = (EpochDrop(origin=origin, before=batch.epoch),)
            fresh = [env for env in batch.envelopes if env.seq > floor]
            new_clock = Clock(batch.epoch, max(floor, batch.through_seq))
            # Past our clock every stored version is older, unless membership records were
            # relayed ahead of it: then compare with what is stored, key by key.
            careful = bool(fresh) and bool(
                self._store.envelopes(origin, batch.epoch, floor, MAX_SEQ, max_count=1, max_bytes=0)
            )
        taken, certificate = self._admit_envelopes(origin, fresh, careful)
        proofs: tuple[tuple[NodeId, ClockProof], ...] = ()
        if new_clock is not None and new_clock != clock:
            floor = clock.seq if clock is not None and clock.epoch == batch.epoch else 0
            keep = self._prove_move(batch, new_clock, certificate, taken, from_peer, floor)
            if keep is not None and keep.digest:
                # A proof is kept (and relayed) only at the point it covers, once what this
                # node then holds matches its digest.
                self._check_complete(batch, new_clock, keep, clock, taken)
                keep = keep if new_clock.seq == keep.seq else None
            proofs = ((origin, keep),) if keep is not None else ()

        membership, records = self._membership, self._records
        signed = {
            key: Signed(origin=origin, epoch=env.epoch, seq=env.seq, record=record)
            for key, env, record in taken
            if isinstance(record, Admission | Removal)
        }
        if signed:
            records = {**self._records, **signed}
            membership = compute(self._root, records.values())
        puts = [
            Put(key=key, envelope=env, deleted=_dead(env, record, membership))
            for key, env, record in taken
        ]
        if signed:
            pending = (origin, new_clock) if new_clock is not None else None
            puts = [*self._reflag(membership, {p.key for p in puts}, pending), *puts]
        changes = Changes(
            drops=drops,
            puts=tuple(puts),
            clocks=((origin, new_clock),) if new_clock is not None and new_clock != clock else (),
            proofs=proofs,
        )
        membership_changed = membership != self._membership
        if changes:
            self._store.commit(changes)
            self._records, self._membership = records, membership
        ignoring = situation is _Situation.OWN_OLDER
        return ApplyResult(
            origin=origin,
            from_peer=from_peer,
            outcome=Outcome.IGNORED if ignoring and not changes else Outcome.APPLIED,
            stored=tuple(p.envelope for p in changes.puts),
            changed=tuple(p.key for p in changes.puts),
            dropped=drops,
            clock=new_clock,
            membership_changed=membership_changed,
        )

    def _admit_envelopes(
        self, origin: NodeId, envelopes: Sequence[Envelope], careful: bool
    ) -> tuple[list[tuple[bytes, Envelope, Record]], bytes | None]:
        """Decode, check and verify the envelopes that would become live (ProtocolError).

        Returns (key, envelope, record) for each, the newest per key, and the certificate
        that checks the origin's signatures (None if none is known).
        """
        decoded: list[tuple[Envelope, Record]] = []
        own_certificate: bytes | None = None
        for env in envelopes:
            try:
                record = self._decode(env.kind, env.body)
            except ProtocolError as exc:
                raise ProtocolError(f"record {env.seq} is undecodable: {exc}") from exc
            if kind_of(record) != env.kind:
                raise ProtocolError(f"record {env.seq} is not a {env.kind.name.lower()}")
            check(origin, record)
            if isinstance(record, Admission):
                self._check_certificate(record)
                if record.node_id == origin:
                    # Bound to the origin by its hash, so it vouches for the whole batch.
                    own_certificate = record.certificate
            decoded.append((env, record))
        taken: dict[bytes, tuple[bytes, Envelope, Record]] = {}
        for env, record in decoded:
            key = key_of(origin, record)
            if careful:
                held = self._store.get(key)
                if held is not None and _point(held) >= _point(env):
                    continue
            if env.kind in SIGNED_KINDS:
                certificate = own_certificate or self._membership.certificates.get(origin)
                if certificate is None:
                    raise ProtocolError(
                        f"no certificate known for {origin.short()} to check record {env.seq}"
                    )
                if not env.signature or not self._verify(
                    certificate, env.signing_bytes(), env.signature
                ):
                    raise ProtocolError(f"record {env.seq} has a bad signature")
            taken[key] = (key, env, record)  # ascending: a later write of a key wins
        return list(taken.values()), own_certificate or self._membership.certificates.get(origin)

    def _prove_move(
        self,
        batch: Batch,
        to: Clock,
        certificate: bytes | None,
        taken: Sequence[tuple[bytes, Envelope, Record]],
        from_peer: NodeId,
        floor: int,
    ) -> ClockProof | None:
        """Check that the origin itself says its writes reach `to` (ProtocolError if not).

        Either the batch's clock proof covers `to`, or it ends at `to` with a record the
        origin signed and, if a relay sent it, holds every seq past `floor` (what we hold):
        a signed last record says nothing of the records before it, so a relay that could
        have left some out must pass the proof on. Returns the batch's proof if it is to be
        kept (verified, and newer than the one held); a proof already verified is not
        verified again.
        """
        origin, proof = batch.origin, batch.proof
        if proof is not None and proof.covers(to.epoch, to.seq):
            held = self._store.proof(origin)
            if proof == held:
                return None
            if self._checked.get(origin) != proof:
                if certificate is None or not self._verify(
                    certificate,
                    proof_bytes(origin, proof.epoch, proof.seq, proof.digest),
                    proof.signature,
                ):
                    raise ProtocolError(
                        f"the clock proof of {origin.short()} ({proof.epoch}/{proof.seq}) has "
                        "a bad signature"
                    )
                self._checked[origin] = proof
            return proof if proof.newer_than(held) else None
        last = batch.envelopes[-1] if batch.envelopes else None
        # Seqs in a batch ascend, each within its range: so many past the floor, none missing.
        whole = from_peer == origin or sum(e.seq > floor for e in batch.envelopes) == to.seq - floor
        if last is not None and whole and last.seq == to.seq and last.kind in SIGNED_KINDS:
            if any(env is last for _, env, _ in taken):
                return None  # verified with the records
            if (
                certificate is not None
                and last.signature
                and self._verify(certificate, last.signing_bytes(), last.signature)
            ):
                return None
        raise ProtocolError(
            f"no signature of {origin.short()} says its writes reach {to.epoch}/{to.seq}: "
            "its clock cannot move there"
        )

    def _check_complete(
        self,
        batch: Batch,
        to: Clock,
        proof: ClockProof,
        clock: Clock | None,
        taken: Sequence[tuple[bytes, Envelope, Record]],
    ) -> None:
        """Where the clock reaches the proof's seq, what this node would then hold of the
        origin's covered records must match the proof's digest (core/clock_proof.py).

        If it does not, the sender left some out: the batch is refused, and the clock goes
        back to the last point found complete (the proof held), so that the records come
        again from whoever holds them, the origin or another member. That is the one
        refusal that commits something: records taken since that point stay, as any
        record of a batch applied does. A removed origin is not checked: past its cutoff
        its records are tombstones, purged at different times on different nodes.
        """
        origin = batch.origin
        if to.seq != proof.seq or origin in self._membership.removed:
            return
        held = dict(self._store.covered(origin, to.epoch, to.seq))
        for key, env, _ in taken:
            if env.kind in COVERED_KINDS:
                held[key] = env
        if covered_digest(held.values()) == proof.digest:
            return
        if clock is not None and clock.epoch == to.epoch:
            complete = self._store.proof(origin)
            back = Clock(to.epoch, complete.seq if complete and complete.epoch == to.epoch else 0)
            if back < clock:
                self._store.commit(Changes(clocks=((origin, back),)))
        raise ProtocolError(
            f"records of {origin.short()} that its clock proof ({proof.epoch}/{proof.seq}) "
            "covers are missing: taken again from the start of what was not seen complete"
        )

    def signed_by_member(self, env: Envelope) -> bool:
        """Whether `env` carries a valid signature of its origin, a current member (for a
        record handed over outside gossip, such as a binding offered with a pull)."""
        certificate = self._membership.certificates.get(env.origin)
        if certificate is None or not env.signature:
            return False
        return self._verify(certificate, env.signing_bytes(), env.signature)

    @staticmethod
    def _check_certificate(record: Admission) -> None:
        if NodeId.of_certificate(record.certificate) != record.node_id:
            raise ProtocolError("an admission's certificate does not hash to its node id")

    def _reflag(
        self, membership: Membership, skip: set[bytes], pending: tuple[NodeId, Clock] | None = None
    ) -> list[Put]:
        """Puts flagging again the stored records whose counting changes with `membership`.

        Only origins whose cutoff changed are read, from the lower of the two cutoffs on:
        the cost follows the change. Keys in `skip` are being written anyway; `pending` is
        a clock about to be set (records of epochs before it are about to be dropped).
        """
        puts: list[Put] = []
        for origin in set(self._membership.removed) | set(membership.removed):
            cutoffs = [
                c
                for c in (self._membership.cutoff(origin), membership.cutoff(origin))
                if c is not None
            ]
            if len(cutoffs) == 2 and cutoffs[0] == cutoffs[1]:
                continue
            low = min(cutoffs)
            clock = pending[1] if pending and pending[0] == origin else self.clock(origin)
            if clock is None or clock.epoch < low.epoch:
                continue  # all we hold of it is at or before the cutoff
            after = low.seq if clock.epoch == low.epoch else 0
            for env in self._store.envelopes(
                origin, clock.epoch, after, MAX_SEQ, max_count=MAX_SEQ, max_bytes=MAX_SEQ
            ):
                if env.kind in MEMBERSHIP_KINDS:
                    continue
                record = self._decode(env.kind, env.body)
                key = key_of(origin, record)
                if key not in skip:
                    puts.append(Put(key=key, envelope=env, deleted=_dead(env, record, membership)))
        return puts
