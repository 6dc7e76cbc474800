"""Invitations on a simulated LAN with real mDNS: what the LAN sees of them, and joins
without an address, also with several open at once.

What another host sees is asked of a browser nobody here wrote the logic of: a fresh
`zeroconf.ServiceBrowser` in that host's namespace, browsing for a fixed time (as
FIELD-NOTES.md describes), so a cached or half-withdrawn announcement shows."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mesh.security.words import WORDS
from tests.lan.meshnodes import LanPeer, all_online, dump_logs, init_all, until, up_all
from tests.lan.netns import MakeLan, NetNode, py, read_line

pytestmark = pytest.mark.netns
MakePeers = Callable[..., list[LanPeer]]
CODE = re.compile(r"mesh join (\S+) --at (\S+)")

# A browser of invitations in a fresh process, what nobody here wrote the logic of.
_BROWSER = """
import json, sys, time
from zeroconf import IPVersion, ServiceBrowser, Zeroconf
zc = Zeroconf(interfaces=[sys.argv[1]], ip_version=IPVersion.V4Only)
seen = set()
class Listener:
    def add_service(self, zc, kind, name): seen.add(name)
    def remove_service(self, zc, kind, name): seen.discard(name)
    def update_service(self, zc, kind, name): pass
browser = ServiceBrowser(zc, "_mesh-pair._tcp.local.", Listener())
"""

_BROWSE = (
    _BROWSER
    + """
def resolved():
    found = {}
    for name in sorted(seen):
        info = zc.get_service_info("_mesh-pair._tcp.local.", name, 1000)
        if info is not None:
            found[name] = (info.properties.get(b"n") or b"").decode()
    return found
deadline = time.monotonic() + float(sys.argv[2])
enough = int(sys.argv[3])
while time.monotonic() < deadline and not (enough and len(seen) >= enough):
    time.sleep(0.05)
