"""The receiving side's clock-proof checks: a batch moves its origin's clock only as far as
the origin signed (core/clock_proof.py), and what the clock then covers must be complete."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from mesh.core.clock_proof import COVERED_KINDS, ClockProof, covered_digest, proof_bytes
from mesh.core.envelope import Envelope
from mesh.core.errors import ProtocolError
from mesh.core.gossip import Batch
from mesh.core.ids import NodeId
from mesh.core.records import SIGNED_KINDS, Record
from mesh.core.replica_store import Changes, ReplicaStore
from mesh.core.vector import Clock

Verify = Callable[[bytes, bytes, bytes], bool]  # certificate DER, data, signature


class ProofChecks:
    """The clock-proof checks of the batches applied to the replica over `store`."""

    def __init__(self, *, store: ReplicaStore, verify: Verify) -> None:
        self._store = store
        self._verify = verify
        # The last proof of each origin whose signature was checked (so a proof carried by
        # many batches is verified once), kept in the store only once found complete.
        self._checked: dict[NodeId, ClockProof] = {}

    def prove_move(
        self,
        batch: Batch,
        to: Clock,
        certificate: bytes | None,
        taken: Sequence[tuple[bytes, Envelope, Record | None, bool]],
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
            if any(item[1] is last for item in taken):
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

    def check_complete(
        self,
        batch: Batch,
        to: Clock,
        proof: ClockProof,
        clock: Clock | None,
        taken: Sequence[tuple[bytes, Envelope, Record | None, bool]],
        removed: Collection[NodeId],
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
        if to.seq != proof.seq or origin in removed:
            return
        held = dict(self._store.covered(origin, to.epoch, to.seq))
        for key, env, _, _ in taken:
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
