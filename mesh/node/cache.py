"""The cache of copies opened through the mount or a stream (issue 21).

A file borrowed by opening it stays held after it is closed, so opening it again reads at
local speed; it is returned (`mesh return`, as the user would) once the cached copies'
sizes pass `borrowing.cache`, least recently read first, or once it went unread for
`borrowing.cache_idle`. Pinned copies (`mesh pin`) and files open now are never returned
here. Runs with the agent's check interval.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from mesh.core.errors import MeshError
from mesh.core.ids import NodeId
from mesh.core.loans import loan_id
from mesh.node.local import now_ms

if TYPE_CHECKING:
    from mesh.node.daemon import Daemon

log = logging.getLogger(__name__)


class Cache:
    def __init__(self, daemon: Daemon) -> None:
        self._d = daemon

    async def run(self) -> None:
        while True:
            try:
                await self.trim()
            except MeshError as exc:
                log.warning("the cache of opened copies could not be trimmed: %s", exc)
            await asyncio.sleep(self._d.settings.check_interval_s)

    async def trim(self, need: int = 0) -> list[str]:
        """Return the cached copies over the size limit (with room for `need` more bytes,
        a file about to be borrowed by opening it) or idle too long; their paths."""
        d = self._d
        busy = d.opened.open_keys()
        returned = await d.store(self._trim, busy, now_ms(), need)
        for where in returned:
            log.info(
                "returned the cached copy %s (the cache needs the space or it went unread)", where
            )
        return returned

    def _trim(self, busy: set[tuple[NodeId, str, str]], now: int, need: int) -> list[str]:
        d = self._d
        s, lending, kept, me = d.settings, d.lending, d.opened.kept, d.node_id
        sizes = {(c.lender, c.library, c.path): c.size for c in lending.book.copies()}
        cached = sorted((k for k in kept.all() if not k.pinned), key=lambda k: k.last_read_ms)
        total = need + sum(sizes.get((k.lender, k.library, k.path), 0) for k in cached)
        returned = []
        for k in cached:
            where = (k.lender, k.library, k.path)
            if where in busy:
                continue
            idle = s.cache_idle_s > 0 and now - k.last_read_ms > s.cache_idle_s * 1000
            if not idle and total <= s.cache:
                continue
            try:
                lending.give_back(loan_id(k.lender, me, k.library, k.path), now)
            except MeshError as exc:
                log.debug("cached copy %s/%s: %s", k.library, k.path, exc)
            kept.forget(k.lender, k.library, k.path)
            total -= sizes.get(where, 0)
            returned.append(f"{lending.name_of(k.lender)}/{k.library}/{k.path}")
        return returned


__all__ = ["Cache"]