found = resolved()
browser.cancel()
zc.close()
print(json.dumps(found))
"""
)


def advertised(host: NetNode, browse_s: float = 2.0, enough: int = 0) -> dict[str, str]:
    """The open invitations a fresh browser on `host` sees within `browse_s` seconds, with the
    number each announces; sooner once it has seen `enough` of them (0: browse it all, as a
    check that nothing is announced must)."""
    proc = subprocess.run(
        host.exec_args([sys.executable, "-c", _BROWSE, host.ip, str(browse_s), str(enough)]),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    found: dict[str, str] = json.loads(proc.stdout)
    return found


@pytest.fixture
def lan_peers(make_lan: MakeLan, tmp_path: Path) -> Iterator[MakePeers]:
    made: list[LanPeer] = []

    def make(names: list[str], home: Path = tmp_path) -> list[LanPeer]:
        lan = make_lan(len(names))
        peers = [LanPeer(host, home, name) for host, name in zip(lan.nodes, names, strict=True)]
        init_all(peers)
        made.extend(peers)
        return peers

    yield make
    dump_logs(made)


def _invite(peer: LanPeer, *args: str) -> str:
    found = CODE.search(peer.cli("invite", *args).stdout)
    assert found
    return found.group(1)


def _wrong(code: str, k: int) -> str:
    number, first, second = code.split("-")
    return f"{number}-{first}-{WORDS[(WORDS.index(second) + k) % len(WORDS)]}"


def _gone_within_2_s(observer: NetNode) -> None:
    began = time.monotonic()
    seen = advertised(observer, browse_s=2.0)
    assert seen == {}, f"still announced {time.monotonic() - began:.1f} s later: {seen}"


@pytest.mark.slow  # started first (tests/conftest.py)
def test_a_closed_invitation_is_withdrawn_at_once_whatever_closed_it(
    lan_peers: MakePeers,
) -> None:
    tower, laptop, desk, observer = lan_peers(["tower", "laptop", "desk", "observer"])
    up_all([tower, laptop, desk])

    # Open: the LAN sees it, with its code's number, and `mesh invite` says no address is
    # needed.
    out = tower.cli("invite").stdout
    code = CODE.search(out).group(1)  # type: ignore[union-attr]
    assert f"    mesh join {code}\n" in out and "It finds this invitation on the LAN" in out
    assert list(advertised(observer.host, enough=1).values()) == [code.split("-")[0]]

    # Used.
    assert "joined the mesh" in laptop.cli("join", code).stdout
    _gone_within_2_s(observer.host)

    # Cancelled.
    _invite(tower)
    assert tower.cli("invite", "--cancel").stdout.strip() == "invitation closed"
    _gone_within_2_s(observer.host)

    # Locked by five wrong codes, the fifth saying so.
    code = _invite(tower)
    for k in range(1, 6):
        said = desk.cli("join", _wrong(code, k), check=False).stderr
        assert ("now closed" in said) == (k == 5), said
    _gone_within_2_s(observer.host)
    said = desk.cli("join", code, check=False).stderr
    assert "was closed after 5 wrong codes" in said

    # Expired.
    code = _invite(tower, "--for", "1s")
    until("the invitation to expire", lambda: not advertised(observer.host, 0.5), 10)
    said = desk.cli("join", code, check=False).stderr
    assert "expired" in said

    # Restarted with nothing open: nothing announced.
    tower.stop()
    tower.start()
    until("tower to run", tower.running, 30)
    assert advertised(observer.host) == {}


def test_two_inviters_at_once_each_joiner_finds_its_own_and_costs_no_try(
    lan_peers: MakePeers,
) -> None:
    tower, laptop, air, desk = lan_peers(["tower", "laptop", "air", "desk"])
    up_all([tower, laptop, air, desk])
    assert "joined the mesh" in laptop.cli("join", _invite(tower)).stdout
    for _ in range(20):  # two codes with the same number would share a nameplate
        first, second = _invite(tower), _invite(laptop)
        if first.split("-")[0] != second.split("-")[0]:
            break
    results: dict[str, subprocess.CompletedProcess[str]] = {}

    def join(peer: LanPeer, code: str) -> None:
        results[peer.name] = peer.cli("join", code, check=False)

    threads = [
        threading.Thread(target=join, args=(air, first)),
        threading.Thread(target=join, args=(desk, second)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for name, proc in results.items():
        assert proc.returncode == 0 and "joined the mesh" in proc.stdout, (name, proc.stderr)
    until("four nodes online with each other", lambda: all_online([tower, laptop, air, desk]), 30)
    for p in (tower, laptop):
        assert "wrong code" not in p.log.read_text()


@pytest.mark.slow  # started first (tests/conftest.py)
@pytest.mark.timeout(400)
def test_the_readme_walkthrough_on_four_hosts_ten_times_without_an_address(
    make_lan: MakeLan, tmp_path: Path
) -> None:
    """tower invites, laptop joins; laptop invites right after it joined, air joins; the
    tower invites again, desk joins: never an --at, ten rounds of fresh nodes in a row.

    Rounds take turns on two LANs: a round's nodes stop (goodbyes on mDNS, streams parted
    within the shutdown grace) while the next round's start and join on the other LAN."""
    rounds = int(os.environ.get("MESH_WALKTHROUGH_ROUNDS", "10"))
    lans = [make_lan(4), make_lan(4)]
    names = ["tower", "laptop", "air", "desk"]
    joins: list[float] = []
    stopping: list[tuple[int, list[LanPeer]]] = []  # the round before, told to stop

    def stopped(r: int, peers: list[LanPeer]) -> None:
        dump_logs(peers)  # waits for them to exit
        for p in peers:
            text = p.log.read_text()
            assert " WARNING " not in text and " ERROR " not in text, f"round {r}: {text}"

    try:
        for r in range(rounds):
            hosts = lans[r % 2].nodes
            peers = [
                LanPeer(h, tmp_path / f"round{r}", n) for h, n in zip(hosts, names, strict=True)
            ]
            tower, laptop, air, desk = peers
            init_all(peers)
            stopping.append((r, peers))
            up_all(peers)
            for inviter, joiner in ((tower, laptop), (laptop, air), (tower, desk)):
                with inviter.control() as control:  # `mesh invite`, without a CLI start
                    code = control.invite(600, cancel=False).code
                began = time.monotonic()
                proc = joiner.cli("join", code, check=False)  # what the person types
                joins.append(time.monotonic() - began)
                assert proc.returncode == 0, f"round {r}: {joiner.name}: {proc.stderr}"
            until(f"round {r}: all four online", lambda: all_online(peers), 30)  # noqa: B023
            if len(stopping) > 1:
                stopped(*stopping.pop(0))
            for p in peers:
                assert p.proc is not None
                p.proc.terminate()
        stopped(*stopping.pop())
    finally:
        for _, peers in stopping:  # a round that failed, and the one before it
            dump_logs(peers)
    joins.sort()
    print(
        f"\n{len(joins)} joins without --at: median {joins[len(joins) // 2]:.2f} s, "
        f"slowest {joins[-1]:.2f} s"
    )


