"""The simulated LAN itself: reachability, multicast, isolation from the machine's network,
link cuts, address changes, shaping, and teardown whatever happens to the test."""

from __future__ import annotations

import ipaddress
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

import pytest

from tests.lan import netns
from tests.lan.netns import (
    Lan,
    MakeLan,
    NetNode,
    cleanup_stale,
    list_netns,
    py,
    read_line,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]

MCAST_RECEIVE = """
import socket, struct, sys
group, port = sys.argv[1], int(sys.argv[2])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("", port))
# struct ip_mreqn: the group, any local address, and eth0 by index.
mreq = struct.pack("=4s4si", socket.inet_aton(group), bytes(4), socket.if_nametoindex("eth0"))
sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
print("joined", flush=True)
sock.settimeout(10)
data, (sender, _) = sock.recvfrom(2048)
print(data.decode(), sender, flush=True)
"""

# No IP_MULTICAST_IF: the datagram leaves by the 224.0.0.0/4 route, as with zeroconf's
# InterfaceChoice.Default.
MCAST_SEND = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
sock.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))
"""

TCP_RECEIVE = """
import socket, time
server = socket.create_server(("0.0.0.0", 0))
print(server.getsockname()[1], flush=True)
conn, _ = server.accept()
total, first = 0, None
while chunk := conn.recv(1 << 16):
    first = first or time.monotonic()
    total += len(chunk)
print(total, time.monotonic() - first, flush=True)
"""

TCP_SEND = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2]))) as conn:
    conn.sendall(bytes(int(sys.argv[3])))
"""


