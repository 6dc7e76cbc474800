"""What every command shares: which home it works on, and how it reaches the node.

A command that works on the store uses the running daemon through its control socket if
there is one, and otherwise opens the store itself under the home's lock, so the two never
write at once. Either way it gets the same `NodeApi`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mesh.core.errors import DaemonNotRunningError, HomeBusyError
from mesh.home import Home, HomeLock
from mesh.node.api import NodeApi

if TYPE_CHECKING:
    # Imported when used: gRPC and the store add a tenth of a second each to commands that
    # do not need them (and `mesh lend` through the daemon needs no store).
    from mesh.node.local import LocalNode
    from mesh.transport.control_client import ControlClient


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
        home.require_node()  # before the lock, whose file would create the folder
        lock = HomeLock(home, "cli")
        try:
            lock.acquire()
        except HomeBusyError as exc:
            if lock.holder()[1] == "daemon":
                raise HomeBusyError(
                    f"{exc}; stop it first (this command works on the store directly)"
                ) from exc
            print(f"mesh: waiting: {exc}", file=sys.stderr)
            lock.acquire(wait=True)
        try:
            from mesh.node.local import LocalNode

            node = LocalNode.open(home)
            try:
                yield node
            finally:
                node.close()
        finally:
            lock.release()

    @contextlib.contextmanager
    def node(self) -> Iterator[NodeApi]:
        """The running daemon if there is one, else the store under the home's lock."""
        home = self.home
        home.require_node()
        lock = HomeLock(home, "cli")
        try:
            lock.acquire()
        except HomeBusyError as exc:
            if lock.holder()[1] != "daemon":
                print(f"mesh: waiting: {exc}", file=sys.stderr)
                lock.acquire(wait=True)
            else:
                with self.daemon() as client:
                    yield client
                return
        try:
            from mesh.node.local import LocalNode

            node = LocalNode.open(home)
            try:
                yield node
            finally:
                node.close()
        finally:
            lock.release()

    def daemon_running(self) -> bool:
        lock = HomeLock(self.home, "cli")
        try:
            lock.acquire()
        except HomeBusyError:
            return lock.holder()[1] == "daemon"
        lock.release()
        return False

    @contextlib.contextmanager
    def daemon(self) -> Iterator[ControlClient]:
        """The running daemon; DaemonNotRunningError (saying how to start it) otherwise."""
        from mesh.transport.control_client import ControlClient

        home = self.home
        home.require_node()
        lock = HomeLock(home, "cli")
        try:
            lock.acquire()
        except HomeBusyError:
            if lock.holder()[1] != "daemon":
                raise
        else:
            lock.release()
            raise DaemonNotRunningError(
                f"the mesh daemon is not running on {home.root}; start it with `mesh up`"
            )
        client = ControlClient(home.control_socket)
        try:
            client.ping()
            yield client
        finally:
            client.close()
