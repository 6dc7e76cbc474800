"""Applying received batches on the store thread: in as few transactions as is safe, and
noting the addresses they bring (the peer manager dials them)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from mesh.core.gossip import Batch
from mesh.core.ids import NodeId
from mesh.core.records import MEMBERSHIP_KINDS, Addresses, Kind
from mesh.core.replica import ApplyResult
from mesh.core.vector import VersionVector
from mesh.node.local import LocalNode
from mesh.wire import records as wire_records


def apply_batches(
    local: LocalNode, batches: Sequence[Batch], peer: NodeId
) -> tuple[list[ApplyResult], VersionVector, list[tuple[NodeId, str, int]]]:
    """Apply batches from `peer` in order (on the store thread); the results, the vector
    once all are committed, and the (origin, host, port) of the address records stored."""
    replica, db = local.replica, local.db
    results: list[ApplyResult] = []
    for group in _transactions(batches):
        with db.transaction():
            results.extend(replica.apply(batch, peer) for batch in group)
    addresses: list[tuple[NodeId, str, int]] = []
    for result in results:
        for env in result.stored:
            if env.kind is Kind.ADDRESSES:
                record = wire_records.decode(env.kind, env.body)
                if isinstance(record, Addresses):
                    addresses.extend((env.origin, h, record.port) for h in record.hosts)
    return results, replica.vector(), addresses


def _transactions(batches: Sequence[Batch]) -> Iterator[Sequence[Batch]]:
    """Runs of consecutive batches to apply in one transaction each: a batch holding any
    membership record alone (see `Daemon.apply_all`)."""
    start = 0
    for i, batch in enumerate(batches):
        if any(env.kind in MEMBERSHIP_KINDS for env in batch.envelopes):
            if start < i:
                yield batches[start:i]
            yield batches[i : i + 1]
            start = i + 1
    if start < len(batches):
        yield batches[start:]
