"""A node's local side: its identity, store, libraries and scans, without the network.

The CLI uses this directly when no daemon runs (holding the home's lock), and the daemon
uses the same class behind its Control service, so a command behaves the same either way.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mesh import __version__, config
from mesh.core.entries import IndexedEntry, Library
from mesh.core.epoch import NONCE_BITS, Epoch
from mesh.core.errors import InvalidArgumentError, NotFoundError, NotInitializedError
from mesh.core.ids import NodeId
from mesh.core.names import check_library_name, check_node_name, node_name_from_host
from mesh.core.progress import ScanProgress
from mesh.core.status import LibraryInfo, NodeStatus
from mesh.fs.scanner import Scanner
from mesh.home import Home
from mesh.security import identity as ident
from mesh.store.database import Database
from mesh.store.index import LibraryIndex
from mesh.store.members import MemberTable
from mesh.store.node_state import NodeState


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, kw_only=True, slots=True)
class InitResult:
    name: str
    node_id: NodeId
    created: bool
    renamed_from: str | None = None


class LocalNode:
    """Identity, store and libraries of one home. Not thread-safe: one user at a time."""

    def __init__(self, home: Home, identity: ident.Identity, db: Database) -> None:
        self.home = home
        self.identity = identity
        self.db = db
        self.state = NodeState(db)
        self.index = LibraryIndex(db, self.state)
        self.members = MemberTable(db)

    # -- lifecycle ---------------------------------------------------------------------

    @classmethod
    def open(cls, home: Home) -> LocalNode:
        if not home.exists():
            raise NotInitializedError(
                f"no node in {home.root} yet; run `mesh init --name NAME` first"
            )
        identity = ident.load(home.key_file, home.cert_file)
        db = Database(home.database)
        node = cls(home, identity, db)
        if not node.state.initialized():
            db.close()
            raise NotInitializedError(f"{home.database} holds no node; run `mesh init`")
        return node

    @classmethod
    def init(cls, home: Home, name: str | None) -> tuple[LocalNode, InitResult]:
        """Create the node (identity, store, epoch), or rename it if it exists."""
        home.ensure()
        if name is not None:
            check_node_name(name)
        if home.exists():
            node = cls.open(home)
            old = node.state.name
            if name is not None and name != old:
                node.state.rename(name)
                return node, InitResult(
                    name=name, node_id=node.node_id, created=False, renamed_from=old
                )
            return node, InitResult(name=old, node_id=node.node_id, created=False)
        identity = ident.generate()
        ident.save(identity, home.key_file, home.cert_file)
        if not home.config_file.exists():
            config.save(config.Settings(), home.config_file)
        db = Database(home.database)
        node = cls(home, identity, db)
        chosen = name or node_name_from_host(socket.gethostname())
        node.state.initialize(chosen, Epoch(now_ms(), secrets.randbits(NONCE_BITS)))
        return node, InitResult(name=chosen, node_id=node.node_id, created=True)

    def close(self) -> None:
        self.db.close()

    @property
    def node_id(self) -> NodeId:
        return self.identity.node_id

    @property
    def name(self) -> str:
        return self.state.name

    # -- libraries ---------------------------------------------------------------------

    def share(
        self, root: str, name: str | None = None, *, open_to_mesh: bool = False
    ) -> LibraryInfo:
        path = Path(root).expanduser()
        if not path.exists():
            raise NotFoundError(f"{root} does not exist")
        if not path.is_dir():
            raise InvalidArgumentError(f"{root} is not a folder; mesh shares folders")
        real = path.resolve()
        if _is_within(self.home.root.resolve(), real) or _is_within(real, self.home.root.resolve()):
            raise InvalidArgumentError(
                f"{real} overlaps this node's home ({self.home.root}); share another folder"
            )
        library = Library(
            name=check_library_name(name or real.name or "root"),
            root=str(real),
            open=open_to_mesh,
        )
        self.index.add_library(library, now_ms())
        return self._info(library)

    def unshare(self, name: str) -> int:
        return self.index.remove_library(name)

    def _info(self, library: Library) -> LibraryInfo:
        stats = self.index.stats(library.name)
        return LibraryInfo(
            name=library.name,
            root=library.root,
            open=library.open,
            files=stats.files,
            bytes=stats.bytes,
            last_seq=stats.last_seq,
        )

    def libraries(self) -> list[LibraryInfo]:
        return [self._info(lib) for lib in self.index.libraries()]

    def status(self, *, port: int = 0, uptime_s: float = 0.0, running: bool = False) -> NodeStatus:
        return NodeStatus(
            name=self.name,
            node_id=self.node_id,
            home=str(self.home.root),
            port=port,
            running=running,
            uptime_s=uptime_s,
            pid=os.getpid(),
            version=__version__,
            libraries=tuple(self.libraries()),
        )

    def select_libraries(self, names: Sequence[str]) -> list[Library]:
        if not names:
            return self.index.libraries()
        return [self.index.library(n) for n in names]

    # -- scanning ----------------------------------------------------------------------

    def scan(
        self,
        names: Sequence[str] = (),
        on_progress: Callable[[ScanProgress], None] | None = None,
        *,
        workers: int | None = None,
    ) -> ScanProgress:
        libraries = self.select_libraries(names)

        scanner = Scanner(
            load_known=self.index.known_by_folder,
            commit=self.index.apply,
            on_progress=on_progress,
            workers=workers,
        )
        return scanner.scan(libraries)

    def entries(
        self, *, include_deleted: bool = False, libraries: Sequence[str] = ()
    ) -> list[IndexedEntry]:
        for name in libraries:
            self.index.library(name)
        return self.index.entries(include_deleted=include_deleted, libraries=libraries)


def _is_within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


__all__ = ["InitResult", "LocalNode", "now_ms"]
