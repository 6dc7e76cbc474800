"""`mesh status`: this node, its members, libraries and loans at a glance; `--watch` keeps
it live, `--json` is for scripts.

Everything comes from the running daemon through the calls `mesh peers`, `mesh loans` and
`mesh ls` use; without a daemon, one line says so and the rest is what the store knows.
Loan speeds are slopes over the progress samples this command took (one look a second).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Annotated

import typer

from mesh.cli.context import CliContext
from mesh.cli.output import (
    address_width,
    bar,
    fit,
    human_ago,
    human_clock,
    human_duration,
    human_size,
    human_speed,
    plural,
    print_json,
    safe,
    where,
)
from mesh.core.errors import DaemonNotRunningError
from mesh.core.rates import Rates
from mesh.core.status import LoanLine, MemberView, NodeStatus

_INTERVAL_S = 1.0
_SPEED_WINDOW_S = 5.0


@dataclass(frozen=True, slots=True)
class Frame:
    """One look at the node."""

    status: NodeStatus
    members: list[MemberView]  # the others
    loans: list[LoanLine]  # this node's, lent or borrowed (without a daemon: the store's)


def _ctx(ctx: typer.Context) -> CliContext:
    obj = ctx.obj
    assert isinstance(obj, CliContext)
    return obj


def gather(cli: CliContext) -> Frame:
    with cli.node() as node:
        st = node.status()
        _, views = node.members()
        if st.running:
            from mesh.transport.control_client import ControlClient

            assert isinstance(node, ControlClient)
            loans = node.loans(mine=True)
        else:
            loans = _stored_loans(node)
    return Frame(status=st, members=[v for v in views if not v.is_self], loans=loans)


def _stored_loans(node: object) -> list[LoanLine]:
    """This node's loans as its store last knew them (the daemon is not running)."""
    from mesh.node.lending import Lending
    from mesh.node.local import LocalNode, now_ms

    assert isinstance(node, LocalNode)
    lending = Lending(node)
    return [lending.line(loan) for loan in lending.ledger(now_ms(), mine=True)]


def _sample(frame: Frame, rates: Rates, now: float) -> None:
    lines = frame.loans
    for line in lines:
        rates.sample(line.id, line.bytes_done, now)
    rates.keep(line.id for line in lines)


def _fetching(frame: Frame) -> bool:
    # Speeds need a second look; without a daemon nothing moves.
    return frame.status.running and any(line.phase == "fetching" for line in frame.loans)


# -- text ----------------------------------------------------------------------------------


def render(frame: Frame, rates: Rates, now_s: float) -> list[str]:
    """The lines of one frame; `now_s` is the wall clock (for "3 min ago")."""
    st = frame.status
    out = [f"node      {safe(st.name)}  {st.node_id}"]
    if st.running:
        out.append(
            f"daemon    running, up {human_duration(st.uptime_s)} "
            f"(pid {st.pid}, port {st.port}, mesh {st.version})"
        )
        out.append(f"addresses {', '.join(safe(a) for a in st.addresses) or '-'}")
    else:
        out.append("daemon    not running (start it with `mesh up`); what the store knows:")
    out.append(f"home      {safe(st.home)}")
    if st.removed_by:
        out.append(f"mesh      !! {removed_line(st)}")
    out += ["", *_members(frame)]
    out += ["", *_libraries(st, now_s)]
    out += ["", *_loans(frame, rates)]
    return out


def removed_line(st: NodeStatus) -> str:
    """What a removed node says of itself, in one line."""
    when = ""
    if st.removed_ms:
        when = time.strftime(" on %Y-%m-%d at %H:%M", time.localtime(st.removed_ms / 1000))
    return (
        f"this node was removed from the mesh by {safe(st.removed_by)}{when}; its libraries "
        "and borrowed copies stay. To join a mesh again: `mesh init --reset`, then `mesh join`"
    )


def _members(frame: Frame) -> list[str]:
    if not frame.members:
        return ["no other members yet; add one with `mesh invite`"]
    running = frame.status.running
    wide = address_width((safe(v.address) for v in frame.members if running), 26)
    lines = [f"{'MEMBER':<16} {'STATE':<8} {'ADDRESS':<{wide}} {'LAST SEEN':<12} LAG"]
    for v in frame.members:
        if not running:
            lines.append(f"{safe(v.name):<16} {'-':<8} {'-':<{wide}} {'-':<12} -")
            continue
        if v.online:
            seen = "now" if v.last_seen_s < 5 else human_ago(v.last_seen_s)
        else:
            seen = human_ago(v.last_seen_s) if v.last_seen_s else "never"
        lag = "in sync" if v.unacked == 0 else f"{plural(v.unacked, 'record')} behind"
        lines.append(
            f"{safe(v.name):<16} {'online' if v.online else 'offline':<8} "
            f"{fit(safe(v.address), wide) or '-':<{wide}} {seen:<12} {lag}"
        )
    return lines


