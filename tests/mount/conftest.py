"""The mesh as a folder and streams (issue 21): real daemons in this process, a real FUSE
mount, and clients nobody here wrote (ffprobe, curl, dd) in their own processes: a read
through the mount must never run on the loop that answers it."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from mesh.node.daemon import Daemon
from tests.lan.conftest import make_lan, stale_lans_removed  # noqa: F401
from tests.node.conftest import NodeHandle, mesh_of, nodes  # noqa: F401
from tests.node.test_gossip import running, share_and_scan

Make = Callable[[str], NodeHandle]


def _fuse_problem() -> str:
    try:
        import pyfuse3  # noqa: F401
    except ImportError:
        return "pyfuse3 is not installed (pip install '.[mount]')"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if os.getuid() != 0 and not shutil.which("fusermount3"):
        return "no fusermount3"
    return ""


def _required() -> bool:
    # Not CI alone: CI's run of the README's test command leaves this folder out, and runs
    # it next with the mount extra installed and this set (.ci/run).
    return bool(os.environ.get("MESH_REQUIRE_FUSE"))


def _extra_problem() -> str:
    for module in ("pyfuse3", "aiohttp"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install -e '.[test,mount]')"
    return ""


@pytest.fixture(autouse=True)
def _mount_extra() -> None:
    """Every test here needs the `mount` extra: skip without it, fail where required."""
    problem = _extra_problem()
    if problem and _required():
        pytest.fail(f"the mount extra is needed here: {problem}")
    if problem:
        pytest.skip(problem)


def needs_fuse() -> None:
    """Skip without FUSE, except in CI, where the mount's tests must run (.ci/run installs
    what they need)."""
    problem = _fuse_problem()
    if problem and _required():
        pytest.fail(f"FUSE is needed in CI: {problem}")
    if problem:
        pytest.skip(problem)


def needs_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None and _required():
        pytest.fail(f"{name} is needed in CI (.ci/run installs it)")
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


async def run(*command: str, within: float = 60) -> tuple[int, bytes, bytes]:
    """A client in its own process: (exit status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(within):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out, err


class Pair:
    def __init__(self, tower: NodeHandle, laptop: NodeHandle, tmp: Path) -> None:
        self.tower, self.laptop, self.tmp = tower, laptop, tmp
        self.shared = tmp / "shared"
        self.mnt = tmp / "mnt"

    @property
    def t(self) -> Daemon:
        return running(self.tower)

    @property
    def lp(self) -> Daemon:
        return running(self.laptop)

    async def share(self, files: dict[str, bytes], name: str = "Movies") -> None:
        self.shared.mkdir(exist_ok=True)
        for rel, data in files.items():
            (self.shared / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.shared / rel).write_bytes(data)
        await share_and_scan(self.tower, self.shared, name)


@pytest.fixture
async def pair(nodes: Make, tmp_path: Path) -> AsyncIterator[Pair]:  # noqa: F811
    tower, laptop = nodes("tower"), nodes("laptop")
    mesh_of(tower, laptop)
    await tower.start(borrowed_folder=str(tmp_path / "tower-borrowed"))
    await laptop.start(
        borrowed_folder=str(tmp_path / "laptop-borrowed"),
        static_peers=(tower.address,),
        read_timeout_s=3.0,
        open_timeout_s=5.0,
    )
    made = Pair(tower, laptop, tmp_path)
    yield made
    if laptop.daemon is not None and hasattr(laptop.daemon, "mounting"):
        await laptop.daemon.mounting.unmount()