def test_at_takes_the_host_its_pairing_port_or_its_node_port(lan_peers: MakePeers) -> None:
    tower, laptop, air, desk = lan_peers(["tower", "laptop", "air", "desk"])
    up_all([tower, laptop, air, desk])
    ip = tower.host.ip
    for joiner, at in ((laptop, ip), (air, f"{ip}:6375"), (desk, f"{ip}:6374")):
        proc = joiner.cli("join", _invite(tower), "--at", at, check=False)
        assert proc.returncode == 0, (at, proc.stderr)
    until("four nodes online with each other", lambda: all_online([tower, laptop, air, desk]), 30)


@pytest.mark.slow  # started first (tests/conftest.py)
def test_a_removed_node_learns_it_on_the_lan_and_stops_dialling(lan_peers: MakePeers) -> None:
    tower, laptop, air = lan_peers(["tower", "laptop", "air"])
    up_all([tower, laptop, air])
    for joiner in (laptop, air):
        assert "joined the mesh" in joiner.cli("join", _invite(tower)).stdout
    until("three nodes online", lambda: all_online([tower, laptop, air]), 30)
    air.stop()
    laptop.cli("remove", "air")  # another member than the inviter, while air is away
    air.start()
    until("air to run", air.running, 30)

    def removed_by() -> str | None:
        return air.json("status")["removed_by"]  # type: ignore[no-any-return]

    until("air learning it was removed", lambda: removed_by() == "laptop", 15)
    assert "removed from the mesh by laptop" in air.cli("members").stdout
    proc = air.cli("borrow", "tower:Movies/heat.mkv", check=False)
    assert proc.returncode == 1 and "removed from the mesh by laptop" in proc.stderr
    # The others see two members, online; air is no longer among them, nor dialled.
    assert {m["name"] for m in tower.json("members")} == {"tower", "laptop"}
    for p in (tower, laptop):
        assert " WARNING " not in p.log.read_text(), p.log.read_text()


_WATCH = (
    _BROWSER
    + """
print("browsing", flush=True)
sys.stdin.readline()  # the inviter has withdrawn
time.sleep(float(sys.argv[2]))
browser.cancel()
zc.close()
print(json.dumps(sorted(seen)), flush=True)
"""
)

_INVITE_AND_WITHDRAW = """
import asyncio, sys
from mesh.core.ids import NodeId
from mesh.discovery.mdns import MdnsDiscovery
async def main():
    mdns = MdnsDiscovery(node_id=NodeId(bytes(32)), port=6374, interfaces=(),
                         on_hint=lambda hint: None)
    await mdns.start()
    await mdns.advertise_pairing(6375, 417)
    await mdns.withdraw_pairing()  # at once: zeroconf is still announcing it
    print("withdrawn", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await mdns.stop()
asyncio.run(main())
"""


def test_an_invitation_withdrawn_while_still_being_announced_is_gone(make_lan: MakeLan) -> None:
    # Withdrawn while zeroconf still repeats the announcement (it does for ~0.5 s after
    # registering): the LAN must see nothing left. CI once saw a cancelled invitation still
    # answered 2 s after `mesh invite --cancel` on a loaded machine; this test did not
    # reproduce it, and the cause is not pinned down (see MdnsDiscovery._pair_lock).
    inviter, observer = make_lan(2).nodes
    watch = observer.popen(
        py(_WATCH, observer.ip, "2.5"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    invite = inviter.popen(
        py(_INVITE_AND_WITHDRAW),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert read_line(watch, 20) == "browsing"
        assert read_line(invite, 20) == "withdrawn"
        assert watch.stdin is not None
        watch.stdin.write(b"\n")
        watch.stdin.flush()
        assert json.loads(read_line(watch, 20)) == []
    finally:
        for proc in (invite, watch):
            if proc.stdin is not None and not proc.stdin.closed:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
