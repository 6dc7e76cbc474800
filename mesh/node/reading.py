"""The daemon's read side: what the control calls read, on a connection and a thread of
their own, so that they answer while the store thread is busy.

The store thread is the database's one writer, and during a large sync it applies batches
for hundreds of milliseconds at a time; a `mesh status` queued behind them waited that
long. WAL lets a second connection read while the writer writes (each read sees the last
commit), so the reads that control calls make go here instead. The connection is
read-only (`PRAGMA query_only`): a write attempted through it fails instead of racing the
writer. Membership is the daemon's, kept current by the store thread, never read here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from mesh.core.errors import StoreError
from mesh.core.membership import Membership
from mesh.home import Home
from mesh.node.local import LocalNode, records_of
from mesh.security.identity import Identity
from mesh.store.addresses import AddressBook
from mesh.store.database import Database
from mesh.store.index import LibraryIndex
from mesh.store.node_state import NodeState

T = TypeVar("T")


def _no_writes(conn: sqlite3.Connection, count: int) -> int:
    raise StoreError("the read side of the store takes no writes")


class ReadNode(LocalNode):
    """A `LocalNode` for reading only: its listings, libraries and status, over a read-only
    connection, with the membership the daemon holds."""

    def __init__(
        self, home: Home, identity: Identity, db: Database, membership: Callable[[], Membership]
    ) -> None:
        # Not LocalNode.__init__: no replica (whose membership would go stale here).
        self.home = home
        self.identity = identity
        self.db = db
        self.state = NodeState(db)
        self.records = records_of(db, identity.node_id, self.state)
        self.index = LibraryIndex(db, _no_writes)
        self.addresses = AddressBook(db)
        self._membership_now = membership

    @property
    def membership(self) -> Membership:
        return self._membership_now()


class ReadSide:
    """A thread with a `ReadNode`; `run(fn)` calls `fn(node, ...)` there."""

    def __init__(self) -> None:
        self._thread = cf.ThreadPoolExecutor(1, "mesh-read")
        self._node: ReadNode | None = None

    async def open(
        self, home: Home, identity: Identity, membership: Callable[[], Membership]
    ) -> None:
        def work() -> ReadNode:
            return ReadNode(home, identity, Database(home.database, readonly=True), membership)

        self._node = await self._call(work)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        node = self._node
        assert node is not None, "the read side is not open"
        return await self._call(lambda: fn(node, *args, **kwargs))

    async def _call(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, work)

    async def close(self) -> None:
        node, self._node = self._node, None
        if node is not None:
            await self._call(node.close)
        self._thread.shutdown(wait=True)
