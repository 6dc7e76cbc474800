"""Plumtree between real daemons on 127.0.0.1 (core/broadcast.py, node/plumtree.py): nine
members over partial views, several of them writing. Duplicate deliveries prune links to
digests, what each writes still reaches every other member, and once a member stops (a
tree parent of some), what the others write after reaches all that are left, down the
trees' lazy links grafted back where need be."""

from __future__ import annotations

from pathlib import Path

from mesh.node.daemon import Daemon
from tests.node.conftest import NodeHandle, mesh_of
from tests.node.test_gossip import Make, browse, running, share_and_scan
from tests.node.test_partial_view import describe, online, until

SIZE = 9


async def test_records_spread_down_pruned_trees_and_around_a_stopped_member(
    nodes: Make, tmp_path: Path
) -> None:
    handles: list[NodeHandle] = [nodes(f"n{i}") for i in range(SIZE)]
    root, *others = handles
    mesh_of(root, *others)
    await root.start()
    for h in others:
        await h.start(static_peers=(root.address,))
    daemons = [running(h) for h in handles]
    ids = {d.node_id for d in daemons}

    async def all_online() -> bool:
        return all(online(d) == ids - {d.node_id} for d in daemons)

    try:
        await until(all_online, 30, "every member online everywhere")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{describe(daemons)}") from None

    async def share(writer: NodeHandle, name: str, among: list[NodeHandle]) -> None:
        folder = tmp_path / f"{writer.name}-{name}"
        folder.mkdir()
        (folder / name).write_bytes(name.encode() * 100)
        await share_and_scan(writer, folder, name=name.replace(".", "-"))

        async def everyone_lists_it() -> bool:
            for h in among:
                if not any(e.entry.path == name for e in await browse(h, writer.name)):
                    return False
            return True

        await until(everyone_lists_it, 20, f"{name} of {writer.name} everywhere")

    for k, writer in enumerate(handles[:6]):
        await share(writer, f"f{k}.txt", handles)

    def prunes(among: list[Daemon]) -> int:
        return sum(s.tree.prunes_sent for d in among for s in d.sessions.all())

    def lazy_links(among: list[Daemon]) -> int:
        return sum(s.tree.link.lazy for d in among for s in d.sessions.all())

    # Duplicates pruned some links: records no longer cross every link.
    assert prunes(daemons) > 0 and lazy_links(daemons) > 0, describe(daemons)

    # A member stops; what the others write reaches all that are left.
    gone = handles[1]
    await gone.halt()
    left = [h for h in handles if h is not gone]
    for k, writer in enumerate(left[:4]):
        await share(writer, f"g{k}.txt", left)
