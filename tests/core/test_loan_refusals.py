"""Why a borrower's policy refuses a copy: the reason lands in both ledgers, under the
loan, so it says sizes as `mesh loans` does (it said "67500023 bytes would be held, the
quota is 20000000")."""

from __future__ import annotations

from mesh.core.loans import NOT_ENOUGH_SPACE, refusal

MB = 1000 * 1000


def test_over_the_quota_says_sizes_as_people_read_them() -> None:
    why = refusal(60 * MB, held_bytes=7_500_023, quota=20 * MB, free=10**12, reserve=0)
    assert why == "over the borrowing quota: 67.5 MB would be held, the quota is 20.0 MB"


def test_short_of_space_says_sizes_as_people_read_them() -> None:
    why = refusal(60 * MB, held_bytes=0, quota=0, free=1_500 * MB, reserve=2_000 * MB)
    assert why.startswith(NOT_ENOUGH_SPACE)  # the pull waits for room by this prefix
    assert why == f"{NOT_ENOUGH_SPACE}: 1.5 GB free, 60.0 MB needed, 2.0 GB kept free"


def test_within_the_policy_nothing_is_said() -> None:
    assert refusal(MB, held_bytes=0, quota=2 * MB, free=10 * MB, reserve=MB) == ""
