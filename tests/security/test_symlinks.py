"""Symlinks planted in the borrowed folder or the staging area, or swapped in during a pull.

The borrowed folder walks one name at a time from folder descriptors with O_NOFOLLOW; its
tests (tests/fs/test_borrowed.py) plant and swap links at every step: a root or staging
folder that is a link, a link as a staging file, as a lender/library/intermediate folder,
as the destination folder before and during placing, after the walk, and under remove,
holds and open_copy. This adds the one moment they leave out: the staging file's own name
swapped for a link while the pull is writing into it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import xxhash

from mesh.core.errors import PlacementError
from mesh.fs.borrowed import STAGING, BorrowedFolder

KEY = "5eed"
PARTS = ["tower", "Movies", "heat.mkv"]


def test_a_staging_file_swapped_for_a_symlink_during_a_pull_is_never_followed(
    tmp_path: Path,
) -> None:
    root, outside = tmp_path / "Borrowed", tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret"
    secret.write_bytes(b"the pulled bytes")  # the very content the pull expects
    before = secret.stat()
    folder = BorrowedFolder(root)
    staged = folder.staging(KEY, len(b"the pulled bytes"))
    try:
        staged.write_chunk(0, b"the pulled bytes")
        # Someone with access to the borrowed folder swaps the staging name for a link.
        os.unlink(root / STAGING / KEY)
        (root / STAGING / KEY).symlink_to(secret)
        staged.sync()
    finally:
        staged.close()
    digest = xxhash.xxh3_128_digest(b"the pulled bytes")
    with pytest.raises(PlacementError, match="symbolic link"):
        folder.place(KEY, PARTS, digest, replacing=None)
    # Nothing was placed (no link to the secret in the borrowed folder), and the secret was
    # neither written, nor replaced, nor deleted.
    assert not (root / "tower").exists()
    after = secret.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_nlink) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_nlink,
    )
    assert secret.read_bytes() == b"the pulled bytes"
    # Discarding the pull removes the link itself, not what it points at.
    folder.discard(KEY)
    assert not (root / STAGING / KEY).is_symlink() and secret.exists()
