"""Joining a mesh with real daemons on 127.0.0.1: invite, join, members, remove."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mesh.home import Home
from mesh.node.local import LocalNode
from mesh.security.words import WORDS
from mesh.transport.control_client import ControlClient
from tests.cli.conftest import Daemon, Mesh
from tests.lan.daemon import until

CODE = re.compile(r"mesh join (\S+) --at (\S+)")


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Callable[[str], tuple[Mesh, Daemon]]]:
    daemons: list[Daemon] = []

    def make(name: str, *args: str) -> tuple[Mesh, Daemon]:
        mesh = Mesh(home=tmp_path / name)
        # `mesh init`, done in this process (the command is tested in
        # test_local_commands.py): a Python start each is half a second of CPU.
        LocalNode.init(Home.resolve(mesh.home), name)[0].close()
        d = Daemon(mesh, *args)
        daemons.append(d)
        d.wait_running()
        return mesh, d

    yield make
    for d in daemons:
        if d.proc.poll() is None:
            d.stop()


def invite(mesh: Mesh, *args: str) -> tuple[str, str]:
    out = mesh.run("invite", *args).stdout
    found = CODE.search(out)
    assert found, out
    return found.group(1), found.group(2)


def members(mesh: Mesh) -> dict[str, dict[str, object]]:
    return {m["name"]: m for m in json.loads(mesh.run("members", "--json").stdout)}


def wait_online(mesh: Mesh, name: str, timeout: float = 15) -> None:
    """Until `mesh members` shows `name` online: polled over the control socket (a `mesh
    members` per look, every 0.1 s, was a Python start each), then read once through the
    command."""

    def online() -> bool:
        control = ControlClient(Home.resolve(mesh.home).control_socket)
        try:
            _, views = control.members()
        finally:
            control.close()
        return any(v.name == name and v.online for v in views)

    until(f"{name} to come online for {mesh.home.name}", online, timeout)
    assert members(mesh)[name]["online"]


def test_join_and_both_sides_list_each_other(node: Callable[..., tuple[Mesh, Daemon]]) -> None:
    tower, _ = node("tower")
    laptop, _ = node("laptop")
    code, at = invite(tower)
    out = laptop.run("join", code, "--at", at).stdout
    assert "joined the mesh: 2 members (tower and this node)" in out
    assert set(members(tower)) == set(members(laptop)) == {"tower", "laptop"}
    assert members(laptop)["laptop"]["admitted_by"] == members(laptop)["tower"]["node_id"]
    wait_online(tower, "laptop")
    wait_online(laptop, "tower")


def _wrong(code: str, k: int = 1) -> str:
    """A guess with the code's public number and wrong words."""
    number, first, second = code.split("-")
    return f"{number}-{first}-{WORDS[(WORDS.index(second) + k) % len(WORDS)]}"


def test_a_wrong_code_fails_says_the_tries_left_and_changes_nothing(
    node: Callable[..., tuple[Mesh, Daemon]],
) -> None:
    tower, _ = node("tower")
    laptop, _ = node("laptop")
    code, at = invite(tower)
    proc = laptop.run("join", _wrong(code), "--at", at, check=False)
    assert proc.returncode == 1
    assert "wrong code: 4 tries left before the invitation closes" in proc.stderr
    assert set(members(tower)) == {"tower"} and set(members(laptop)) == {"laptop"}
    # The invitation is still open for the right code.
    assert laptop.run("join", code, "--at", at).returncode == 0


def test_a_code_with_another_number_costs_no_try(
    node: Callable[..., tuple[Mesh, Daemon]],
) -> None:
    tower, _ = node("tower")
    laptop, _ = node("laptop")
    code, at = invite(tower)
    number, first, second = code.split("-")
    for k in range(1, 7):  # more than five: none of them counts
        proc = laptop.run(
            "join", f"{(int(number) + k) % 1000}-{first}-{second}", "--at", at, check=False
        )
        assert proc.returncode == 1 and "is for another code" in proc.stderr
    assert laptop.run("join", code, "--at", at).returncode == 0


