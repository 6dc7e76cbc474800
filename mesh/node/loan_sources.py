"""Who may serve a loan, on the store thread: the binding that lends a content to a
requester (from the records, or the signed one a request carried), this node's own files
and open libraries, and the holders a borrower may pull from. Part of `Lending`
(node/lending.py), which gives it the records and manifests it reads."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from mesh.core.entries import LibraryEntry
from mesh.core.envelope import Envelope
from mesh.core.errors import NotFoundError
from mesh.core.ids import NodeId
from mesh.core.records import Binding, Kind, LibraryRecord, LoanState, LoanStatus, key_of
from mesh.node.folders import Manifests
from mesh.node.lent import Lent, active
from mesh.node.local import LocalNode
from mesh.wire import records as wire_records


class LoanSources:
    local: LocalNode
    manifests: Manifests

    def bindings(self) -> list[Lent]:
        raise NotImplementedError

    def status_of(self, lent: Lent) -> LoanStatus | None:
        raise NotImplementedError

    def _live(self, kind: Kind) -> Iterator[tuple[Envelope, object]]:
        raise NotImplementedError

    def lending_to(
        self,
        requester: NodeId,
        lender: NodeId,
        content_hash: bytes,
        now_ms: int,
        offered: Envelope | None,
    ) -> Lent | None:
        """The active binding that lends `content_hash` from `lender` to `requester`: from
        the records, or the signed one the request carried (checked here). For a folder
        loan, the file's share of it, found in the lender's signed manifest."""
        for lent in self.bindings():
            b = lent.binding
            if lent.lender != lender or b.borrower != requester or not active(b, now_ms):
                continue
            if not b.folder and b.content.hash == content_hash:
                return lent
            if b.folder:
                manifest = self.manifests.of(lender, b)
                file = manifest.by_hash.get(content_hash) if manifest is not None else None
                if file is not None:
                    return lent.member(file)
        if offered is None or offered.kind is not Kind.BINDING or offered.origin != lender:
            return None
        if not self.local.replica.signed_by_member(offered):
            return None
        record = wire_records.decode(offered.kind, offered.body)
        if (
            isinstance(record, Binding)
            and not record.folder  # its manifest pages would be needed too
            and record.borrower == requester
            and record.content.hash == content_hash
            and active(record, now_ms)
        ):
            return Lent(lender=lender, binding=record, envelope=offered)
        return None

    def folder_lending_to(
        self, requester: NodeId, lender: NodeId, now_ms: int
    ) -> Callable[[bytes], Lent | None]:
        """As `lending_to` for the files of folder loans only, for many files at once
        (FetchFiles): the active folder loans from `lender` to `requester` are found once;
        the function returned finds the file's share of the one that lends a content."""
        found = []
        for lent in self.bindings():
            b = lent.binding
            if b.folder and lent.lender == lender and b.borrower == requester and active(b, now_ms):
                manifest = self.manifests.of(lender, b)
                if manifest is not None:
                    found.append((lent, manifest))

        def lent_for(content_hash: bytes) -> Lent | None:
            for lent, manifest in found:
                file = manifest.by_hash.get(content_hash)
                if file is not None:
                    return lent.member(file)
            return None

        return lent_for

    def own_file_path(self, library: str, path: str) -> tuple[str, LibraryEntry] | None:
        """Where this node's own (library, path) is, and its indexed entry."""
        try:
            lib = self.local.index.library(library)
        except NotFoundError:
            return None
        entry = self.local.index.entry(library, path)
        if entry is None:
            return None
        return os.path.join(lib.root, *path.split("/")), entry

    def open_library(self, node: NodeId, library: str) -> bool:
        env = self.local.records.get(key_of(node, LibraryRecord(name=library)))
        if env is None:
            return False
        record = wire_records.decode(env.kind, env.body)
        return isinstance(record, LibraryRecord) and record.open and not record.removed

    def open_holding(
        self, content_hash: bytes, borrower: NodeId
    ) -> tuple[str, LibraryEntry] | None:
        """This node's own file with that content in a library it opened to `borrower`."""
        for library in self.local.index.libraries():
            if not library.open or not library.may_borrow(borrower):
                continue
            for item in self.local.index.entries(libraries=[library.name]):
                if item.entry.hash == content_hash:
                    found = self.own_file_path(library.name, item.entry.path)
                    if found is not None:
                        return found
        return None

    def _open_holders(self, content_hash: bytes) -> list[NodeId]:
        """Other members that hold the content in a library they opened to the mesh."""
        found: list[NodeId] = []
        for node in self.local.membership.members:
            if node == self.local.node_id:
                continue
            for env in self.local.records.live(Kind.LIBRARY, node):
                record = wire_records.decode(env.kind, env.body)
                if not isinstance(record, LibraryRecord) or not record.open or record.removed:
                    continue
                for entry_env in self.local.records.live(Kind.ENTRY, node):
                    entry = wire_records.decode(entry_env.kind, entry_env.body)
                    if (
                        isinstance(entry, LibraryEntry)
                        and entry.library == record.name
                        and entry.hash == content_hash
                        and not entry.deleted
                    ):
                        found.append(node)
                        break
                if node in found:
                    break
        return found

    def holders(self, lent: Lent, now_ms: int) -> list[NodeId]:
        """Who may serve this binding's content to this node: the lender, then borrowers
        of the same lender that hold it, then holders of it in libraries open to all."""
        found = [lent.lender]
        content = lent.binding.content.hash
        for other in self.bindings():
            b = other.binding
            if other.lender != lent.lender or b.borrower in found:
                continue
            if b.borrower == self.local.node_id:
                continue
            if b.folder:
                # A borrower that holds all of a folder loan whose signed manifest names
                # this content holds this content.
                status = self.status_of(other)
                if status is None or status.state is not LoanState.HELD:
                    continue
                manifest = self.manifests.of(other.lender, b)
                if (
                    status.hash == b.content.hash
                    and manifest is not None
                    and content in manifest.by_hash
                ):
                    found.append(b.borrower)
                continue
            if b.content.hash != content:
                continue
            status = self.status_of(other)
            if status is not None and status.state is LoanState.HELD and status.hash == content:
                found.append(b.borrower)
        found += [n for n in self._open_holders(content) if n not in found]
        return found


__all__ = ["LoanSources"]
