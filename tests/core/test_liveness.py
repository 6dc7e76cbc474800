"""Presence reports (core/liveness.py): who is online through others' sessions."""

from __future__ import annotations

import hashlib

from mesh.core.ids import NodeId
from mesh.core.liveness import Presence, PresenceTable


def ids(n: int) -> list[NodeId]:
    return [NodeId(hashlib.sha256(bytes([i, 9])).digest()) for i in range(n)]


A, B, C, D, E = ids(5)
MEMBERS = {A, B, C, D, E}


def report(origin: NodeId, version: int, *peers: NodeId) -> Presence:
    return Presence(origin=origin, version=version, peers=frozenset(peers))


def test_members_reached_through_a_chain_of_reports_are_online() -> None:
    table = PresenceTable(A)
    assert table.own(1, {B}) == report(A, 1, B)
    assert table.merge([report(B, 5, A, C), report(C, 2, B, D)], MEMBERS) != []
    assert table.reachable() == {B, C, D}


def test_a_dead_members_last_report_is_not_followed() -> None:
    table = PresenceTable(A)
    table.own(1, {B})
    table.merge([report(B, 1, A, C), report(C, 1, B, D), report(D, 1, C, E)], MEMBERS)
    assert table.reachable() == {B, C, D, E}
    # C dies: B's session with it ends and B says so; C's own report still names D.
    table.merge([report(B, 2, A)], MEMBERS)
    assert table.reachable() == {B}


def test_only_newer_reports_of_members_and_never_our_own_are_taken() -> None:
    table = PresenceTable(A)
    table.own(10, {B})
    stranger = ids(6)[5]
    news = table.merge(
        [report(B, 3, A, C), report(B, 2, A), report(A, 99), report(stranger, 1, A)], MEMBERS
    )
    assert news == [report(B, 3, A, C)]
    assert table.reports[A] == report(A, 10, B)
    assert table.merge([report(B, 3, A)], MEMBERS) == []  # not newer


def test_own_report_is_news_only_when_the_sessions_change_and_its_version_grows() -> None:
    table = PresenceTable(A)
    first = table.own(100, {B, C})
    assert first is not None
    assert table.own(200, {C, B}) is None
    again = table.own(50, {B})  # a clock that went back: the version still grows
    assert again is not None and again.version == 101


def test_removed_members_reports_are_forgotten() -> None:
    table = PresenceTable(A)
    table.own(1, {B})
    table.merge([report(B, 1, A, C)], MEMBERS)
    table.forget({A, C})
    assert B not in table.reports and table.reachable() == {B}
