"""Discovery on a simulated LAN: real `mesh up` processes, one per namespace, real zeroconf.

No node is given another's address: invitations are found with mDNS (`mesh join CODE`),
members with mDNS and gossip. Timings are printed (pytest -s shows them)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.lan.meshnodes import (
    LanPeer,
    all_online,
    dump_logs,
    init_all,
    sees_everything,
    until,
    up_all,
)
from tests.lan.netns import MakeLan

pytestmark = pytest.mark.netns
MakePeers = Callable[..., list[LanPeer]]


@pytest.fixture
def lan_peers(make_lan: MakeLan, tmp_path: Path) -> Iterator[MakePeers]:
    """`lan_peers(3)`: 3 initialised nodes, each in its own namespace of one LAN."""
    made: list[LanPeer] = []

    def make(n: int, *up_args: str) -> list[LanPeer]:
        lan = make_lan(n)
        peers = [LanPeer(host, tmp_path, f"n{i}", *up_args) for i, host in enumerate(lan.nodes)]
        init_all(peers)
        made.extend(peers)
        return peers

    yield make
    dump_logs(made)


def share(peers: list[LanPeer], tmp: Path) -> None:
    """Each node shares a folder holding one file named after it."""
    for p in peers:
        folder = tmp / f"{p.name}-files"
        folder.mkdir()
        (folder / f"{p.name}.txt").write_text(f"hello from {p.name}")
        with p.control() as control:
            control.share(str(folder), "Files")
            control.scan(["Files"])


def form_mesh(peers: list[LanPeer], *, cli: bool = False) -> float:
    """The first node invites, the others join with the code alone (no address), one after
    another; seconds from the last join's end until every node is online with every other."""
    first, *others = peers
    for p in others:
        if cli:
            assert "joined the mesh" in p.cli("join", first.invite()).stdout
        else:
            with first.control() as inviter, p.control() as joiner:
                joiner.join(inviter.invite(60).code, "", 0)
    joined = time.monotonic()
    until("every node online with every other", lambda: all_online(peers), 60)
    return time.monotonic() - joined


def test_three_nodes_join_without_addresses_and_converge(
    lan_peers: MakePeers, tmp_path: Path
) -> None:
    peers = lan_peers(3)
    up_all(peers)
    share(peers, tmp_path)
    converged = form_mesh(peers, cli=True)
    until("every member and library on every node", lambda: sees_everything(peers), 30)
    print(f"\n3 nodes online with each other {converged:.2f} s after the last join")
    # What a person sees: every member, and every node's files.
    for p in peers:
        assert {m["name"] for m in p.json("members")} == {"n0", "n1", "n2"}
        listing = {(e["node"], e["path"]) for e in p.json("ls", "--mesh")}
        assert listing == {("n0", "n0.txt"), ("n1", "n1.txt"), ("n2", "n2.txt")}

    # Restarted together, they find each other again (announced, remembered, gossiped).
    for p in peers:
        p.stop()
    started = up_all(peers)
    running = time.monotonic()
    until("every node online again after a restart", lambda: all_online(peers), 30)
    done = time.monotonic()
    print(
        f"restarted: all online {done - started:.2f} s after starting them "
        f"({done - running:.2f} s after all ran)"
    )


def test_a_killed_node_is_offline_within_5_s_and_back_when_restarted(
    lan_peers: MakePeers,
) -> None:
    peers = lan_peers(3)
    up_all(peers)
    form_mesh(peers)
    n0, n1, n2 = peers
    n2.stop(signal.SIGKILL)  # no goodbye: neither on mDNS nor on the streams
    killed = time.monotonic()
    until("n0 and n1 to see n2 offline", lambda: all("n2" not in p.online() for p in (n0, n1)), 5)
    print(f"\nkilled node offline after {time.monotonic() - killed:.2f} s")
    assert not [v for v in n0.json("peers") if v["name"] == "n2" and v["online"]]
    n2.up()
    started = time.monotonic()
    until("n2 back online with both", lambda: all_online(peers), 30)
    print(f"restarted node online with both {time.monotonic() - started:.2f} s after it ran")


def test_a_node_cut_off_or_given_a_new_address_is_found_again(lan_peers: MakePeers) -> None:
    # IPv4 only: a session over IPv6 link-local would survive the IPv4 address change.
    peers = lan_peers(3, "--listen", "0.0.0.0")
    up_all(peers)
    form_mesh(peers)
    n0, n1, n2 = peers
    others = (n0, n1)

    n2.host.cut()
    cut = time.monotonic()
    until("n2 offline on n0 and n1", lambda: all("n2" not in p.online() for p in others), 20)
    print(f"\ncut node offline after {time.monotonic() - cut:.2f} s")
    n2.host.reattach()
    back = time.monotonic()
    until("n2 online again after reattaching", lambda: all_online(peers), 30)
    print(f"reattached node online with both after {time.monotonic() - back:.2f} s")

    new_ip = str(n2.host.lan.subnet[200])
    n2.host.set_address(new_ip)
    moved = time.monotonic()

    def found_at_new_address() -> bool:
        return all(p.online().get("n2", "").startswith(new_ip) for p in others)

    until("n2 online at its new address", found_at_new_address, 30)
    print(f"moved node online at its new address after {time.monotonic() - moved:.2f} s")
    # n2's own view may lag the others' by a reconnect (its old sessions end by keepalive).
    until("every node online with every other", lambda: all_online(peers), 15)
    # It re-announces on mDNS and re-gossips its addresses too. The others may have found it
    # first, by its own redial from the new address, while zeroconf was still probing.
    until(
        "n2 to tell the mesh its new address", lambda: "addresses are now" in n2.log.read_text(), 10
    )


def test_ten_nodes_converge(lan_peers: MakePeers, tmp_path: Path) -> None:
    began = time.monotonic()
    peers = lan_peers(10)
    up_all(peers)
    share(peers, tmp_path)
    ready = time.monotonic()
    converged = form_mesh(peers)
    joined = time.monotonic()
    until("every member and library on every node", lambda: sees_everything(peers), 60)
    print(
        f"\n10 nodes: set up {ready - began:.1f} s, 9 joins and all online "
        f"{joined - ready:.1f} s (online {converged:.2f} s after the last join), "
        f"everything seen {time.monotonic() - joined + converged:.2f} s after the last join"
    )
