"""Speeds from progress samples: the slope over the window, reset when progress goes back."""

from __future__ import annotations

import pytest

from mesh.core.rates import Rates


def test_no_speed_until_samples_span_time() -> None:
    r = Rates()
    assert r.rate("x") is None
    r.sample("x", 100, now=1.0)
    assert r.rate("x") is None
    r.sample("x", 100, now=1.0)
    assert r.rate("x") is None


def test_the_slope_over_the_window() -> None:
    r = Rates(window_s=5.0)
    for second in range(10):
        r.sample("x", second * 1_000_000, now=float(second))
    assert r.rate("x") == pytest.approx(1_000_000)
    # Updates once a second, sampled twice a second: the same speed, not half or double.
    r2 = Rates(window_s=5.0)
    for tick in range(20):
        r2.sample("y", (tick // 2) * 1_000_000, now=tick / 2)
    assert r2.rate("y") == pytest.approx(1_000_000, rel=0.15)


def test_old_samples_leave_the_window() -> None:
    r = Rates(window_s=2.0)
    r.sample("x", 0, now=0.0)
    r.sample("x", 10_000_000, now=1.0)  # a fast start
    for t in range(2, 8):
        r.sample("x", 10_000_000 + (t - 1) * 1_000, now=float(t))  # then a crawl
    assert r.rate("x") == pytest.approx(1_000)


def test_progress_going_back_starts_over_and_ended_loans_are_forgotten() -> None:
    r = Rates()
    r.sample("x", 500, now=0.0)
    r.sample("x", 900, now=1.0)
    r.sample("x", 100, now=2.0)
    assert r.rate("x") is None
    r.sample("y", 1, now=0.0)
    r.sample("y", 2, now=1.0)
    r.keep(["x"])
    assert r.rate("y") is None
