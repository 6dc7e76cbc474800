"""The mesh seen from the command line: three `mesh up` processes in one private network
namespace, where a knows only b and b knows only c (each joined through the other)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import xxhash

from mesh.home import Home
from mesh.node.local import LocalNode
from tests.cli.conftest import Daemon, Mesh
from tests.lan.daemon import until as lan_until
from tests.lan.netns import Lan, MakeLan

CODE = re.compile(r"mesh join (\S+) --at (\S+)")
pytestmark = pytest.mark.netns


class Node:
    def __init__(self, tmp: Path, name: str, netns: str) -> None:
        self.name = name
        self.mesh = Mesh(home=tmp / name)
        self.netns = netns
        self.daemon: Daemon | None = None
        # `mesh init`, done in this process (the command is tested in
        # test_local_commands.py): a Python start each is half a second of CPU.
        LocalNode.init(Home.resolve(self.mesh.home), name)[0].close()

    def up(self) -> None:
        self.daemon = Daemon(self.mesh, netns=self.netns)
        self.daemon.wait_running()

    def down(self) -> None:
        assert self.daemon is not None
        code, err, _ = self.daemon.stop()
        assert code == 0, err

    def run(self, *args: str, check: bool = True) -> Any:
        return self.mesh.run(*args, check=check)

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def port(self) -> int:
        return int(self.json("status")["port"])


@pytest.fixture
def trio(tmp_path: Path, make_lan: MakeLan) -> Iterator[tuple[Node, Node, Node]]:
    lan: Lan = make_lan(1)
    netns = lan.nodes[0].netns
    nodes = [Node(tmp_path, name, netns) for name in ("a", "b", "c")]
    for node in nodes:
        node.up()
    a, b, c = nodes
    join(b, c)  # b knows c: it joined through c
    join(a, b)  # a knows b
    yield a, b, c
    for node in nodes:
        if node.daemon is not None and node.daemon.proc.poll() is None:
            _, err, _ = node.daemon.stop()
            print(f"--- {node.name}'s log\n{err}")  # shown when the test failed


def join(joiner: Node, inviter: Node) -> None:
    found = CODE.search(inviter.run("invite").stdout)
    assert found
    joiner.run("join", found.group(1), "--at", found.group(2))


# Each poll runs a `mesh` command: every 0.2 s is often enough.
until = functools.partial(lan_until, timeout=20, every=0.2)


def entry(node: Node, who: str, path: str, *flags: str) -> dict[str, Any] | None:
    listing = node.json("ls", *flags)
    return next((e for e in listing if e["node"] == who and e["path"] == path), None)


def test_the_mesh_converges_through_a_chain(trio: tuple[Node, Node, Node], tmp_path: Path) -> None:
    a, b, c = trio
    movies = tmp_path / "c-movies"
    movies.mkdir()
    (movies / "heat.mkv").write_bytes(b"\x01" * 500_000)
    c.run("share", str(movies), "--as", "Movies")
    digest = xxhash.xxh3_128_hexdigest(b"\x01" * 500_000)

    # a sees c's file, with its hash, in the replicated index; and c as a member.
    found = until("c's file on a", lambda: entry(a, "c", "heat.mkv", "--mesh"))
    assert found["hash"] == digest and found["library"] == "Movies"
    assert {m["name"] for m in a.json("members")} == {"a", "b", "c"}
    hits = a.json("find", "heat")
    assert [(h["node"], h["path"]) for h in hits] == [("c", "heat.mkv")]
    assert a.json("find", digest[:12])[0]["path"] == "heat.mkv"
    assert a.json("ls", "--node", "c")[0]["hash"] == digest

    # Everyone ends up online with everyone, and in sync.
    peers: list[dict[str, Any]] = []

    def in_sync() -> bool:
        peers[:] = a.json("peers")
        return len(peers) == 2 and all(p["online"] and p["unacked"] == 0 for p in peers)

    try:
        until("a in sync with b and c", in_sync)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; a's peers: {peers}") from None

    # c goes away; a file changes on b; c comes back and catches up.
    c.down()
    notes = tmp_path / "b-notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("first")
    b.run("share", str(notes), "--as", "Notes")
    until("b's file on a", lambda: entry(a, "b", "todo.txt", "--mesh"))
    (notes / "todo.txt").write_text("second")
    b.run("scan", "Notes")
    assert not [p for p in a.json("peers") if p["name"] == "c" and p["online"]]
    c.up()
    second = xxhash.xxh3_128_hexdigest(b"second")
    until(
        "the change on c",
        lambda: (e := entry(c, "b", "todo.txt", "--node", "b")) and e["hash"] == second,
    )


def test_peer_add_checks_membership_and_saves(
    trio: tuple[Node, Node, Node], tmp_path: Path
) -> None:
    a, _, c = trio
    out = a.run("peer", "add", f"127.0.0.1:{c.port()}")
    assert "is c (" in out.stdout
    assert f"127.0.0.1:{c.port()}" in a.run("peer", "list").stdout
    assert "already" in a.run("peer", "add", f"127.0.0.1:{c.port()}").stderr
    # An address where a node outside the mesh answers is refused and not saved.
    stranger = Node(tmp_path, "stranger", c.netns)
    stranger.up()
    try:
        refused = a.run("peer", "add", f"127.0.0.1:{stranger.port()}", check=False)
        assert refused.returncode != 0
        assert "not a member of this mesh" in refused.stderr
        assert str(stranger.port()) not in a.run("peer", "list").stdout
    finally:
        stranger.down()
    a.run("peer", "remove", f"127.0.0.1:{c.port()}")
    assert a.run("peer", "list").stdout.strip() == ""
