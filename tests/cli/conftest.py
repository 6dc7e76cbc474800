"""Running the real `mesh` command in a subprocess, against a temporary home."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mesh.core.errors import MeshError
from mesh.home import Home
from mesh.transport.control_client import ControlClient

# The environment a user's shell gives mesh: not what importing mesh in this process set
# (mesh.transport turns gRPC's core logging to ERROR for library use; the CLI silences it).
_USER_ENV = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}


@dataclass
class Mesh:
    home: Path
    user: str | None = None

    def run(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        env = {**_USER_ENV, "MESH_HOME": str(self.home), "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "mesh", *args]
        if self.user is not None:
            cmd = [
                "setpriv",
                f"--reuid={self.user}",
                f"--regid={self.user}",
                "--clear-groups",
                *cmd,
            ]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        assert "Traceback" not in proc.stderr, proc.stderr
        if check and proc.returncode != 0:
            raise AssertionError(f"mesh {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc


@pytest.fixture
def mesh(tmp_path: Path) -> Mesh:
    return Mesh(home=tmp_path / "home")


class Daemon:
    """`mesh up` as a child process on 127.0.0.1 (no mDNS), stopped at the end."""

    def __init__(self, mesh: Mesh, *args: str, netns: str | None = None) -> None:
        env = {**_USER_ENV, "MESH_HOME": str(mesh.home), "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "mesh", "up", "--no-mdns", "--listen", "127.0.0.1"]
        if netns is not None:
            # Its network is the namespace's; its control socket, a file, is reachable.
            cmd = ["ip", "netns", "exec", netns, *cmd]
        self.mesh = mesh
        port = [] if "--port" in args else ["--port", "0"]
        self.proc = subprocess.Popen(
            [*cmd, *port, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_running(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"mesh up exited: {self.proc.communicate()[1]}")
            if self.running():
                return
            time.sleep(0.05)
        raise AssertionError("mesh up did not start in time")

    def running(self) -> bool:
        """Whether the daemon says it runs, asked over its control socket from this process
        (`mesh status` polled in a subprocess cost half a second of CPU a look). Starting,
        its socket is missing or not answering yet: not an error."""
        client = ControlClient(Home.resolve(self.mesh.home).control_socket)
        try:
            client.ping(0.2)
            return client.status().running
        except MeshError:
            return False
        finally:
            client.close()

    def exited(self, timeout: float = 15) -> tuple[int, str]:
        """Wait for the daemon to exit by itself (a refusal): (exit code, stderr)."""
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10) -> tuple[int, str, float]:
        began = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err, time.monotonic() - began


@pytest.fixture
def daemon(mesh: Mesh) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(*args: str, wait: bool = True) -> Daemon:
        d = Daemon(mesh, *args)
        started.append(d)
        if wait:
            d.wait_running()
        return d

    yield start
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.communicate()


from tests.lan.conftest import make_lan, stale_lans_removed  # noqa: E402, F401
