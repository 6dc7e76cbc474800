"""Real `mesh up` processes on a simulated LAN: one node per namespace, mDNS on.

Every command of a node, the CLI as much as the daemon, runs inside that node's namespace, so
nothing a test does multicasts on the machine's own network (a `mesh join` without `--at`
browses from the namespace even if the daemon is not running). Conditions that are polled
ask the daemons over their control sockets from the test process: a CLI run costs half a
second of CPU, and ten of those per poll would slow the nodes being measured."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from mesh import config
from mesh.home import Home
from mesh.node.local import LocalNode
from tests.lan.daemon import DaemonProcess
from tests.lan.daemon import until as poll_until
from tests.lan.netns import NetNode

T = TypeVar("T")
CODE = re.compile(r"mesh join (\S+) --at (\S+)")


class LanPeer(DaemonProcess):
    """One computer of the LAN: a node namespace, a home, and its `mesh up` when running."""

    def __init__(self, host: NetNode, tmp: Path, name: str, *up_args: str) -> None:
        self.host = host
        self.name = name
        self.home = tmp / name
        self.up_args = up_args
        self.proc: subprocess.Popen[str] | None = None
        self.log = tmp / f"{name}.log"  # a file, not a pipe: a full pipe would stall the node

    def env(self) -> dict[str, str]:
        return {**os.environ, "MESH_HOME": str(self.home), "PYTHONUNBUFFERED": "1"}

    def argv(self, *args: str) -> list[str]:
        return self.host.exec_args([sys.executable, "-m", "mesh", *args])

    def cli(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.argv(*args), env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        if check and proc.returncode != 0:
            raise AssertionError(f"{self.name}: mesh {' '.join(args)} failed: {proc.stderr}")
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def configure(self, key: str, value: str) -> None:
        """`mesh config set KEY VALUE` (before the daemon starts), done in this process."""
        path = Home.resolve(self.home).config_file
        config.save(config.with_value(config.load(path), key, value), path)

    def start(self) -> None:
        """Start `mesh up` (default port, every address, mDNS on) without waiting."""
        assert self.proc is None or self.proc.poll() is not None
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(
                self.argv("up", *self.up_args),
                env=self.env(),
                stdout=subprocess.DEVNULL,
                stderr=log,
                text=True,
            )
        self.host.lan._track(self.proc)  # the LAN's teardown stops it whatever happens

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the daemon (SIGKILL: no goodbye at all)."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(15)
        if sig != signal.SIGKILL:
            assert self.proc.returncode == 0, self.log.read_text()

    def control_socket(self) -> Path:
        return Home.resolve(self.home).control_socket

    def online(self) -> dict[str, str]:
        """The members this node has a session with, and the address of each."""
        with self.control() as control:
            _, views = control.members()
        return {v.name: v.address for v in views if v.online and not v.is_self}

    def invite(self) -> str:
        found = CODE.search(self.cli("invite").stdout)
        assert found
        return found.group(1)


def until(what: str, check: Callable[[], T], timeout: float) -> T:
    """`tests.lan.daemon.until`, looking every 0.1 s: a look asks every node's daemon, and
    the nodes of these tests are being measured."""
    return poll_until(what, check, timeout, every=0.1)


def all_online(peers: Sequence[LanPeer]) -> bool:
    """Whether every node has a session with every other."""
    names = {p.name for p in peers}
    return all(set(p.online()) == names - {p.name} for p in peers)


def sees_everything(peers: Sequence[LanPeer]) -> bool:
    """Whether every node knows every member and lists every node's `<name>.txt`."""
    names = {p.name for p in peers}
    wanted = {(n, f"{n}.txt") for n in names}
    for p in peers:
        with p.control() as control:
            _, views = control.members()
            listing = {(e.node, e.entry.path) for e in control.browse()}
        if {v.name for v in views} != names or not listing >= wanted:
            return False
    return True


def init_all(peers: Sequence[LanPeer]) -> None:
    """`mesh init` every node, done in this process the way the command does it: a Python
    start per node cost half a second of CPU, times four nodes a round (the command itself
    is tested in tests/cli)."""
    for p in peers:
        node, _ = LocalNode.init(Home.resolve(p.home), p.name)
        node.close()


def up_all(peers: Sequence[LanPeer]) -> float:
    """Start every node's daemon at once, wait until all run; when they were started."""
    began = time.monotonic()
    for p in peers:
        p.start()
    for p in peers:
        until(f"{p.name} to run", p.running, 30)
    return began


def dump_logs(peers: Sequence[LanPeer]) -> None:
    """Stop the daemons and print their logs (pytest shows them when the test failed)."""
    running = [p.proc for p in peers if p.proc is not None and p.proc.poll() is None]
    for proc in running:
        proc.terminate()
    for proc in running:
        proc.wait(15)
    for peer in peers:
        if peer.log.exists():
            print(f"--- {peer.name}'s log\n{peer.log.read_text()}")
