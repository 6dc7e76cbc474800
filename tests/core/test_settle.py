"""Settling, on its own clock: quiet for settle_s, unchanged since the last look, not fresh."""

from __future__ import annotations

from mesh.core.settle import Settler

K = ("lib", "a.txt")


def test_a_path_is_due_once_quiet_for_the_settle_time() -> None:
    s = Settler(0.5)
    s.touch(K, now=10.0)
    assert s.due(10.4) == []
    s.touch(K, now=10.4)  # another write: the quiet period starts again
    assert s.due(10.8) == []
    assert s.next_due() == 10.9
    assert s.due(10.9) == [K]
    assert s.confirm(K, (5, 1), mtime_age_s=9.0, now=10.9)
    assert len(s) == 0 and s.next_due() is None


def test_a_fresh_mtime_or_a_change_since_the_last_look_waits_again() -> None:
    s = Settler(0.5)
    s.touch(K, now=0.0)
    assert not s.confirm(K, (5, 1), mtime_age_s=0.1, now=1.0)  # written a moment ago
    assert s.due(1.2) == []
    assert not s.confirm(K, (9, 2), mtime_age_s=3.0, now=1.5)  # grew since the last look
    assert s.confirm(K, (9, 2), mtime_age_s=3.5, now=2.0)


def test_a_poller_look_counts_as_the_first() -> None:
    s = Settler(0.5)
    s.saw(K, (5, 1), now=0.0)
    assert not s.confirm(K, (6, 2), mtime_age_s=60.0, now=0.5)  # an old mtime, yet it moved
    assert s.confirm(K, (6, 2), mtime_age_s=60.5, now=1.0)


def test_a_missing_file_settles_as_missing_and_a_future_mtime_does_not_block() -> None:
    s = Settler(0.5)
    s.touch(K, now=0.0)
    s.touch(("lib", "b"), now=0.0)
    assert s.confirm(K, None, mtime_age_s=0.0, now=0.5)
    assert s.confirm(("lib", "b"), (1, 1), mtime_age_s=-30.0, now=0.5)


def test_confirming_a_path_touched_again_meanwhile_keeps_it_pending() -> None:
    s = Settler(0.5)
    s.touch(K, now=0.0)
    assert s.due(0.5) == [K]
    s.touch(K, now=0.6)
    assert not s.confirm(K, (1, 1), mtime_age_s=5.0, now=0.7)
    assert s.pending_in("lib") == {"a.txt"}


def test_pending_paths_by_library_and_forgetting_one() -> None:
    s = Settler(0.5)
    s.touch(("a", "x"), now=0.0)
    s.touch(("a", "d/y"), now=0.0)
    s.touch(("b", "z"), now=0.0)
    assert s.pending_in("a") == {"x", "d/y"}
    s.forget("a")
    assert s.pending_in("a") == frozenset()
    assert s.pending_in("b") == {"z"}


def test_many_pending_paths_cost_only_what_is_due() -> None:
    s = Settler(0.5)
    for i in range(50_000):
        s.touch(("lib", f"f{i}"), now=i / 100_000)  # a big copy: 50k files in half a second
    s.touch(("lib", "f0"), now=0.6)  # written again: now the last to settle
    assert s.next_due() == 1 / 100_000 + 0.5
    assert s.due(0.5 + 9 / 100_000) == [("lib", f"f{i}") for i in range(1, 10)]
    assert s.due(1.2)[-1] == ("lib", "f0")
