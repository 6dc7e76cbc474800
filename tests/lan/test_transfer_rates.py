"""Pulls on a simulated LAN whose links are shaped with `tc`: several sources at once, a
source lost half-way, and the node's bandwidth limit. Real `mesh up` processes, one per
namespace; rates are read from the borrower's own "pulled ..." log line, which times the
transfer alone (from its first request to its last verified chunk)."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mesh.core.status import LoanLine
from tests.faults.harness import write_file
from tests.lan.meshnodes import LanPeer, dump_logs, init_all, until, up_all
from tests.lan.netns import MakeLan

pytestmark = pytest.mark.netns
MB = 1_000_000
RATE = 10 * MB  # what `tc` lets each shaped link carry
PULLED = re.compile(r"pulled (\S+): ([\d.]+) MB in ([\d.]+) s \(([\d.]+) MB/s\) from (.*)")


@dataclass
class Pulled:
    mb: float
    seconds: float
    rate: float  # bytes per second
    sources: dict[str, float]  # MB each source served


def pulled(peer: LanPeer, name: str) -> Pulled | None:
    for line in peer.log.read_text().splitlines():
        found = PULLED.search(line)
        if found and found.group(1) == name:
            sources = {
                who: float(mb) for who, mb in re.findall(r"(\S+) ([\d.]+) MB", found.group(5))
            }
            return Pulled(
                mb=float(found.group(2)),
                seconds=float(found.group(3)),
                rate=float(found.group(4)) * MB,
                sources=sources,
            )
    return None


def loan_line(peer: LanPeer, loan: str) -> LoanLine | None:
    with peer.control() as control:
        return next((x for x in control.loans() if x.id == loan), None)


def phase(peer: LanPeer, loan: str) -> str:
    line = loan_line(peer, loan)
    return line.phase if line is not None else ""


def bytes_done(peer: LanPeer, loan: str) -> int:
    line = loan_line(peer, loan)
    return line.bytes_done if line is not None else 0


def lend(lender: LanPeer, path: str, to: str) -> str:
    with lender.control() as control:
        return control.lend(path, to, 0).id


Trio = tuple[LanPeer, LanPeer, LanPeer]


@pytest.fixture
def trio(make_lan: MakeLan, tmp_path: Path) -> Iterator[Callable[..., Trio]]:
    """tower, desk and laptop on one LAN, joined, tower sharing a folder as "Films"."""
    made: list[LanPeer] = []

    def make(*laptop_args: str, tower_args: tuple[str, ...] = ()) -> Trio:
        lan = make_lan(3)
        names = ("tower", "desk", "laptop")
        args = {"tower": tower_args, "laptop": laptop_args}
        peers = [
            LanPeer(host, tmp_path, name, "--no-mdns", *args.get(name, ()))
            for host, name in zip(lan.nodes, names, strict=True)
        ]
        made.extend(peers)
        init_all(peers)
        for p in peers:
            p.configure("borrowing.folder", str(tmp_path / f"{p.name}-borrowed"))
            p.configure("borrowing.reserve", "0")
        up_all(peers)
        tower, desk, laptop = peers
        for joiner in (desk, laptop):
            with tower.control() as inviter, joiner.control() as control:
                code = inviter.invite(60).code
                control.join(code, tower.host.ip, 6375)
        films = tmp_path / "films"
        films.mkdir()
        with tower.control() as control:
            control.share(str(films), "Films")
        return tower, desk, laptop

    yield make
    dump_logs(made)


def add_film(tower: LanPeer, tmp_path: Path, name: str, size: int) -> None:
    write_file(tmp_path / "films" / name, size)
    with tower.control() as control:
        control.scan(["Films"])


def test_two_shaped_holders_serve_one_pull_at_nearly_twice_the_rate_of_one(
    trio: Callable[..., Trio], tmp_path: Path
) -> None:
    tower, desk, laptop = trio("--log-level", "debug")
    add_film(tower, tmp_path, "heat.mkv", 96 * MB)
    first = lend(tower, "Films/heat.mkv", "desk")
    until("the desk to hold its copy", lambda: phase(desk, first) == "held", 60)
    tower.host.limit_rate("80mbit")
    desk.host.limit_rate("80mbit")
    second = lend(tower, "Films/heat.mkv", "laptop")
    until("the laptop to hold its copy", lambda: phase(laptop, second) == "held", 60)
    got = pulled(laptop, "heat.mkv")
    assert got is not None, laptop.log.read_text()
    print(f"two holders at {RATE / MB:.0f} MB/s each: {got}")
    assert set(got.sources) == {"tower", "desk"}
    assert got.rate >= 1.8 * RATE, got


def test_a_source_killed_half_way_leaves_the_rest_to_the_other_at_its_speed(
    trio: Callable[..., Trio], tmp_path: Path
) -> None:
    tower, desk, laptop = trio()
    size = 64 * MB
    add_film(tower, tmp_path, "heat.mkv", size)
    first = lend(tower, "Films/heat.mkv", "desk")
    until("the desk to hold its copy", lambda: phase(desk, first) == "held", 60)
    tower.host.limit_rate("80mbit")
    desk.host.limit_rate("80mbit")
    second = lend(tower, "Films/heat.mkv", "laptop")
    until("half of the pull", lambda: bytes_done(laptop, second) >= size // 2, 60)
    desk.stop(signal.SIGKILL)
    killed, done_then = time.monotonic(), bytes_done(laptop, second)
    until("the laptop to hold its copy", lambda: phase(laptop, second) == "held", 60)
    took = time.monotonic() - killed
    # The rest at the tower's rate, plus what the checkpoint had not reported yet (a
    # second's worth at most), plus polling: no stall of a keepalive window or more.
    expected = (size - done_then) / RATE + 1.0
    print(f"after the kill: {took:.1f} s for {(size - done_then) / MB:.0f} MB")
    assert took <= expected + 2.0, (took, expected)
    got = pulled(laptop, "heat.mkv")
    assert got is not None and "tower" in got.sources, laptop.log.read_text()


@pytest.mark.parametrize("side", ["serving", "pulling"])
def test_the_bandwidth_limit_holds_within_10_percent(
    trio: Callable[..., Trio], tmp_path: Path, side: str
) -> None:
    limit = ("--limit", "10MB")
    if side == "serving":
        tower, _desk, laptop = trio(tower_args=limit)
    else:
        tower, _desk, laptop = trio(*limit)
    add_film(tower, tmp_path, "heat.mkv", 48 * MB)
    loan = lend(tower, "Films/heat.mkv", "laptop")
    until("the laptop to hold its copy", lambda: phase(laptop, loan) == "held", 60)
    got = pulled(laptop, "heat.mkv")
    assert got is not None, laptop.log.read_text()
    print(f"{side} limit 10 MB/s: {got.rate / MB:.2f} MB/s")
    assert 0.9 * RATE <= got.rate <= 1.1 * RATE, got
