"""What `mesh doctor` looks at: interfaces, the node's port, and whether known peers answer.

Each check returns findings in plain words: what was seen, and for a problem what to do.
Nothing here multicasts or changes anything; peers are only asked for their certificate
(the same plain TLS handshake the peer manager starts with), so the doctor can say who
answers at an address and whether that node is a member.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from mesh.core.errors import PeerUnavailableError
from mesh.core.ids import NodeId
from mesh.discovery.interfaces import InterfaceState
from mesh.transport.peer_client import target
from mesh.transport.tls import probe_certificate

MDNS_PORT = 5353
PROBE_S = 3.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Finding:
    ok: bool
    text: str


def interface_findings(
    states: Sequence[InterfaceState], chosen: Sequence[str], mdns: bool
) -> list[Finding]:
    """Which interfaces discovery would use, and whether each can carry mDNS."""
    out: list[Finding] = []
    if not mdns:
        out.append(
            Finding(
                ok=False,
                text="mDNS is off (node.mdns = false, or `mesh up --no-mdns`): other nodes are "
                "reached only at static, remembered and gossiped addresses; turn it on with "
                "`mesh config set node.mdns true`",
            )
        )
    names = {s.name for s in states}
    for missing in sorted(set(chosen) - names):
        out.append(
            Finding(
                ok=False,
                text=f"{missing}: no such interface here (node.interfaces names it); "
                f"there are {', '.join(sorted(names)) or 'none'}",
            )
        )
    used = (
        [s for s in states if s.name in chosen] if chosen else [s for s in states if not s.loopback]
    )
    if not used:
        out.append(Finding(ok=False, text="no network interface but loopback: not on a network"))
    for s in used:
        where = ", ".join(s.addresses) or "no address"
        problems = []
        if s.up is False:
            problems.append("it is down")
        elif s.carrier is False:
            problems.append("it has no link (cable unplugged, Wi-Fi not connected)")
        if not s.addresses:
            problems.append("it has no address (no DHCP lease yet?)")
        if s.multicast is False:
            problems.append(
                "it does not carry multicast, so mDNS cannot find nodes through it "
                "(typical of VPNs); add those nodes with `mesh peer add HOST`"
            )
        if problems:
            out.append(Finding(ok=False, text=f"{s.name} ({where}): {'; '.join(problems)}"))
        else:
            multicast = "multicast on" if s.multicast else "multicast unknown"
            out.append(Finding(ok=True, text=f"{s.name} ({where}): up, {multicast}"))
    return out


def port_free(listen: str, port: int) -> Finding:
    """Whether the daemon could listen on `port` (it does not run now)."""
    family = socket.AF_INET6 if ":" in listen else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((listen, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return Finding(
                ok=False,
                text=f"TCP port {port} is taken by another program: stop it, or pick another "
                "port with `mesh up --port N` (every node finds it by mDNS)",
            )
        return Finding(ok=False, text=f"cannot listen on {target(listen, port)}: {exc.strerror}")
    return Finding(ok=True, text=f"TCP port {port} is free for `mesh up`")


def port_listening(port: int) -> Finding:
    """Whether the running daemon accepts connections on its port, seen from here."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PROBE_S):
            pass
    except OSError as exc:
        return Finding(
            ok=False,
            text=f"the daemon runs but nothing answers on 127.0.0.1:{port} "
            f"({exc.strerror or exc}); is it listening on one address only (node.listen)?",
        )
    return Finding(ok=True, text=f"accepting other nodes on TCP port {port}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Known:
    """An address to check, with whose it is believed to be ("" when nobody knows)."""

    host: str
    port: int
    name: str = ""
    source: str = ""  # "static", "remembered", "gossiped"


def _why(exc: PeerUnavailableError) -> str:
    cause = exc.__cause__
    if isinstance(cause, TimeoutError | socket.timeout):
        return (
            "timed out: nothing answered (the computer is off or asleep, or a firewall drops "
            "the connection)"
        )
    if isinstance(cause, ConnectionRefusedError):
        return (
            "refused: the computer is there, but mesh does not run on that port (or a "
            "firewall rejects it)"
        )
    if isinstance(cause, OSError) and cause.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "unreachable: no route to that address from this network"
    if isinstance(cause, ssl.SSLError):
        return "something answers there, but it is not a mesh node (no TLS)"
    return str(exc)


async def _probe(known: Known, members: Mapping[NodeId, str], self_id: NodeId) -> Finding:
    where = target(known.host, known.port)
    label = f"{known.name} at {where}" if known.name else where
    if known.source:
        label += f" ({known.source})"
    try:
        der = await probe_certificate(known.host, known.port, PROBE_S)
    except PeerUnavailableError as exc:
        return Finding(ok=False, text=f"{label}: {_why(exc)}")
    node_id = NodeId.of_certificate(der)
    if node_id == self_id:
        return Finding(ok=True, text=f"{label}: this node itself")
    name = members.get(node_id)
    if name is None:
        return Finding(
            ok=False,
            text=f"{label}: certificate not a member: node {node_id.short()} answers there, and "
            "it is not in this mesh (another mesh's node, or one that was reset); invite it",
        )
    if known.name and name != known.name:
        return Finding(ok=True, text=f"{label}: answers, but it is {name} now")
    return Finding(ok=True, text=f"{label}: answers, member {name} ({node_id.short()})")


async def probe_all(
    known: Iterable[Known], members: Mapping[NodeId, str], self_id: NodeId
) -> list[Finding]:
    """Ask every address at once who answers there (each within a few seconds)."""
    unique = {(k.host, k.port): k for k in reversed(list(known))}
    return list(await asyncio.gather(*(_probe(k, members, self_id) for k in unique.values())))


def firewall_advice(port: int, tools: Sequence[str]) -> list[str]:
    """Which ports a firewall on this computer must let in, and the commands for it."""
    lines = [
        f"If a firewall runs on this computer, it must let in TCP {port} (other nodes), "
        f"TCP {port + 1} (joining, while `mesh invite` is open) and UDP {MDNS_PORT} (mDNS).",
    ]
    if "ufw" in tools:
        lines.append(
            f"With ufw: sudo ufw allow {port}:{port + 1}/tcp && sudo ufw allow {MDNS_PORT}/udp"
        )
    if "firewall-cmd" in tools:
        lines.append(
            f"With firewalld: sudo firewall-cmd --permanent --add-port={port}-{port + 1}/tcp "
            "--add-service=mdns && sudo firewall-cmd --reload"
        )
    return lines
