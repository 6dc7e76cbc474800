"""`mesh doctor`: what stops discovery and connections on this computer, in plain words.

Peers that cannot see each other is the most common complaint about LAN tools (see the
trackers of LocalSend and Warpinator), and its causes are local: an interface without
multicast, a port taken or blocked, a daemon that is not running, an address that moved, a
node that is not a member. The doctor looks at each and says what to do.
"""

from __future__ import annotations

import asyncio
import shutil
from typing import Annotated

import typer

from mesh import config
from mesh.cli.context import CliContext
from mesh.cli.output import print_json, safe
from mesh.cli.status_cmds import removed_line
from mesh.core.ids import NodeId


def _ctx(ctx: typer.Context) -> CliContext:
    obj = ctx.obj
    assert isinstance(obj, CliContext)
    return obj


def doctor(
    ctx: typer.Context,
    json_: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
) -> None:
    """Explain what stops other nodes from finding or reaching this one, and what to do.

    Looks at the interfaces mDNS would use (and whether they carry multicast), the TCP port
    (free, or listening when the daemon runs), the daemon, every known address of the other
    members (static peers, where they were last reached, what they announced) and which of
    them answer, and why not: refused, timed out, unreachable, certificate not a member.
    Ends with the firewall ports to open. Sends no multicast and changes nothing.
    Exits 1 when it found a problem.

    \b
    Examples:
      mesh doctor
      mesh doctor --json
      mesh --home /srv/mesh doctor
    """
    from mesh.discovery.interfaces import interface_states
    from mesh.node import diagnosis

    cli = _ctx(ctx)
    home = cli.home
    settings = config.load(home.config_file)
    sections: dict[str, list[diagnosis.Finding]] = {}
    sections["discovery"] = diagnosis.interface_findings(
        interface_states(), settings.interfaces, settings.mdns
    )
    known = [diagnosis.Known(host=h, port=p, source="static") for h, p in settings.peers()]
    port = settings.port
    daemon: list[diagnosis.Finding] = []
    removed = ""
    members: dict[NodeId, str] = {}
    online: list[diagnosis.Finding] = []
    if not home.exists():
        daemon.append(diagnosis.Finding(ok=False, text="no node here yet: run `mesh init`"))
        self_id = NodeId(bytes(32))
    elif cli.daemon_running():
        with cli.daemon() as client:
            status = client.status()
            _, views = client.members()
        port, self_id = status.port, status.node_id
        removed = status.removed_by and removed_line(status)
        daemon.append(diagnosis.Finding(ok=True, text=f"the daemon runs (pid {status.pid})"))
        daemon.append(diagnosis.port_listening(port))
        for v in views:
            if v.is_self:
                continue
            members[v.node_id] = v.name
            if v.online:
                text = f"{v.name}: connected at {v.address}"
                online.append(diagnosis.Finding(ok=True, text=text))
            elif v.address:
                try:
                    host, p = config.parse_peer(v.address)
                except ValueError:
                    continue
                known.append(diagnosis.Known(host=host, port=p, name=v.name, source="last seen"))
            else:
                text = (
                    f"{v.name}: not connected, and this node never reached it, so there is no "
                    "address to check while the daemon runs (on this LAN mDNS finds it; "
                    "elsewhere `mesh peer add HOST`)"
                )
                online.append(diagnosis.Finding(ok=False, text=text))
    else:
        daemon.append(
            diagnosis.Finding(ok=False, text="the daemon is not running: start it with `mesh up`")
        )
        daemon.append(diagnosis.port_free(settings.listen, port))
        with cli.local_node() as node:
            self_id = node.node_id
            st = node.status()
            removed = st.removed_by and removed_line(st)
            members = {
                m.node_id: m.name for m in node.membership.members.values() if m.node_id != self_id
            }
            remembered = node.addresses.all()
            gossiped = node.gossiped_addresses()
        for source, rows in (("remembered", remembered), ("gossiped", gossiped)):
            known.extend(
                diagnosis.Known(host=h, port=p, name=members.get(n, ""), source=source)
                for n, h, p in rows
                if n in members
            )
    sections["daemon"] = daemon
    probed = asyncio.run(diagnosis.probe_all(known, members, self_id)) if known else []
    if not members and home.exists():
        online.append(
            diagnosis.Finding(
                ok=True, text="no other members yet: `mesh invite` here, `mesh join` there"
            )
        )
    if removed:  # first: nothing else matters until the node is part of a mesh again
        online.insert(0, diagnosis.Finding(ok=False, text=removed))
    sections["peers"] = online + probed
    tools = [t for t in ("ufw", "firewall-cmd") if shutil.which(t)]
    advice = diagnosis.firewall_advice(port or config.DEFAULT_PORT, tools)
    problems = sum(not f.ok for findings in sections.values() for f in findings)
    if json_:
        print_json(
            {
                **{k: [{"ok": f.ok, "text": f.text} for f in v] for k, v in sections.items()},
                "firewall": advice,
                "problems": problems,
            }
        )
    else:
        titles = {"discovery": "Discovery (mDNS)", "daemon": "Daemon", "peers": "Other nodes"}
        for key, findings in sections.items():
            typer.echo(titles[key])
            for f in findings:
                typer.echo(f"  {'ok' if f.ok else '!!'}  {safe(f.text)}")
        typer.echo("Firewall")
        for line in advice:
            typer.echo(f"  {line}")
        typer.echo(
            "No problem found." if not problems else f"{problems} problem(s) found (marked !!)."
        )
    if problems:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(doctor)
