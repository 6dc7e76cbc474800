"""`mesh up` as a user runs it: one per home, local commands through it, clean stops."""

from __future__ import annotations

import json
import re
import signal
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.conftest import Daemon, Mesh

Start = Callable[..., Daemon]


def test_local_commands_go_through_the_daemon(mesh: Mesh, daemon: Start, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "a").write_bytes(b"a")
    mesh.run("init", "--name", "tower")
    # Without the watcher, which would index b on its own before `mesh scan` is asked to.
    mesh.run("config", "set", "libraries.watch", "false")
    d = daemon()
    status = json.loads(mesh.run("status", "--json").stdout)
    assert status["running"] is True and status["pid"] == d.proc.pid and status["port"] > 0
    assert "1 added" in mesh.run("share", str(lib)).stdout
    (lib / "b").write_bytes(b"b")
    assert "1 added, 0 changed, 0 removed, 1 unchanged" in mesh.run("scan").stdout
    listed = json.loads(mesh.run("ls", "--json").stdout)
    assert [e["path"] for e in listed] == ["a", "b"]
    assert mesh.run("id").stdout.strip() == status["node_id"]
    assert "2 entries now deleted" in mesh.run("unshare", "lib").stdout
    assert json.loads(mesh.run("ls", "--json").stdout) == []
    code, err, took = d.stop()
    assert code == 0 and took < 5, err
    # The same store, now without the daemon.
    assert len(json.loads(mesh.run("ls", "--json", "--deleted").stdout)) == 2
    assert json.loads(mesh.run("status", "--json").stdout)["running"] is False


def test_a_running_node_indexes_a_dropped_file_by_itself(
    mesh: Mesh, daemon: Start, tmp_path: Path
) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    mesh.run("init", "--name", "tower")
    daemon()
    mesh.run("share", str(lib))
    (lib / "dropped.txt").write_bytes(b"dropped")
    written = time.monotonic()
    while "dropped.txt" not in mesh.run("ls").stdout:
        assert time.monotonic() - written < 3, "the dropped file was not indexed"
        time.sleep(0.05)


def test_errors_through_the_daemon_read_the_same(mesh: Mesh, daemon: Start) -> None:
    mesh.run("init")
    daemon()
    proc = mesh.run("ls", "nope", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "mesh: no library named 'nope'; `mesh ls` lists them"


def test_a_second_daemon_on_one_home_refuses(mesh: Mesh, daemon: Start) -> None:
    mesh.run("init")
    first = daemon()
    code, err = daemon(wait=False).exited()
    assert code == 1
    assert f"mesh is already running: the mesh daemon (pid {first.proc.pid})" in err
    assert first.proc.poll() is None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signals_stop_the_daemon_quickly(mesh: Mesh, daemon: Start, sig: int) -> None:
    mesh.run("init", "--name", "tower")
    d = daemon()
    code, err, took = d.stop(sig)
    assert code == 0 and took < 5
    assert "[tower]" in err and "stopped" in err
    assert not mesh.home.joinpath("run", "control.sock").exists()


def test_home_modes(mesh: Mesh, daemon: Start) -> None:
    mesh.run("init")
    daemon()
    run = mesh.home / "run"
    assert stat.S_IMODE(run.stat().st_mode) == 0o700
    assert stat.S_IMODE(mesh.home.stat().st_mode) == 0o700
    assert stat.S_IMODE((mesh.home / "node.key").stat().st_mode) == 0o600
    assert stat.S_ISSOCK((run / "control.sock").stat().st_mode)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("node", "port = 70000", "node.port = 70000 is not allowed; use a TCP port, 1-65535"),
        ("node", 'log_level = "loud"', "node.log_level = 'loud' is not allowed"),
        ("network", 'limit = "fast"', "network.limit = 'fast' is not allowed"),
        ("node", "colour = 1", "unknown setting 'node.colour'"),
    ],
)
def test_a_bad_config_value_stops_mesh_up(
    mesh: Mesh, daemon: Start, key: str, value: str, message: str
) -> None:
    mesh.run("init")
    mesh.home.joinpath("config.toml").write_text(f"[{key}]\n{value}\n")
    code, err = daemon(wait=False).exited()
    assert code == 2
    assert err.strip().splitlines() == [f"mesh: {message}"] or message in err


def test_network_commands_say_how_to_start_the_daemon(mesh: Mesh) -> None:
    mesh.run("init")
    status = mesh.run("status").stdout
    assert "not running (start it with `mesh up`)" in status


def test_config_show_and_set(mesh: Mesh) -> None:
    mesh.run("init")
    shown = json.loads(mesh.run("config", "show", "--json").stdout)
    assert shown["node.port"] == 6374 and shown["peers.static"] == []
    assert mesh.run("config", "set", "peers.static", "10.0.0.2,[fe80::1]:7000").stdout.strip() == (
        'peers.static = ["10.0.0.2", "[fe80::1]:7000"]'
    )
    assert mesh.run("config", "set", "borrowing.quota", "500GB").returncode == 0
    bad = mesh.run("config", "set", "borrowing.quota", "lots", check=False)
    assert bad.returncode == 2 and "borrowing.quota = 'lots' is not allowed" in bad.stderr
    shown = json.loads(mesh.run("config", "show", "--json").stdout)
    assert shown["borrowing.quota"] == "500GB"
    text = mesh.home.joinpath("config.toml").read_text()
    assert "# most bytes to hold" in text  # the file documents itself


def test_up_and_status_agree_on_a_home_without_a_node(mesh: Mesh, daemon: Start) -> None:
    # Only `mesh init` makes a node: both refuse the same way, and neither creates the home.
    hint = f"mesh: no node in {mesh.home} yet; run `mesh init --name NAME` first"
    code, err = daemon(wait=False).exited()
    assert code == 1
    assert err.strip() == hint
    status = mesh.run("status", check=False)
    assert status.returncode == 1
    assert status.stderr.strip() == hint
    assert not mesh.home.exists()


def test_a_port_clash_is_one_line_without_grpc_core_noise(
    mesh: Mesh, daemon: Start, tmp_path: Path
) -> None:
    # A real clash: another node's daemon already listens on the port.
    other = Mesh(home=tmp_path / "other")
    other.run("init", "--name", "other")
    first = Daemon(other)
    try:
        first.wait_running()
        port = json.loads(other.run("status", "--json").stdout)["port"]
        mesh.run("init", "--name", "tower")
        code, err = daemon("--port", str(port), wait=False).exited()
        assert code == 1
        lines = err.strip().splitlines()
        assert lines[-1] == (
            f"mesh: cannot listen on 127.0.0.1:{port}: the port is in use or not allowed "
            "(another mesh on this machine? pick one with --port)"
        ), err
        # gRPC's C core logs as `E1207 16:48:34.637395   14717 add_port.cc:83] ...`.
        assert not [x for x in lines if re.match(r"[EWIF]\d{4} ", x) or ".cc:" in x], err
    finally:
        first.stop()
