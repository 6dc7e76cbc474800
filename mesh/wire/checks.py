"""Field checks shared by the decoders: each returns a clean value or raises ProtocolError."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from mesh.core.chunks import HASH_BYTES
from mesh.core.epoch import Epoch
from mesh.core.errors import InvalidArgumentError, InvalidPathError, ProtocolError
from mesh.core.ids import ID_BYTES, NodeId
from mesh.core.names import check_node_name
from mesh.core.paths import MAX_NAME_BYTES, MAX_PATH_BYTES, check_name, check_relative
from mesh.v1 import records_pb2 as pb

MAX_TEXT = 1024
U63 = (1 << 63) - 1


def node_id(raw: bytes, what: str = "node id") -> NodeId:
    if len(raw) != ID_BYTES:
        raise ProtocolError(f"{what} is {len(raw)} bytes, not {ID_BYTES}")
    return NodeId(raw)


def content_hash(raw: bytes, what: str = "hash") -> bytes:
    if len(raw) != HASH_BYTES:
        raise ProtocolError(f"{what} is {len(raw)} bytes, not {HASH_BYTES}")
    return raw


def path(text: str) -> str:
    try:
        return check_relative(text)
    except InvalidPathError as exc:
        raise ProtocolError(f"unsafe path: {exc}") from exc


def paths(texts: Sequence[str]) -> None:
    """`path` of each, checked over all of them at once where it can be (ProtocolError).

    The common case is printable ASCII: joined by a backslash (which such a path may not
    hold) and framed by slashes, every rule of `check_relative`'s own fast path is a
    handful of scans of one string. Anything else is checked path by path."""
    if not texts:
        return
    joined = "\\".join(texts)
    framed = "/" + joined.replace("\\", "/\\/") + "/"
    longest = max(map(len, texts))
    if (
        joined.isascii()
        and joined.isprintable()
        and joined.count("\\") == len(texts) - 1
        and longest <= MAX_PATH_BYTES
        and "//" not in framed
        and "/./" not in framed
        and "/../" not in framed
        and (
            longest <= MAX_NAME_BYTES or max(map(len, re.split(r"[/\\]", joined))) <= MAX_NAME_BYTES
        )
    ):
        return
    for text in texts:
        path(text)


def name(text: str, what: str = "name") -> str:
    try:
        return check_name(text)
    except (InvalidPathError, InvalidArgumentError) as exc:
        raise ProtocolError(f"bad {what}: {exc}") from exc


def text(value: str, what: str, limit: int = MAX_TEXT) -> str:
    if len(value) > limit:
        raise ProtocolError(f"{what} is {len(value)} characters, over {limit}")
    return value


def clip(value: str, limit: int = MAX_TEXT) -> str:
    """Free text this node writes, cut to what peers accept. A reason can quote a peer's
    path (4096 bytes); written whole, every peer would refuse the record, and with it
    every later record of this node."""
    return value if len(value) <= limit else value[: limit - 1] + "…"


def count(value: int, what: str, limit: int = U63) -> int:
    if value > limit:
        raise ProtocolError(f"{what} {value} is over {limit}")
    return value


def epoch(msg: pb.Epoch) -> Epoch:
    return Epoch(count(msg.created_ms, "epoch time"), count(msg.nonce, "epoch nonce"))


def epoch_to_wire(value: Epoch) -> pb.Epoch:
    return pb.Epoch(created_ms=value.created_ms, nonce=value.nonce)


def node_name(value: str) -> str:
    try:
        return check_node_name(value)
    except InvalidArgumentError as exc:
        raise ProtocolError(str(exc)) from exc


_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def host(value: str) -> str:
    """An IP address (v4 or v6, with an optional %scope) or a DNS host name."""
    try:
        ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        if not _HOSTNAME.match(value):
            raise ProtocolError(f"{value[:64]!r} is not an address") from None
    return value
