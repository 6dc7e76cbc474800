"""The replica: this node's copy of every origin's records, merged by the rules of DESIGN.md.

It composes the routing of a batch and the theory of operation (core/replica_routes.py),
the sending side (core/replica_send.py) and the clock-proof checks of the receiving side
(core/replica_proofs.py) over a `ReplicaStore`, and holds the writes, the membership and
the purge of tombstones.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat

from mesh.core.clock_proof import ClockProof
from mesh.core.envelope import Envelope, signing_bytes
from mesh.core.epoch import ZERO, Epoch
from mesh.core.errors import InvalidArgumentError, ProtocolError, StoreError
from mesh.core.gossip import Batch, DecodedEntries
from mesh.core.ids import NodeId
from mesh.core.membership import Membership, Signed, admitted_through, compute
from mesh.core.records import (
    MEMBERSHIP_KINDS,
    SIGNED_KINDS,
    Admission,
    Kind,
    Record,
    Removal,
    check,
    entry_keys,
    is_deleted,
    key_of,
    kind_of,
)
from mesh.core.replica_proofs import ProofChecks, Verify
from mesh.core.replica_routes import ROUTES, Route, Situation, check_shape, situation_of
from mesh.core.replica_send import DEFAULT_BATCH_BYTES, MAX_BATCH_RECORDS, Sender, Sign
from mesh.core.replica_store import (
    MAX_SEQ,
    Changes,
    EpochDrop,
    Put,
    ReplicaStore,
)
from mesh.core.replica_tombstones import PURGE_LIMIT, Decode, Tombstones, vector_key
from mesh.core.vector import Clock, VersionVector

# What callers import from here, including the names that moved to the modules it composes.
__all__ = [
    "DEFAULT_BATCH_BYTES",
    "MAX_BATCH_RECORDS",
    "PURGE_LIMIT",
    "ApplyResult",
    "Decode",
    "DecodeEntries",
    "Encode",
    "Outcome",
    "Replica",
    "Sign",
    "Verify",
    "vector_key",
]

Encode = Callable[[Record], tuple[Kind, bytes]]
# Library entry bodies decoded and checked as `Decode` would, all at once, to what the
# replica needs of each: (library, path, deleted). ProtocolError if any is bad. An initial
# sync is almost all entries: made one by one, their records cost more than the rest.
DecodeEntries = Callable[[Sequence[bytes]], list[tuple[str, str, bool]]]
# What `_admit_envelopes` takes: (key, envelope, record, deleted); the record is None for
# an entry decoded in bulk (nothing reads it but its key and its flag).
_Taken = tuple[bytes, Envelope, "Record | None", bool]


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


_KEY, _ENVELOPE = operator.itemgetter(0), operator.itemgetter(1)  # of a Put
_DELETED = operator.itemgetter(2)  # of decoded entry facts (library, path, deleted)
_RECORD, _PUT_FIELDS = operator.itemgetter(2), operator.itemgetter(0, 1, 3)  # of a _Taken
_new_tuple = tuple.__new__


def _point(envelope: Envelope) -> Clock:
    return Clock(envelope.epoch, envelope.seq)


def _dead(envelope: Envelope, deleted: bool, membership: Membership) -> bool:
    """Whether a record is stored as a tombstone: `deleted` (as `is_deleted` says of it),
    or past its removed origin's cutoff (membership records excepted: never dropped)."""
    if deleted:
        return True
    if not membership.removed or envelope.kind in MEMBERSHIP_KINDS:
        return False
    return not membership.counts(envelope.origin, envelope.epoch, envelope.seq)


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
        decode_entries: DecodeEntries | None = None,
    ) -> None:
        self._id = self_id
        self._decode_entries = decode_entries
        self._epoch = epoch
        self._root = root
        self._store = store
        self._decode = decode
        self._verify = verify
        self._encode = encode
        self._sign = sign
        self._sender = Sender(
            self_id=self_id,
            store=store,
            sign=sign,
            vector=self.vector,
            membership=lambda: self._membership,
        )
        self._proofs = ProofChecks(store=store, verify=verify)
        self._tombstones = Tombstones(
            self_id=self_id,
            store=store,
            decode=decode,
            write=self.write,
            vector=self.vector,
            membership=lambda: self._membership,
        )
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
        put = Put(key, envelope, _dead(envelope, is_deleted(record), membership))
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
        """Write our vector when it covers a tombstone our last published one did not
        (core/replica_tombstones.py); call it after applying what a peer sent (debounced)."""
        return self._tombstones.publish_vector()

    def purge(self, *, limit: int = PURGE_LIMIT) -> tuple[bytes, ...]:
        """Forget tombstones every current member's latest published vector covers."""
        return self._tombstones.purge(limit=limit)

    def published(self, origin: NodeId) -> VersionVector | None:
        """The vector `origin` last published (what it held then), if it published one."""
        return self._tombstones.published(origin)

    # -- what a peer lacks (core/replica_send.py) -------------------------------------------

    def missing(
        self,
        peer: VersionVector,
        max_bytes: int = DEFAULT_BATCH_BYTES,
        *,
        relay_membership: bool = True,
        max_records: int = MAX_BATCH_RECORDS,
    ) -> Iterator[Batch]:
        """Batches of what a peer with vector `peer` lacks, per origin, ascending (lazily:
        nothing is read before the first batch is asked for)."""
        return self._sender.missing(
            peer, max_bytes, relay_membership=relay_membership, max_records=max_records
        )

    def loose_membership(self, peer: VersionVector) -> Iterator[Batch]:
        """The membership records neither our clock nor the peer's covers, one per batch."""
        return self._sender.loose_membership(peer)

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

    def _apply(self, batch: Batch, from_peer: NodeId) -> ApplyResult:
        check_shape(batch)
        origin = batch.origin
        clock = self.clock(origin)
        situation = situation_of(batch, clock, self._id, self._epoch)
        membership_only = bool(batch.envelopes) and all(
            env.kind in MEMBERSHIP_KINDS for env in batch.envelopes
        )
        route = ROUTES[situation, membership_only]
        if (
            route is not Route.IGNORE
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
        if route is Route.REFUSE:
            if situation is Situation.RETIRED:
                assert clock is not None
                raise ProtocolError(f"epoch {batch.epoch} is retired (we hold {clock.epoch})")
            held = "nothing" if clock is None else f"{clock.epoch} up to {clock.seq}"
            raise ProtocolError(
                f"a hole: the batch starts after {batch.epoch}/{batch.after_seq}, we hold {held}"
            )
        if route is Route.IGNORE:
            return ApplyResult(
                origin=origin, from_peer=from_peer, outcome=Outcome.IGNORED, clock=clock
            )

        drops: tuple[EpochDrop, ...] = ()
        new_clock = clock
        if route is Route.RELAY:
            fresh = [env for env in batch.envelopes if env.kind in MEMBERSHIP_KINDS]
            careful = True
        else:
            floor = clock.seq if route is Route.SAME_EPOCH and clock is not None else 0
            if route is Route.NEW_EPOCH and clock is not None:
                drops = (EpochDrop(origin=origin, before=batch.epoch),)
            fresh = [env for env in batch.envelopes if env.seq > floor]
            new_clock = Clock(batch.epoch, max(floor, batch.through_seq))
            # Past our clock every stored version is older, unless membership records were
            # relayed ahead of it: then compare with what is stored, key by key.
            careful = bool(fresh) and bool(
                self._store.envelopes(origin, batch.epoch, floor, MAX_SEQ, max_count=1, max_bytes=0)
            )
        # What the wire already decoded holds for the whole batch only.
        decoded = batch.decoded if len(fresh) == len(batch.envelopes) else None
        taken, certificate = self._admit_envelopes(origin, fresh, careful, decoded)
        proofs: tuple[tuple[NodeId, ClockProof], ...] = ()
        if new_clock is not None and new_clock != clock:
            floor = clock.seq if clock is not None and clock.epoch == batch.epoch else 0
            keep = self._proofs.prove_move(batch, new_clock, certificate, taken, from_peer, floor)
            if keep is not None and keep.digest:
                # A proof is kept (and relayed) only at the point it covers, once what this
                # node then holds matches its digest.
                self._proofs.check_complete(
                    batch, new_clock, keep, clock, taken, self._membership.removed
                )
                keep = keep if new_clock.seq == keep.seq else None
            proofs = ((origin, keep),) if keep is not None else ()

        membership, records = self._membership, self._records
        signed: dict[bytes, Signed] = {}
        if any(map(operator.is_not, map(_RECORD, taken), repeat(None))):  # bulk entries: none
            signed = {
                key: Signed(origin=origin, epoch=env.epoch, seq=env.seq, record=record)
                for key, env, record, _ in taken
                if isinstance(record, Admission | Removal)
            }
        if signed:
            records = {**self._records, **signed}
            membership = compute(self._root, records.values())
        if membership.removed:
            puts = [
                Put(key, env, _dead(env, deleted, membership)) for key, env, _, deleted in taken
            ]
        else:  # nobody removed: a record is a tombstone exactly when it says it is deleted
            # Made in C (tuple.__new__ of the named tuple, no Python code run per record): a
            # Put each was a tenth of a syncing receiver's store thread.
            puts = list(map(_new_tuple, repeat(Put), map(_PUT_FIELDS, taken)))
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
        ignoring = situation is Situation.OWN_OLDER
        return ApplyResult(
            origin=origin,
            from_peer=from_peer,
            outcome=Outcome.IGNORED if ignoring and not changes else Outcome.APPLIED,
            stored=tuple(map(_ENVELOPE, changes.puts)),
            changed=tuple(map(_KEY, changes.puts)),
            dropped=drops,
            clock=new_clock,
            membership_changed=membership_changed,
        )

    def _admit_envelopes(
        self,
        origin: NodeId,
        envelopes: Sequence[Envelope],
        careful: bool,
        decoded_entries: DecodedEntries | None = None,
    ) -> tuple[list[_Taken], bytes | None]:
        """Decode, check and verify the envelopes that would become live (ProtocolError).

        Returns (key, envelope, record, deleted) for each, the newest per key, and the
        certificate that checks the origin's signatures (None if none is known).
        """
        decoded = self._decode_all(origin, envelopes, decoded_entries)
        kinds = {item[1].kind for item in decoded}
        own_certificate: bytes | None = None
        if Kind.ADMISSION in kinds:
            for _, _, record, _ in decoded:
                if isinstance(record, Admission) and record.node_id == origin:
                    # Bound to the origin by its hash, so it vouches for the whole batch.
                    own_certificate = record.certificate
        certificate = own_certificate or self._membership.certificates.get(origin)
        if not careful and kinds.isdisjoint(SIGNED_KINDS):
            # Nothing to compare with what is stored, nor to verify, record by record (an
            # initial sync's entries): the newest of each key, in one pass made in C.
            return list(dict(zip(map(_KEY, decoded), decoded, strict=True)).values()), certificate
        taken: dict[bytes, _Taken] = {}
        for item in decoded:
            key, env = item[0], item[1]
            if careful:
                held = self._store.get(key)
                if held is not None and _point(held) >= _point(env):
                    continue
            if env.kind in SIGNED_KINDS:
                if certificate is None:
                    raise ProtocolError(
                        f"no certificate known for {origin.short()} to check record {env.seq}"
                    )
                if not env.signature or not self._verify(
                    certificate, env.signing_bytes(), env.signature
                ):
                    raise ProtocolError(f"record {env.seq} has a bad signature")
            taken[key] = item  # ascending: a later write of a key wins
        return list(taken.values()), certificate

    def _decode_all(
        self,
        origin: NodeId,
        envelopes: Sequence[Envelope],
        ready: DecodedEntries | None = None,
    ) -> list[_Taken]:
        """(key, envelope, record, deleted) of each envelope, decoded and checked, in order:
        the library entries among them (unsigned, checked like the rest) in bulk, or taken
        from `ready` (all of them entries, decoded as the batch was read)."""
        if ready is not None and len(ready.keys) == len(ready.deleted) == len(envelopes):
            return list(zip(ready.keys, envelopes, repeat(None), ready.deleted, strict=False))
        decoded: dict[int, _Taken] = {}
        if self._decode_entries is not None and envelopes:
            if {env.kind for env in envelopes} == {Kind.ENTRY}:
                # Entries only (an initial sync's batches): no index to keep, all in bulk.
                try:
                    facts = self._decode_entries([env.body for env in envelopes])
                except ProtocolError:
                    pass  # one by one below, to name the record at fault
                else:
                    keys = entry_keys(origin, facts)
                    return list(zip(keys, envelopes, repeat(None), map(_DELETED, facts)))
            entries = [i for i, env in enumerate(envelopes) if env.kind is Kind.ENTRY]
            runs = [envelopes[i] for i in entries]
            try:
                facts = self._decode_entries([env.body for env in runs]) if runs else []
            except ProtocolError:
                pass  # one by one below, to name the record at fault
            else:
                keys = entry_keys(origin, facts)
                decoded = {
                    i: (key, env, None, fact[2])
                    for i, env, key, fact in zip(entries, runs, keys, facts, strict=True)
                }
        if len(decoded) == len(envelopes):
            return list(decoded.values())
        for i, env in enumerate(envelopes):
            if i in decoded:
                continue
            try:
                record = self._decode(env.kind, env.body)
            except ProtocolError as exc:
                raise ProtocolError(f"record {env.seq} is undecodable: {exc}") from exc
            if kind_of(record) != env.kind:
                raise ProtocolError(f"record {env.seq} is not a {env.kind.name.lower()}")
            check(origin, record)
            if isinstance(record, Admission):
                self._check_certificate(record)
            decoded[i] = (key_of(origin, record), env, record, is_deleted(record))
        return [decoded[i] for i in range(len(envelopes))]

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
                    puts.append(Put(key, env, _dead(env, is_deleted(record), membership)))
        return puts
