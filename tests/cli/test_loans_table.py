"""`mesh loans` as a table: what each column says of a loan."""

from __future__ import annotations

import dataclasses
import time

import pytest

from mesh.cli.loan_cmds import _print_loans
from mesh.core.ids import NodeId
from mesh.core.status import LoanLine

TOWER, LAPTOP = NodeId(b"\x01" * 32), NodeId(b"\x02" * 32)


def line(phase: str, until_ms: int) -> LoanLine:
    return LoanLine(
        id="aza55s37",
        lender=TOWER,
        lender_name="tower",
        borrower=LAPTOP,
        borrower_name="laptop",
        library="Movies",
        path="alien.mkv",
        size=5_000_000,
        hash=b"\0" * 16,
        phase=phase,
        bytes_done=0,
        until_ms=until_ms,
        reason="",
        created_ms=0,
        updated_ms=0,
    )


@pytest.mark.parametrize("phase", ["returned", "recalled", "declined", "ended"])
def test_a_loan_that_is_over_is_not_shown_running_until_its_planned_end(
    phase: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # `mesh return` of a loan lent `--for 2d`: the ledger said "in 47 h 59 min".
    in_two_days = int((time.time() + 2 * 86400) * 1000)
    _print_loans([line(phase, in_two_days)])
    row = capsys.readouterr().out.splitlines()[1]
    assert " ended " in row and " in " not in row, row


def test_a_running_loan_says_when_it_ends(capsys: pytest.CaptureFixture[str]) -> None:
    in_two_days = int((time.time() + 2 * 86400) * 1000)
    _print_loans([line("held", in_two_days), line("held", 0)])
    rows = capsys.readouterr().out.splitlines()[1:]
    assert " in 47 h" in rows[0] or " in 48 h" in rows[0] or " in 2 d" in rows[0], rows[0]
    assert "  -  " in rows[1], rows[1]


@pytest.mark.parametrize(
    ("path", "shown"),
    [("alien.mkv", "Movies/alien.mkv"), ("Docs/", "Movies/Docs/"), ("/", "Movies/")],
)
def test_a_loan_is_named_as_the_user_typed_it(
    path: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A whole library's folder form is '/': the ledger said "Movies//".
    _print_loans([dataclasses.replace(line("held", 0), path=path)])
    assert capsys.readouterr().out.splitlines()[1].endswith(f" {shown}")
