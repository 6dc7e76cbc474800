"""`mesh demo` end to end: three real `mesh up` processes on 127.0.0.1, and nothing left
behind afterwards, whether it ran to the end or was interrupted."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = re.compile(r"homes in (\S+)")


@pytest.fixture
def tmpdir_short() -> Iterator[Path]:
    # The demo's homes live here; a short path keeps each control socket inside its home.
    path = Path(tempfile.mkdtemp(prefix="md-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def processes_under(root: Path) -> list[int]:
    """Processes whose command line names a path under `root` (the demo's nodes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(root).encode() in cmdline:
            found.append(int(entry.name))
    return found


def demo_env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}


def until(what: str, check: Callable[[], object], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_the_demo_runs_to_the_end_and_leaves_nothing(tmpdir_short: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mesh", "demo", "--size", "20MB"],
        env=demo_env(tmpdir_short),
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "joined the mesh: 3 members" in out
    assert re.search(r"[0-9a-f]{32} +20\.0 MB +tower:Films/holiday\.mkv", out)
    assert "laptop holds a verified copy" in out
    assert re.search(r"tower +laptop +held +20\.0 MB", out)
    assert "holiday.mkv is gone" in out
    assert re.search(r"tower +laptop +(ended|recalled) +20\.0 MB", out)
    found = ROOT.search(out)
    assert found
    root = Path(found.group(1))
    assert root.parent == tmpdir_short
    assert not root.exists()
    assert list(tmpdir_short.iterdir()) == []
    assert processes_under(root) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_the_demo_stops_its_nodes_and_removes_its_folder(
    tmpdir_short: Path, sig: signal.Signals
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mesh", "demo", "--size", "5MB"],
        env=demo_env(tmpdir_short),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    root: Path | None = None
    try:
        # Interrupted while the nodes join: all three run by then.
        until("the join step", lambda: any("mesh join" in x for x in lines))
        found = ROOT.search("".join(lines))
        assert found
        root = Path(found.group(1))
        assert len(processes_under(root)) >= 3
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 130
        assert proc.stderr is not None
        err = proc.stderr.read()
        assert "Traceback" not in err
        assert f"removing {root}" in err
        assert not root.exists()
        assert processes_under(root) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in processes_under(root) if root else []:
            os.kill(pid, signal.SIGKILL)  # the demo's own nodes, left behind by a failure


# The demo's narration at each point, and how long after it the Ctrl-C comes.
CTRL_C_POINTS = {
    "start": ("Start them", 0.3),
    "join": ("mesh join", 0.0),
    "lend": ("lends the big file", 0.4),
    "recall": ("recalls it", 0.0),
}


@pytest.mark.parametrize(("point", "presses"), [(p, 1) for p in CTRL_C_POINTS] + [("lend", 2)])
def test_ctrl_c_at_any_point_ends_the_demo_within_2_s(
    tmpdir_short: Path, point: str, presses: int
) -> None:
    # As in a terminal: the demo leads a process group and Ctrl-C signals the whole group.
    proc = subprocess.Popen(
        [sys.executable, "-m", "mesh", "demo", "--size", "60MB"],
        env=demo_env(tmpdir_short),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    errors: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    err_reader = threading.Thread(target=lambda: errors.extend(proc.stderr or ()), daemon=True)
    err_reader.start()
    marker, delay = CTRL_C_POINTS[point]
    root: Path | None = None
    try:
        until(f"the {point} step", lambda: any(marker in x for x in lines), 120)
        found = ROOT.search("".join(lines))
        assert found
        root = Path(found.group(1))
        time.sleep(delay)  # a point inside the step, not a wait for a condition
        pressed = time.monotonic()
        for _ in range(presses):
            os.killpg(proc.pid, signal.SIGINT)
            time.sleep(0.1)
        try:
            code = proc.wait(timeout=10)
        finally:
            took = time.monotonic() - pressed
        reader.join(5)
        err_reader.join(5)
        err = "".join(errors)
        assert took < 2.0, f"the demo took {took:.2f} s to stop after Ctrl-C"
        assert code == 130, err
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
        assert f"removing {root}" in err
        assert not root.exists()
        assert processes_under(root) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in processes_under(root) if root else []:
            os.kill(pid, signal.SIGKILL)


def test_keep_leaves_the_nodes_running_until_ctrl_c(tmpdir_short: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mesh", "demo", "--size", "2MB", "--keep"],
        env=demo_env(tmpdir_short),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    root: Path | None = None
    try:
        until("the nodes to be kept", lambda: any("keep running" in x for x in lines), 120)
        found = ROOT.search("".join(lines))
        assert found
        root = Path(found.group(1))
        home = re.search(r"export MESH_HOME=(\S+)", "".join(lines))
        assert home and Path(home.group(1)) == root / "tower"
        # A person exploring from another terminal: the tower answers.
        members = subprocess.run(
            [sys.executable, "-m", "mesh", "members"],
            env={**os.environ, "MESH_HOME": home.group(1)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert members.stdout.count("online") == 2, members.stdout + members.stderr
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert not root.exists()
        assert processes_under(root) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in processes_under(root) if root else []:
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("size", ["0", "lots"])
def test_a_bad_size_is_one_line(size: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mesh", "demo", "--size", size],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--size" in proc.stderr, proc.stderr
