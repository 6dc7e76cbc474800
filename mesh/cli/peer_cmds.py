"""`mesh peers` (who is online, where, how far behind) and `mesh peer add/remove`
(addresses to dial without multicast: other subnets, VPNs)."""

from __future__ import annotations

from typing import Annotated

import typer

from mesh import config
from mesh.cli.context import CliContext
from mesh.cli.output import address_width, fit, human_duration, print_json, safe
from mesh.core.errors import InvalidArgumentError

peer_app = typer.Typer(
    help=(
        "Addresses this node dials itself (static peers), for members mDNS cannot find.\n\n"
        "\b\nExamples:\n"
        "  mesh peer add 192.168.2.20\n"
        "  mesh peer list\n"
        "  mesh peer remove 192.168.2.20"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _ctx(ctx: typer.Context) -> CliContext:
    obj = ctx.obj
    assert isinstance(obj, CliContext)
    return obj


def peers(
    ctx: typer.Context,
    json_: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
) -> None:
    """Show every other member: online or not, its address, when it was last heard from,
    and how many of this node's records it has not acknowledged yet (0: in sync).

    \b
    Examples:
      mesh peers
      mesh peers --json
    """
    with _ctx(ctx).daemon() as daemon:
        _, views = daemon.members()
    others = [v for v in views if not v.is_self]
    if json_:
        print_json(
            [
                {
                    "name": v.name,
                    "node_id": str(v.node_id),
                    "online": v.online,
                    "address": v.address or None,
                    "last_seen_s": round(v.last_seen_s, 1) if v.last_seen_s else None,
                    "unacked": v.unacked,
                }
                for v in others
            ]
        )
        return
    if not others:
        typer.echo("no other members yet; add one with `mesh invite`", err=True)
        return
    wide = address_width((safe(v.address) for v in others), 26)
    typer.echo(f"{'NAME':<16} {'ID':<8} {'STATE':<8} {'ADDRESS':<{wide}} {'LAST SEEN':<12} UNACKED")
    for v in others:
        if v.online:
            seen = "now" if v.last_seen_s < 5 else f"{human_duration(v.last_seen_s)} ago"
        else:
            seen = f"{human_duration(v.last_seen_s)} ago" if v.last_seen_s else "never"
        typer.echo(
            f"{safe(v.name):<16} {v.node_id.short():<8} "
            f"{'online' if v.online else 'offline':<8} {fit(safe(v.address), wide) or '-':<{wide}} "
            f"{seen:<12} {v.unacked}"
        )


def _parse(address: str) -> tuple[str, int, str]:
    try:
        host, port = config.parse_peer(address)
    except ValueError as exc:
        raise InvalidArgumentError(f"{exc}; give HOST or HOST:PORT ([IPv6]:PORT)") from exc
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return host, port, shown


@peer_app.command("add")
def add(
    ctx: typer.Context,
    address: Annotated[
        str,
        typer.Argument(
            help=f"HOST or HOST:PORT (default port {config.DEFAULT_PORT}).", show_default=False
        ),
    ],
) -> None:
    """Dial a member at this address from now on (saved in the config as peers.static).

    With the daemon running, the address is checked at once: its TLS certificate must be a
    member's. Through one member, gossip tells this node where the others are.

    \b
    Examples:
      mesh peer add 192.168.2.20
      mesh peer add tower.vpn:6374
      mesh peer add [fd00::20]:6374
    """
    cli = _ctx(ctx)
    host, port, shown = _parse(address)
    if cli.daemon_running():
        with cli.daemon() as daemon:
            check = daemon.add_peer(host, port)
        if check.node_id is None:
            typer.echo(f"{shown} does not answer now ({check.problem}); will keep trying", err=True)
        else:
            typer.echo(f"{shown} is {safe(check.name)} ({check.node_id.short()}); connecting")
    home = cli.home
    home.ensure()
    settings = config.load(home.config_file)
    known = {config.parse_peer(p) for p in settings.static_peers}
    if (host, port) in known:
        typer.echo(f"{shown} is already a static peer", err=True)
        return
    config.save(
        config.with_value(settings, "peers.static", ",".join([*settings.static_peers, shown])),
        home.config_file,
    )
    typer.echo(f"saved {shown} in peers.static", err=True)


@peer_app.command("remove")
def remove(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(help="HOST[:PORT] as added.", show_default=False)],
) -> None:
    """Stop dialling an address (takes effect at the next `mesh up`).

    \b
    Examples:
      mesh peer remove 192.168.2.20
    """
    home = _ctx(ctx).home
    host, port, shown = _parse(address)
    settings = config.load(home.config_file)
    kept = [p for p in settings.static_peers if config.parse_peer(p) != (host, port)]
    if len(kept) == len(settings.static_peers):
        raise InvalidArgumentError(f"{shown} is not a static peer; `mesh config show` lists them")
    config.save(config.with_value(settings, "peers.static", ",".join(kept)), home.config_file)
    typer.echo(f"removed {shown} from peers.static", err=True)


@peer_app.command("list")
def list_(ctx: typer.Context) -> None:
    """Print the static peers, one per line.

    \b
    Examples:
      mesh peer list
    """
    for peer in config.load(_ctx(ctx).home.config_file).static_peers:
        typer.echo(safe(peer))


def register(app: typer.Typer) -> None:
    app.command()(peers)
    app.add_typer(peer_app, name="peer")
