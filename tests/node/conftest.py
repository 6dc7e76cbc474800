"""Real daemons in this process, on 127.0.0.1, with homes in a temporary folder."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mesh.config import Settings
from mesh.fs.borrowed import STAGING
from mesh.home import Home
from mesh.node.daemon import Daemon
from mesh.node.lending import Lending
from mesh.node.local import LocalNode, now_ms
from mesh.node.verified import staging_name
from mesh.security.identity import Identity
from mesh.transport.peer_client import PeerChannel


async def wait_for(condition: Callable[[], Any], within: float = 10.0, what: str = "") -> Any:
    """Poll `condition` until it is truthy; fail the test after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what or condition}")
        await asyncio.sleep(0.02)


@dataclass
class NodeHandle:
    home: Home
    name: str
    settings: Settings
    daemon: Daemon | None = None
    task: asyncio.Task[None] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    @contextlib.contextmanager
    def local(self) -> Iterator[LocalNode]:
        """The node's store, opened directly (only while its daemon is not running)."""
        node = LocalNode.open(self.home)
        try:
            yield node
        finally:
            node.close()

    def identity(self) -> tuple[bytes, str]:
        with self.local() as node:
            return node.identity.cert_der, node.name

    async def start(self, **overrides: Any) -> Daemon:
        # Each node its own borrowed folder: a shared ~/Borrowed would mix nodes' (and
        # parallel runs') copies and staging files.
        borrowed = str(self.home.root / "Borrowed")
        settings = Settings.for_tests(
            **{"port": 0, "listen": "127.0.0.1", "borrowed_folder": borrowed, **overrides}
        )
        self.stop = asyncio.Event()
        self.daemon = Daemon(self.home, settings)
        self.task = asyncio.create_task(self.daemon.run(self.stop))
        started = asyncio.create_task(self.daemon.started.wait())
        done, _ = await asyncio.wait(
            {started, self.task}, timeout=10, return_when="FIRST_COMPLETED"
        )
        if self.task in done:
            started.cancel()
            self.task.result()
        assert started in done, "daemon did not start"
        return self.daemon

    async def halt(self) -> float:
        """Stop the daemon; returns how long it took."""
        if self.task is None:
            return 0.0
        began = time.monotonic()
        self.stop.set()
        await asyncio.wait_for(self.task, 10)
        self.task = None
        return time.monotonic() - began

    @property
    def address(self) -> str:
        assert self.daemon is not None
        return f"127.0.0.1:{self.daemon.port}"

    def dial(self, me: Identity) -> PeerChannel:
        """A channel to this node's running daemon as `me`, pinning its certificate, with
        the short keepalive of the tests."""
        assert self.daemon is not None
        d = self.daemon
        return PeerChannel(
            me, d.node_id, d.identity.cert_der, "127.0.0.1", d.port, keepalive_s=1, ping_timeout_s=1
        )


def mesh_of(root: NodeHandle, *others: NodeHandle) -> None:
    """Pair `others` into `root`'s mesh offline, as `mesh invite` / `mesh join` would."""
    with root.local() as node:
        for other in others:
            node.admit(*other.identity())
        records = list(node.records.membership())
        root_id = node.replica.membership.root
    for other in others:
        with other.local() as node:
            node.join_mesh(root_id, records)


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[Callable[[str], NodeHandle]]:
    made: list[NodeHandle] = []

    def make(name: str) -> NodeHandle:
        home = Home.resolve(tmp_path / name)
        node, _ = LocalNode.init(home, name)
        node.close()
        handle = NodeHandle(home=home, name=name, settings=Settings.for_tests())
        made.append(handle)
        return handle

    yield make
    for handle in made:
        await handle.halt()
    for handle in made:
        if handle.daemon is not None and hasattr(handle.daemon, "_borrowed"):
            borrowed = handle.daemon.settings.borrowed_path
            assert_no_stale_staging(handle.name, handle.home, borrowed)


def assert_no_stale_staging(name: str, home: Home, borrowed: Path) -> None:
    """Every staging file in a stopped node's borrowed folder belongs to a pull of a loan
    that is still open: an ended loan (recalled, returned, expired, replaced...) left none."""
    staging = borrowed / STAGING
    present = sorted(os.listdir(staging)) if staging.exists() else []
    if not present:
        return
    node = LocalNode.open(home)
    try:
        lending = Lending(node)
        me = node.node_id
        open_keys = {
            lending.key_of_loan(loan)
            for loan in lending.ledger(now_ms())
            if loan.borrower == me and loan.open
        }
        live = {staging_name(key) for key in open_keys} | {
            pull.staging
            for key in lending.book.pulls()
            if key in open_keys and (pull := lending.book.pull(key)) is not None
        }
        stale_rows = [key.hex()[:12] for key in lending.book.pulls() if key not in open_keys]
    finally:
        node.close()
    stale = [file for file in present if file.removesuffix(".swap") not in live]
    assert not stale, f"{name}: staging files of no open loan's pull: {stale}"
    assert not stale_rows, f"{name}: checkpoints of no open loan's pull: {stale_rows}"
