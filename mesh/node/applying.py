"""Applying what peers send, on the store thread: batches grouped into transactions, and
what the daemon learns from them (addresses to dial).

Consecutive batches share one transaction, so a large sync commits (and rewrites the
records table's pages) a few times instead of once per batch. A batch holding membership
records goes in a transaction of its own: the replica takes its new membership into memory
as it applies it, which must never run ahead of the disk.
"""

from __future__ import annotations

import gc
import operator
from collections.abc import Iterator, Sequence

from mesh.core.gossip import Batch
from mesh.core.ids import NodeId
from mesh.core.records import MEMBERSHIP_KINDS, Addresses, Kind
from mesh.core.replica import ApplyResult
from mesh.core.vector import VersionVector
from mesh.node.local import LocalNode
from mesh.wire import records as wire_records

_KIND = operator.attrgetter("kind")
Applied = tuple[list[ApplyResult], VersionVector, list[tuple[NodeId, str, int]]]


def apply_in_groups(local: LocalNode, batches: Sequence[Batch], peer: NodeId) -> Applied:
    """Apply `batches` from `peer` in order, grouped (see above): each one's result, the
    vector once all are committed, and the (member, host, port) of addresses records."""
    replica, db = local.replica, local.db
    results: list[ApplyResult] = []
    for group in transactions(batches):
        with db.transaction():
            results.extend(replica.apply(batch, peer) for batch in group)
    new_addresses: list[tuple[NodeId, str, int]] = []
    for result in results:
        # Looked for in C first: a sync's results hold thousands of entries each.
        if Kind.ADDRESSES not in set(map(_KIND, result.stored)):
            continue
        for env in result.stored:
            if env.kind is Kind.ADDRESSES:
                record = wire_records.decode(env.kind, env.body)
                if isinstance(record, Addresses):
                    new_addresses.extend((env.origin, h, record.port) for h in record.hosts)
    return results, replica.vector(), new_addresses


def transactions(batches: Sequence[Batch]) -> Iterator[Sequence[Batch]]:
    """Runs of consecutive batches to apply in one transaction each: a batch holding any
    membership record alone."""
    start = 0
    for i, batch in enumerate(batches):
        if any(env.kind in MEMBERSHIP_KINDS for env in batch.envelopes):
            if start < i:
                yield batches[start:i]
            yield batches[i : i + 1]
            start = i + 1
    if start < len(batches):
        yield batches[start:]


_heap_frozen = False


def freeze_heap() -> None:
    """Once per process, once the daemon has started: what exists now (modules, gRPC, the
    node) lives as long as the daemon, so the cyclic GC stops scanning it. Its full
    collections, run with the GIL held, then cost what a large sync has in flight instead
    of all of it: they had stalled the event loop (and control calls) 0.1-0.4 s at a time."""
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.freeze()
