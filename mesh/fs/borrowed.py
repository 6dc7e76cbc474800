"""The borrowed folder: staging files for pulls, placing verified files, removing them.

Theory of operation. Borrowed files live at `<root>/<lender folder>/<library>/<path...>`;
a pull writes into a staging file `<root>/.mesh-staging/<key>` on the same file system, so
placing is one atomic link or rename. Mesh never reads, writes or deletes outside the root:
everything below it is reached one checked name at a time by folder descriptors with
O_NOFOLLOW. `BorrowedFolder` puts together the modules that each do one part of it:
- fs/borrowed_root.py: the root, the names below it, opening and making its folders;
- fs/folder_walk.py: the steps of a walk by descriptors, and the errors they raise;
- fs/staging.py and fs/staging_file.py: the staging folder, and a pull's open staging file
  with its O_DIRECT writer;
- fs/staging_batch.py: the folders where a batch makes its staging files;
- fs/placing.py: placing a verified staging file as mesh's copy, step by step, and how a
  kill at any step is recovered from;
- fs/copies.py: FileId, whether a file is still mesh's copy, removing and opening copies.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

from mesh.core.errors import NoSpaceError, PlacementError, UserFileInTheWayError
from mesh.fs import copies, placing, placing_batch, staging, staging_batch
from mesh.fs.borrowed_root import STAGING, BorrowedRoot
from mesh.fs.copies import FileId
from mesh.fs.folder_walk import chmod, os_error
from mesh.fs.placing_batch import Placing, Staged
from mesh.fs.staging_file import StagingFile

# Issue 11's crash tests set this to stop the process at a named step of `place`.
_fault_hook: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if _fault_hook is not None:
        _fault_hook(name)


class BorrowedFolder:
    """The borrowed folder at `root` and its staging folder; see the module's docstring.

    Calls block (they read and fsync whole files): run them off the event loop. The root is
    opened afresh by each call, so a borrowed folder deleted while the daemon runs is made
    again when it is next needed."""

    def __init__(self, root: Path, *, portable: bool = os.name == "nt") -> None:
        """`portable`: also refuse names Windows would take for a device or change."""
        self.root = root
        self._root = BorrowedRoot(root, portable=portable)
        with ExitStack() as stack:
            staging_fd = self._root.staging_fd(stack, self._root.made_root_fd(stack))
            # Staging files are the user's borrowed bytes too: keep them from other users.
            if stat.S_IMODE(os.fstat(staging_fd).st_mode) & 0o077:
                chmod(staging_fd, 0o700, self._root.shown([STAGING]))

    # -- staging -------------------------------------------------------------------------

    def staging(self, key: str, size: int) -> StagingFile:
        """Open the staging file of pull `key`, creating it, or reopening it to resume (its
        written chunks are kept), and set its length to `size`."""
        return staging.open_staging(self._root, key, size)

    def discard(self, *keys: str) -> None:
        """Delete the staging files of pulls `keys`; a missing one is fine."""
        staging.discard(self._root, *keys)

    def sweep_batch_folders(self) -> list[str]:
        """Delete the batch folders a killed run left in the staging folder; their names."""
        with ExitStack() as stack:
            staging_fd = self._root.staging_fd(stack, self._root.made_root_fd(stack))
            return staging_batch.sweep_batch_folders(staging_fd, self._root.shown([STAGING]))

    def staged_keys(self) -> list[str]:
        """Keys of the staging files present, to clean up pulls that are no longer wanted."""
        return staging.staged_keys(self._root)

    def free_bytes(self) -> int:
        """Bytes an unprivileged user may still write on the borrowed folder's disk."""
        with ExitStack() as stack:
            root_fd = self._root.made_root_fd(stack)
            try:
                st = os.statvfs(root_fd)
            except OSError as exc:
                raise os_error(exc, f"measure the free space of {self.root}") from exc
        return st.f_bavail * st.f_frsize

    # -- placed files --------------------------------------------------------------------

    def place(
        self,
        key: str,
        parts: Sequence[str],
        expected_hash: bytes,
        *,
        replacing: FileId | None,
        hashed: bytes | None = None,
    ) -> FileId:
        """Put the verified staging file of pull `key` at `parts` (lender, library, path names).

        The whole file must hash to `expected_hash` (else PlacementError, and the staging
        file is kept for the caller to decide): `hashed` is its hash as the caller built it
        while writing the file (fs/whole_hash.py); without it, the file is read and hashed
        again here. An existing destination is
        replaced only if it is `replacing`; anything else there raises UserFileInTheWayError
        and nothing is touched. The staging name stays linked to the placed copy until the
        caller, having recorded the returned FileId, calls `discard(key)`."""
        return placing.place(
            self._root,
            key,
            parts,
            expected_hash,
            replacing=replacing,
            hashed=hashed,
            step=_step,
        )

    def stage_batch(self, items: Sequence[Placing]) -> list[PlacementError | None]:
        """Write and fsync the staging files of many small verified files at once
        (fs/placing_batch.py); per item None, or why it is not staged."""
        return placing_batch.stage_batch(self._root, items, _step)

    def staged(self) -> placing_batch.Staged:
        """Staging files written one by one as a batch's files arrive, then fsynced
        together (fs/placing_batch.py); close it when done."""
        return placing_batch.Staged(self._root, _step)

    def link_batch(self, items: Sequence[Placing]) -> list[FileId | PlacementError]:
        """Place staged items, each folder fsynced once for all of them; per item its
        FileId or why it was not placed. Record the FileIds only after this returns, then
        `discard` each key."""
        return placing_batch.link_batch(self._root, items, _step)

    def remove(self, parts: Sequence[str], file_id: FileId) -> bool:
        """Delete the copy at `parts` if it is still `file_id`, then the folders it leaves
        empty, up to but not including the root. False when the copy is gone or something
        else is there (a file the user put there is left alone)."""
        return copies.remove(self._root, parts, file_id)

    def holds(self, parts: Sequence[str], file_id: FileId) -> bool:
        """Whether the copy `file_id` is still at `parts`, unchanged."""
        return copies.holds(self._root, parts, file_id)

    def file_at(self, parts: Sequence[str]) -> FileId | None:
        """The regular file at `parts` as it is now; None for nothing or anything else."""
        return copies.file_at(self._root, parts)

    def open_copy(self, parts: Sequence[str], file_id: FileId) -> int:
        """A read-only descriptor of the copy `file_id` at `parts`, for serving it to a peer;
        the caller closes it. NotFoundError if the copy is gone or is no longer that copy
        (checked on the opened descriptor, so what is read is what was checked)."""
        return copies.open_copy(self._root, parts, file_id)


__all__ = [
    "STAGING",
    "BorrowedFolder",
    "FileId",
    "NoSpaceError",
    "PlacementError",
    "Placing",
    "Staged",
    "StagingFile",
    "UserFileInTheWayError",
]
