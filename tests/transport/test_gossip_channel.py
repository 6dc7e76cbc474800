"""A gossip channel, closed, closes its connection: even when a frame was sent after this
end half-closed the stream (a presence report racing a pruned session's close). Such a
write used to fail inside grpc, which then took the call for finished and never cancelled
it in its core: the call and its TCP connection stayed open, and pinged, for good."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest

from mesh.core.errors import PeerUnavailableError
from mesh.core.gossip import Ping
from mesh.security import identity as ident
from mesh.transport.peer_client import PeerChannel
from tests.security.conftest import Serve


def connections_to(port: int) -> int:
    """Established TCP connections from a client to 127.0.0.1:port, as `ss` sees them."""
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", f"dport = :{port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return len([row for row in out.splitlines() if row.strip()])


async def until(check: object, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_closed_gossip_channel_leaves_no_connection_behind(serve: Serve) -> None:
    server_id, member = ident.generate(), ident.generate()
    server, _ = await serve(server_id, [member])
    channel = PeerChannel(
        member,
        server_id.node_id,
        server_id.cert_der,
        "127.0.0.1",
        server.port,
        keepalive_s=1,
        ping_timeout_s=1,
        gossip=True,
    )
    try:
        stream = channel.gossip()
        assert await stream.recv() == Ping(nonce=7)
        assert connections_to(server.port) == 1
        # This end half-closes (the server's handler then ends the call), while another
        # task still has a frame to send.
        closing = asyncio.ensure_future(stream.aclose(2.0))
        await asyncio.sleep(0)
        with pytest.raises(PeerUnavailableError):
            await stream.send(Ping(nonce=8))
        await closing
    finally:
        await channel.close()
    # Closed at once (~0.1 s); with the failed write it stayed open for seconds here, for
    # good in a daemon.
    await until(lambda: connections_to(server.port) == 0, 2, "the connection to close")
