"""Removal takes what the removed member did with it: the nodes it let in by hand.

Member b (mallory), speaking gossip to a with its own key, admits z without any invitation,
and z admits y. `mesh remove mallory` on a lists them and removes them too; with
--keep-admitted the user keeps the ones it trusts. c, whom both a and mallory admitted,
stays: it does not stand on mallory's word.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from mesh.core.records import Admission
from mesh.security import identity as ident
from mesh.security.identity import Identity
from tests.cli.conftest import Mesh
from tests.node.conftest import NodeHandle, mesh_of
from tests.security.test_relayed_records import Member, envelope

Make = Callable[[str], NodeHandle]


async def hand_made_members(a: NodeHandle, b: Identity, c: NodeHandle) -> tuple[Identity, ...]:
    """b admits z (by hand) and c (again); z admits y: all of it taken by a."""
    z, y = ident.generate(), ident.generate()
    with c.local() as node:
        c_id = node.identity
    channel = a.dial(b)
    try:
        member = Member(b, channel.gossip())
        await member.open()
        for seq, (who, name) in enumerate(((z, "z"), (c_id, "laptop")), start=1):
            record = Admission(node_id=who.node_id, certificate=who.cert_der, name=name)
            ack = await member.offer(envelope(b.node_id, record, b, seq=seq))
            assert not ack.refused, ack.reason
        record = Admission(node_id=y.node_id, certificate=y.cert_der, name="y")
        assert not (await member.offer(envelope(z.node_id, record, z))).refused
        member.stream.close()
    finally:
        await channel.close()
    return z, y


def names(a: NodeHandle) -> set[str]:
    assert a.daemon is not None
    return {m.name for m in a.daemon.local.membership.members.values()}


async def test_removing_a_member_removes_the_members_it_admitted_by_hand(nodes: Make) -> None:
    a, b, c = nodes("tower"), nodes("mallory"), nodes("laptop")
    mesh_of(a, b, c)
    with b.local() as node:
        b_id = node.identity
    await a.start()
    await hand_made_members(a, b_id, c)
    assert names(a) == {"tower", "mallory", "laptop", "z", "y"}
    # Not on a terminal, so nobody is asked: the list is shown, and they go.
    proc = await asyncio.to_thread(Mesh(home=a.home.root).run, "remove", "mallory")
    assert "mallory admitted members who are in the mesh only through it" in proc.stderr
    assert "removed with it (admitted by it): " in proc.stdout
    assert "z (" in proc.stdout and "y (" in proc.stdout and "laptop" not in proc.stdout
    assert names(a) == {"tower", "laptop"}


async def test_keep_admitted_keeps_the_named_members_and_those_they_admitted(
    nodes: Make,
) -> None:
    a, b, c = nodes("tower"), nodes("mallory"), nodes("laptop")
    mesh_of(a, b, c)
    with b.local() as node:
        b_id = node.identity
    await a.start()
    await hand_made_members(a, b_id, c)
    cli = Mesh(home=a.home.root)
    refused = await asyncio.to_thread(
        cli.run, "remove", "mallory", "--keep-admitted", "laptop", check=False
    )
    assert refused.returncode == 2  # a usage error
    assert "'laptop' is not among the members 'mallory' admitted" in refused.stderr
    proc = await asyncio.to_thread(cli.run, "remove", "mallory", "--keep-admitted", "z")
    assert "kept (admitted by it): " in proc.stdout
    assert names(a) == {"tower", "laptop", "z", "y"}
