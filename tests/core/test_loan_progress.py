"""A folder loan's progress as the ledger shows it when the lender's folder changed since the
borrower's last status (the borrower offline): the file count and the bytes come from the
same facts. It read "laptop2 unreachable since 01:55 at 7/7 files 99%"."""

from __future__ import annotations

import pytest

from mesh.core.ids import NodeId
from mesh.core.loans import Phase, make_loan
from mesh.core.records import Binding, Content, LoanState, LoanStatus

TOWER, LAPTOP = NodeId(b"\x01" * 32), NodeId(b"\x02" * 32)
NOW = 1_000_000


def folder(digest: bytes, files: int, size: int) -> Binding:
    return Binding(
        borrower=LAPTOP,
        library="Movies",
        path="Docs/**",
        content=Content(hash=digest, size=size, chunk_root=digest),
        folder=True,
        files=files,
    )


def held(binding: Binding) -> LoanStatus:
    return LoanStatus(
        lender=TOWER,
        library=binding.library,
        path=binding.path,
        hash=binding.content.hash,
        state=LoanState.HELD,
        bytes_done=binding.content.size,
        files_done=binding.files,
    )


@pytest.mark.parametrize(
    ("files", "size", "shown"),
    [
        (7, 1_000_100, (6, 1_000_000)),  # a file grew: not all of the new folder is held
        (8, 1_000_100, (7, 1_000_000)),  # a file was added
        (8, 900_000, (7, 899_999)),  # one added, another shrank: the bytes alone looked done
        (6, 900_000, (6, 900_000)),  # one removed: what it held covers the new folder
    ],
)
def test_a_folder_changed_since_the_borrower_was_heard(
    files: int, size: int, shown: tuple[int, int]
) -> None:
    before = folder(b"A" * 16, 7, 1_000_000)
    loan = make_loan(TOWER, folder(b"B" * 16, files, size), held(before), NOW)
    assert loan.phase is Phase.FETCHING
    assert (loan.files_done, loan.bytes_done) == shown
    assert (loan.files_done == loan.files) == (loan.bytes_done == loan.size)


def test_a_status_of_the_folder_as_it_is_counts_as_it_says() -> None:
    now = folder(b"A" * 16, 7, 1_000_000)
    status = held(now)
    fetching = LoanStatus(
        lender=TOWER,
        library=now.library,
        path=now.path,
        hash=now.content.hash,
        state=LoanState.FETCHING,
        bytes_done=400_000,
        files_done=3,
    )
    assert make_loan(TOWER, now, status, NOW).files_done == 7
    loan = make_loan(TOWER, now, fetching, NOW)
    assert (loan.files_done, loan.bytes_done) == (3, 400_000)
