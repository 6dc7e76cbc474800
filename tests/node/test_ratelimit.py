"""The node's rate limit: a cap on the rate, shared by everything that takes from it."""

from __future__ import annotations

import asyncio
import time

from mesh.node.ratelimit import Limits, RateLimit

MiB = 1 << 20


async def test_no_limit_never_waits() -> None:
    limit = RateLimit(0)
    began = time.monotonic()
    for _ in range(1000):
        await limit.take(MiB)
    assert time.monotonic() - began < 0.5


async def test_taking_more_than_the_burst_waits_for_the_rate() -> None:
    limit = RateLimit(8 * MiB, burst=MiB)
    began = time.monotonic()
    for _ in range(5):
        await limit.take(MiB)
    # The first MiB is the burst; the other four take half a second at 8 MiB/s.
    assert time.monotonic() - began >= 0.45


async def test_concurrent_takers_share_the_rate_instead_of_each_getting_it() -> None:
    limit = RateLimit(8 * MiB, burst=MiB)

    async def move(n: int) -> None:
        for _ in range(n):
            await limit.take(MiB)

    began = time.monotonic()
    await asyncio.gather(move(3), move(3))
    assert time.monotonic() - began >= 0.55  # 5 MiB beyond the burst, at 8 MiB/s


def test_a_node_has_one_limit_per_direction() -> None:
    limits = Limits(20_000_000)
    assert limits.serve is not limits.pull
    assert limits.serve.bytes_per_s == limits.pull.bytes_per_s == 20_000_000
