"""Names a user can trust, against a member speaking the real protocol with its own key.

Member b talks gossip to a over a real mutual-TLS stream, frame by frame (the hand-driven
client of test_relayed_records.py). It tries to rename c, and to take a's name through a
node it admitted itself; a must keep calling every member by the name it claimed, and show
a second claim of a name as `name~ID7`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mesh.core.envelope import Envelope
from mesh.core.paths import lender_folder
from mesh.core.records import Admission
from mesh.security import identity as ident
from tests.node.conftest import NodeHandle, mesh_of
from tests.node.test_gossip import share_and_scan
from tests.node.test_lending import folder_with, lend, start, until_phase
from tests.security.test_relayed_records import Member, envelope

Make = Callable[[str], NodeHandle]


def own_claim(handle: NodeHandle) -> Envelope:
    """The claim of its name a node wrote when it joined (its self-admission)."""
    with handle.local() as node:
        me = node.node_id
        [claim] = [e for e in node.records.membership() if e.origin == me]
    return claim


async def test_a_member_cannot_rename_another_member(nodes: Make) -> None:
    a, b, c = nodes("tower"), nodes("mallory"), nodes("laptop")
    mesh_of(a, b, c)
    with b.local() as node:
        b_id = node.identity
    with c.local() as node:
        c_node = node.node_id
        c_cert = node.identity.cert_der
    await a.start()
    assert a.daemon is not None
    local = a.daemon.local
    channel = a.dial(b_id)
    try:
        member = Member(b_id, channel.gossip())
        await member.open()
        # c's own claim reaches a (relayed by b, as gossip would)...
        assert not (await member.offer(own_claim(c))).refused
        # ... then b admits c again under another name, dated 1970, signed with b's own key.
        renamed = Admission(node_id=c_node, certificate=c_cert, name="stolen", admitted_ms=0)
        ack = await member.offer(envelope(b_id.node_id, renamed, b_id))
        assert not ack.refused, ack.reason  # a valid record: it just changes nothing
        assert local.membership.members[c_node].name == "laptop"
        assert local.member_named("laptop") == c_node
        assert not local.membership.by_name("stolen")
        member.stream.close()
    finally:
        await channel.close()


async def test_a_member_cannot_take_another_members_name(nodes: Make) -> None:
    a, b = nodes("tower"), nodes("mallory")
    mesh_of(a, b)
    with b.local() as node:
        b_id = node.identity
    await a.start()
    assert a.daemon is not None
    local = a.daemon.local
    z = ident.generate()  # a node b admits by hand, without any invitation
    channel = a.dial(b_id)
    try:
        member = Member(b_id, channel.gossip())
        await member.open()
        hand_made = Admission(node_id=z.node_id, certificate=z.cert_der, name="z", admitted_ms=0)
        assert not (await member.offer(envelope(b_id.node_id, hand_made, b_id))).refused
        # z re-admits b as "tower", and claims "tower" for itself: both are z's own records.
        b_as_tower = Admission(node_id=b_id.node_id, certificate=b_id.cert_der, name="tower")
        z_as_tower = Admission(node_id=z.node_id, certificate=z.cert_der, name="tower")
        for seq, record in enumerate((b_as_tower, z_as_tower), start=1):
            ack = await member.offer(envelope(z.node_id, record, z, seq=seq))
            assert not ack.refused, ack.reason
        members = local.membership.members
        assert members[b_id.node_id].name == "mallory"
        assert members[z.node_id].name == f"tower~{z.node_id.short()}"
        assert [m.node_id for m in local.membership.by_name("tower")] == [a.daemon.node_id]
        assert local.member_named(f"tower~{z.node_id.short()}") == z.node_id
        names = [v.name for v in local.member_views()]
        assert sorted(names) == sorted(["tower", "mallory", f"tower~{z.node_id.short()}"])
        member.stream.close()
    finally:
        await channel.close()


async def test_a_member_claiming_another_members_name_cannot_put_files_under_it(
    nodes: Make, tmp_path: Path
) -> None:
    """mallory got itself admitted as "tower" and claims that name: what it lends to laptop
    lands in its own lender folder, seen as tower~ID7, never under Borrowed/tower, which
    holds only what the real tower lends."""
    tower, laptop, mallory = nodes("tower"), nodes("laptop"), nodes("mallory")
    mesh_of(tower, laptop)
    with mallory.local() as node:
        node.rename("tower")
        cert = node.identity.cert_der
        mallory_id = node.node_id
    with tower.local() as node:  # an admission naming it "tower", as by hand
        node.replica.admit(cert, "tower", 1)
        records = list(node.records.membership())
        root = node.replica.membership.root
    with mallory.local() as node:
        node.join_mesh(root, records)  # and it claims "tower" itself
    await start(tower, tmp_path)
    await start(mallory, tmp_path, static_peers=(tower.address,))
    await start(laptop, tmp_path, static_peers=(tower.address, mallory.address))
    shown = f"tower~{mallory_id.short()}"
    for name, handle in (("mallory", mallory), ("tower", tower)):
        folder = await folder_with(tmp_path, f"{name}-files", {f"from-{name}.txt": name.encode()})
        await share_and_scan(handle, folder, "Docs")
        line = await lend(handle, f"Docs/from-{name}.txt", "laptop")
        await until_phase(laptop, line.id, "held")
    borrowed = tmp_path / "laptop-borrowed"
    assert sorted(p.name for p in (borrowed / "tower").rglob("*.txt")) == ["from-tower.txt"]
    assert (borrowed / shown / "Docs" / "from-mallory.txt").read_bytes() == b"mallory"
    assert (borrowed / "tower").is_symlink() and (borrowed / shown).is_symlink()
    real = {p.name for p in borrowed.iterdir() if p.is_dir() and not p.is_symlink()}
    assert real == {".mesh-staging", lender_folder(mallory_id), lender_folder(root)}
