"""Sharing with chosen members: only they may borrow from a library; others are told no.

Members b and c send borrow requests to a over real gossip, signed with their own keys
(the hand-driven client of test_relayed_records.py). a shares Work with c only, Inbox
asking first, and Public as before (every member, at once).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mesh.core.errors import RefusedError
from mesh.core.records import Binding, BorrowRequest, Content
from mesh.core.transfer import ManifestRequest
from mesh.node.lending import Request
from mesh.node.local import now_ms
from mesh.security.identity import Identity
from tests.node.conftest import NodeHandle, mesh_of, wait_for
from tests.node.test_gossip import scan
from tests.node.test_lending import folder_with, start
from tests.security.test_relayed_records import Member, envelope

Make = Callable[[str], NodeHandle]


def identity_of(h: NodeHandle) -> Identity:
    with h.local() as node:
        return node.identity


def answers(a: NodeHandle) -> dict[tuple[str, str], str]:
    """(borrower's short id, library) -> the answer a gave ("" while it waits)."""
    assert a.daemon is not None
    requests: list[Request] = a.daemon.lending.requests()
    return {(r.borrower.short(), r.request.library): r.answer for r in requests}


async def test_a_library_shared_with_chosen_members_lends_to_them_only(
    nodes: Make, tmp_path: Path
) -> None:
    a, b, c = nodes("tower"), nodes("mallory"), nodes("laptop")
    mesh_of(a, b, c)
    b_id, c_id = identity_of(b), identity_of(c)
    await start(a, tmp_path)
    assert a.daemon is not None
    local = a.daemon.local
    for library in ("Work", "Inbox", "Public"):
        folder = await folder_with(tmp_path, library.lower(), {"f.txt": library.encode()})
        await a.daemon.store(local.share, str(folder), library)
        await scan(a, library)
    info = await a.daemon.store(lambda: local.share("Work", borrowers=["laptop"]))
    assert info.borrowers == ("laptop",)
    await a.daemon.store(lambda: local.share("Inbox", ask=True))
    lender = a.daemon.node_id
    for who in (b_id, c_id):
        channel = a.dial(who)
        try:
            member = Member(who, channel.gossip())
            await member.open()
            for seq, library in enumerate(("Work", "Inbox", "Public"), start=1):
                ask = BorrowRequest(
                    lender=lender, library=library, path="f.txt", created_ms=now_ms() - 1000
                )
                ack = await member.offer(envelope(who.node_id, ask, who, seq=seq))
                assert not ack.refused, ack.reason
            member.stream.close()
        finally:
            await channel.close()
    b7, c7 = b_id.node_id.short(), c_id.node_id.short()
    await wait_for(
        lambda: all(answers(a).get((n, lib)) for n in (b7, c7) for lib in ("Work", "Public")),
        what="a's answers",
    )
    got = answers(a)
    assert got[(b7, "Work")] == "denied: library 'Work' is not shared with you"
    assert got[(c7, "Work")] == "granted"
    assert got[(b7, "Public")] == got[(c7, "Public")] == "granted"  # the default, as before
    assert got[(b7, "Inbox")] == got[(c7, "Inbox")] == ""  # waiting for `mesh approve`
    lent_to = {
        (lent.binding.borrower, lent.binding.library) for lent in a.daemon.lending.bindings()
    }
    assert (b_id.node_id, "Work") not in lent_to and (c_id.node_id, "Work") in lent_to
    # Shared with every member again: b's next request is granted.
    await a.daemon.store(lambda: local.share("Work", borrowers=[]))
    assert (await a.daemon.store(lambda: local.share("Work"))).borrowers == ()


async def test_an_open_library_shared_with_chosen_members_serves_them_only(
    nodes: Make, tmp_path: Path
) -> None:
    """c lends b a file that a also holds in its open library Public, shared with d only:
    a, asked by b (with c's signed loan), refuses to serve it; shared with every member, it
    serves it."""
    a, b, c, d = nodes("tower"), nodes("mallory"), nodes("laptop"), nodes("air")
    mesh_of(a, b, c, d)
    b_id = identity_of(b)
    await start(a, tmp_path)
    assert a.daemon is not None
    local = a.daemon.local
    folder = await folder_with(tmp_path, "public", {"f.txt": b"the same bytes"})
    await a.daemon.store(lambda: local.share(str(folder), "Public", open_to_mesh=True))
    await scan(a, "Public")
    await a.daemon.store(lambda: local.share("Public", borrowers=["air"]))
    [item] = await a.daemon.store(local.entries)
    e = item.entry
    content = Content(hash=e.hash, size=e.size, chunk_root=e.chunk_root)
    with c.local() as node:  # c lends b the same content, signed with c's key
        c_node = node.node_id
        loan = node.replica.write(
            Binding(borrower=b_id.node_id, library="Docs", path="f.txt", content=content)
        )
    request = ManifestRequest(hash=e.hash, lender=c_node, binding=loan)
    channel = a.dial(b_id)
    try:
        with pytest.raises(RefusedError):
            await channel.manifest(request, 5)
        await a.daemon.store(lambda: local.share("Public", borrowers=[]))
        manifest = await channel.manifest(request, 5)
        assert manifest.size == e.size
    finally:
        await channel.close()
