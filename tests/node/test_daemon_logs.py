"""The daemon's log (node/logs.py): zeroconf's warning about a send on an address that just
went away is an ordinary event (a new lease, a cable pulled), shown at debug level only;
its other warnings still show."""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator

import pytest
from zeroconf._logger import QuietLogger

from mesh.node import logs


@pytest.fixture
def daemon_log() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    zc_level = logging.getLogger("zeroconf").level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.getLogger("zeroconf").setLevel(zc_level)


@pytest.mark.parametrize("level", ["info", "debug"])
def test_a_send_on_a_vanished_address_is_not_a_warning(
    daemon_log: None, capsys: pytest.CaptureFixture[str], level: str
) -> None:
    logs.setup("n2", level)
    gone = OSError(errno.ENETUNREACH, "Network is unreachable")
    QuietLogger.log_exception_once(
        gone, f"Error with socket 23 (('10.0.0.3', 5353)) {level}): %s", gone
    )
    other = OSError(errno.EPERM, "Operation not permitted")
    QuietLogger.log_exception_once(
        other, f"Error with socket 24 (('10.0.0.3', 5353)) {level}): %s", other
    )
    err = capsys.readouterr().err
    assert "WARNING [n2] Error with socket 24" in err  # not the vanished address's kind
    assert "WARNING [n2] Error with socket 23" not in err
    assert "PermissionError: [Errno 1]" in err  # its exception still shown
    assert "OSError: [Errno 101]" not in err
    shown_at_debug = "DEBUG   [n2] Error with socket 23" in err
    assert shown_at_debug == (level == "debug")
