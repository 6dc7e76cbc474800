"""The acceptance check, as a user would run it: two `mesh up` processes in a private
network namespace; a file dropped into a's shared folder shows in b's `mesh ls --mesh`
within 2 s of the write, with nobody running `mesh scan`."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.cli.conftest import Daemon, Mesh
from tests.lan.netns import MakeLan

CODE = re.compile(r"mesh join (\S+) --at (\S+)")
pytestmark = pytest.mark.netns


def test_a_dropped_file_shows_in_the_other_nodes_ls_mesh_within_2_s(
    tmp_path: Path, make_lan: MakeLan
) -> None:
    netns = make_lan(1).nodes[0].netns
    a, b = Mesh(home=tmp_path / "a"), Mesh(home=tmp_path / "b")
    daemons: list[Daemon] = []
    try:
        for m, name in ((a, "a"), (b, "b")):
            m.run("init", "--name", name)
            daemons.append(Daemon(m, netns=netns))
            daemons[-1].wait_running()
        found = CODE.search(a.run("invite").stdout)
        assert found
        b.run("join", found.group(1), "--at", found.group(2))
        folder = tmp_path / "shared"
        folder.mkdir()
        (folder / "first").write_bytes(b"first")
        a.run("share", str(folder), "--as", "lib")

        def b_lists(path: str) -> bool:
            listed = json.loads(b.run("ls", "--mesh", "--json").stdout)
            return any(e["node"] == "a" and e["path"] == path for e in listed)

        deadline = time.monotonic() + 30
        while not b_lists("first"):  # joined, connected and caught up
            assert time.monotonic() < deadline, "b never listed a's library"
            time.sleep(0.1)

        (folder / "dropped.mkv").write_bytes(b"\x00" * 300_000)
        written = time.monotonic()
        while not b_lists("dropped.mkv"):
            assert time.monotonic() - written < 2.0, "not in b's `mesh ls --mesh` within 2 s"
        took = time.monotonic() - written
        assert took < 2.0, f"took {took:.2f} s"
    finally:
        for d in daemons:
            if d.proc.poll() is None:
                d.stop()
