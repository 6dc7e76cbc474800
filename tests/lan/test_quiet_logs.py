"""What the logs say about normal life on a simulated LAN (real `mesh up`, real mDNS).

Joins, restarts (one node, then all at once, so that members dial each other at the same
moment) and stops are normal: no node may log a WARNING, an ERROR, a traceback or a line
that reads as a failure, and every pair of members ends with one stream."""

from __future__ import annotations

import re
import signal
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


STREAM = re.compile(r"gossip stream with (\S+) (open|closed)")


def alarming(peer: LanPeer) -> list[str]:
    return [line for line in peer.log.read_text().splitlines() if ALARMING.search(line)]


def stream_story(peer: LanPeer) -> dict[str, list[str]]:
    """Per other node, the "open"/"closed" words of this node's log, in order."""
    story: dict[str, list[str]] = {}
    for found in STREAM.finditer(peer.log.read_text()):
        story.setdefault(found.group(1), []).append(found.group(2))
    return story


def one_stream_each(peers: list[LanPeer]) -> bool:
    """Every node holds exactly one stream with every other, and its log says so."""
    if not all_online(peers):
        return False
    for p in peers:
        story = stream_story(p)
        if set(story) != {q.name for q in peers} - {p.name}:
            return False
        if any(words[-1] != "open" for words in story.values()):
            return False
    return True


def test_joins_restarts_and_stops_log_nothing_alarming(peers: list[LanPeer]) -> None:
    tower, *others = peers
    up_all(peers)
    for p in others:
        assert "joined the mesh" in p.cli("join", tower.invite()).stdout
    until("one stream between every two nodes", lambda: one_stream_each(peers), 60)

    # One node restarts: the others dial it, it dials them.
    laptop = others[0]
    laptop.stop()
    laptop.up()
    until("the laptop back with everyone", lambda: one_stream_each(peers), 30)

    # All restart at once: every pair dials each other at the same moment.
    for p in peers:
        p.stop()
    up_all(peers)
    until("every node online again, one stream each", lambda: one_stream_each(peers), 30)
    # And all stop at once, as a power strip would.
    for p in peers:
        assert p.proc is not None
        p.proc.send_signal(signal.SIGTERM)
    for p in peers:
        assert p.proc is not None
        assert p.proc.wait(15) == 0

    for p in peers:
        assert alarming(p) == [], f"{p.name}'s log:\n{p.log.read_text()}"
        # One "open" per reunion: never twice in a row for one peer (a duplicate stream
        # that was announced), and each reunion ends with one "closed".
        for other, words in stream_story(p).items():
            assert words == ["open", "closed"] * (len(words) // 2), (p.name, other, words)