def _libraries(st: NodeStatus, now_s: float) -> list[str]:
    if not st.libraries:
        return ["no libraries; share a folder with `mesh share DIR`"]
    lines = [f"{'LIBRARY':<16} {'FILES':>7} {'SIZE':>9}  {'CHANGED':<13} {'FOLLOWED':<9} FOLDER"]
    for lib in st.libraries:
        changed = human_ago(max(0.0, now_s - lib.changed_ms / 1000)) if lib.changed_ms else "-"
        lines.append(
            f"{safe(lib.name):<16} {lib.files:>7} {human_size(lib.bytes):>9}  {changed:<13} "
            f"{lib.watch or '-':<9} {safe(lib.root)}"
            + (f"  (with {', '.join(safe(n) for n in lib.borrowers)})" if lib.borrowers else "")
            + ("  (asks first)" if lib.ask else "")
        )
    return lines


def _direction(frame: Frame, line: LoanLine) -> tuple[str, str]:
    """("out", borrower) for a loan this node made, ("in", lender) for one it borrowed."""
    if line.lender == frame.status.node_id:
        return "out", line.borrower_name
    return "in", line.lender_name


def _loans(frame: Frame, rates: Rates) -> list[str]:
    if not frame.loans:
        return ["no loans in or out; lend a file with `mesh lend PATH --to NODE`"]
    running = frame.status.running
    lines = [f"{'LOAN':<9} {'WAY':<4} {'WITH':<12} {'STATE':<10} {'PROGRESS':<44} FILE"]
    for line in frame.loans:
        way, peer = _direction(frame, line)
        if not running and line.phase == "fetching":
            # Nothing moves while the daemon is down: no bar or speed that look live.
            pct = line.bytes_done * 100 // line.size if line.size else 100
            progress = f"at {pct}% (stopped with the daemon)"
        elif line.silent_since_ms:
            # What is known of a silent peer is as of then: no live-looking bar or speed.
            fetching = line.phase == "fetching" and line.size
            was = f"at {line.bytes_done * 100 // line.size}% " if fetching else ""
            progress = f"{was}unreachable since {human_clock(line.silent_since_ms)}"
        elif line.phase == "fetching":
            pct = line.bytes_done * 100 // line.size if line.size else 100
            progress = (
                f"{bar(line.bytes_done, line.size)} {pct:>3}% "
                f"{human_speed(rates.rate(line.id)):>10}"
            )
        elif line.phase == "held":
            progress = human_size(line.size)
        else:
            progress = safe(line.reason)[:44] if line.reason else ""
        files = f" ({line.files_done}/{line.files} files)" if line.folder else ""
        lines.append(
            f"{line.id:<9} {way:<4} {safe(peer):<12} {line.phase[:10]:<10} {progress:<44} "
            f"{where(line.library, line.path)}{files}"
        )
    return lines


# -- json ----------------------------------------------------------------------------------


def as_json(frame: Frame, rates: Rates) -> dict[str, object]:
    st = frame.status
    running = st.running
    loans = []
    for line in frame.loans:
        way, peer = _direction(frame, line)
        live = running and line.phase == "fetching" and not line.silent_since_ms
        rate = rates.rate(line.id) if live else None
        loans.append(
            {
                "id": line.id,
                "direction": way,
                "peer": peer,
                "library": line.library,
                "path": line.path,
                "state": line.phase,
                "size": line.size,
                "bytes_done": line.bytes_done,
                "bytes_per_s": round(rate) if rate is not None else None,
                "until_ms": line.until_ms or None,
                "reason": line.reason or None,
                "peer_silent_since_ms": line.silent_since_ms or None,
                "folder": line.folder,
                "files": line.files,
                "files_done": line.files_done,
            }
        )
    return {
        "name": st.name,
        "node_id": str(st.node_id),
        "home": st.home,
        "running": running,
        "pid": st.pid if running else None,
        "port": st.port if running else None,
        "uptime_s": round(st.uptime_s, 3) if running else None,
        "version": st.version,
        "addresses": list(st.addresses),
        "removed_by": st.removed_by or None,
        "removed_ms": st.removed_ms or None,
        "libraries": [
            {
                "name": lib.name,
                "root": lib.root,
                "open": lib.open,
                "shared_with": list(lib.borrowers) or None,  # None: every member
                "ask_first": lib.ask,  # None: lending.ask_first decides
                "files": lib.files,
                "bytes": lib.bytes,
                "changed_ms": lib.changed_ms or None,
                "watch": lib.watch or None,
            }
            for lib in st.libraries
        ],
        "members": [
            {
                "name": v.name,
                "node_id": str(v.node_id),
                "online": v.online if running else None,
                "address": (v.address or None) if running else None,
                "last_seen_s": round(v.last_seen_s, 1) if running and v.last_seen_s else None,
                "lag": v.unacked if running else None,
            }
            for v in frame.members
        ],
        "loans": loans,
    }