def test_five_wrong_codes_close_the_invitation_and_say_so(
    node: Callable[..., tuple[Mesh, Daemon]],
) -> None:
    tower, _ = node("tower")
    laptop, _ = node("laptop")
    code, at = invite(tower)
    said = [
        laptop.run("join", _wrong(code, k), "--at", at, check=False).stderr for k in range(1, 6)
    ]
    assert [("4 tries" in s, "3 tries" in s, "2 tries" in s, "1 try " in s) for s in said[:4]] == [
        (True, False, False, False),
        (False, True, False, False),
        (False, False, True, False),
        (False, False, False, True),
    ]
    assert "that was the 5th wrong try, so the invitation is now closed" in said[4]
    proc = laptop.run("join", code, "--at", at, check=False)
    assert proc.returncode == 1
    assert "the invitation for this code was closed after 5 wrong codes at" in proc.stderr
    assert set(members(tower)) == {"tower"}


@pytest.mark.slow  # started first (tests/conftest.py)
def test_a_used_code_fails_for_a_third_node(node: Callable[..., tuple[Mesh, Daemon]]) -> None:
    tower, _ = node("tower")
    laptop, _ = node("laptop")
    phone, _ = node("phone")
    code, at = invite(tower)
    laptop.run("join", code, "--at", at)
    proc = phone.run("join", code, "--at", at, check=False)
    assert proc.returncode == 1
    assert "the invitation for this code was used: a node joined with it at" in proc.stderr
    assert set(members(tower)) == {"tower", "laptop"}
    assert set(members(phone)) == {"phone"}


def test_an_expired_code_fails(node: Callable[..., tuple[Mesh, Daemon]]) -> None:
    tower, _ = node("tower")
    laptop, _ = node("laptop")
    code, at = invite(tower, "--for", "1s")
    time.sleep(1.5)  # the invitation's own clock: nothing to poll on the inviter
    proc = laptop.run("join", code, "--at", at, check=False)
    assert proc.returncode == 1 and "the invitation for this code expired at" in proc.stderr


def test_a_cancelled_or_replaced_code_says_so(node: Callable[..., tuple[Mesh, Daemon]]) -> None:
    tower, _ = node("tower")
    laptop, _ = node("laptop")
    first, at = invite(tower)
    second, _ = invite(tower)
    proc = laptop.run("join", first, "--at", at, check=False)
    if first.split("-")[0] != second.split("-")[0]:  # a second code with the same number wins
        assert "was replaced by a newer `mesh invite` there" in proc.stderr
    assert tower.run("invite", "--cancel").stdout.strip() == "invitation closed"
    proc = laptop.run("join", second, "--at", at, check=False)
    assert "the invitation for this code was cancelled" in proc.stderr
    assert tower.run("invite", "--cancel").stdout.strip() == "no invitation was open"


def test_at_takes_the_nodes_own_port_too(
    node: Callable[..., tuple[Mesh, Daemon]], tmp_path: Path
) -> None:
    tower, _ = node("tower", "--port", str(_two_free_ports()))
    laptop, _ = node("laptop")
    code, _at = invite(tower)
    port = json.loads(tower.run("status", "--json").stdout)["port"]
    out = laptop.run("join", code, "--at", f"127.0.0.1:{port}").stdout
    assert "joined the mesh" in out


