"""Choosing where `mesh join CODE` without `--at` pairs: the open invitations announced on
the LAN whose nameplate is the code's number."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from mesh.core.errors import PeerUnavailableError
from mesh.discovery.hints import Hint, PairingHint

FIND_WAIT_S = 5.0
NODES_WAIT_S = 1.5  # browsing for nodes, after no invitation was found
MAX_NODES_ASKED = 32  # where a closed invitation may be: the nodes a joiner asks, at most


def _rank(host: str) -> tuple[int, str]:
    # A LAN's IPv4 address works everywhere; a link-local IPv6 one only with its scope.
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return 3, host
    if ip.version == 4:
        return 0, host
    return (2 if ip.is_link_local else 1), host


def places(
    found: Sequence[PairingHint], nameplate: int, wait_s: float = FIND_WAIT_S
) -> list[tuple[str, int]]:
    """(host, port) of each invitation that may be the code's, best first; a plain-words
    error when there is none.

    Only invitations announcing the code's number are tried: any other would cost its
    inviter one of its five tries. An inviter from before nameplates announces none; it is
    tried only when it is the one invitation open, as before."""
    mine = [f for f in found if f.nameplate == nameplate]
    unknown = [f for f in found if f.nameplate is None]
    chosen = mine or (unknown if len(found) == 1 else [])
    if not chosen:
        others = ""
        if found:
            numbers = sorted({str(f.nameplate) for f in found if f.nameplate is not None})
            others = (
                f" ({len(found)} other invitation{'s' if len(found) > 1 else ''} open, for "
                f"codes starting {', '.join(numbers) or 'with another number'}: check the code)"
            )
        raise PeerUnavailableError(
            f"found no open invitation for a code starting {nameplate} on this network within "
            f"{wait_s:g} s{others}; is `mesh invite` running on the other computer, on the same "
            "network? Otherwise give its address: mesh join CODE --at HOST"
        )
    return [(host, f.port) for f in chosen for host in sorted(f.hosts, key=_rank)]


def desks(nodes: Sequence[Hint]) -> list[tuple[str, int]]:
    """Where the nodes announced on the LAN would listen for pairing (the port after their
    own): a closed invitation is no longer announced, but its node still says why it
    closed, to a joiner whose code has its number."""
    return [
        (host, n.port + 1)
        for n in nodes[:MAX_NODES_ASKED]
        if n.port < 65535
        for host in sorted(n.hosts, key=_rank)[:1]
    ]