def root_network() -> tuple[set[str], str]:
    """The interfaces ("index: name") and IPv4 routes of the namespace the tests run in."""
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    routes = subprocess.run(
        ["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=True
    )
    names = {":".join(line.split(":")[:2]) for line in links.stdout.splitlines()}
    return names, routes.stdout


def is_dead(pid: int) -> bool:
    """Gone, or a zombie nobody reaped yet (a container's pid 1 may never reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def transfer_rate(sender: NetNode, receiver: NetNode, size: int) -> float:
    """Bytes per second of one TCP transfer of `size` bytes, measured by the receiver."""
    proc = receiver.popen(py(TCP_RECEIVE), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    port = read_line(proc, 10)
    sender.run(py(TCP_SEND, receiver.ip, port, str(size)))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    total, seconds = out.split()
    assert int(total) == size
    return size / float(seconds)


@pytest.mark.netns
def test_three_nodes_ping_each_other(make_lan: MakeLan) -> None:
    lan = make_lan(3)
    assert len({node.ip for node in lan.nodes}) == 3
    assert all(ipaddress.IPv4Address(node.ip) in lan.subnet for node in lan.nodes)
    for a in lan.nodes:
        for b in lan.nodes:
            if a is not b:
                assert a.ping(b), f"{a} cannot reach {b}"


@pytest.mark.netns
def test_multicast_reaches_every_other_node(make_lan: MakeLan) -> None:
    sender, *receivers = make_lan(3).nodes
    group, port = "224.0.0.251", "5353"
    procs = [
        node.popen(py(MCAST_RECEIVE, group, port), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for node in receivers
    ]
    for proc in procs:
        assert read_line(proc, 10) == "joined"
    sender.run(py(MCAST_SEND, group, port, "hello-lan"))
    for proc in procs:
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert out.decode().split() == ["hello-lan", sender.ip]


@pytest.mark.netns
def test_machine_namespace_untouched() -> None:
    before = root_network()
    with Lan(3) as lan:
        during = root_network()
        assert lan.nodes[0].ping(lan.nodes[2])
    assert during == before
    assert root_network() == before


@pytest.mark.netns
def test_cut_and_reattach(make_lan: MakeLan) -> None:
    a, b, c = make_lan(3).nodes
    assert a.ping(b)
    b.cut()
    assert not b.attached
    assert not a.ping(b, timeout=0.3)
    assert not b.ping(c, timeout=0.3)
    assert a.ping(c), "cutting one node must leave the others connected"
    b.reattach()
    wait_until(lambda: a.ping(b, timeout=0.3), 5, "b reachable again")
    assert b.ping(c)


@pytest.mark.netns
def test_teardown_after_the_test_body_raised() -> None:
    with pytest.raises(RuntimeError, match="boom"), Lan(2, kill_grace=0.5) as lan:
        names = lan.netns_names()
        tracked = lan.nodes[0].popen(["sleep", "60"])
        # Ignores SIGTERM, so only the SIGKILL after the grace period ends it.
        stubborn = lan.nodes[0].popen(["sh", "-c", "trap '' TERM; exec sleep 60"])
        # Not a child of ours: only the sweep of `ip netns pids` finds it.
        orphan = int(lan.nodes[1].run(["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"]).stdout)
        assert len(names) == 3 and set(names) <= set(list_netns())
        raise RuntimeError("boom")
    assert not set(names) & set(list_netns())
    assert tracked.returncode == -signal.SIGTERM
    assert stubborn.returncode == -signal.SIGKILL
    assert is_dead(orphan)
    lan.close()  # again: a no-op


@pytest.mark.netns
def test_set_address_moves_the_node(make_lan: MakeLan) -> None:
    lan = make_lan(2)
    a, b = lan.nodes
    old, new = b.ip, str(lan.subnet.network_address + 200)
    b.set_address(new)
    assert b.ip == new
    assert f"inet {new}/24" in b.run(["ip", "-4", "addr", "show", "dev", "eth0"]).stdout
    assert "224.0.0.0/4 dev eth0" in b.run(["ip", "route"]).stdout
    wait_until(lambda: a.ping(new, timeout=0.3), 5, "the new address to answer")
    assert not a.ping(old, timeout=0.3)
    with pytest.raises(ValueError, match="taken"):
        b.set_address(a.ip)


@pytest.mark.netns
def test_blackhole_drops_everything_but_keeps_the_link_up(make_lan: MakeLan) -> None:
    a, b = make_lan(2).nodes
    assert a.ping(b)
    b.blackhole()
    assert not a.ping(b, timeout=0.3)
    assert not b.ping(a, timeout=0.3)
    link = json.loads(b.run(["ip", "-j", "link", "show", "dev", "eth0"]).stdout)[0]
    assert link["operstate"] == "UP", "a blackhole is silent, unlike cut()"
    b.heal()
    wait_until(lambda: a.ping(b, timeout=0.3), 5, "b reachable after heal")


@pytest.mark.netns
def test_limit_rate_shapes_both_directions(make_lan: MakeLan) -> None:
    a, b = make_lan(2).nodes
    a.limit_rate("40mbit")  # 5 MB/s
    for sender, receiver in ((a, b), (b, a)):
        rate = transfer_rate(sender, receiver, 2_500_000)
        assert 3.0e6 < rate < 6.0e6, f"{sender.name}->{receiver.name}: {rate / 1e6:.1f} MB/s"
    b.blackhole()
    b.heal()  # restores b's own (unshaped) link and leaves a's shaping alone
    assert "tbf" in a.run(["tc", "qdisc", "show", "dev", "eth0"]).stdout
    a.limit_rate(None)
    assert "tbf" not in a.run(["tc", "qdisc", "show", "dev", "eth0"]).stdout
    with pytest.raises(ValueError, match="tc rate"):
        a.limit_rate("fast")


# The stdlib fallback always; iputils' ping where it is installed (CI's image has none).
@pytest.mark.netns
@pytest.mark.parametrize("tool", ["python", *(["ping"] if shutil.which("ping") else [])])
def test_ping_tools(make_lan: MakeLan, tool: Literal["ping", "python"]) -> None:
    lan = make_lan(2)
    a, b = lan.nodes
    assert a.ping(b, tool=tool)
    assert a.ping(a, tool=tool)
    assert not a.ping(str(lan.subnet.network_address + 250), 0.3, tool)


@pytest.mark.netns
def test_interrupted_run_cleans_up_at_exit() -> None:
    code = (
        "from tests.lan.netns import Lan\n"
        "import time\n"
        "lan = Lan(2)\n"
        "lan.nodes[0].popen(['sleep', '60'])\n"
        "print(' '.join(lan.netns_names()), flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        names = read_line(proc, 15).split()
        assert set(names) <= set(list_netns())
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert b"KeyboardInterrupt" in err
    assert names and not set(names) & set(list_netns())


@pytest.mark.netns
def test_cleanup_stale_removes_only_dead_runs(make_lan: MakeLan) -> None:
    mine = make_lan(1)
    # os._exit skips atexit, as a SIGKILL would: the namespaces stay behind.
    code = (
        "import os\nfrom tests.lan.netns import Lan\nlan = Lan(1)\n"
        "print(' '.join(lan.netns_names()), flush=True)\nos._exit(0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    left = out.split()
    assert left and set(left) <= set(list_netns())
    removed = cleanup_stale()
    assert set(left) <= set(removed)
    assert not set(left) & set(list_netns())
    assert set(mine.netns_names()) <= set(list_netns())


@pytest.mark.netns
def test_concurrent_lans_get_distinct_subnets(monkeypatch: pytest.MonkeyPatch) -> None:
    with Lan(1, rng=random.Random(7)) as first:
        # Both pick the same first candidate, and the second does not see the first in its
        # early look (a race): it must notice after claiming and move on.
        monkeypatch.setattr(netns, "_subnets_in_use", set)
        with Lan(1, rng=random.Random(7)) as second:
            assert second.subnet != first.subnet
            assert second.nodes[0].ip != first.nodes[0].ip


# --- the capability check (no namespaces needed) ---------------------------------------------


def test_reason_names_a_missing_ip_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "ip" else "/bin/x")
    reason = netns.netns_unavailable_reason()
    assert reason is not None and "ip not found" in reason


def test_reason_names_a_missing_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda tool: f"/usr/sbin/{tool}")
    monkeypatch.setattr(netns, "_effective_caps", lambda: 1 << netns._CAP_NET_ADMIN)
    reason = netns.netns_unavailable_reason()
    assert reason is not None and "CAP_SYS_ADMIN" in reason


def test_without_namespaces_tests_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "cached_unavailable_reason", lambda: "no CAP_SYS_ADMIN")
    monkeypatch.delenv(netns.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no CAP_SYS_ADMIN"):
        netns.require_netns()


def test_without_namespaces_ci_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "cached_unavailable_reason", lambda: "no CAP_SYS_ADMIN")
    monkeypatch.setenv(netns.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="MESH_REQUIRE_NETNS=1"):
        netns.require_netns()


def test_with_namespaces_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "cached_unavailable_reason", lambda: None)
    monkeypatch.setenv(netns.REQUIRE_ENV, "1")
    netns.require_netns()


def test_rates_parse_like_tc() -> None:
    assert netns._rate_bytes("100mbit") == 12.5e6
    assert netns._rate_bytes("10mbps") == 10e6
    assert netns._rate_bytes("1.5Gbit") == 187.5e6
    with pytest.raises(ValueError):
        netns._rate_bytes("100")


def test_wait_until_times_out() -> None:
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="never"):
        wait_until(lambda: False, 0.1, "never")
    assert time.monotonic() - start < 1
