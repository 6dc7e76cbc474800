"""The control socket of `mesh up`, opened before the daemon is built.

Building the daemon means importing most of mesh (gRPC's peer side, TLS, zeroconf, the
file system watchers): a few tenths of a second in which a CLI command asking "is it up?"
would otherwise find no socket and say the daemon is not running. `mesh up` opens the
socket first, with a gate for handlers: a call that comes in meanwhile waits for the
daemon's own handlers (or fails with the reason, if the daemon never starts).

Imports here stay light: this module is what `mesh up` loads before the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, cast

from mesh.core.errors import DaemonNotRunningError
from mesh.core.progress import ScanProgress
from mesh.transport.control_server import ControlHandlers, ControlServer


class ControlGate:
    """Stands in for the daemon's control handlers until `attach` hands them over."""

    def __init__(self) -> None:
        self._ready = asyncio.Event()
        self._handlers: ControlHandlers | None = None
        self._failure = ""

    def attach(self, handlers: ControlHandlers) -> None:
        self._handlers = handlers
        self._ready.set()

    def fail(self, why: str) -> None:
        """Let calls waiting (or still to come) fail with `why`, unless attached already."""
        if self._handlers is None:
            self._failure = why
            self._ready.set()

    async def _wait(self) -> ControlHandlers:
        await self._ready.wait()
        if self._handlers is None:
            raise DaemonNotRunningError(self._failure)
        return self._handlers

    def __getattr__(self, name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            return await getattr(await self._wait(), name)(*args, **kwargs)

        return call

    async def scan(self, names: list[str]) -> AsyncIterator[ScanProgress]:
        handlers = await self._wait()
        async for progress in handlers.scan(names):
            yield progress


class EarlyControl:
    """The control server and its gate, for `mesh up` to start and the daemon to take."""

    def __init__(self, socket_path: Path) -> None:
        self.gate = ControlGate()
        # The gate answers every method of the handlers (by __getattr__), which mypy's
        # protocol check does not see.
        self.server = ControlServer(cast(ControlHandlers, self.gate), socket_path)
        self._stopped = False

    async def start(self) -> None:
        await self.server.start()

    async def stop(self, grace: float) -> None:
        if not self._stopped:
            self._stopped = True
            self.gate.fail("the daemon is stopping")
            await self.server.stop(grace)