def _two_free_ports() -> int:
    """A port P with P and P + 1 free now (the node's and its pairing listener's)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise AssertionError("no two free ports in a row")


def test_a_taken_name_is_refused_and_the_code_stays_good(
    node: Callable[..., tuple[Mesh, Daemon]],
) -> None:
    tower, _ = node("tower")
    twin, twin_daemon = node("tower-twin")
    twin_daemon.stop()
    twin.run("init", "--name", "tower")  # the same name as the inviter
    code, at = invite(tower)
    proc = twin.run("join", code, "--at", at, check=False)
    assert proc.returncode == 1 and "the name 'tower' is taken" in proc.stderr
    twin.run("init", "--name", "tower2")
    assert twin.run("join", code, "--at", at).returncode == 0


def _removed_by(mesh: Mesh) -> str | None:
    return json.loads(mesh.run("status", "--json").stdout)["removed_by"]


def _until_removed_by(mesh: Mesh, remover: str, timeout: float = 10) -> None:
    """Until `mesh status` says who removed this node: polled over the control socket (a
    `mesh status` per look, every 0.1 s, was a Python start each), then read once through
    the command."""

    def removed_by() -> str:
        control = ControlClient(Home.resolve(mesh.home).control_socket)
        try:
            return control.status().removed_by
        finally:
            control.close()

    until(f"{mesh.home.name} learning it was removed", lambda: removed_by() == remover, timeout)
    assert _removed_by(mesh) == remover


def test_a_removed_node_is_told_and_stops(
    node: Callable[..., tuple[Mesh, Daemon]], tmp_path: Path
) -> None:
    tower, tower_daemon = node("tower")
    laptop, _ = node("laptop")
    code, at = invite(tower)
    laptop.run("join", code, "--at", at)
    films = tmp_path / "films"
    films.mkdir()
    (films / "mine.txt").write_text("the laptop's own file")
    laptop.run("share", str(films))
    wait_online(tower, "laptop")
    tower.run("remove", "laptop")
    assert set(members(tower)) == {"tower"}
    _until_removed_by(laptop, "tower")
    told = time.monotonic()

    out = laptop.run("members").stdout
    assert "this node was removed from the mesh by tower on " in out
    mine = next(line for line in out.splitlines() if line.startswith("laptop "))
    assert "removed" in mine and "founded" not in mine and "this node" not in mine
    assert members(laptop)["laptop"]["removed_by"] == "tower"
    status = laptop.run("status").stdout
    assert "!! this node was removed from the mesh by tower" in status
    doctor = laptop.run("doctor", check=False)
    assert doctor.returncode == 1 and "removed from the mesh by tower" in doctor.stdout
    for args in (["borrow", "tower:films/x.txt"], ["invite"], ["peer", "add", "127.0.0.1:1"]):
        proc = laptop.run(*args, check=False)
        assert proc.returncode == 1, args
        assert "this node was removed from the mesh by tower" in proc.stderr, (args, proc.stderr)
        assert "mesh init --reset" in proc.stderr
    # Its own files stay, and its index with them.
    assert (films / "mine.txt").read_text() == "the laptop's own file"
    assert "mine.txt" in laptop.run("ls").stdout

    # It stopped dialling: the tower told it once (once per address it dialled), no more.
    # A window of 2 s since it was told, in which a node still dialling would have called
    # again; the commands above mostly fill it already.
    time.sleep(max(0.0, told + 2 - time.monotonic()))
    _, err, _ = tower_daemon.stop()
    assert 1 <= err.count("that it was removed from the mesh") <= 2, err
    assert "refused a call" not in err
    assert "not a member of this mesh" not in err  # nor does the tower keep dialling it


def test_a_node_removed_while_away_learns_it_when_back(
    node: Callable[..., tuple[Mesh, Daemon]],
) -> None:
    tower, _ = node("tower")
    laptop, laptop_daemon = node("laptop")
    code, at = invite(tower)
    laptop.run("join", code, "--at", at)
    wait_online(tower, "laptop")
    laptop_daemon.stop()
    tower.run("remove", "laptop")
    assert _removed_by(laptop) is None  # away: nobody could tell it yet
    again = Daemon(laptop)
    try:
        again.wait_running()
        _until_removed_by(laptop, "tower")
    finally:
        again.stop()
    # Told once, it knows for good, also with no daemon running.
    assert "removed from the mesh by tower" in laptop.run("members").stdout


def test_invite_and_join_need_no_daemon_on_the_joining_side(
    node: Callable[..., tuple[Mesh, Daemon]], tmp_path: Path
) -> None:
    tower, _ = node("tower")
    laptop = Mesh(home=tmp_path / "laptop-off")
    laptop.run("init", "--name", "laptop")
    code, at = invite(tower)
    assert "joined the mesh" in laptop.run("join", code, "--at", at).stdout
    assert set(members(laptop)) == {"tower", "laptop"}


def test_invite_needs_the_daemon(tmp_path: Path) -> None:
    mesh = Mesh(home=tmp_path / "x")
    mesh.run("init")
    proc = mesh.run("invite", check=False)
    assert proc.returncode == 1
    assert "not running" in proc.stderr and "mesh up" in proc.stderr


def test_a_second_invite_says_the_first_code_no_longer_works(
    node: Callable[..., tuple[Mesh, Daemon]],
) -> None:
    tower, _ = node("tower")
    first, _at = invite(tower)
    out = tower.run("invite").stdout
    assert f"the invitation open before, {first}, is closed" in out
    assert first not in CODE.search(out).group(1)  # type: ignore[union-attr]
    tower.run("invite", "--cancel")
    # Once closed, the next invitation replaces nothing.
    assert "open before" not in tower.run("invite").stdout
