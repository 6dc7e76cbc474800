"""What the test harnesses that run nodes as processes share: polling for a condition, and
a node's daemon process asked over its control socket (a file, so it is reachable from
outside the node's namespace)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from mesh.core.errors import MeshError
from mesh.transport.control_client import ControlClient

T = TypeVar("T")


def until(what: str, check: Callable[[], T], timeout: float = 60, every: float = 0.05) -> T:
    """Poll `check` every `every` s until it returns something true; fail naming `what`
    after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(every)


class DaemonProcess:
    """A node's daemon as a child process; subclasses say how it starts."""

    name: str
    log: Path  # its stderr: a file, not a pipe, as a full pipe would stall the node
    proc: subprocess.Popen[str] | None

    def control_socket(self) -> Path:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def control(self) -> Iterator[ControlClient]:
        client = ControlClient(self.control_socket())
        try:
            yield client
        finally:
            client.close()

    def running(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"{self.name}'s daemon exited:\n{self.log.read_text()}")
        # Starting, its control socket is missing, stale or not answering yet: not an error.
        try:
            with self.control() as control:
                control.ping(0.2)
                return control.status().running
        except MeshError:
            return False

    def up(self) -> None:
        self.start()
        until(f"{self.name} to run", self.running, 20)
