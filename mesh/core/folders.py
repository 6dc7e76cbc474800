"""Folder loans: one binding for what a pattern matches in a library, covered by the
lender's signature file by file.

Theory of operation. A folder loan is a binding with `folder` set: its `path` is a
pattern over the library's paths ('/'-separated; `*`, `?` and `[...]` match within one
name, `**` any number of names), so lending the folder `Season 1` is the pattern
`Season 1/**`, the whole library is `**`, and `Season 1/*.mkv` is itself. The lender
lists what the pattern matches in its index as a **manifest** (path, size, content hash,
chunk root of each file, sorted by path), cut into pages small enough for one record
(`ManifestPage`, about 48 KiB). The binding carries the SHA-256 of each page's body and
its content is (manifest digest, total bytes, manifest digest), where the digest is the
first 16 bytes of the SHA-256 over the page hashes. When the folder changes the lender
writes the changed pages and the binding again, re-signed; pages that did not change keep
their hash and are not sent again.

What a borrower trusts: a page counts only if the SHA-256 of its body is the one the
binding names, and the binding is signed by the lender; so every file a folder loan brings
is one the lender signed for, whoever relayed the pages. Unsigned library entries never
decide what a folder loan pulls. The loan is one binding and one status however many files
it has: 100,000 files of ~60-byte paths are ~230 pages and a binding of ~8 KB.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mesh.core.errors import InvalidArgumentError
from mesh.core.records import ManifestFile

ANY_DEPTH = "**"
PAGE_BYTES = 48 * 1024  # a page's body stays under the 64 KiB record limit
_FILE_OVERHEAD = 48  # bytes a file costs in a page besides its path (sizes, hashes, tags)
DIGEST_BYTES = 16
_MAGIC = re.compile(r"[*?\[]")


def is_pattern(text: str) -> bool:
    """Whether `text` has a wildcard (else it names a file or folder)."""
    return bool(_MAGIC.search(text))


def escape(name: str) -> str:
    """`name` as a pattern that matches only itself."""
    return _MAGIC.sub(lambda m: f"[{m.group(0)}]", name)


def folder_pattern(folder: str) -> str:
    """The pattern of everything under `folder` ('' for the whole library)."""
    folder = folder.strip("/")
    return f"{escape(folder)}/{ANY_DEPTH}" if folder else ANY_DEPTH


def check_pattern(pattern: str) -> str:
    parts = pattern.split("/")
    if not pattern or any(p in ("", ".", "..") for p in parts):
        raise InvalidArgumentError(f"{pattern!r} is not a pattern of paths in a library")
    return pattern


def matches(pattern: str, path: str) -> bool:
    """Whether the library path `path` is one the pattern names."""
    return _match(pattern.split("/"), path.split("/"))


def _match(pats: Sequence[str], names: Sequence[str]) -> bool:
    if not pats:
        return not names
    head = pats[0]
    if head == ANY_DEPTH:
        # `**` at the end needs at least one name left (a file under the folder).
        rest = pats[1:]
        start = 0 if rest else 1
        return any(_match(rest, names[i:]) for i in range(start, len(names) + 1))
    if not names or not fnmatch.fnmatchcase(names[0], head):
        return False
    return _match(pats[1:], names[1:])


def shown(pattern: str) -> str:
    """How users see a pattern: a folder as 'Season 1/', the whole library as '/'."""
    if pattern == ANY_DEPTH:
        return "/"
    if pattern.endswith("/" + ANY_DEPTH):
        head = pattern[: -len(ANY_DEPTH)]
        if not is_pattern(head.replace("[*]", "").replace("[?]", "").replace("[[]", "")):
            return re.sub(r"\[([*?\[])\]", r"\1", head)
    return pattern


def paginate(files: Iterable[ManifestFile]) -> list[tuple[ManifestFile, ...]]:
    """The files, sorted by path, cut into pages that each fit in one record."""
    pages: list[tuple[ManifestFile, ...]] = []
    page: list[ManifestFile] = []
    size = 0
    for f in sorted(files, key=lambda f: f.path):
        cost = len(f.path.encode()) + _FILE_OVERHEAD
        if page and size + cost > PAGE_BYTES:
            pages.append(tuple(page))
            page, size = [], 0
        page.append(f)
        size += cost
    if page:
        pages.append(tuple(page))
    return pages


def page_hash(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


def digest(page_hashes: Sequence[bytes]) -> bytes:
    """The manifest's digest: what the binding's content hash and a status name."""
    return hashlib.sha256(b"".join(page_hashes)).digest()[:DIGEST_BYTES]


@dataclass(frozen=True, kw_only=True, slots=True)
class FileProgress:
    """Where one file of a folder loan stands on the borrower."""

    path: str
    size: int
    state: str  # "held", "fetching", "waiting", "failed", "refused"
    bytes_done: int = 0
    reason: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class FolderProgress:
    """A folder loan's files summed up, for its one status and its one ledger line."""

    files: int
    files_held: int
    size: int
    bytes_done: int
    failed: tuple[tuple[str, str], ...]  # (path, why), a few of them

    @property
    def held(self) -> bool:
        return self.files_held == self.files

    def reason(self) -> str:
        if not self.failed:
            return ""
        path, why = self.failed[0]
        more = f" (and {len(self.failed) - 1} more)" if len(self.failed) > 1 else ""
        return f"{path}: {why}{more}"


def summed(files: Iterable[FileProgress], *, keep_failed: int = 20) -> FolderProgress:
    count = held = size = done = 0
    failed: list[tuple[str, str]] = []
    for f in files:
        count += 1
        size += f.size
        if f.state == "held":
            held += 1
            done += f.size
        else:
            done += f.bytes_done
            if f.state in ("failed", "refused") and len(failed) < keep_failed:
                failed.append((f.path, f.reason))
    return FolderProgress(
        files=count, files_held=held, size=size, bytes_done=done, failed=tuple(failed)
    )


__all__ = [
    "FileProgress",
    "FolderProgress",
    "check_pattern",
    "digest",
    "escape",
    "folder_pattern",
    "is_pattern",
    "matches",
    "page_hash",
    "paginate",
    "shown",
    "summed",
]
