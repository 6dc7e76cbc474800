"""Polling a library: where it cannot be watched, compare two walks of it.

A walk records each file's (size, mtime_ns) and each folder; the difference between two
walks is the same kind of `Change` the watcher reports, so the same settling and partial
scans follow. A walk stats every file (about half a second per 100k files), which is why
it is the fallback, not the rule.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from mesh.core.settle import Signature
from mesh.fs.folder_scan import STAGING_PREFIX
from mesh.fs.watcher import Change, What

# path -> (size, mtime_ns) of a file, or None for a folder
Snapshot = dict[str, Signature]


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def snapshot(root: str, exclude: Iterable[str] = ()) -> Snapshot:
    """Every file and folder under `root` (symlinks and mesh's staging names left out)."""
    skip = {os.path.realpath(p) for p in exclude}
    found: Snapshot = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        folder = os.path.join(root, rel) if rel else root
        if skip and os.path.realpath(folder) in skip:
            continue
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.startswith(STAGING_PREFIX):
                        continue
                    path = _join(rel, entry.name)
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            found[path] = None
                            stack.append(path)
                        elif entry.is_file(follow_symlinks=False):
                            st = entry.stat(follow_symlinks=False)
                            found[path] = (st.st_size, st.st_mtime_ns)
                    except OSError:
                        continue
        except OSError:
            continue
    return found


def diff(library: str, old: Snapshot, new: Snapshot) -> list[tuple[Change, Signature]]:
    """What changed between two walks, each file with what the newer walk saw of it."""
    out: list[tuple[Change, Signature]] = []
    for path, seen in new.items():
        if path not in old or old[path] != seen:
            what = What.FOLDER if seen is None else What.FILE
            out.append((Change(library=library, path=path, what=what), seen))
    for path, seen in old.items():
        if path not in new:
            what = What.FOLDER if seen is None else What.FILE
            out.append((Change(library=library, path=path, what=what), None))
    return out


__all__ = ["Snapshot", "diff", "snapshot"]
