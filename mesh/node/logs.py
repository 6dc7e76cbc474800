"""Logging for the daemon: one line per event on stderr, with the node's name."""

from __future__ import annotations

import logging
import sys

from mesh.core.text import shown


class _NodeName(logging.Filter):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.node = name

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = self.node
        return True


class EscapingFormatter(logging.Formatter):
    """One event, one line: names from peers and files in a message are shown escaped, so
    none can move the cursor, recolour the terminal or start a forged line of the log."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = shown(record.message)
        return super().formatMessage(record)


def setup(node_name: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_NodeName(node_name))
    handler.setFormatter(
        EscapingFormatter(
            "%(asctime)s.%(msecs)03d %(levelname)-7s [%(node)s] %(message)s", "%H:%M:%S"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Some libraries are chatty at INFO; their warnings still show.
    for noisy in ("asyncio", "zeroconf"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
