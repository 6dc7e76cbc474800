"""Folder loans on the store: the lender's manifest (written as pages, named in the
signed binding, rewritten when the folder changes) and the borrower's reading of it,
checked page by page against the binding (core/folders.py says what that trusts).

Runs on the store thread, like node/lending.py.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

from mesh.core import folders
from mesh.core.envelope import Envelope
from mesh.core.ids import NodeId
from mesh.core.records import Binding, Content, ManifestFile, ManifestPage, key_of
from mesh.node.local import LocalNode
from mesh.wire import records as wire_records

_CACHED = 64  # manifests kept decoded (by binding content): serving looks them up per call


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Manifest:
    """A folder loan's files as its lender signed for them."""

    files: tuple[ManifestFile, ...]
    by_hash: dict[bytes, ManifestFile]

    @classmethod
    def of_files(cls, files: tuple[ManifestFile, ...]) -> Manifest:
        return cls(files=files, by_hash={f.hash: f for f in files})

    def by_path(self) -> dict[str, ManifestFile]:
        return {f.path: f for f in self.files}


def manifest_files(local: LocalNode, library: str, pattern: str) -> list[ManifestFile]:
    """What the pattern matches in this node's library now, as manifest lines."""
    return [
        ManifestFile(path=e.path, size=e.size, hash=e.hash, chunk_root=e.chunk_root)
        for e in (i.entry for i in local.index.entries(libraries=[library]))
        if folders.matches(pattern, e.path)
    ]


def folder_binding(
    local: LocalNode,
    *,
    borrower: NodeId,
    library: str,
    pattern: str,
    files: list[ManifestFile],
    until_ms: int,
    created_ms: int,
    old: Binding | None = None,
) -> Binding:
    """Write the manifest pages that changed since `old`, then the binding naming them
    all (the pages first: a peer that has the binding can then find every page)."""
    hashes: list[bytes] = []
    for index, files_of_page in enumerate(folders.paginate(files)):
        page = ManifestPage(
            borrower=borrower, library=library, path=pattern, index=index, files=files_of_page
        )
        _, body = wire_records.encode(page)
        digest = folders.page_hash(body)
        hashes.append(digest)
        stored = local.records.get(key_of(local.node_id, page))
        if stored is None or folders.page_hash(stored.body) != digest:
            local.replica.write(page)
    manifest_digest = folders.digest(hashes)
    binding = Binding(
        borrower=borrower,
        library=library,
        path=pattern,
        content=Content(
            hash=manifest_digest, size=sum(f.size for f in files), chunk_root=manifest_digest
        ),
        until_ms=until_ms,
        created_ms=created_ms,
        folder=True,
        pages=tuple(hashes),
        files=len(files),
    )
    if old is not None:
        binding = dataclasses.replace(
            old, content=binding.content, pages=binding.pages, files=binding.files
        )
    local.replica.write(binding)
    return binding


class Manifests:
    """Reads folder loans' manifests from the records, each page checked against the hash
    the signed binding names; a page missing or not matching makes the manifest unknown
    (None) until the right one arrives."""

    def __init__(self, local: LocalNode) -> None:
        self._local = local
        self._cache: OrderedDict[tuple[bytes, bytes, bytes], Manifest] = OrderedDict()
        self._seen_seq: dict[str, int] = {}

    def of(self, lender: NodeId, binding: Binding) -> Manifest | None:
        if not binding.folder:
            return None
        cache_key = (lender.raw, binding.borrower.raw, binding.content.hash + binding.path.encode())
        found = self._cache.get(cache_key)
        if found is not None:
            self._cache.move_to_end(cache_key)
            return found
        files: list[ManifestFile] = []
        for index, expected in enumerate(binding.pages):
            env = self._local.records.get(_page_key(lender, binding, index))
            if env is None or folders.page_hash(env.body) != expected:
                return None
            page = wire_records.decode(env.kind, env.body)
            if not isinstance(page, ManifestPage):
                return None
            files.extend(page.files)
        manifest = Manifest.of_files(tuple(files))
        self._cache[cache_key] = manifest
        if len(self._cache) > _CACHED:
            self._cache.popitem(last=False)
        return manifest

    def envelope_pages(self, lender: NodeId, binding: Binding) -> list[Envelope]:
        """The page records of a folder binding this node has (for tests and checks)."""
        out = []
        for index in range(len(binding.pages)):
            env = self._local.records.get(_page_key(lender, binding, index))
            if env is not None:
                out.append(env)
        return out

    def library_changed(self, library: str) -> bool:
        """Whether this node's library has changed since the last call that said so."""
        seq = self._local.index.stats(library).last_seq
        if self._seen_seq.get(library) == seq:
            return False
        self._seen_seq[library] = seq
        return True


def _page_key(lender: NodeId, binding: Binding, index: int) -> bytes:
    """The record key of page `index` of a folder binding's manifest."""
    probe = ManifestPage(
        borrower=binding.borrower,
        library=binding.library,
        path=binding.path,
        index=index,
        files=(),
    )
    return key_of(lender, probe)


__all__ = ["Manifest", "Manifests", "folder_binding", "manifest_files"]
