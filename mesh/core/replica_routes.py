"""How the replica routes a batch: its situation against our clock of its origin, and the
route that follows (the table below, `ROUTES`); with it, the replica's theory of operation.

Theory of operation
-------------------
Every record has one writer, its origin, which numbers its writes 1, 2, 3, ... within an
epoch. For each origin the store keeps a clock (epoch, seq): "I hold everything live that
this origin wrote in this epoch up to seq". A newer write of a key replaces the older, so the
live records of an origin have holes; a batch `(origin, epoch, after, through]` says
"everything live in that range is here", and an empty range is a valid batch.

A batch is routed by this table (`ROUTES`), on where it falls against our clock of its
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

from mesh.core.epoch import Epoch
from mesh.core.errors import ProtocolError
from mesh.core.gossip import Batch
from mesh.core.ids import NodeId
from mesh.core.vector import Clock


class Situation(enum.Enum):
    """Where a batch falls against our clock of its origin."""

    OWN = "own"
    OWN_OLDER = "own older epoch"
    FROM_ZERO = "a newer epoch from 0"
    CONTINUES = "continues our epoch"
    HOLE = "would leave a hole"
    RETIRED = "a retired epoch"


class Route(enum.Enum):
    NEW_EPOCH = "new epoch"
    SAME_EPOCH = "same epoch"
    RELAY = "relay"  # membership records key by key; the clock stays
    IGNORE = "ignore"
    REFUSE = "refuse"


# (situation, holds membership records only) -> route; see the table at the top.
ROUTES: dict[tuple[Situation, bool], Route] = {
    (Situation.OWN, False): Route.IGNORE,
    (Situation.OWN, True): Route.IGNORE,
    (Situation.OWN_OLDER, False): Route.RELAY,
    (Situation.OWN_OLDER, True): Route.RELAY,
    (Situation.FROM_ZERO, False): Route.NEW_EPOCH,
    (Situation.FROM_ZERO, True): Route.NEW_EPOCH,
    (Situation.CONTINUES, False): Route.SAME_EPOCH,
    (Situation.CONTINUES, True): Route.SAME_EPOCH,
    (Situation.HOLE, False): Route.REFUSE,
    (Situation.HOLE, True): Route.RELAY,
    (Situation.RETIRED, False): Route.REFUSE,
    (Situation.RETIRED, True): Route.RELAY,
}


def check_shape(batch: Batch) -> None:
    """Refuse a batch whose envelopes disagree with its header or are out of order."""
    if batch.after_seq < 0 or batch.through_seq < batch.after_seq:
        raise ProtocolError(f"a batch range ({batch.after_seq}, {batch.through_seq}] is backwards")
    origin, epoch, last = batch.origin, batch.epoch, batch.after_seq
    for env in batch.envelopes:
        # A batch read off the wire shares its header's origin and epoch objects with its
        # envelopes: the identity test spares the comparisons (100k in an initial sync).
        if (env.origin is not origin and env.origin != origin) or (
            env.epoch is not epoch and env.epoch != epoch
        ):
            raise ProtocolError(f"record {env.seq} is not of the batch's origin and epoch")
        if env.seq <= last:
            raise ProtocolError(f"record {env.seq} is out of order (after {last})")
        last = env.seq
    if last > batch.through_seq:
        # Ascending, so the first past the end is found from the back.
        past = [env.seq for env in batch.envelopes if env.seq > batch.through_seq]
        raise ProtocolError(f"record {past[0]} is past the batch end {batch.through_seq}")


def situation_of(batch: Batch, clock: Clock | None, self_id: NodeId, epoch: Epoch) -> Situation:
    """Where `batch` falls against `clock`, our clock of its origin (we are `self_id`,
    writing in `epoch`)."""
    if batch.origin == self_id:
        return Situation.OWN_OLDER if batch.epoch < epoch else Situation.OWN
    if clock is None or batch.epoch > clock.epoch:
        return Situation.FROM_ZERO if batch.after_seq == 0 else Situation.HOLE
    if batch.epoch == clock.epoch:
        return Situation.CONTINUES if batch.after_seq <= clock.seq else Situation.HOLE
    return Situation.RETIRED
