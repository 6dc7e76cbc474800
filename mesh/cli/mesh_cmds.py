"""Commands about the mesh itself: invite, join, members, remove."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from mesh import config
from mesh.cli.context import CliContext
from mesh.cli.output import address_width, fit, human_duration, print_json, safe
from mesh.core.durations import parse_duration
from mesh.core.errors import InvalidArgumentError
from mesh.core.ids import NodeId
from mesh.core.status import MemberRef, MemberView

if TYPE_CHECKING:
    from mesh.node.pairing import Joined

PAIRING_PORT = config.DEFAULT_PORT + 1


def _ctx(ctx: typer.Context) -> CliContext:
    obj = ctx.obj
    assert isinstance(obj, CliContext)
    return obj


def _best_host(hosts: tuple[str, ...]) -> str:
    """The address a person should type first: a private IPv4 one if there is one."""

    def rank(h: str) -> tuple[int, str]:
        try:
            ip = ipaddress.ip_address(h.split("%", 1)[0])
        except ValueError:
            return 3, h
        if ip.version == 4 and not ip.is_loopback:
            return 0, h
        if ip.version == 6 and not ip.is_link_local and not ip.is_loopback:
            return 1, h
        return 2, h

    return sorted(hosts, key=rank)[0] if hosts else "THIS-COMPUTER"


def invite(
    ctx: typer.Context,
    for_: Annotated[
        str, typer.Option("--for", help="How long the code stays valid.", show_default=True)
    ] = "10m",
    cancel: Annotated[bool, typer.Option("--cancel", help="Close the open invitation.")] = False,
) -> None:
    """Let another computer join this mesh: prints a one-time code to type there.

    The code works once, for a limited time; five wrong tries close the invitation. Its
    number is announced on the LAN (so that the joiner finds this invitation among several);
    the two words are the secret. Needs the daemon (`mesh up`).

    \b
    Examples:
      mesh invite
      mesh invite --for 30m
      mesh invite --cancel
    """
    ttl = parse_duration(for_)
    with _ctx(ctx).daemon() as daemon:
        info = daemon.invite(ttl, cancel=cancel)
    if cancel:
        typer.echo("invitation closed" if info.cancelled else "no invitation was open")
        return
    if info.replaced:
        typer.echo(
            f"(the invitation open before, {info.replaced}, is closed: its code no longer works)"
        )
    host = _best_host(info.hosts)
    at = f"[{host}]" if ":" in host else host
    suffix = "" if info.port == PAIRING_PORT else f":{info.port}"
    expires = dt.datetime.fromtimestamp(info.expires_ms / 1000).strftime("%H:%M")
    typer.echo(f"Invitation open until {expires}. On the computer that joins, run:\n")
    if info.announced:
        typer.echo(f"    mesh join {info.code}\n")
        typer.echo("It finds this invitation on the LAN. From another network, or if not:\n")
    typer.echo(f"    mesh join {info.code} --at {at}{suffix}\n")
    others = [h for h in info.hosts if h != host]
    if others:
        typer.echo(f"(this computer is also at {', '.join(others)})")
    typer.echo("The code works once. Cancel it with `mesh invite --cancel`.")


def join(
    ctx: typer.Context,
    code: Annotated[
        str, typer.Argument(help="The code `mesh invite` printed.", show_default=False)
    ],
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help=(
                "The inviting computer, HOST[:PORT]: its node port (as `mesh status` shows it) "
                f"or its pairing port (default {PAIRING_PORT})."
            ),
            show_default=False,
        ),
    ] = None,
) -> None:
    """Join the mesh of the computer that ran `mesh invite`.

    Run it on the new computer, with the code the inviting one printed. On the same LAN the
    invitation is found with mDNS, by the code's number, even when several computers invite
    at once; elsewhere (another subnet, a VPN, mDNS off) give the address `mesh invite`
    printed with --at. A wrong code says how many tries are left (five close the
    invitation). This node must not be in another mesh (see `mesh init --reset`).

    \b
    Examples:
      mesh join 417-copper-walrus
      mesh join 417-copper-walrus --at 192.168.1.10
      mesh join 417-copper-walrus --at tower.local:6375
    """
    host, port = _host_port(at) if at is not None else ("", 0)  # "": find it on the LAN
    from mesh.security import invite_code

    code = invite_code.normalize(code)
    cli = _ctx(ctx)
    if cli.daemon_running():
        with cli.daemon() as daemon:
            _, members = daemon.join(code, host, port)
    else:
        _, members = _join_directly(cli, code, host, port)
    names = ", ".join(safe(m.name) for m in members if not m.is_self)
    typer.echo(f"joined the mesh: {len(members)} members ({names} and this node)")


def _host_port(text: str) -> tuple[str, int]:
    """HOST or HOST:PORT (IPv6 in brackets with a port); the pairing port by default."""
    text = text.strip()
    has_port = text.count(":") == 1 or (text.startswith("[") and "]:" in text)
    try:
        host, port = config.parse_peer(text)
    except ValueError as exc:
        raise InvalidArgumentError(f"--at {text!r}: {exc}") from exc
    return host, port if has_port else PAIRING_PORT


def _join_directly(
    cli: CliContext, code: str, host: str, port: int
) -> tuple[NodeId, list[MemberView]]:
    from mesh.node.pairing import join as pairing_join
    from mesh.node.pairing import places_at

    with cli.local_node() as node:
        if node.in_mesh():
            raise InvalidArgumentError(
                "this node is already in a mesh; `mesh init --reset` makes a new node to join "
                "another"
            )
        me = node.identity.cert_der
        if host:
            joined = asyncio.run(
                pairing_join(code, places_at(host, port), certificate=me, name=node.name)
            )
        else:
            joined = asyncio.run(_join_on_the_lan(cli, code, me, node.name))
        node.join_mesh(joined.root, joined.records)
        for h in (joined.host, *joined.hosts):
            node.remember_address(joined.inviter_id, h, joined.port)
        return node.membership.root, node.member_views()


async def _join_on_the_lan(cli: CliContext, code: str, certificate: bytes, name: str) -> Joined:
    """Join the invitation for the code announced on the LAN, looked for from this process."""
    settings = config.load(cli.home.config_file)
    if not settings.mdns:
        raise InvalidArgumentError(
            "mDNS is off (node.mdns = false), so the invitation cannot be found on the LAN; "
            "give the inviting computer's address: mesh join CODE --at HOST"
        )
    from mesh.discovery import invitations
    from mesh.discovery.mdns import find_nodes, find_pairing
    from mesh.node.pairing import join_announced_or_closed
    from mesh.security import invite_code

    nameplate = invite_code.nameplate(code)

    async def find() -> list[tuple[str, int]]:
        found = await find_pairing(settings.interfaces, invitations.FIND_WAIT_S, nameplate)
        return invitations.places(found, nameplate)

    async def desks() -> list[tuple[str, int]]:
        nodes = await find_nodes(settings.interfaces, invitations.NODES_WAIT_S)
        return invitations.desks(nodes)

    return await join_announced_or_closed(code, find, desks, certificate=certificate, name=name)


def members(
    ctx: typer.Context,
    json_: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
) -> None:
    """List the members of this node's mesh.

    \b
    Examples:
      mesh members
      mesh members --json
    """
    with _ctx(ctx).node() as node:
        root, views = node.members()
        st = node.status()
    if json_:
        print_json(
            [
                {
                    "name": v.name,
                    "node_id": str(v.node_id),
                    "self": v.is_self,
                    "online": v.online,
                    "address": v.address or None,
                    "admitted_by": str(v.admitted_by),
                    "admitted_ms": v.admitted_ms,
                    "root": v.node_id == root,
                    "removed_by": (st.removed_by or None) if v.is_self else None,
                    "removed_ms": (st.removed_ms or None) if v.is_self else None,
                }
                for v in views
            ]
        )
        return
    names = {v.node_id: v.name for v in views}
    if st.removed_by:
        from mesh.cli.status_cmds import removed_line

        typer.echo(f"!! {removed_line(st)}\n")
    wide = address_width((safe(v.address) for v in views), 24)
    typer.echo(f"{'NAME':<16} {'ID':<8} {'STATE':<12} {'ADDRESS':<{wide}} ADMITTED BY")
    for v in views:
        state = "this node" if v.is_self else ("online" if v.online else "offline")
        if v.is_self and st.removed_by:
            typer.echo(f"{safe(v.name):<16} {v.node_id.short():<8} {'removed':<12} {'-':<{wide}} -")
            continue
        since = ""
        if v.admitted_ms:
            since = dt.datetime.fromtimestamp(v.admitted_ms / 1000).strftime(" on %Y-%m-%d")
        by = (
            "founded the mesh"
            if v.admitted_by == v.node_id
            else names.get(v.admitted_by, v.admitted_by.short())
        )
        seen = f" ({human_duration(v.last_seen_s)} ago)" if v.online and v.last_seen_s > 5 else ""
        typer.echo(
            f"{safe(v.name):<16} {v.node_id.short():<8} {state + seen:<12} "
            f"{fit(safe(v.address), wide) or '-':<{wide}} {safe(by)}{since}"
        )


def _refs(members: tuple[MemberRef, ...]) -> str:
    return ", ".join(f"{safe(m.name)} ({m.node_id.short()})" for m in members)


def remove(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="The member's name (or short id).", show_default=False)
    ],
    keep_admitted: Annotated[
        list[str] | None,
        typer.Option(
            "--keep-admitted",
            help="Members NAME admitted to keep in the mesh (comma-separated, repeatable); "
            "the others go with it.",
            show_default=False,
        ),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask: remove those it admitted too.")
    ] = False,
) -> None:
    """Remove a member from the mesh, for good: this node stops trusting it at once, and the
    rest of the mesh learns it by gossip. It can come back only as a new node.

    The members it admitted (and those they admitted), unless someone else admitted them
    too, are listed and removed with it: they got in on its word. Keep the ones you trust
    with --keep-admitted, or answer no when asked. What they and it wrote before the
    removal still counts (a loan they gave stays until recalled).

    \b
    Examples:
      mesh remove old-laptop
      mesh remove mallory --keep-admitted phone,tablet
    """
    keep = [k.strip() for item in keep_admitted or () for k in item.split(",") if k.strip()]
    with _ctx(ctx).node() as node:
        plan = node.remove(name, keep, dry_run=True)
        going = plan.removed_with_it
        if going and not keep and not yes:
            typer.echo(
                f"{safe(plan.member.name)} admitted members who are in the mesh only through "
                f"it: {_refs(going)}",
                err=True,
            )
            if sys.stdin.isatty() and not typer.confirm("Remove them too?", default=True):
                keep = [str(m.node_id.short()) for m in going]
        plan = node.remove(name, keep)
    typer.echo(f"removed {safe(plan.member.name)!r} from the mesh")
    if plan.removed_with_it:
        typer.echo(f"removed with it (admitted by it): {_refs(plan.removed_with_it)}")
    if plan.kept:
        typer.echo(f"kept (admitted by it): {_refs(plan.kept)}")


def register(app: typer.Typer) -> None:
    app.command()(invite)
    app.command()(join)
    app.command()(members)
    app.command()(remove)
