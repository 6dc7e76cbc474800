"""Logging for the daemon: one line per event on stderr, with the node's name."""

from __future__ import annotations

import errno
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


# A send on an address that just went away (a new lease, a cable pulled): zeroconf logs it
# with a traceback, once per socket, while the address watch is already restarting it.
_GONE = frozenset({errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.EHOSTUNREACH})


class _VanishedAddress(logging.Filter):
    """Shows zeroconf's "Error with socket" for a vanished address at debug level only."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not (isinstance(exc, OSError) and exc.errno in _GONE):
            return True
        if not str(record.msg).startswith("Error with socket"):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.exc_info = record.exc_text = None
        return logging.getLogger().isEnabledFor(logging.DEBUG)


class EscapingFormatter(logging.Formatter):
    """One event, one line: names from peers and files in a message are shown escaped, so
    none can move the cursor, recolour the terminal or start a forged line of the log."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = shown(record.message)
        return super().formatMessage(record)


_VANISHED = _VanishedAddress()  # one, so that a second setup does not add it twice


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
    logging.getLogger("zeroconf").addFilter(_VANISHED)
