"""What every command shares: which home it works on, and how it reaches the node."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mesh.core.errors import HomeBusyError
from mesh.home import Home, HomeLock
from mesh.node.local import LocalNode


@dataclass
class CliContext:
    home_path: Path | None

    @property
    def home(self) -> Home:
        return Home.resolve(self.home_path)

    @contextlib.contextmanager
    def local_node(self) -> Iterator[LocalNode]:
        """The node's store, opened under the home's lock (waiting for another command)."""
        home = self.home
        lock = HomeLock(home, "cli")
        try:
            lock.acquire()
        except HomeBusyError as exc:
            if "daemon" in str(exc):
                raise
            print(f"mesh: waiting: {exc}", file=sys.stderr)
            lock.acquire(wait=True)
        try:
            node = LocalNode.open(home)
            try:
                yield node
            finally:
                node.close()
        finally:
            lock.release()
