"""A change signal: a counter that tasks can wait on to move past (no lost wake-ups)."""

from __future__ import annotations

import asyncio


class ChangeSignal:
    def __init__(self) -> None:
        self.version = 0
        self._event = asyncio.Event()

    def bump(self) -> None:
        """Something changed: wake every waiter (from the event loop's thread only)."""
        self.version += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, after: int) -> int:
        """Return once the version is past `after` (at once if it already is)."""
        while self.version <= after:
            await self._event.wait()
        return self.version
