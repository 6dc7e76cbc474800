"""Lending from the command line, as a person would: three `mesh up` processes (tower,
laptop, desk) in one private network namespace."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import queue
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import xxhash

from mesh import config
from mesh.home import Home
from mesh.node.local import LocalNode
from mesh.transport.control_client import ControlClient
from tests.cli.conftest import Daemon, Mesh
from tests.faults.harness import write_file
from tests.lan.daemon import until as lan_until
from tests.lan.netns import MakeLan
from tests.node.conftest import assert_no_stale_staging

CODE = re.compile(r"mesh join (\S+) --at (\S+)")
MB = 1000 * 1000
pytestmark = pytest.mark.netns


class Node:
    def __init__(self, tmp: Path, name: str, netns: str) -> None:
        self.name = name
        self.mesh = Mesh(home=tmp / name)
        self.netns = netns
        self.borrowed = tmp / f"{name}-borrowed"
        self.daemon: Daemon | None = None
        self.logs: list[str] = []
        # `mesh init` and `mesh config set`, done in this process (the commands are tested
        # in test_local_commands.py): a Python start each is half a second of CPU.
        home = Home.resolve(self.mesh.home)
        node, _ = LocalNode.init(home, name)
        node.close()
        settings = config.with_value(
            config.load(home.config_file), "borrowing.folder", str(self.borrowed)
        )
        config.save(config.with_value(settings, "borrowing.reserve", "0"), home.config_file)

    def up(self) -> None:
        self.daemon = Daemon(self.mesh, netns=self.netns)
        self.daemon.wait_running()

    def down(self, sig: int = signal.SIGINT) -> None:
        assert self.daemon is not None
        if sig == signal.SIGKILL:
            self.daemon.proc.kill()
            _, err = self.daemon.proc.communicate(timeout=10)
        else:
            _, err, _ = self.daemon.stop(sig)
        self.logs.append(err)
        self.daemon = None

    def run(self, *args: str, check: bool = True) -> Any:
        return self.mesh.run(*args, check=check)

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def loan(self, loan_id: str) -> dict[str, Any]:
        found = [x for x in self.json("loans") if x["id"] == loan_id]
        return found[0] if found else {}

    def phase(self, loan_id: str) -> str:
        """The loan's state as `mesh loans` shows it, asked over the control socket from this
        process: what the tests poll for (a `mesh loans` per look, every 0.2 s through a
        300 MB pull, kept a core busy beside the pull)."""
        control = ControlClient(Home.resolve(self.mesh.home).control_socket)
        try:
            return next((x.phase for x in control.loans() if x.id == loan_id), "")
        finally:
            control.close()


@pytest.fixture
def three(tmp_path: Path, make_lan: MakeLan) -> Iterator[tuple[Node, Node, Node]]:
    netns = make_lan(1).nodes[0].netns
    nodes = [Node(tmp_path, name, netns) for name in ("tower", "laptop", "desk")]
    for node in nodes:
        node.up()
    tower, laptop, desk = nodes
    for joiner in (laptop, desk):
        found = CODE.search(tower.run("invite").stdout)
        assert found
        joiner.run("join", found.group(1), "--at", found.group(2))
    yield tower, laptop, desk
    for node in nodes:
        if node.daemon is not None and node.daemon.proc.poll() is None:
            node.down()
        print(f"--- {node.name}'s log\n" + "\n".join(node.logs))
    for node in nodes:  # no ended loan left anything staged
        assert_no_stale_staging(node.name, Home.resolve(node.mesh.home), node.borrowed)


# Each poll runs a `mesh` command: every 0.2 s is often enough.
until = functools.partial(lan_until, every=0.2)


def loan_id(out: str) -> str:
    found = re.search(r"loan (\w+)", out)
    assert found, out
    return found.group(1)


@pytest.mark.slow  # started first (tests/conftest.py)
def test_lending_end_to_end(three: tuple[Node, Node, Node], tmp_path: Path) -> None:
    tower, laptop, desk = three
    movies = tmp_path / "movies"
    movies.mkdir()
    heat = write_file(movies / "heat.mkv", 300 * MB)
    (movies / "notes.txt").write_text("first")
    tower.run("share", str(movies), "--as", "Movies")

    # Lent while the laptop is down: delivered when it comes up.
    laptop.down()
    first = loan_id(tower.run("lend", str(movies / "heat.mkv"), "--to", "laptop").stdout)
    until("desk to see the loan", lambda: desk.phase(first) == "waiting for the borrower")
    laptop.up()
    until("the copy to be held", lambda: desk.phase(first) == "held", timeout=120)
    assert desk.loan(first)["state"] == "held"  # and `mesh loans --json` says so
    copy = laptop.borrowed / "tower" / "Movies" / "heat.mkv"
    assert xxhash.xxh3_128_hexdigest(copy.read_bytes()) == heat
    assert not copy.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)

    # Killed halfway through a loan: tests/faults/test_borrower_killed.py.

    # A recall removes the copy.
    tower.run("recall", "heat.mkv")
    until("the recalled copy to go", lambda: not copy.exists())

    # A loan --for 5s removes itself.
    short = loan_id(tower.run("lend", "Movies/notes.txt", "--to", "desk", "--for", "5s").stdout)
    notes_on_desk = desk.borrowed / "tower" / "Movies" / "notes.txt"
    until("the short loan to arrive", notes_on_desk.exists)
    until("the short loan to end", lambda: not notes_on_desk.exists(), timeout=20)
    until("the tower to see it ended", lambda: tower.phase(short) == "ended")
    assert tower.loan(short)["state"] == "ended"

    # The lent file is edited: the borrower ends up with the new version.
    waited = tower.run("lend", "Movies/notes.txt", "--to", "laptop", "--wait")
    assert "offline?" not in waited.stderr  # the laptop is online: no guess that it is not
    notes = laptop.borrowed / "tower" / "Movies" / "notes.txt"
    assert notes.read_text() == "first"
    (movies / "notes.txt").write_text("second, edited")
    tower.run("scan", "Movies")
    until("the new version", lambda: notes.exists() and notes.read_text() == "second, edited")

    # A borrow request is granted and fetched.
    out = desk.run("borrow", "tower:Movies/notes.txt").stdout
    assert "asked tower" in out
    until(
        "the borrowed file",
        lambda: notes_on_desk.exists() and notes_on_desk.read_text() == "second, edited",
    )
    assert [r["answer"] for r in desk.json("requests")] == ["granted"]


@pytest.mark.slow  # started first (tests/conftest.py)
def test_lend_wait_on_an_offline_borrower_says_so_and_ctrl_c_keeps_the_loan(
    three: tuple[Node, Node, Node], tmp_path: Path
) -> None:
    tower, laptop, _desk = three
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("a")
    tower.run("share", str(docs), "--as", "Docs")
    laptop.down()
    env = {**os.environ, "MESH_HOME": str(tower.mesh.home), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mesh", "lend", "Docs/a.txt", "--to", "laptop", "--wait"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    told: queue.SimpleQueue[str] = queue.SimpleQueue()
    assert proc.stderr is not None

    def read_stderr() -> None:
        for line in proc.stderr or ():
            told.put(line)

    reader = threading.Thread(target=read_stderr)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        lines: list[str] = []
        while not any("waiting for laptop (offline?)" in line for line in lines):
            assert time.monotonic() < deadline, f"no word of the offline borrower: {lines}"
            with contextlib.suppress(queue.Empty):
                lines.append(told.get(timeout=0.5))
        proc.send_signal(signal.SIGINT)
        out, rest = proc.communicate(timeout=10)  # reads stderr too, beside the reader
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=10)
    while not told.empty():
        lines.append(told.get())
    lines.extend(rest.splitlines())
    assert proc.returncode == 130
    waiting = [line for line in lines if "waiting for laptop" in line]
    assert "offline?" not in waiting[0], waiting  # said only after seconds of silence
    loan = loan_id(out)
    assert any(f"stopped waiting; loan {loan} stays" in line for line in lines)
    assert tower.loan(loan)["state"] == "waiting for the borrower"
