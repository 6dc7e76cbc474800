"""The opening of a Gossip session: both ends send a Hello and check the other's.

The Hello's node id must be the one the TLS session proved, and its protocol version one
this node speaks; otherwise the session ends with an error that says why (node/session.py
logs it). An incompatible peer is told so before the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib

from mesh.core.errors import PeerUnavailableError, ProtocolError, RefusedError
from mesh.core.gossip import GossipError, Hello
from mesh.transport.gossip_stream import GossipStream


async def exchange_hellos(
    stream: GossipStream, ours: Hello, *, compatible: range, timeout_s: float
) -> Hello:
    """Send `ours`, then read and check the peer's (`stream.peer`, as TLS proved it)."""
    peer = stream.peer
    await stream.send(ours)
    try:
        frame = await asyncio.wait_for(stream.recv(), timeout_s)
    except TimeoutError as exc:
        raise PeerUnavailableError(f"{peer.short()} sent no hello in time") from exc
    if frame is None:
        # Ended before its hello: a peer that stops, or drops a duplicate, at that moment.
        raise PeerUnavailableError(f"{peer.short()} ended the stream before its hello")
    if isinstance(frame, GossipError):
        raise RefusedError(f"{peer.short()} refused the stream: {frame.message}")
    if not isinstance(frame, Hello):
        raise ProtocolError(f"expected a hello, got {type(frame).__name__}")
    if frame.node_id != peer:
        raise ProtocolError("the hello names another node than the TLS certificate")
    if frame.protocol_version not in compatible:
        message = (
            f"incompatible protocol: this node speaks {ours.protocol_version}, "
            f"{frame.name or peer.short()} speaks {frame.protocol_version}; "
            "upgrade the older mesh"
        )
        await refuse(stream, "incompatible", message)
        raise RefusedError(message)
    return frame


async def refuse(stream: GossipStream, code: str, message: str) -> None:
    """Tell the peer why the stream ends (within a second; a gone peer is not told)."""
    with contextlib.suppress(PeerUnavailableError, TimeoutError):
        await asyncio.wait_for(stream.send(GossipError(code=code, message=message)), 1)
