"""Choosing the open invitation that `mesh join CODE` without `--at` pairs with."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from mesh.core.errors import InvalidArgumentError, PeerUnavailableError
from mesh.discovery.hints import PairingHint

FIND_WAIT_S = 5.0


def _rank(host: str) -> tuple[int, str]:
    # A LAN's IPv4 address works everywhere; a link-local IPv6 one only with its scope.
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return 3, host
    if ip.version == 4:
        return 0, host
    return (2 if ip.is_link_local else 1), host


def pick(found: Sequence[PairingHint], wait_s: float = FIND_WAIT_S) -> tuple[str, int]:
    """(host, port) of the one invitation found; a plain-words error for none or several.

    Several open invitations are not tried in turn: a wrong code costs an inviter one of its
    five attempts, so the person says which computer they mean."""
    if not found:
        raise PeerUnavailableError(
            f"found no open invitation on this network within {wait_s:g} s; is `mesh invite` "
            "running on the other computer, on the same network? Otherwise give its address: "
            "mesh join CODE --at HOST"
        )
    if len(found) > 1:
        where = ", ".join(sorted(_best(f.hosts) for f in found))
        raise InvalidArgumentError(
            f"{len(found)} invitations are open on this network (at {where}); say which with "
            "--at HOST"
        )
    return _best(found[0].hosts), found[0].port


def _best(hosts: Sequence[str]) -> str:
    return sorted(hosts, key=_rank)[0]
