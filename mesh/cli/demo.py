"""The one-machine demo: three real nodes (tower, laptop, desk) as `mesh up` child processes
with homes in one temporary folder, on 127.0.0.1 with mDNS off, so nothing reaches the
network. Every step runs the `mesh` command a person would type, shown with the node it
runs on, so the demo doubles as a tutorial.

Clean-up is the point of this module's shape: every child is started here and recorded by
its process id, and `close()` stops exactly those (SIGINT, then SIGKILL after a grace
period) and removes the folder, whatever step was interrupted.

A Ctrl-C only raises a flag (`interrupt()`); the demo looks at it wherever it waits, and
stops there. A KeyboardInterrupt raised at an arbitrary point could land inside a gRPC call
to a node's control socket, and a channel left half-closed by it makes the interpreter hang
at exit (seen: `_ChannelCallState.__del__` waiting forever); every wait here is short, so the
flag is seen within a fifth of a second.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mesh.cli.context import CliContext
from mesh.cli.output import human_size
from mesh.core.errors import LocalError
from mesh.transport.control_client import ControlClient

NAMES = ("tower", "laptop", "desk")
LIBRARY = "Films"
BIG_FILE = "holiday.mkv"
_STEP_TIMEOUT_S = 120.0
# A Ctrl-C must end the demo within 2 s: a node gets 1 s to stop cleanly (it needs well
# under that), a command the demo runs half a second; then SIGKILL, as the folder goes anyway.
_STOP_GRACE_S = 1.0
_COMMAND_GRACE_S = 0.5
_POLL_S = 0.1
_JOIN = re.compile(r"mesh join (\S+) --at (\S+)")
_SMALL_FILES = {
    "README.txt": "Films lent by the tower, shared by `mesh demo`.\n",
    "posters/heat.txt": "Heat (1995): a poster that is only text.\n",
    "subtitles/holiday.en.srt": "1\n00:00:01,000 --> 00:00:03,000\nHello from the tower.\n",
}


@dataclass
class DemoNode:
    name: str
    home: Path
    daemon: subprocess.Popen[bytes] | None = None

    @property
    def borrowed(self) -> Path:
        return self.home.parent / f"{self.name}-borrowed"

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mesh", "--home", str(self.home), *args]

    @contextlib.contextmanager
    def client(self) -> Iterator[ControlClient]:
        with CliContext(home_path=self.home).daemon() as client:
            yield client


@dataclass
class Demo:
    root: Path
    big_size: int
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    nodes: list[DemoNode] = field(init=False)
    interrupted: bool = field(default=False, init=False)
    _step: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.nodes = [DemoNode(name, self.root / name) for name in NAMES]

    # --- interruption -------------------------------------------------------------------

    def interrupt(self) -> None:
        """Ask the demo to stop at its next wait; safe to call from a signal handler."""
        self.interrupted = True

    def check(self) -> None:
        if self.interrupted:
            raise KeyboardInterrupt

    def pause(self, seconds: float) -> None:
        """Sleep, but stop as soon as the demo is interrupted."""
        deadline = time.monotonic() + seconds
        while True:
            self.check()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, _POLL_S))

    # --- narration ----------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.check()
        self._step += 1
        print(f"\n[{self._step}] {text}", file=self.out, flush=True)

    def run(self, node: DemoNode, *args: str, live: bool = False, only: str = "") -> str:
        """Run `mesh ARGS` on a node as a person would, showing the command and its output
        (the lines that hold `only`, if given).

        With `live`, the command's stderr is this terminal, so its progress bar shows.
        """
        print(f"  {node.name}$ mesh {shlex.join(args)}", file=self.out, flush=True)
        returncode, stdout, stderr = self._command(
            node, args, stderr=None if live else subprocess.PIPE
        )
        for line in stdout.splitlines():
            if not line.strip() or only not in line:
                continue
            print(f"    {line}", file=self.out, flush=True)
        if returncode != 0:
            why = (stderr or "").strip().splitlines()
            raise LocalError(
                f"the demo stopped: `mesh {shlex.join(args)}` on {node.name} failed"
                + (f": {why[-1]}" if why else "")
            )
        return stdout

    def quietly(self, node: DemoNode, *args: str) -> None:
        returncode, _, stderr = self._command(node, args, stderr=subprocess.PIPE)
        self.check()
        if returncode != 0:
            raise LocalError(f"the demo stopped: `mesh {shlex.join(args)}` failed: {stderr}")

    def _command(
        self, node: DemoNode, args: tuple[str, ...], stderr: int | None
    ) -> tuple[int, str, str | None]:
        """Run `mesh ARGS` to its end, or end it if the demo is interrupted.

        The command runs in a process group of its own, so a Ctrl-C in the terminal reaches
        the demo only: a command interrupted at random (say, while Python imports its
        modules) could print a traceback; the demo ends it with SIGTERM instead, which a
        command does not catch and which leaves nothing to clean up that the demo keeps.
        """
        proc = subprocess.Popen(
            node.argv(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=self._env(),
            process_group=0,
        )
        deadline = time.monotonic() + _STEP_TIMEOUT_S
        with proc:
            while True:
                try:
                    # communicate() may be called again after its timeout; nothing is lost.
                    out, err = proc.communicate(timeout=_POLL_S)
                    return proc.returncode, out, err
                except subprocess.TimeoutExpired:
                    pass
                if self.interrupted or time.monotonic() > deadline:
                    _stop(proc, _COMMAND_GRACE_S, signal.SIGTERM)
                    self.check()
                    raise LocalError(
                        f"the demo stopped: `mesh {shlex.join(args)}` on {node.name} "
                        f"took over {_STEP_TIMEOUT_S:.0f} s"
                    )

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "MESH_HOME"}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    # --- the steps ----------------------------------------------------------------------

    def play(self) -> None:
        tower, laptop, desk = self.nodes
        self.say(f"Make three nodes on this machine ({', '.join(NAMES)}), homes in {self.root}")
        for node in self.nodes:
            self.quietly(node, "init", "--name", node.name)
            self.quietly(node, "config", "set", "borrowing.folder", str(node.borrowed))
            # The demo's few MB must not be refused for a nearly full disk's reserve.
            self.quietly(node, "config", "set", "borrowing.reserve", "0")

        self.say("Start them on 127.0.0.1 with mDNS off: nothing leaves this machine")
        for node in self.nodes:
            self.start(node)
        print(
            "  each runs: mesh up --listen 127.0.0.1 --no-mdns --port 0 "
            f"(pids {', '.join(str(n.daemon.pid) for n in self.nodes if n.daemon)})",
            file=self.out,
        )
        for node in self.nodes:
            self.until(f"{node.name} to run", lambda n=node: self._answers(n))  # type: ignore[misc]

        self.say("The laptop and the desk join the tower's mesh with one-time codes")
        for joiner in (laptop, desk):
            found = _JOIN.search(self.run(tower, "invite", only="mesh join"))
            if found is None:
                raise LocalError("the demo stopped: `mesh invite` printed no code")
            self.run(joiner, "join", found.group(1), "--at", found.group(2))
        self.until("every node to see the others online", self._all_online)

        self.say(f"The tower shares a folder: a few small files and {BIG_FILE}")
        folder = self.make_library()
        self.run(tower, "share", str(folder), "--as", LIBRARY)

        self.say("The desk sees the tower's files by gossip, without asking it")
        self.until("the desk to learn the tower's index", lambda: self._knows(desk))
        self.run(desk, "find", "*.mkv")

        self.say("The tower lends the big file to the laptop; it pulls and verifies every chunk")
        out = self.run(
            tower, "lend", f"{LIBRARY}/{BIG_FILE}", "--to", laptop.name, "--wait", live=True
        )
        loan = re.search(r"loan (\w+)", out)
        loan_id = loan.group(1) if loan else ""

        self.say("The ledger, as the desk sees it")
        self.until("the desk to see the loan held", lambda: self._phase(desk, loan_id) == "held")
        self.run(desk, "loans")
        copy = laptop.borrowed / tower.name / LIBRARY / BIG_FILE
        print(f"  the laptop's copy: {copy} (read-only)", file=self.out)

        self.say("The tower recalls it: the laptop removes its copy")
        self.run(tower, "recall", BIG_FILE)
        self.until("the laptop's copy to go", lambda: not copy.exists())
        print(f"  {copy} is gone", file=self.out)
        self.until("the recall to reach the ledger", lambda: self._phase(tower, loan_id) != "held")
        self.run(tower, "loans")

    def make_library(self) -> Path:
        folder = self.root / "films"
        for rel, text in _SMALL_FILES.items():
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        # Every 1 MiB chunk differs (a counter in front), as in a real film.
        block = bytearray(os.urandom(1 << 20))
        with (folder / BIG_FILE).open("wb") as out:
            written, n = 0, 0
            while written < self.big_size:
                self.check()
                block[:8] = n.to_bytes(8, "big")
                piece = block[: self.big_size - written]
                out.write(piece)
                written += len(piece)
                n += 1
        print(f"  made {folder} ({human_size(self.big_size)} in {BIG_FILE})", file=self.out)
        return folder

    # --- processes ----------------------------------------------------------------------

    def start(self, node: DemoNode) -> None:
        log = (self.root / f"{node.name}.log").open("wb")
        with log:
            # A session of its own: a Ctrl-C in the terminal reaches the demo only, which
            # then stops each node once, in order, instead of every process at once.
            node.daemon = subprocess.Popen(
                node.argv("up", "--listen", "127.0.0.1", "--no-mdns", "--port", "0"),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=self._env(),
                start_new_session=True,
            )

    def close(self) -> None:
        """Stop every node this demo started and remove its folder; safe to call twice."""
        running = [n.daemon for n in self.nodes if n.daemon and n.daemon.poll() is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + _STOP_GRACE_S
        for proc in running:
            _stop(proc, max(0.0, deadline - time.monotonic()), None)
        shutil.rmtree(self.root, ignore_errors=True)

    def logs(self, lines: int = 8) -> str:
        """The end of each node's own log, to explain a failed step before the folder goes."""
        parts = []
        for node in self.nodes:
            log = self.root / f"{node.name}.log"
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                parts.append("\n".join([f"--- the end of {node.name}'s log", *tail]))
        return "\n".join(parts)

    # --- waiting on the mesh ------------------------------------------------------------

    def until(self, what: str, check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + _STEP_TIMEOUT_S
        while not check():
            for node in self.nodes:
                if node.daemon is not None and node.daemon.poll() is not None:
                    raise LocalError(
                        f"the demo stopped: {node.name}'s `mesh up` exited "
                        f"({node.daemon.returncode}) while waiting for {what}"
                    )
            if time.monotonic() > deadline:
                raise LocalError(f"the demo stopped: no {what} in {_STEP_TIMEOUT_S:.0f} s")
            self.pause(_POLL_S)

    def _answers(self, node: DemoNode) -> bool:
        try:
            with node.client():
                return True
        except LocalError:
            return False

    def _all_online(self) -> bool:
        for node in self.nodes:
            with node.client() as client:
                _, members = client.members()
            if len(members) != len(self.nodes) or not all(m.online or m.is_self for m in members):
                return False
        return True

    def _knows(self, node: DemoNode) -> bool:
        with node.client() as client:
            return any(e.entry.path == BIG_FILE for e in client.browse(NAMES[0]))

    def _phase(self, node: DemoNode, loan_id: str) -> str:
        with node.client() as client:
            return next((x.phase for x in client.loans() if x.id == loan_id), "")


def _stop(proc: subprocess.Popen[Any], grace: float, sig: signal.Signals | None) -> None:
    """Send `sig` (None: it was sent already), wait up to `grace`, then SIGKILL."""
    if proc.poll() is None and sig is not None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
