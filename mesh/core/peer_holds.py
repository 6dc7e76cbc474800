"""What one gossip peer holds of each origin, as the session's sender believes it.

The sender offers the replica `offer()` and gets back what the peer lacks. Its belief
(`sent`) starts at the vector the peer opened with, advances as batches go out (`sent_batch`)
and as the peer sends records itself (`received`), and falls back to what the peer told when
it refuses a batch (`answered`). An origin whose batch was refused is "stuck": it is offered
at the clock it was refused at until this node holds more of it, so a record the peer will
never take (a bad signature, say) is not resent forever. `acked` is the peer's vector as its
acks told it, which `mesh peers` shows as what is unacknowledged.

Pure bookkeeping: the session (node/session.py) does the sending, logging and waiting.
"""

from __future__ import annotations

from collections.abc import Sequence

from mesh.core.gossip import Ack, Batch, acked_vector
from mesh.core.ids import NodeId
from mesh.core.records import MEMBERSHIP_KINDS
from mesh.core.vector import Clock, VersionVector, lag


class PeerHolds:
    def __init__(self, peer: NodeId) -> None:
        self.peer = peer
        self.acked = VersionVector()  # the peer's vector as its last ack told it
        self._sent: dict[NodeId, Clock] = {}  # what the peer holds once all sent applies
        self._stuck: dict[NodeId, Clock] = {}  # origins refused at our clock then
        self.refusals = 0  # refused batches so far (a page read ahead may be stale)

    def start(self, opened_with: VersionVector) -> None:
        """The peer's opening vector: what it holds before anything is sent."""
        self._sent = dict(opened_with.items())
        self.acked = opened_with

    @property
    def sent(self) -> VersionVector:
        """What the peer holds once all that was sent applies (stuck origins as they are)."""
        return VersionVector(self._sent)

    @property
    def stuck(self) -> bool:
        """Whether `offer` needs this node's own vector (an origin is stuck)."""
        return bool(self._stuck)

    def offer(self, ours: VersionVector | None, going: Sequence[Batch] = ()) -> VersionVector:
        """What to ask the replica about: the peer as we believe it once `going` (being
        sent) reaches it, stuck origins covered (`ours` is needed only while one is)."""
        offer = dict(self._sent)
        for origin, at in list(self._stuck.items()):
            assert ours is not None
            now = ours.get(origin)
            if now is None or now <= at:
                offer[origin] = at if now is None else now
            else:
                del self._stuck[origin]  # we hold more of it now: try again
                acked = self.acked.get(origin)
                if acked is not None:
                    offer[origin] = acked
                else:
                    offer.pop(origin, None)
        for batch in going:
            _advance(offer, batch)
        return VersionVector(offer)

    def sent_batch(self, batch: Batch) -> None:
        """`batch` went out: the peer will hold its origin through its end."""
        _advance(self._sent, batch)

    def answered(self, batch: Batch, ack: Ack, *, slim: bool) -> None:
        """The peer's ack of `batch` came (a refusal makes its origin stuck)."""
        self.acked = acked_vector(self.acked, ack.vector, batch.origin, slim=slim)
        if not ack.refused:
            return
        self.refusals += 1
        self._stuck[batch.origin] = Clock(batch.epoch, batch.through_seq)
        told = ack.vector.get(batch.origin)
        if told is None:
            self._sent.pop(batch.origin, None)
        else:
            self._sent[batch.origin] = told

    def received(self, batch: Batch) -> None:
        """The peer sent `batch`: it holds it, so it is not offered back to it.

        Without this, every record pushed to us live (written after the stream opened) came
        straight back to its sender, since the peer's opening vector is all `sent` knew.
        A batch from `missing` ends where the sender's clock of that origin is, so the peer
        holds the origin through `through_seq`. A loose membership record (one admission or
        removal, `after_seq` just before it) is held outside the peer's clock, so such a
        batch says nothing about the rest of the origin: it is left out.
        """
        envs = batch.envelopes
        if (
            len(envs) == 1
            and envs[0].kind in MEMBERSHIP_KINDS
            and batch.after_seq + 1 == envs[0].seq == batch.through_seq
        ):
            return
        held = self._sent.get(batch.origin)
        if held is None or (batch.epoch, batch.through_seq) > (held.epoch, held.seq):
            self._sent[batch.origin] = Clock(batch.epoch, batch.through_seq)
        # It holds it as surely as if it had acked it: `mesh peers` must not count it as
        # unacknowledged when nothing of it will ever be sent back to be acked.
        acked = self.acked.get(batch.origin)
        if acked is None or (batch.epoch, batch.through_seq) > (acked.epoch, acked.seq):
            self.acked = self.acked.with_clock(batch.origin, Clock(batch.epoch, batch.through_seq))

    def told(self, held: VersionVector) -> None:
        """The peer said what it holds (a Plumtree GRAFT would carry its vector,
        core/broadcast.py): a sender that only announced to it for a while believed it held
        far less, and would push again what it got elsewhere meanwhile."""
        for origin, clock in held.items():
            sent = self._sent.get(origin)
            if sent is None or clock > sent:
                self._sent[origin] = clock
            acked = self.acked.get(origin)
            if acked is None or clock > acked:
                self.acked = self.acked.with_clock(origin, clock)

    def unacked(self, ours: VersionVector) -> int:
        """How many of our records the peer has not acknowledged (as far as seqs tell)."""
        return lag(ours, self.acked, self.peer)


def _advance(sent: dict[NodeId, Clock], batch: Batch) -> None:
    """Note in `sent` that the peer holds `batch`'s origin through its end (never back)."""
    held = sent.get(batch.origin)
    if held is None or (batch.epoch, batch.through_seq) >= (held.epoch, held.seq):
        sent[batch.origin] = Clock(batch.epoch, batch.through_seq)


__all__ = ["PeerHolds"]
