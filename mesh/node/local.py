"""A node's local side: its identity, store, libraries and scans, without the network.

The CLI uses this directly when no daemon runs (holding the home's lock), and the daemon
uses the same class behind its Control service, so a command behaves the same either way.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mesh import __version__, config
from mesh.core.browse import matcher
from mesh.core.entries import IndexedEntry, Library, LibraryEntry
from mesh.core.envelope import Envelope
from mesh.core.epoch import NONCE_BITS, Epoch
from mesh.core.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    NotInitializedError,
    ProtocolError,
)
from mesh.core.gossip import Batch
from mesh.core.ids import NodeId
from mesh.core.membership import Membership
from mesh.core.names import check_library_name, check_node_name, node_name_from_host
from mesh.core.pairing import MemberInfo
from mesh.core.progress import ScanProgress
from mesh.core.records import Addresses, Kind, LibraryRecord, key_of
from mesh.core.replica import Outcome, Replica
from mesh.core.status import LibraryInfo, MemberRef, MemberView, NodeStatus, RemovalPlan
from mesh.fs.scanner import Scanner
from mesh.home import Home
from mesh.security import identity as ident
from mesh.store.addresses import AddressBook
from mesh.store.database import Database
from mesh.store.index import LibraryIndex
from mesh.store.node_state import NodeState
from mesh.store.records import SqliteReplicaStore
from mesh.wire import records as wire_records


def records_of(db: Database, node_id: NodeId, state: NodeState) -> SqliteReplicaStore:
    """The records table of a home's database, as this node's replica keeps them."""
    return SqliteReplicaStore(
        db,
        self_id=node_id,
        own_epoch=state.epoch,
        encode_entry=lambda entry: wire_records.encode(entry)[1],
        encode_entries=wire_records.encode_entries,
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, kw_only=True, slots=True)
class InitResult:
    name: str
    node_id: NodeId
    created: bool
    renamed_from: str | None = None


class LocalNode:
    """Identity, store, replica and libraries of one home. Not thread-safe: one user at a
    time (the daemon runs it on its store thread)."""

    def __init__(self, home: Home, identity: ident.Identity, db: Database) -> None:
        self.home = home
        self.identity = identity
        self.db = db
        self.state = NodeState(db)
        self.records = records_of(db, identity.node_id, self.state)
        self.index = LibraryIndex(db, self.records.take_own_seqs)
        self.addresses = AddressBook(db)
        self.replica = self._replica()

    def _replica(self) -> Replica:
        return Replica(
            self_id=self.identity.node_id,
            epoch=self.state.epoch,
            root=self.state.root() or self.identity.node_id,
            store=self.records,
            decode=wire_records.decode,
            decode_entries=wire_records.decode_entries,
            verify=ident.verify,
            encode=wire_records.encode,
            sign=self.identity.sign,
        )

    # -- lifecycle ---------------------------------------------------------------------

    @classmethod
    def open(cls, home: Home) -> LocalNode:
        home.require_node()
        identity = ident.load(home.key_file, home.cert_file)
        db = Database(home.database)
        if not NodeState(db).initialized():
            db.close()
            raise NotInitializedError(f"{home.database} holds no node; run `mesh init`")
        return cls(home, identity, db)

    @classmethod
    def init(cls, home: Home, name: str | None) -> tuple[LocalNode, InitResult]:
        """Create the node (identity, store, epoch), or rename it if it exists."""
        home.ensure()
        if name is not None:
            check_node_name(name)
        if home.exists() and NodeState.present(home.database):
            node = cls.open(home)
            old = node.state.name
            if name is not None and name != old:
                node.rename(name)
                return node, InitResult(
                    name=name, node_id=node.node_id, created=False, renamed_from=old
                )
            return node, InitResult(name=old, node_id=node.node_id, created=False)
        if home.exists():
            # The database was lost but the identity was not: the same node starts a new
            # epoch (its old records are retired everywhere once it writes again), and
            # rejoins its mesh with an invite code.
            identity = ident.load(home.key_file, home.cert_file)
        else:
            identity = ident.generate()
            ident.save(identity, home.key_file, home.cert_file)
        if not home.config_file.exists():
            config.save(config.Settings(), home.config_file)
        db = Database(home.database)
        chosen = name or node_name_from_host(socket.gethostname())
        NodeState(db).initialize(chosen, Epoch(now_ms(), secrets.randbits(NONCE_BITS)))
        node = cls(home, identity, db)
        return node, InitResult(name=chosen, node_id=node.node_id, created=True)

    @classmethod
    def reset(cls, home: Home, name: str | None) -> tuple[LocalNode, InitResult, Path]:
        """A new identity and store in `home`; the old ones are moved to a folder beside them
        (returned), and the same folders are shared again (to be scanned)."""
        old = cls.open(home)
        old_name = old.name
        libraries = old.index.libraries()
        old.close()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        keep = home.root / f"previous-{stamp}"
        keep.mkdir(mode=0o700)
        for path in (home.key_file, home.cert_file, home.database):
            for item in (
                path,
                path.with_name(path.name + "-wal"),
                path.with_name(path.name + "-shm"),
            ):
                if item.exists():
                    item.rename(keep / item.name)
        node, result = cls.init(home, name or old_name)
        for library in libraries:
            if Path(library.root).is_dir():
                node.share(library.root, library.name, open_to_mesh=library.open)
        return node, result, keep

    def close(self) -> None:
        self.db.close()

    @property
    def node_id(self) -> NodeId:
        return self.identity.node_id

    @property
    def name(self) -> str:
        return self.state.name

    # -- membership --------------------------------------------------------------------

    @property
    def membership(self) -> Membership:
        return self.replica.membership

    def removal(self) -> tuple[str, int] | None:
        """(who removed this node from its mesh, when in Unix ms), if a removal counts."""
        membership = self.membership
        found = membership.removed.get(self.node_id)
        if found is None:
            return None
        remover = membership.members.get(found.removed_by)
        return (remover.name if remover else found.removed_by.short()), found.removed_ms

    def in_mesh(self) -> bool:
        """Whether this node belongs to a mesh with other members."""
        return any(m != self.node_id for m in self.membership.members)

    def rename(self, name: str) -> None:
        if self.in_mesh():
            raise InvalidArgumentError(
                "this node is in a mesh, where its name is set; rename it before joining "
                "(or leave with `mesh init --reset`)"
            )
        self.state.rename(name)

    def found_mesh(self) -> None:
        """Make this node the root of a mesh of its own (its self-admission is the genesis),
        unless it is already in one."""
        if self.membership.is_member(self.node_id):
            return
        if self.state.root() not in (None, self.node_id):
            raise InvalidArgumentError(
                "this node was removed from its mesh; see `mesh init --reset`"
            )
        with self.db.transaction() as conn:
            self.state.set_root(conn, self.node_id)
            self.replica.admit(self.identity.cert_der, self.name, now_ms())

    def admit(self, certificate: bytes, name: str) -> Envelope:
        """Admit a node to this node's mesh (founding the mesh first if need be)."""
        check_node_name(name)
        self.found_mesh()
        joiner = NodeId.of_certificate(certificate)
        if joiner == self.node_id:
            raise InvalidArgumentError("a node cannot join its own mesh")
        taken = [m for m in self.membership.by_name(name) if m.node_id != joiner]
        if taken:
            raise AlreadyExistsError(
                f"the name {name!r} is taken in this mesh; rename the joining node with "
                "`mesh init --name NEW` and join again"
            )
        return self.replica.admit(certificate, name, now_ms())

    def claim_name(self) -> bool:
        """Claim this node's name with its own key, once: from then on no other member's
        admission of it can rename it (core/membership.py). True if the claim was written."""
        membership = self.membership
        if not membership.is_member(self.node_id) or self.node_id in membership.claims:
            return False
        self.replica.admit(self.identity.cert_der, self.name, now_ms())
        return True

    def remove(self, name: str, keep: Sequence[str] = (), *, dry_run: bool = False) -> RemovalPlan:
        """Remove the member called `name` (or with that short id), and with it the members
        that are members only through its admissions, but for those `keep` names: what it
        did goes with it. With `dry_run`, only say what that would remove."""
        target = self.member_named(name)
        membership = self.membership

        def ref(node_id: NodeId) -> MemberRef:
            return MemberRef(node_id=node_id, name=membership.members[node_id].name)

        admitted = [ref(x) for x in self.replica.admitted_through(target) if x != self.node_id]
        keep_ids: set[NodeId] = set()
        for kept_name in keep:
            node_id = self.member_named(kept_name)
            if node_id not in {m.node_id for m in admitted}:
                raise InvalidArgumentError(
                    f"{kept_name!r} is not among the members {name!r} admitted"
                )
            keep_ids.add(node_id)
        # A kept member keeps those it admitted in turn.
        going = set(self.replica.admitted_through(target, keep_ids))
        plan = RemovalPlan(
            member=ref(target),
            admitted=tuple(admitted),
            kept=tuple(m for m in admitted if m.node_id not in going),
        )
        if dry_run:
            return plan
        if target == self.node_id:
            raise InvalidArgumentError("a node cannot remove itself; another member can")
        with self.db.transaction():
            self.remove_member(target)
            for member in plan.removed_with_it:
                self.remove_member(member.node_id)
        return dataclasses.replace(plan, done=True)

    def members(self) -> tuple[NodeId, list[MemberView]]:
        return self.membership.root, self.member_views()

    def publish_addresses(self, hosts: Sequence[str], port: int) -> bool:
        """Write this node's addresses record if it says something new; True if written."""
        if not self.membership.is_member(self.node_id):
            return False  # a node alone has nobody to tell
        record = Addresses(hosts=tuple(hosts), port=port, name=self.name)
        current = self.records.get(key_of(self.node_id, record))
        if current is not None and wire_records.decode(current.kind, current.body) == record:
            return False
        self.replica.write(record)
        return True

    def gossiped_addresses(self) -> list[tuple[NodeId, str, int]]:
        """Where each member says it listens, from their addresses records."""
        found: list[tuple[NodeId, str, int]] = []
        for node_id in self.membership.members:
            if node_id == self.node_id:
                continue
            env = self.records.get(key_of(node_id, Addresses(hosts=(), port=0)))
            if env is None:
                continue
            record = wire_records.decode(env.kind, env.body)
            if isinstance(record, Addresses):
                found.extend((node_id, host, record.port) for host in record.hosts)
        return found

    def remember_address(self, node_id: NodeId, host: str, port: int, source: str = "") -> None:
        self.addresses.remember(node_id, host, port, source or "invite", now_ms())

    def remove_member(self, node_id: NodeId) -> Envelope:
        if node_id == self.node_id:
            raise InvalidArgumentError("a node cannot remove itself; another member can")
        if not self.membership.is_member(node_id):
            raise NotFoundError(f"{node_id.short()} is not a member")
        return self.replica.remove(node_id, now_ms())

    def member_views(self) -> list[MemberView]:
        """Every member, this node first; online state is the daemon's to add."""
        views = [
            MemberView(
                node_id=m.node_id,
                name=m.name,
                admitted_by=m.admitted_by,
                admitted_ms=m.admitted_ms,
                is_self=m.node_id == self.node_id,
            )
            for m in self.membership.members.values()
        ]
        if not any(v.is_self for v in views):
            views.append(
                MemberView(
                    node_id=self.node_id,
                    name=self.name,
                    admitted_by=self.node_id,
                    admitted_ms=0,
                    is_self=True,
                )
            )
        return sorted(views, key=lambda v: (not v.is_self, v.name))

    def member_named(self, name: str) -> NodeId:
        found = self.membership.by_name(name)
        if not found:
            try:
                return next(m for m in self.membership.members if m.short() == name.upper())
            except StopIteration:
                raise NotFoundError(
                    f"no member named {name!r}; `mesh members` lists them"
                ) from None
        if len(found) > 1:
            raise InvalidArgumentError(
                f"{len(found)} members are named {name!r}; name one by its id instead"
            )
        return found[0].node_id

    def pairing_answer(self) -> tuple[NodeId, tuple[Envelope, ...], tuple[MemberInfo, ...]]:
        """The mesh's root, every membership record (admitters first) and the members."""
        membership = self.membership
        records = sorted(
            self.records.membership(), key=lambda e: (membership.rank(e.origin), e.epoch, e.seq)
        )
        members = tuple(
            MemberInfo(node_id=m.node_id, certificate=m.certificate, name=m.name)
            for m in membership.members.values()
        )
        return membership.root, tuple(records), members

    def join_mesh(self, root: NodeId, membership_records: Sequence[Envelope]) -> None:
        """Adopt the mesh of `root`: its membership records, applied and checked here."""
        if self.in_mesh():
            raise InvalidArgumentError(
                "this node is already in a mesh; `mesh init --reset` makes a new node to join "
                "another"
            )
        try:
            with self.db.transaction() as conn:
                self.state.set_root(conn, root)
                self.replica = self._replica()
                refused = self.adopt_membership(membership_records)
                if refused:
                    reason = refused[0][1]
                    raise ProtocolError(f"a bad membership record from the inviter: {reason}")
                if not self.membership.is_member(self.node_id):
                    raise ProtocolError("the inviter's records do not admit this node")
                self.claim_name()
        except BaseException:
            # The transaction rolled back: the replica must see the old root and records.
            self.replica = self._replica()
            raise

    def adopt_membership(self, records: Sequence[Envelope]) -> list[tuple[Envelope, str]]:
        """Apply membership records given in any order (a record whose signer is not known
        yet is tried again after the others); those that could not count, with why."""
        pending = list(records)
        while pending:
            refused: list[tuple[Envelope, str]] = []
            for env in pending:
                batch = Batch(
                    origin=env.origin,
                    epoch=env.epoch,
                    after_seq=env.seq - 1,
                    through_seq=env.seq,
                    envelopes=(env,),
                )
                result = self.replica.apply(batch, env.origin)
                if result.outcome is Outcome.REFUSED:
                    refused.append((env, result.reason))
            if len(refused) == len(pending):
                return refused
            pending = [env for env, _ in refused]
        return []

    def share(
        self,
        root: str,
        name: str | None = None,
        *,
        open_to_mesh: bool | None = None,
        borrowers: Sequence[str] | None = None,
        ask: bool | None = None,
    ) -> LibraryInfo:
        """Share a folder as a library; or, for a folder (or library name) already shared,
        change who may borrow from it: `open_to_mesh`, `borrowers` (member names or short
        ids; empty: every member) and `ask` (over lending.ask_first); None leaves each as
        it is (a new library: closed, every member, the node's ask_first)."""
        with_ids = None if borrowers is None else self._borrower_ids(borrowers)
        path = Path(root).expanduser()
        existing = self._shared_as(path, root)
        if existing is not None:
            changed = dataclasses.replace(
                existing,
                open=existing.open if open_to_mesh is None else open_to_mesh,
                borrowers=existing.borrowers if with_ids is None else with_ids,
                ask=existing.ask if ask is None else ask,
            )
            with self.db.transaction():
                self.index.set_sharing(changed)
                if changed.open != existing.open:
                    self.replica.write(LibraryRecord(name=changed.name, open=changed.open))
            return self._info(changed)
        if not path.exists():
            raise NotFoundError(f"{root} does not exist")
        if not path.is_dir():
            raise InvalidArgumentError(f"{root} is not a folder; mesh shares folders")
        real = path.resolve()
        if _is_within(self.home.root.resolve(), real) or _is_within(real, self.home.root.resolve()):
            raise InvalidArgumentError(
                f"{real} overlaps this node's home ({self.home.root}); share another folder"
            )
        # Borrowed copies are the lenders' files: indexing them as this node's own would
        # publish them as a library of ours.
        borrowed = config.load(self.home.config_file).borrowed_path.resolve()
        if _is_within(borrowed, real) or _is_within(real, borrowed):
            raise InvalidArgumentError(
                f"{real} overlaps the borrowed folder ({borrowed}), which is not a library; "
                "share another folder"
            )
        library = Library(
            name=check_library_name(name or real.name or "root"),
            root=str(real),
            open=bool(open_to_mesh),
            borrowers=with_ids or frozenset(),
            ask=ask,
        )
        with self.db.transaction():
            self.index.add_library(library, now_ms())
            self.replica.write(LibraryRecord(name=library.name, open=library.open))
        return self._info(library)

    def _shared_as(self, path: Path, given: str) -> Library | None:
        """The library of folder `path`, or named `given` when no such folder exists."""
        libraries = self.index.libraries()
        if path.exists():
            real = str(path.resolve())
            return next((lib for lib in libraries if lib.root == real), None)
        return next((lib for lib in libraries if lib.name == given), None)

    def _borrower_ids(self, names: Sequence[str]) -> frozenset[NodeId]:
        ids = {self.member_named(n) for n in names}
        if self.node_id in ids:
            raise InvalidArgumentError("a library is always this node's own: name others")
        return frozenset(ids)

    def unshare(self, name: str) -> int:
        with self.db.transaction():
            count = self.index.remove_library(name)
            self.replica.write(LibraryRecord(name=name, removed=True))
        return count

    def _info(self, library: Library) -> LibraryInfo:
        stats = self.index.stats(library.name)
        return LibraryInfo(
            name=library.name,
            root=library.root,
            open=library.open,
            files=stats.files,
            bytes=stats.bytes,
            last_seq=stats.last_seq,
            changed_ms=stats.changed_ms,
            borrowers=tuple(sorted(self._name_of(n) for n in library.borrowers)),
            ask=library.ask,
        )

    def _name_of(self, node_id: NodeId) -> str:
        member = self.membership.members.get(node_id)
        return member.name if member is not None else node_id.short()

    def libraries(self) -> list[LibraryInfo]:
        return [self._info(lib) for lib in self.index.libraries()]

    def status(self, *, port: int = 0, uptime_s: float = 0.0, running: bool = False) -> NodeStatus:
        by, at_ms = self.removal() or ("", 0)
        return NodeStatus(
            removed_by=by,
            removed_ms=at_ms,
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
            load_folder=self.index.known_in_folder,
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

    def browse(self, node: str | None = None, pattern: str | None = None) -> list[IndexedEntry]:
        """Entries of the mesh from the replicated index: of the member named `node`, or
        of every member (this node included) if None; only those matching `pattern`."""
        match = matcher(pattern) if pattern is not None else None
        if node is not None:
            node_id = self.node_id if node in (self.name, "self") else self.member_named(node)
            origins = [node_id]
        else:
            origins = [
                self.node_id,
                *sorted(m for m in self.membership.members if m != self.node_id),
            ]
        found: list[IndexedEntry] = []
        for origin in origins:
            name = self.name if origin == self.node_id else self.membership.members[origin].name
            if origin == self.node_id:
                own = self.index.entries()
                entries = ((e.entry, e.seq) for e in own)
            else:
                entries = (
                    (record, env.seq)
                    for env in self.records.live(Kind.ENTRY, origin)
                    if isinstance(record := wire_records.decode(env.kind, env.body), LibraryEntry)
                )
            found.extend(
                IndexedEntry(entry=entry, seq=seq, node_id=origin, node=name)
                for entry, seq in entries
                if match is None or match(entry)
            )
        found.sort(key=lambda i: (i.node != self.name, i.node, i.entry.library, i.entry.path))
        return found


def _is_within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


__all__ = ["InitResult", "LocalNode", "now_ms", "records_of"]
