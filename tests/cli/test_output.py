"""How the CLI writes sizes, speeds, durations and ages: as people say them."""

from __future__ import annotations

import pytest

from mesh.cli.output import (
    bar,
    human_ago,
    human_duration,
    human_size,
    human_speed,
    human_time_left,
)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (1_234_567_890, "1.2 GB"),
        (340_000_000, "340 MB"),
        (2_000_000_000_000_000, "2.0 PB"),
    ],
)
def test_sizes_in_si_units(n: int, text: str) -> None:
    assert human_size(n) == text


def test_speeds() -> None:
    assert human_speed(340e6) == "340 MB/s"
    assert human_speed(1.2e9) == "1.2 GB/s"
    assert human_speed(0) == "0 B/s"
    assert human_speed(-5) == "0 B/s"  # never a negative speed on screen
    assert human_speed(None) == "-"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.2, "200 ms"),
        (12.34, "12.3 s"),
        (180, "3 min"),
        (185, "3 min 5 s"),
        (3 * 3600 + 12 * 60, "3 h 12 min"),
        (5 * 86400, "5 days"),
    ],
)
def test_durations(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1, "just now"),
        (42.7, "42 s ago"),
        (190, "3 min ago"),
        (5 * 3600 + 59, "5 h ago"),
        (3 * 86400, "3 days ago"),
    ],
)
def test_ages(seconds: float, text: str) -> None:
    assert human_ago(seconds) == text


def test_bars() -> None:
    assert bar(0, 100, width=10) == "[..........]"
    assert bar(62, 100, width=10) == "[######....]"
    assert bar(100, 100, width=10) == "[##########]"
    assert bar(150, 100, width=10) == "[##########]"
    assert bar(5, 0) == ""


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (3 * 86400 - 0.048, "3 days"),  # `--for 3d`, read back a moment later
        (3600 - 0.05, "1 h"),  # `--for 1h`
        (90 * 60 - 0.2, "1 h 30 min"),
        (600 - 0.3, "10 min"),
        (9 * 60 + 30, "9 min 30 s"),
        (42.4, "42 s"),
        (2.5 * 86400, "2 days 12 h"),
        (7 * 86400 - 1, "7 days"),
    ],
)
def test_time_left_reads_as_typed(seconds: float, text: str) -> None:
    assert human_time_left(seconds) == text
