"""Node and library names: what a person types to mean a node or a library."""

from __future__ import annotations

import re

from mesh.core.errors import InvalidArgumentError, InvalidPathError
from mesh.core.paths import check_name

_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def check_node_name(name: str) -> str:
    if not _NODE_NAME.match(name):
        raise InvalidArgumentError(
            f"node name {name!r} is not allowed: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def node_name_from_host(hostname: str) -> str:
    """A valid node name from a host name ('Toms-MacBook.local' -> 'Toms-MacBook')."""
    first = hostname.split(".", maxsplit=1)[0]
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", first).strip("-._")[:63]
    return cleaned or "node"


def check_library_name(name: str) -> str:
    try:
        return check_name(name)
    except InvalidPathError as exc:
        raise InvalidArgumentError(f"library name {name!r} is not allowed: {exc}") from exc
