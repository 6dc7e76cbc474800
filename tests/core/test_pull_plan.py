"""Dealing a pull's chunks out to its sources: runs, speeds, failures and taking tails."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.core.pull_plan import FIRST_RUN, MAX_RUN, MIN_RUN, QUIET_S, PullPlan, Run

MiB = 1 << 20


def fetch(plan: PullPlan[str], run: Run[str], count: int, now: float = 0.0) -> list[int]:
    """Receive and verify up to `count` chunks of `run`; the indexes taken."""
    got = []
    for index in range(run.next, run.end):
        if len(got) == count or not plan.received(run, index, now):
            break
        plan.verified(index)
        got.append(index)
    return got


def test_the_first_run_of_a_source_is_a_fixed_size_then_it_follows_its_speed() -> None:
    plan: PullPlan[str] = PullPlan(list(range(1000)), MiB)
    run = plan.take("fast", 0.0)
    assert run is not None and (run.first, run.end) == (0, FIRST_RUN)
    fetch(plan, run, FIRST_RUN)
    plan.finish(run, nbytes=FIRST_RUN * MiB, seconds=FIRST_RUN / 40)  # 40 MiB/s
    run = plan.take("fast", 1.0)
    assert run is not None and run.first == FIRST_RUN and run.end - run.first == 40
    slow: PullPlan[str] = PullPlan(list(range(1000)), MiB)
    run = slow.take("slow", 0.0)
    assert run is not None
    slow.finish(run, nbytes=MiB, seconds=10.0)
    again = slow.take("slow", 0.0)
    assert again is not None and again.end - again.first == MIN_RUN
    quick: PullPlan[str] = PullPlan(list(range(1000)), MiB)
    run = quick.take("quick", 0.0)
    assert run is not None
    quick.finish(run, nbytes=1000 * MiB, seconds=1.0)
    again = quick.take("quick", 0.0)
    assert again is not None and again.end - again.first == MAX_RUN


def test_only_missing_chunks_are_dealt_in_runs_of_consecutive_ones() -> None:
    plan: PullPlan[str] = PullPlan([3, 4, 5, 9, 10], MiB)
    first, second = plan.take("a", 0.0), plan.take("a", 0.0)
    assert first is not None and (first.first, first.end) == (3, 6)
    assert second is not None and (second.first, second.end) == (9, 11)


def test_what_a_failed_run_did_not_verify_is_dealt_again_first() -> None:
    plan: PullPlan[str] = PullPlan(list(range(100)), MiB)
    run = plan.take("a", 0.0)
    assert run is not None
    assert fetch(plan, run, 5) == [0, 1, 2, 3, 4]
    plan.finish(run, nbytes=5 * MiB, seconds=1.0)  # the source failed at chunk 5
    again = plan.take("b", 0.0)
    assert again is not None and (again.first, again.end) == (5, 5 + FIRST_RUN)


def test_a_free_source_takes_the_tail_of_the_run_that_ends_last_split_by_speed() -> None:
    plan: PullPlan[str] = PullPlan(list(range(40)), MiB)
    for source, rate in (("slow", 10 * MiB), ("fast", 30 * MiB)):
        r = plan.take(source, 0.0)
        assert r is not None
        plan.finish(r, nbytes=rate, seconds=1.0)
    slow_run = plan.take("slow", 0.0)  # 10 chunks (its speed: a second's worth)
    assert slow_run is not None and (slow_run.first, slow_run.end) == (0, 10)
    while True:  # the fast one deals with the rest of the queue, in shrinking runs
        fast_run = plan.take("fast", 0.0)
        assert fast_run is not None
        if fast_run.first < 10:
            break
        fetch(plan, fast_run, 40)
        n = fast_run.end - fast_run.first
        plan.finish(fast_run, nbytes=n * MiB, seconds=n / 30)  # still 30 MiB/s
    tail = fast_run
    # The slow run keeps the chunk it is receiving; of the other 9, the fast one takes 3/4.
    assert tail is not None and (tail.first, tail.end) == (4, 10)
    assert slow_run.end == 4
    assert fetch(plan, slow_run, 10) == [0, 1, 2, 3]  # and then it stops
    assert not plan.received(slow_run, 4, 0.2)


def test_a_quiet_source_loses_its_whole_run_to_a_free_one() -> None:
    plan: PullPlan[str] = PullPlan(list(range(8)), MiB)
    stuck = plan.take("stuck", 0.0)
    assert stuck is not None
    assert fetch(plan, stuck, 2) == [0, 1]
    taken = plan.take("other", QUIET_S + 0.5)
    assert taken is not None and (taken.first, taken.end) == (2, 8)
    assert not plan.received(stuck, 2, QUIET_S + 1)  # if it wakes up, it stops
    fetch(plan, taken, 6)
    plan.finish(taken, nbytes=6 * MiB, seconds=1.0)
    plan.finish(stuck, nbytes=2 * MiB, seconds=QUIET_S)
    assert plan.done and not plan.active


def test_nothing_to_take_while_every_run_is_down_to_its_last_chunk() -> None:
    plan: PullPlan[str] = PullPlan([0], MiB)
    run = plan.take("a", 0.0)
    assert run is not None
    assert plan.take("b", 0.5) is None  # not quiet yet, and one chunk cannot be split
    assert plan.active and not plan.done


@settings(max_examples=60, deadline=None)
@given(
    chunks=st.integers(1, 300),
    speeds=st.lists(st.integers(1, 8), min_size=1, max_size=4),
    failures=st.lists(st.tuples(st.integers(0, 3), st.integers(1, 200)), max_size=4),
    seed=st.randoms(use_true_random=False),
)
def test_every_chunk_is_verified_exactly_once_whatever_the_sources_do(
    chunks: int, speeds: list[int], failures: list[tuple[int, int]], seed: object
) -> None:
    """A discrete simulation: each step every live source receives `speed` chunks of its
    run; some sources fail after a number of steps. While one source lives, the pull ends
    with every chunk verified once and no chunk received by two sources."""
    plan: PullPlan[int] = PullPlan(list(range(chunks)), MiB)
    dies = {source: step for source, step in failures if source < len(speeds) - 1}
    runs: dict[int, Run[int] | None] = dict.fromkeys(range(len(speeds)))
    verified: list[int] = []
    now = 0.0
    for step in range(10_000):
        if plan.done:
            break
        now = step * 0.1
        for source, speed in enumerate(speeds):
            if source not in runs:
                continue
            if dies.get(source) == step:
                run = runs.pop(source)
                if run is not None:
                    plan.finish(run, nbytes=0, seconds=0.0)
                continue
            run = runs[source] or plan.take(source, now)
            runs[source] = run
            if run is None:
                continue
            got = fetch(plan, run, speed, now)
            verified += got
            if not got or run.next >= run.end:
                plan.finish(run, nbytes=len(got) * MiB, seconds=0.1)
                runs[source] = None
    assert plan.done
    assert sorted(verified) == list(range(chunks))


def test_prefer_deals_from_the_chunk_a_reader_waits_for() -> None:
    plan: PullPlan[str] = PullPlan(list(range(100)), 1 << 20)
    plan.prefer(40)
    run = plan.take("a", 0.0)
    assert run is not None and run.first == 40
    plan.prefer(90)
    second = plan.take("a", 0.0)
    assert second is not None and second.first == 90
    # What follows the wanted chunk first; then what was before it, in order.
    dealt = [second.first]
    while (r := plan.take("b", 0.0)) is not None:
        dealt.append(r.first)
    assert dealt[0] == 90 and dealt[1] == 0
    assert dealt[1:4] == [0, 16, 32]
