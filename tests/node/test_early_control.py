"""The control gate `mesh up` opens its socket with: calls made while the daemon is being
built wait for its handlers, or fail with the reason if it never comes up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mesh.core.errors import DaemonNotRunningError
from mesh.core.progress import ScanProgress
from mesh.node.early_control import ControlGate


class Handlers:
    async def unshare(self, name: str) -> int:
        return len(name)

    async def scan(self, names: list[str]) -> AsyncIterator[ScanProgress]:
        for _ in names:
            yield ScanProgress(files_seen=1)


async def test_a_call_made_before_the_daemon_is_built_waits_for_it() -> None:
    gate = ControlGate()
    call: asyncio.Task[Any] = asyncio.create_task(gate.unshare("photos"))
    await asyncio.sleep(0)
    assert not call.done()
    gate.attach(Handlers())  # type: ignore[arg-type]
    assert await call == 6
    assert await gate.unshare("x") == 1


async def test_calls_fail_with_the_reason_when_the_daemon_never_starts() -> None:
    gate = ControlGate()
    waiting = asyncio.create_task(gate.unshare("photos"))
    await asyncio.sleep(0)
    gate.fail("the daemon is stopping")
    with pytest.raises(DaemonNotRunningError, match="stopping"):
        await waiting
    with pytest.raises(DaemonNotRunningError):
        await gate.unshare("photos")


async def test_a_scan_streams_through_the_gate() -> None:
    gate = ControlGate()
    gate.attach(Handlers())  # type: ignore[arg-type]
    got = [p async for p in gate.scan(["a", "b"])]
    assert len(got) == 2
    gate.fail("late")  # attached already: nothing changes
    assert await gate.unshare("ab") == 2
