"""Redial at once when this machine's network comes back.

Theory of operation. A dial that fails backs off (node/peers.py), and a pull that found no
source waits (node/agent.py): right when the network is away, and too slow when it comes
back with the same addresses, as nothing else changes then: no mDNS hint, no new address to
announce. Netlink reports the link running again and its routes coming back
(discovery/netlink.py `LinkUps`); a burst of those (link up, carrier, routes, IPv6 addresses
a second later) is gathered for a moment and acted on once, so that each address is dialled
once per burst rather than once per message. Where netlink is unavailable the backoff
alone brings the peers back, as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from mesh.discovery.netlink import LinkUps

log = logging.getLogger(__name__)

SETTLE_S = 0.2  # messages of one burst come within milliseconds; a dial needs the route


class LinkWatch:
    def __init__(self, on_up: Callable[[], None], source: LinkUps | None = None) -> None:
        self._on_up = on_up
        self._source = source if source is not None else LinkUps()
        self.bursts = 0  # bursts acted on (for tests and the log)

    async def run(self) -> None:
        source = self._source
        if not source.open():
            return
        try:
            while True:
                await source.wait(None)
                await asyncio.sleep(SETTLE_S)
                source.forget()
                self.bursts += 1
                log.debug("the network came up on this machine: dialling the members now")
                self._on_up()
        finally:
            source.close()
