"""Peer-caused log lines: a burst per peer and kind, then one summary per window."""

from __future__ import annotations

import logging

import pytest

from mesh.node.peer_log import PeerLog

log = logging.getLogger("mesh.test.peer_log")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == log.name]


def test_a_flood_from_one_peer_is_cut_to_a_burst_and_summarized(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    peer_log = PeerLog(burst=3, window_s=60, clock=clock)
    caplog.set_level(logging.INFO, logger=log.name)
    for i in range(1000):
        peer_log.log(log, logging.WARNING, "M", "mallory", "refusal", "bad batch %d", i)
    peer_log.log(log, logging.INFO, "L", "laptop", "refusal", "from laptop")
    peer_log.log(log, logging.INFO, "M", "mallory", "open", "stream open")
    assert lines(caplog) == [
        "bad batch 0",
        "bad batch 1",
        "bad batch 2",
        "from laptop",  # another peer is not silenced
        "stream open",  # nor another kind
    ]
    caplog.clear()
    clock.now = 59.0
    peer_log.flush()
    assert lines(caplog) == []  # the window is still open
    clock.now = 60.0
    peer_log.flush()
    assert lines(caplog) == ["997 more like this from mallory (refusal) in the last 60 s"]
    [summary] = [r for r in caplog.records if r.name == log.name]
    assert summary.levelno == logging.WARNING
    caplog.clear()
    peer_log.flush()  # said once
    peer_log.log(log, logging.WARNING, "M", "mallory", "refusal", "again")
    assert lines(caplog) == ["again"]


def test_the_summary_also_comes_with_the_peers_next_line_after_the_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    peer_log = PeerLog(burst=1, window_s=10, clock=clock)
    caplog.set_level(logging.INFO, logger=log.name)
    for _ in range(5):
        peer_log.log(log, logging.INFO, "M", "mallory", "closed", "closed")
    clock.now = 11.0
    peer_log.log(log, logging.INFO, "M", "mallory", "closed", "closed")
    assert lines(caplog) == [
        "closed",
        "4 more like this from mallory (closed) in the last 10 s",
        "closed",
    ]


def test_nothing_is_counted_when_the_level_is_off(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    peer_log = PeerLog(burst=1, window_s=10, clock=clock)
    caplog.set_level(logging.WARNING, logger=log.name)
    for _ in range(5):
        peer_log.log(log, logging.INFO, "M", "mallory", "open", "open")
    clock.now = 11.0
    peer_log.flush()
    assert lines(caplog) == []
