"""gRPC's keepalive at the end that answers a stream (the server): a dialler that stops
(SIGSTOP, a wedged or suspended process: its kernel still acknowledges TCP, only its
HTTP/2 pings go unanswered) is dropped within a keepalive and the ping timeout. Without a
ping timeout of its own the server waited gRPC's default minute, so every member showed a
frozen node online for about a minute (it ended only at the session's backstop)."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from mesh.transport import options

KEEPALIVE_S = 0.5
PING_TIMEOUT_S = 1.0
SLACK_S = 3.0  # a loaded machine's scheduling, and the first keepalive's phase

# The dialler, as a gossip channel sets it up (TLS aside), in a process of its own.
DIALLER = r"""
import asyncio, sys
import grpc
from mesh.transport import options

async def main() -> None:
    tls = ("grpc.ssl_target_name_override", "grpc.default_authority")
    opts = options.channel_options(float(sys.argv[2]), float(sys.argv[3]), gossip=True)
    opts = [o for o in opts if o[0] not in tls]
    async with grpc.aio.insecure_channel(sys.argv[1], options=opts) as channel:
        call = channel.stream_stream("/t.T/S")()
        await call.write(b"x")
        await call.read()
        print("open", flush=True)
        await call.read()

asyncio.run(main())
"""


async def test_the_answering_end_drops_a_stopped_dialler_within_its_keepalive() -> None:
    ended = asyncio.Event()

    async def echo(requests: AsyncIterator[bytes], _context: Any) -> AsyncIterator[bytes]:
        try:
            async for message in requests:
                yield message
        finally:
            ended.set()

    server = grpc.aio.server(options=options.server_options(KEEPALIVE_S, PING_TIMEOUT_S))
    handler = grpc.stream_stream_rpc_method_handler(echo)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.T", {"S": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    dialler = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        DIALLER,
        f"127.0.0.1:{port}",
        str(KEEPALIVE_S),
        str(PING_TIMEOUT_S),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert dialler.stdout is not None
        assert await asyncio.wait_for(dialler.stdout.readline(), 30) == b"open\n"
        dialler.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        await asyncio.wait_for(ended.wait(), KEEPALIVE_S + PING_TIMEOUT_S + SLACK_S)
        assert time.monotonic() - stopped < KEEPALIVE_S + PING_TIMEOUT_S + SLACK_S
    finally:
        dialler.send_signal(signal.SIGCONT)
        dialler.kill()
        await dialler.wait()
        await server.stop(None)
