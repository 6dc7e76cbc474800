"""What `mesh find` matches: a name glob, or the start of a content hash."""

from __future__ import annotations

import fnmatch
import string
from collections.abc import Callable

from mesh.core.entries import LibraryEntry
from mesh.core.errors import InvalidArgumentError

# A hash prefix shorter than this matches too much by chance to be meant as one.
MIN_HASH_PREFIX = 8
_HEX = frozenset(string.hexdigits)


def matcher(pattern: str) -> Callable[[LibraryEntry], bool]:
    """A test for entries: hex of 8+ digits matches hashes that start with it; anything
    else is a case-insensitive glob on the file name or on `library/path`. A pattern
    without glob characters matches names that contain it."""
    pattern = pattern.strip()
    if not pattern:
        raise InvalidArgumentError("an empty pattern; give a name, a glob like '*.mkv', or a hash")
    if len(pattern) >= MIN_HASH_PREFIX and set(pattern) <= _HEX:
        prefix = bytes.fromhex(pattern[: len(pattern) // 2 * 2])
        odd = pattern[-1].lower() if len(pattern) % 2 else ""

        def by_hash(entry: LibraryEntry) -> bool:
            if not entry.hash.startswith(prefix):
                return False
            return not odd or entry.hash.hex()[len(pattern) - 1] == odd

        return by_hash
    glob = pattern.lower()
    if not any(c in glob for c in "*?["):
        glob = f"*{glob}*"

    def by_name(entry: LibraryEntry) -> bool:
        path = entry.path.lower()
        name = path.rsplit("/", 1)[-1]
        full = f"{entry.library.lower()}/{path}"
        return fnmatch.fnmatchcase(name, glob) or fnmatch.fnmatchcase(full, glob)

    return by_name
