"""`mesh status`: one look at the node, live with --watch, stable keys with --json."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest

from mesh.cli.status_cmds import Frame, as_json, render
from mesh.core.ids import NodeId
from mesh.core.rates import Rates
from mesh.core.status import LibraryInfo, LoanLine, MemberView, NodeStatus
from tests.cli.conftest import Daemon, Mesh

Start = Callable[..., Daemon]
SELF, LAPTOP, TABLET = NodeId(b"\x01" * 32), NodeId(b"\x02" * 32), NodeId(b"\x03" * 32)
NOW = 1_800_000_000.0
TOP_KEYS = {
    *("name", "node_id", "home", "running", "pid", "port", "uptime_s", "version"),
    *("addresses", "libraries", "members", "loans", "removed_by", "removed_ms"),
}


def loan(id_: str, lender: NodeId, borrower: NodeId, phase: str, done: int) -> LoanLine:
    names = {SELF: "tower", LAPTOP: "laptop", TABLET: "tablet"}
    return LoanLine(
        id=id_,
        lender=lender,
        lender_name=names[lender],
        borrower=borrower,
        borrower_name=names[borrower],
        library="Movies",
        path="heat.mkv",
        size=1_900_000_000,
        hash=b"\0" * 16,
        phase=phase,
        bytes_done=done,
        until_ms=0,
        reason="",
        created_ms=0,
        updated_ms=0,
    )


def frame(*, running: bool = True) -> Frame:
    st = NodeStatus(
        name="tower",
        node_id=SELF,
        home="/home/me/.local/share/mesh",
        port=6374,
        running=running,
        uptime_s=3 * 3600 + 12 * 60,
        pid=4242,
        version="0.1.0",
        addresses=("192.168.1.10:6374",),
        libraries=(
            LibraryInfo(
                name="Movies",
                root="/home/me/Movies",
                open=False,
                files=1204,
                bytes=1_200_000_000_000,
                last_seq=9,
                changed_ms=int((NOW - 190) * 1000),
                watch="events",
            ),
        ),
    )
    members = [
        MemberView(
            node_id=LAPTOP,
            name="laptop",
            admitted_by=SELF,
            admitted_ms=0,
            online=True,
            address="192.168.1.20:6374",
            last_seen_s=0.5,
        ),
        MemberView(
            node_id=TABLET,
            name="tablet",
            admitted_by=SELF,
            admitted_ms=0,
            last_seen_s=400,
            unacked=12,
        ),
    ]
    loans = [
        loan("3xq7ka2m", SELF, LAPTOP, "fetching", 1_178_000_000),
        loan("9kq2aa1b", TABLET, SELF, "held", 1_900_000_000),
    ]
    return Frame(status=st, members=members, loans=loans)


def speeds() -> Rates:
    rates = Rates()
    rates.sample("3xq7ka2m", 838_000_000, now=0.0)
    rates.sample("3xq7ka2m", 1_178_000_000, now=1.0)
    return rates


def test_one_look_reads_as_people_say_it() -> None:
    text = "\n".join(render(frame(), speeds(), NOW))
    assert "running, up 3 h 12 min (pid 4242, port 6374" in text
    assert "addresses 192.168.1.10:6374" in text
    laptop = next(x for x in text.splitlines() if x.startswith("laptop"))
    assert "online" in laptop and "now" in laptop and "in sync" in laptop
    tablet = next(x for x in text.splitlines() if x.startswith("tablet"))
    assert "offline" in tablet and "6 min ago" in tablet and "12 records behind" in tablet
    movies = next(x for x in text.splitlines() if x.startswith("Movies"))
    assert "1204" in movies and "1.2 TB" in movies and "3 min ago" in movies and "events" in movies
    out = next(x for x in text.splitlines() if x.startswith("3xq7ka2m"))
    assert "out" in out and "laptop" in out and "[############........]  62%" in out
    assert "340 MB/s" in out and "Movies/heat.mkv" in out
    held = next(x for x in text.splitlines() if x.startswith("9kq2aa1b"))
    assert "in" in held and "tablet" in held and "held" in held and "1.9 GB" in held


def test_without_a_daemon_the_stored_loans_show_and_do_not_look_live() -> None:
    # `mesh status` with the daemon stopped showed no loans section at all.
    text = "\n".join(render(frame(running=False), speeds(), NOW))
    assert text.count("not running") == 1
    out = next(x for x in text.splitlines() if x.startswith("3xq7ka2m"))
    assert "at 62% (stopped with the daemon)" in out and "MB/s" not in out and "#" not in out
    held = next(x for x in text.splitlines() if x.startswith("9kq2aa1b"))
    assert "held" in held and "1.9 GB" in held


def test_json_keys_are_stable() -> None:
    got = as_json(frame(), speeds())
    assert set(got) == TOP_KEYS
    assert got["members"][1] == {  # type: ignore[index]
        "name": "tablet",
        "node_id": str(TABLET),
        "online": False,
        "address": None,
        "last_seen_s": 400.0,
        "lag": 12,
    }
    out, held = got["loans"]  # type: ignore[misc]
    assert out["direction"] == "out" and out["bytes_per_s"] == 340_000_000
    assert held["direction"] == "in" and held["bytes_per_s"] is None
    assert got["libraries"][0]["changed_ms"] == int((NOW - 190) * 1000)  # type: ignore[index]
    local = as_json(frame(running=False), Rates())
    assert local["pid"] is None
    # Without a daemon, the loans as the store knows them, none of them moving.
    stored = cast(list[dict[str, object]], local["loans"])
    assert [x["state"] for x in stored] == ["fetching", "held"]
    assert stored[0]["bytes_per_s"] is None
    assert local["members"][0]["lag"] is None  # type: ignore[index]


def test_without_a_daemon_one_line_says_so(mesh: Mesh, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "a").write_bytes(b"abc")
    mesh.run("init", "--name", "tower")
    mesh.run("share", str(lib))
    out = mesh.run("status").stdout
    assert out.count("not running") == 1
    assert "daemon    not running (start it with `mesh up`)" in out
    assert "lib" in out and "3 B" in out
    got = json.loads(mesh.run("status", "--json").stdout)
    assert set(got) == TOP_KEYS and got["running"] is False and got["loans"] == []
    assert "no loans in or out" in out


def test_a_running_node_and_watching_it(mesh: Mesh, daemon: Start, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    mesh.run("init", "--name", "tower")
    d = daemon()
    mesh.run("share", str(lib))
    got = json.loads(mesh.run("status", "--json").stdout)
    assert set(got) == TOP_KEYS
    assert got["running"] is True and got["addresses"] == [f"127.0.0.1:{got['port']}"]
    assert got["libraries"][0]["watch"] == "events" and got["loans"] == []

    env = {**os.environ, "MESH_HOME": str(mesh.home), "PYTHONUNBUFFERED": "1"}
    watcher = subprocess.Popen(
        [sys.executable, "-m", "mesh", "status", "--watch"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stdout is not None
        frames = 0
        deadline = time.monotonic() + 20
        while frames < 2:
            line = watcher.stdout.readline()
            assert line and time.monotonic() < deadline, "no second frame"
            frames += line.startswith("node ")
        (lib / "new").write_bytes(b"new")
        while True:  # the watcher indexes it; the next frames say so
            line = watcher.stdout.readline()
            assert line and time.monotonic() < deadline, "the new file never showed"
            if line.startswith("lib ") and " 1 " in line:
                break
        watcher.send_signal(signal.SIGINT)
        _, err = watcher.communicate(timeout=10)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    assert watcher.returncode == 0, err
    assert "Traceback" not in err
    assert d.proc.poll() is None


@pytest.mark.parametrize(
    "address",
    ["[fe80::1c2b:3dff:fe4e:5f60%eth0]:6374", "[fe80::1c2b:3dff:fe4e:5f60%enx00e04c680123]:6374"],
)
def test_a_link_local_address_keeps_the_members_table_in_line(address: str) -> None:
    # A 30-character IPv6 link-local address pushed LAST SEEN and LAG out of line.
    got = frame()
    got.members[0] = dataclasses.replace(got.members[0], address=address)
    text = render(got, speeds(), NOW)
    header = next(i for i, x in enumerate(text) if x.startswith("MEMBER"))
    titles, laptop, tablet = text[header : header + 3]
    column = titles.index("LAST SEEN")
    assert laptop.index(" now ") + 1 == column == tablet.index(" 6 min ago") + 1, text
    shown = laptop.split()[2]
    assert len(shown) <= 42 and shown.endswith("]:6374"), shown
