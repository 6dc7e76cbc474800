"""A removed node learns that it was removed, at its next contact with any member.

Theory of operation. Members keep trusting a removed node's certificate at the TLS layer,
but refuse every call it makes (transport/auth.py) with PERMISSION_DENIED and, beside it,
the membership records that show the removal: each removal of it, and the admissions that
make each remover a member, back to the founder. The removed node applies those records
like any membership records (signatures checked by the replica; they count or not by the
same rules on every node), so it believes nothing a member merely says. Once its own
membership shows it removed, it stops dialling, and whatever needs the mesh fails with who
removed it and when. Its libraries and borrowed copies are left as they are.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from mesh.core.envelope import Envelope
from mesh.core.errors import RemovedFromMeshError
from mesh.core.ids import NodeId
from mesh.core.records import MEMBERSHIP_KINDS, Admission, Removal
from mesh.node.local import LocalNode
from mesh.wire import records as wire_records


def describe(by: str, at_ms: int) -> str:
    when = (
        dt.datetime.fromtimestamp(at_ms / 1000).strftime(" on %Y-%m-%d at %H:%M") if at_ms else ""
    )
    return f"this node was removed from the mesh by {by}{when}"


def check_member(local: LocalNode) -> None:
    """RemovedFromMeshError, with who and when, if this node was removed."""
    found = local.removal()
    if found is not None:
        raise RemovedFromMeshError(
            f"{describe(*found)}; its libraries and borrowed copies stay as they are. To be "
            "part of a mesh again: `mesh init --reset`, then `mesh join` with a new code"
        )


def proof(local: LocalNode, node_id: NodeId) -> tuple[Envelope, ...]:
    """The membership records that show `node_id` removed: its removals and the admissions
    of every remover's ancestry, admitters first. Empty if it was not removed."""
    if node_id not in local.membership.removed:
        return ()
    removals: list[Envelope] = []
    admissions: dict[NodeId, list[Envelope]] = {}
    for env in local.records.membership():
        record = wire_records.decode(env.kind, env.body)
        if isinstance(record, Removal) and record.node_id == node_id:
            removals.append(env)
        elif isinstance(record, Admission):
            admissions.setdefault(record.node_id, []).append(env)
    wanted: list[Envelope] = []
    seen: set[NodeId] = set()
    todo = [env.origin for env in removals]
    while todo:
        subject = todo.pop()
        if subject in seen:
            continue
        seen.add(subject)
        for env in admissions.get(subject, ()):
            wanted.append(env)
            todo.append(env.origin)
    rank = local.membership.rank
    return tuple(sorted([*wanted, *removals], key=lambda e: (rank(e.origin), e.epoch, e.seq)))


def learn(local: LocalNode, records: Sequence[Envelope]) -> bool:
    """Apply membership records a member sent with its refusal; True if they show this
    node removed. What does not check out (a bad signature, an unknown signer) is left out."""
    local.adopt_membership([e for e in records if e.kind in MEMBERSHIP_KINDS])
    return local.removal() is not None
