"""Lending from the command line: lend, recall, loans, borrow, return, accept, decline,
requests, approve, deny. They all go through the running daemon: a loan is carried out by
the agents of the nodes involved."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Annotated

import typer

from mesh.cli.context import CliContext
from mesh.cli.output import (
    human_clock,
    human_size,
    human_time_left,
    print_json,
    safe,
    where,
)
from mesh.cli.progress import interactive
from mesh.core.durations import parse_duration
from mesh.core.errors import InvalidArgumentError, RefusedError
from mesh.core.status import LoanLine, RequestLine

_WATCH_S = 0.5
_OFFLINE_HINT_S = 5.0  # `lend --wait` guesses the borrower is offline after this long


def _ctx(ctx: typer.Context) -> CliContext:
    obj = ctx.obj
    assert isinstance(obj, CliContext)
    return obj


def _until_ms(for_: str | None, until: str | None) -> int:
    if for_ and until:
        raise InvalidArgumentError("give --for or --until, not both")
    if for_:
        return int((time.time() + parse_duration(for_)) * 1000)
    if until:
        try:
            when = dt.datetime.fromisoformat(until)
        except ValueError:
            try:
                clock = dt.time.fromisoformat(until)
            except ValueError:
                raise InvalidArgumentError(
                    f"{until!r} is not a time; write e.g. 18:30 or 2026-12-24T18:00"
                ) from None
            when = dt.datetime.combine(dt.date.today(), clock)
            if when < dt.datetime.now():
                when += dt.timedelta(days=1)  # 08:00 said at 22:00 means tomorrow
        ms = int(when.timestamp() * 1000)
        if ms <= time.time() * 1000:
            raise InvalidArgumentError(f"{until} is in the past")
        return ms
    return 0


# A loan in one of these is over, whatever end time its binding had named.
_OVER = frozenset({"declined", "returned", "recalled", "expired", "ended"})


def _until(line: LoanLine) -> str:
    """The UNTIL column: a returned or recalled loan ended then, not at its planned end."""
    return "ended" if line.phase in _OVER else _when(line.until_ms)


def _when(ms: int) -> str:
    if not ms:
        return "-"
    left = ms / 1000 - time.time()
    if left <= 0:
        return "ended"
    return f"in {human_time_left(left)}"


def _progress(line: LoanLine) -> str:
    files = f"{line.files_done}/{line.files} files" if line.folder else ""
    if line.phase == "fetching" and line.size:
        return f"{files} {line.bytes_done * 100 // line.size}%".lstrip()
    if line.folder and line.phase in ("fetching", "held", "refused", "failed"):
        return files
    return ""


def _state(line: LoanLine) -> str:
    """The state column. While the other side of one of this node's loans is unreachable,
    what the ledger says of it is as of when it was last heard: say since when, instead
    of a percentage that looks live."""
    progress = _progress(line)
    kept = f" ({line.kept})" if line.kept else ""  # kept for the mount (issue 21)
    if not line.silent_since_ms:
        return line.phase + (f" {progress}" if progress else "") + kept
    since = human_clock(line.silent_since_ms)
    silent = f"{safe(line.silent_name)} unreachable since {since}"
    if line.phase == "fetching" and line.silent_name == line.borrower_name:
        return f"{silent} at {progress}" if progress else silent
    return f"{line.phase} {progress}".rstrip() + f"; {silent}"


def _loan_json(line: LoanLine) -> dict[str, object]:
    return {
        "id": line.id,
        "lender": line.lender_name,
        "lender_id": str(line.lender),
        "borrower": line.borrower_name,
        "borrower_id": str(line.borrower),
        "library": line.library,
        "path": line.path,
        "size": line.size,
        "hash": line.hash.hex(),
        "state": line.phase,
        "bytes_done": line.bytes_done,
        "until_ms": line.until_ms or None,
        "reason": line.reason or None,
        "created_ms": line.created_ms,
        "silent_since_ms": line.silent_since_ms or None,
        "silent": line.silent_name or None,
        "kept": line.kept or None,
        "folder": line.folder,
        "files": line.files,
        "files_done": line.files_done,
        **(
            {
                "file_list": [
                    {
                        "path": f.path,
                        "size": f.size,
                        "state": f.state,
                        "bytes_done": f.size if f.state == "held" else f.bytes_done,
                        "reason": f.reason or None,
                    }
                    for f in line.file_list
                ]
            }
            if line.folder and line.file_list
            else {}
        ),
    }


def _print_loans(lines: list[LoanLine]) -> None:
    if not lines:
        typer.echo("no loans; lend a file with `mesh lend PATH --to NODE`", err=True)
        return
    typer.echo(
        f"{'ID':<9} {'LENDER':<12} {'BORROWER':<12} {'STATE':<26} {'SIZE':>8}  {'UNTIL':<14} FILE"
    )
    for line in lines:
        state = _state(line)
        typer.echo(
            f"{line.id:<9} {safe(line.lender_name):<12} {safe(line.borrower_name):<12} "
            f"{state:<26} {human_size(line.size):>8}  {_until(line):<14} "
            f"{where(line.library, line.path)}"
        )
        if line.reason and line.phase in ("refused", "failed", "declined"):
            typer.echo(f"{'':<9} why: {safe(line.reason)}")
        elif line.reason and line.phase == "fetching":  # e.g. a source dropped for bad chunks
            typer.echo(f"{'':<9} note: {safe(line.reason)}")
        for f in line.file_list:
            done = f" {f.bytes_done * 100 // f.size}%" if f.state == "fetching" and f.size else ""
            why = f" ({safe(f.reason)})" if f.reason and f.state != "held" else ""
            typer.echo(f"{'':<9} {f.state + done:<26} {human_size(f.size):>8}  {safe(f.path)}{why}")


def lend(
    ctx: typer.Context,
    path: Annotated[
        str,
        typer.Argument(help="A file in a shared folder (or LIBRARY/PATH).", show_default=False),
    ],
    to: Annotated[str, typer.Option("--to", help="The borrower (a member's name).")],
    for_: Annotated[
        str | None, typer.Option("--for", help="How long: 90s, 10m, 2h, 3d, 1w.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Until when: 18:30 or 2026-12-24T18:00.")
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Show progress until the borrower holds a verified copy "
            "(Ctrl-C stops waiting; the loan stays).",
        ),
    ] = False,
) -> None:
    """Lend a file, a folder, or what a pattern matches, of this node's libraries to
    another member. A folder or a pattern is one loan that follows its folder while it
    lasts: files added there are lent too, changed ones updated, removed ones removed.

    The borrower's agent pulls it (from this node, or from others that hold it), verifies
    it, and places it read-only under its borrowed folder as LENDER/LIBRARY/PATH. It stays
    there until the loan ends: `mesh recall`, the borrower's `mesh return`, or its end time.
    If the file changes here, the borrower gets the new version.

    \b
    Examples:
      mesh lend ~/Movies/heat.mkv --to laptop
      mesh lend ~/Movies/Season\\ 1 --to laptop --for 2w
      mesh lend 'Movies/Season 1/*.mkv' --to laptop
      mesh lend Movies/heat.mkv --to laptop --for 3d --wait
      mesh lend ~/Docs/tax.pdf --to tablet --until 2026-12-24T18:00
      mesh lend --to laptop -- -odd-name.mkv   (options first, then -- before a name
                                                that starts with a dash)
    """
    local = Path(path).expanduser()
    # The daemon knows shared folders by their real paths; the file itself is not resolved
    # (a symlink is not a file mesh lends). A folder is lent whole, with a trailing slash
    # kept; a pattern ('Movies/Season 1/*.mkv') is passed on as typed.
    target = str(local.absolute().parent.resolve() / local.name) if local.exists() else path
    if local.is_dir():
        target = target.rstrip("/") + "/"
    elif not local.exists() and path.startswith("~"):
        target = str(local)
    until_ms = _until_ms(for_, until)
    with _ctx(ctx).daemon() as daemon:
        line = daemon.lend(target, to, until_ms)
        files = f"{line.files} files, " if line.folder else ""
        typer.echo(
            f"lent {where(line.library, line.path)} ({files}{human_size(line.size)}) to "
            f"{safe(line.borrower_name)}: loan {line.id}"
            + (f", ends {_when(line.until_ms)}" if line.until_ms else "")
        )
        if wait:
            _wait_held(daemon, line.id, line.size)


def _wait_held(daemon: object, loan: str, size: int) -> None:
    from mesh.transport.control_client import ControlClient

    assert isinstance(daemon, ControlClient)
    bar = None
    if interactive():
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=False),
            TextColumn("{task.fields[state]}"),
            console=Console(stderr=True),
            transient=True,
        )
        bar.start()
    task = bar.add_task(loan, total=size, state="") if bar is not None else None
    told = ""
    began = time.monotonic()
    try:
        while True:
            found = [x for x in daemon.loans() if x.id == loan]
            if not found:
                raise RefusedError(f"loan {loan} is gone from the ledger")
            line = found[0]
            state = line.phase
            if state == "waiting for the borrower":
                # An online borrower answers within a second or two: guess offline only
                # once it has been silent for longer.
                quiet = time.monotonic() - began >= _OFFLINE_HINT_S
                state = f"waiting for {safe(line.borrower_name)}" + (" (offline?)" if quiet else "")
            elif line.silent_since_ms:
                state = _state(line)  # "laptop unreachable since 14:02 at 26%"
            if bar is not None and task is not None:
                bar.update(task, total=line.size, completed=line.bytes_done, state=state)
            elif state != told:
                typer.echo(f"{loan}: {state}", err=True)
            told = state
            if line.phase == "held":
                break
            if line.phase in ("declined", "refused", "recalled", "returned", "expired", "ended"):
                why = f": {line.reason}" if line.reason else ""
                raise RefusedError(
                    f"{line.borrower_name} did not take loan {loan} ({line.phase}{why})"
                )
            time.sleep(_WATCH_S)
    except KeyboardInterrupt:
        if bar is not None:
            bar.stop()
            bar = None
        typer.echo(f"stopped waiting; loan {loan} stays (`mesh loans` shows it)", err=True)
        raise typer.Exit(130) from None
    finally:
        if bar is not None:
            bar.stop()
    typer.echo(f"{safe(line.borrower_name)} holds a verified copy")


def recall(
    ctx: typer.Context,
    loan: Annotated[
        str, typer.Argument(help="The loan's id, or the lent file's name.", show_default=False)
    ],
) -> None:
    """End a loan this node made: the borrower removes its copy.

    \b
    Examples:
      mesh recall heat.mkv
      mesh recall 3xq7ka2m
    """
    with _ctx(ctx).daemon() as daemon:
        line = daemon.act_on_loan(loan, "recall")
    typer.echo(f"recalled {safe(line.path)} from {safe(line.borrower_name)} (loan {line.id})")


def loans(
    ctx: typer.Context,
    mine: Annotated[
        bool, typer.Option("--mine", help="Only loans this node lends or borrows.")
    ] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Keep the list live (Ctrl-C ends).")
    ] = False,
    json_: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
    files: Annotated[
        bool, typer.Option("--files", help="Each file of folder loans too (held, fetching, ...).")
    ] = False,
) -> None:
    """The ledger: every loan in the mesh, as this node knows it by gossip.

    A folder loan (`mesh lend DIR`, or a pattern) is one line, with its files held of all;
    `--files` lists its files, each with its state on the borrower.

    States: waiting for the borrower (it has not answered yet: offline, say), awaiting
    acceptance, fetching (with progress), held, refused (over the borrower's quota or free
    space; retried when there is room), failed (retried when its cause clears), declined,
    returned, recalled, expired, ended. While the other side of one of this node's loans
    cannot be reached, the state says since when ("laptop unreachable since 14:02 at
    26%"): what is shown of it is as of then.

    \b
    Examples:
      mesh loans
      mesh loans --mine --watch
      mesh loans --json | jq '.[] | select(.state == "held")'
    """
    with _ctx(ctx).daemon() as daemon:
        if not watch:
            lines = daemon.loans(mine, files)
            if json_:
                print_json([_loan_json(x) for x in lines])
            else:
                _print_loans(lines)
            return
        try:
            while True:
                lines = daemon.loans(mine, files)
                if interactive():
                    typer.echo("\x1b[2J\x1b[H", nl=False)
                if json_:
                    print_json([_loan_json(x) for x in lines])
                else:
                    _print_loans(lines)
                time.sleep(1.0)
        except KeyboardInterrupt:
            return


def borrow(
    ctx: typer.Context,
    what: Annotated[
        str,
        typer.Argument(
            help="NODE:LIBRARY/PATH, as `mesh ls --node NODE` shows it.", show_default=False
        ),
    ],
    for_: Annotated[
        str | None, typer.Option("--for", help="How long: 90s, 10m, 2h, 3d, 1w.")
    ] = None,
) -> None:
    """Ask another member to lend you a file, a folder (ending in /) or what a pattern
    matches, as one loan. It is lent at once, or once its owner runs `mesh approve` (if
    that node asks first).

    \b
    Examples:
      mesh borrow tower:Movies/heat.mkv
      mesh borrow "tower:Movies/Season 1/"
      mesh borrow "tower:Movies/Season 1/*.mkv"
      mesh borrow tower:Docs/tax.pdf --for 2d
    """
    node, sep, path = what.partition(":")
    if sep and node and path and "/" not in path:
        path += "/"  # a library's name alone: the whole library
    if not sep or not node or "/" not in path:
        raise InvalidArgumentError(f"{what!r} is not NODE:LIBRARY/PATH, e.g. tower:Movies/heat.mkv")
    duration_ms = int(parse_duration(for_) * 1000) if for_ else 0
    with _ctx(ctx).daemon() as daemon:
        line = daemon.borrow(node, path, duration_ms)
    typer.echo(
        f"asked {safe(line.lender_name)} for {where(line.library, line.path)} "
        f"(request {line.id}); `mesh loans` shows it once it is lent"
    )


def return_(
    ctx: typer.Context,
    loan: Annotated[
        str, typer.Argument(help="The loan's id, or the file's name.", show_default=False)
    ],
) -> None:
    """Give a borrowed file back: this node removes its copy and the lender sees it returned.

    \b
    Examples:
      mesh return heat.mkv
    """
    with _ctx(ctx).daemon() as daemon:
        line = daemon.act_on_loan(loan, "return")
    typer.echo(f"returned {safe(line.path)} to {safe(line.lender_name)}")


def accept(
    ctx: typer.Context,
    loan: Annotated[str, typer.Argument(help="The loan's id or file name.", show_default=False)],
) -> None:
    """Accept a loan that waits for you (borrowing.ask_first): the pull starts.

    \b
    Examples:
      mesh accept heat.mkv
    """
    with _ctx(ctx).daemon() as daemon:
        line = daemon.act_on_loan(loan, "accept")
    typer.echo(f"accepted {safe(line.path)} from {safe(line.lender_name)}")


def decline(
    ctx: typer.Context,
    loan: Annotated[str, typer.Argument(help="The loan's id or file name.", show_default=False)],
) -> None:
    """Decline a loan: nothing is fetched, and the lender sees it declined.

    \b
    Examples:
      mesh decline heat.mkv
    """
    with _ctx(ctx).daemon() as daemon:
        line = daemon.act_on_loan(loan, "decline")
    typer.echo(f"declined {safe(line.path)} from {safe(line.lender_name)}")


def _request_json(line: RequestLine) -> dict[str, object]:
    return {
        "id": line.id,
        "borrower": line.borrower_name,
        "lender": line.lender_name,
        "library": line.library,
        "path": line.path,
        "duration_ms": line.duration_ms or None,
        "created_ms": line.created_ms,
        "answer": line.answer or None,
    }


def requests(
    ctx: typer.Context,
    json_: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
) -> None:
    """Borrow requests this node made or received, and their answers.

    \b
    Examples:
      mesh requests
      mesh approve 4f2a1c
    """
    with _ctx(ctx).daemon() as daemon:
        lines = daemon.requests()
    if json_:
        print_json([_request_json(x) for x in lines])
        return
    if not lines:
        typer.echo("no borrow requests", err=True)
        return
    typer.echo(f"{'ID':<7} {'FROM':<12} {'TO':<12} {'ANSWER':<20} FILE")
    for line in lines:
        typer.echo(
            f"{line.id:<7} {safe(line.borrower_name):<12} {safe(line.lender_name):<12} "
            f"{safe(line.answer) or 'pending':<20} {where(line.library, line.path)}"
        )


def approve(
    ctx: typer.Context,
    request: Annotated[str, typer.Argument(help="The request's id.", show_default=False)],
) -> None:
    """Grant a borrow request (lending.ask_first): the file is lent.

    \b
    Examples:
      mesh approve 4f2a1c
    """
    with _ctx(ctx).daemon() as daemon:
        line = daemon.answer(request, True)
    typer.echo(f"lent {safe(line.path)} to {safe(line.borrower_name)}")


def deny(
    ctx: typer.Context,
    request: Annotated[str, typer.Argument(help="The request's id.", show_default=False)],
    reason: Annotated[str, typer.Option("--reason", help="Told to the borrower.")] = "",
) -> None:
    """Refuse a borrow request.

    \b
    Examples:
      mesh deny 4f2a1c --reason "not this one"
    """
    with _ctx(ctx).daemon() as daemon:
        line = daemon.answer(request, False, reason)
    typer.echo(f"denied {safe(line.borrower_name)} {safe(line.path)}")


def register(app: typer.Typer) -> None:
    app.command()(lend)
    app.command()(recall)
    app.command()(loans)
    app.command()(borrow)
    app.command("return")(return_)
    app.command()(accept)
    app.command()(decline)
    app.command()(requests)
    app.command()(approve)
    app.command()(deny)
