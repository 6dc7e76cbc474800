"""Placing many small verified files at once: a folder loan's small files (node/folder_batch.py).

Each file is written to its own staging file and placed as fs/placing.py does it (hash
checked, file fsynced, folders made, read-only, linked in), except that each destination
folder is fsynced once for the whole batch, after every file in it is linked in, instead of
once per file. The caller records the returned FileIds only after this returns, so a kill
part-way leaves files whose names may not be durable yet but that nothing records as held:
the next pull finds them as its staging file's own placement (fs/placing.py) or pulls them
again. A file that fails is left out (its error is returned in its place); the others go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass

from mesh.core.errors import PlacementError
from mesh.fs import placing, staging
from mesh.fs.borrowed_root import BorrowedRoot
from mesh.fs.copies import FileId
from mesh.fs.folder_walk import sync_dir
from mesh.fs.placing import Step


@dataclass(frozen=True, kw_only=True, slots=True)
class Placing:
    """One file of a batch: its staging key, where it goes, its verified bytes and hash."""

    key: str
    parts: tuple[str, ...]
    data: bytes
    hash: bytes


def place_batch(
    root: BorrowedRoot, items: Sequence[Placing], step: Step
) -> list[FileId | PlacementError]:
    """Stage and place every item (see the module's docstring); per item, its FileId or why
    it was not placed."""
    out: list[FileId | PlacementError] = []
    folders: set[tuple[str, ...]] = set()
    for item in items:
        try:
            with staging.open_staging(root, item.key, len(item.data)) as file:
                file.write_chunk(0, item.data)
            placed = placing.place(
                root,
                item.key,
                item.parts,
                item.hash,
                replacing=None,
                hashed=item.hash,
                step=step,
                sync_folder=False,
            )
        except PlacementError as exc:
            out.append(exc)
            continue
        folders.add(item.parts[:-1])
        out.append(placed)
    for folder in sorted(folders):
        # The names linked in are durable once their folder is: one fsync per folder.
        with ExitStack() as stack:
            fds = root.find_folders(stack, folder)
            if fds is None:
                raise PlacementError(f"{root.shown(list(folder))} went away while it was filled")
            sync_dir(fds[-1], root.shown(list(folder)))
    step("batch synced")
    return out


__all__ = ["Placing", "place_batch"]
