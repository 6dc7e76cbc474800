"""`mesh doctor` on a simulated LAN: each cause it names, made to happen for real."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lan.meshnodes import LanPeer, dump_logs, init_all, until, up_all
from tests.lan.netns import MakeLan, py, read_line

pytestmark = pytest.mark.netns

LISTEN = """
import socket, time
server = socket.create_server(("0.0.0.0", 6374))
print("listening", flush=True)
time.sleep(60)
"""


@pytest.fixture
def trio(make_lan: MakeLan, tmp_path: Path) -> Iterator[list[LanPeer]]:
    lan = make_lan(3)
    peers = [LanPeer(host, tmp_path, f"n{i}") for i, host in enumerate(lan.nodes)]
    init_all(peers)
    yield peers
    dump_logs(peers)


def doctor(peer: LanPeer) -> tuple[int, dict[str, Any], str]:
    """(exit code, the --json report, every finding's text on one line each)."""
    proc = peer.cli("doctor", "--json", check=False)
    report = json.loads(proc.stdout)
    lines = "\n".join(
        f"{'ok' if f['ok'] else '!!'} {f['text']}"
        for key in ("discovery", "daemon", "peers")
        for f in report[key]
    )
    return proc.returncode, report, lines


def test_help_has_examples(trio: list[LanPeer]) -> None:
    out = trio[0].cli("doctor", "--help").stdout
    assert "Examples:" in out and "mesh doctor --json" in out


def test_doctor_names_each_cause(trio: list[LanPeer]) -> None:
    n0, n1, n2 = trio

    # Not running, and another program holds the port.
    holder = n0.host.popen(py(LISTEN), stdout=subprocess.PIPE, text=True)
    assert read_line(holder, 10) == "listening"
    code, report, lines = doctor(n0)
    assert code == 1
    assert "!! the daemon is not running" in lines
    assert "TCP port 6374 is taken by another program" in lines
    assert "ok eth0 (" in lines and "multicast on" in lines
    assert "UDP 5353" in report["firewall"][0] and "TCP 6375" in report["firewall"][0]
    holder.kill()
    holder.wait()
    assert "TCP port 6374 is free" in doctor(n0)[2]

    # An interface without multicast (a VPN's, typically).
    n2.host.run(["ip", "link", "set", "eth0", "multicast", "off"])
    assert "!! eth0 (" in (lines := doctor(n2)[2]) and "does not carry multicast" in lines
    n2.host.run(["ip", "link", "set", "eth0", "multicast", "on"])

    # Running, in a mesh of two (joined without an address), the other connected.
    up_all(trio)
    n1.cli("join", n0.invite())
    until("n1 connected", lambda: "n1" in n0.online(), 20)
    code, _, lines = doctor(n0)
    assert code == 0, lines
    assert "ok the daemon runs" in lines and "accepting other nodes on TCP port 6374" in lines
    assert "ok n1: connected at" in lines

    # Static peers: a node of no mesh of ours, and an address where nothing listens.
    n0.cli("config", "set", "peers.static", f'["{n2.host.ip}", "{n1.host.ip}:7000"]')
    code, _, lines = doctor(n0)
    assert code == 1
    assert f"!! {n2.host.ip}:6374 (static): certificate not a member" in lines
    assert f"!! {n1.host.ip}:7000 (static): refused" in lines

    # A member that vanished: the daemon no longer has a session with it.
    n1.stop(signal.SIGKILL)
    until("n1 offline", lambda: "n1" not in n0.online(), 10)
    assert "!! n1" in doctor(n0)[2]

    # With the daemon stopped, every remembered and gossiped address is checked.
    n0.stop()
    lines = doctor(n0)[2]
    assert "!! the daemon is not running" in lines
    assert f"!! n1 at {n1.host.ip}:6374 (gossiped): refused" in lines

    # A member whose packets are all dropped does not answer at all.
    n1.up()
    n1.host.blackhole()
    lines = doctor(n0)[2]
    assert f"!! n1 at {n1.host.ip}:6374 (gossiped): " in lines
    assert "timed out" in lines or "unreachable" in lines