# -- the command ---------------------------------------------------------------------------


def status(
    ctx: typer.Context,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Keep it live, once a second (Ctrl-C ends).")
    ] = False,
    json_: Annotated[bool, typer.Option("--json", help="JSON for scripts (keys below).")] = False,
) -> None:
    """Show this node at a glance: name, id, addresses, uptime; the other members (online,
    address, last heard from, lag); libraries (files, size, last change, how they are
    followed); and the loans this node made or holds, with progress and speed.

    A member's lag is how many of the records this node holds it has not acknowledged
    (new, changed or removed files, loans, members...): "in sync" when 0. For a member
    that is away, as of when it was last connected or its last published vector.
    A library is followed by file-system "events", by "polling" where it cannot be
    watched, or only by full "rescans". Speeds need two looks a second apart, so a
    one-off `mesh status` waits a second while a loan is fetching. Without a running
    daemon, one line says so and the rest is what the store knows.

    \b
    JSON keys: name, node_id, home, running, pid, port, uptime_s, version, addresses,
    removed_by and removed_ms (who removed this node from the mesh and when, else null);
    libraries: [{name, root, open, files, bytes, changed_ms, watch}];
    members: [{name, node_id, online, address, last_seen_s, lag}];
    loans (without a daemon, as the store knows them): [{id, direction ("in" or "out"),
    peer, library, path, state, size, bytes_done, bytes_per_s, until_ms, reason,
    peer_silent_since_ms (the peer cannot be reached; what is shown is as of then)}].
    Unknown values are null;
    with --watch, one JSON object per line and per second.

    \b
    Examples:
      mesh status
      mesh status --watch
      mesh status --json | jq '.members[] | select(.lag > 0) | .name'
    """
    cli = _ctx(ctx)
    rates = Rates(_SPEED_WINDOW_S)
    if not watch:
        frame = gather(cli)
        _sample(frame, rates, time.monotonic())
        if _fetching(frame):
            time.sleep(_INTERVAL_S)
            frame = gather(cli)
            _sample(frame, rates, time.monotonic())
        if json_:
            print_json(as_json(frame, rates))
        else:
            for line in render(frame, rates, time.time()):
                typer.echo(line)
        return
    _watch(cli, rates, json_)


def _watch(cli: CliContext, rates: Rates, json_: bool) -> None:
    tty = sys.stdout.isatty() and not json_
    if tty:
        sys.stdout.write("\x1b[?25l")  # no cursor blinking over the table
    try:
        first = True
        while True:
            began = time.monotonic()
            try:
                frame = gather(cli)
            except DaemonNotRunningError:
                # It stopped between two looks: the next look reads the store instead.
                time.sleep(0.2)
                continue
            _sample(frame, rates, time.monotonic())
            if json_:
                sys.stdout.write(json.dumps(as_json(frame, rates), ensure_ascii=False) + "\n")
            else:
                lines = render(frame, rates, time.time())
                if tty:
                    # Redraw in place: home, each line cleared to its end, the rest cleared.
                    home = "\x1b[H\x1b[2J" if first else "\x1b[H"
                    sys.stdout.write(home + "".join(f"{x}\x1b[K\n" for x in lines) + "\x1b[J")
                else:
                    sys.stdout.write(("" if first else "\n") + "\n".join(lines) + "\n")
            sys.stdout.flush()
            first = False
            time.sleep(max(0.0, _INTERVAL_S - (time.monotonic() - began)))
    except KeyboardInterrupt:
        return
    finally:
        if tty:
            sys.stdout.write("\x1b[?25h")
            sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.command()(status)
