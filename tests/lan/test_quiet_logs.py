"""What the logs say about normal life on a simulated LAN (real `mesh up`, real mDNS).

Joins, restarts (one node, then all at once, so that members dial each other at the same
moment) and stops are normal: no node may log a WARNING, an ERROR, a traceback or a line
that reads as a failure, and every pair of members ends with one stream."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lan.meshnodes import LanPeer, all_online, dump_logs, init_all, until, up_all
from tests.lan.netns import MakeLan

pytestmark = pytest.mark.netns

# Lines of a healthy node's log that would alarm a person reading it.
ALARMING = re.compile(
    r"WARNING|ERROR|CRITICAL|Traceback|Exception|broke|internal|Aborting|due to server stop"
    r"|refused|failed|protocol error|never retrieved",
    re.IGNORECASE,
)


@pytest.fixture
def peers(make_lan: MakeLan, tmp_path: Path) -> Iterator[list[LanPeer]]:
    lan = make_lan(4)
    made = [
        LanPeer(host, tmp_path, name, *UP_ARGS) for host, name in zip(lan.nodes, NAMES, strict=True)
    ]
    init_all(made)
    yield made
    dump_logs(made)


UP_ARGS: tuple[str, ...] = ()
NAMES = ("tower", "laptop", "desk", "air")


def alarming(peer: LanPeer) -> list[str]:
    return [line for line in peer.log.read_text().splitlines() if ALARMING.search(line)]


def test_joins_restarts_and_stops_log_nothing_alarming(peers: list[LanPeer]) -> None:
    tower, *others = peers
    up_all(peers)
    for p in others:
        assert "joined the mesh" in p.cli("join", tower.invite()).stdout
    until("every node online with every other", lambda: all_online(peers), 60)

    # One node restarts: the others dial it, it dials them.
    laptop = others[0]
    laptop.stop()
    laptop.up()
    until("the laptop back with everyone", lambda: all_online(peers), 30)

    # All restart at once: every pair dials each other at the same moment.
    for p in peers:
        p.stop()
    up_all(peers)
    until("every node online again", lambda: all_online(peers), 30)
    for p in peers:
        p.stop()

    for p in peers:
        assert alarming(p) == [], f"{p.name}'s log:\n{p.log.read_text()}"
