"""One read gives the whole-file xxh3-128 (as xxh128sum prints it), chunk hashes and root."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import xxhash

from mesh.core.chunks import CHUNK_SIZE
from mesh.fs.hashing import UnstableFileError, digest_open, hash_file, hash_one_chunk

SIZES = [0, 1, 4096, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 17]


@pytest.mark.parametrize("size", SIZES)
def test_hashes_match_xxhash_over_the_whole_file_and_each_chunk(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    digest = hash_file(str(path))
    assert digest.size == size
    assert digest.hash == xxhash.xxh3_128_digest(data)
    expected = b"".join(
        xxhash.xxh3_128_digest(data[i : i + CHUNK_SIZE]) for i in range(0, size, CHUNK_SIZE)
    )
    assert digest.chunk_hashes == expected
    assert digest.chunk_root == xxhash.xxh3_128_digest(expected)


@pytest.mark.skipif(shutil.which("xxh128sum") is None, reason="xxh128sum is not installed")
def test_hash_is_what_xxh128sum_prints(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(os.urandom(3 * CHUNK_SIZE + 5))
    out = subprocess.run(["xxh128sum", str(path)], capture_output=True, text=True, check=True)
    assert hash_file(str(path)).hash.hex() == out.stdout.split()[0]


def test_a_symlink_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "target").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(OSError):
        hash_file(str(tmp_path / "link"))


@pytest.mark.parametrize("size", [s for s in SIZES if s < CHUNK_SIZE])
def test_one_read_of_a_small_file_gives_what_hash_file_gives(tmp_path: Path, size: int) -> None:
    path = tmp_path / "f"
    path.write_bytes(os.urandom(size))
    fd = os.open(path, os.O_RDONLY)
    try:
        one = hash_one_chunk(fd, size)
    finally:
        os.close(fd)
    digest = hash_file(str(path))
    assert one == (digest.hash, digest.chunk_root)


def test_a_small_file_that_grew_since_its_fstat_gets_no_hash(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    fd = os.open(path, os.O_RDONLY)
    try:
        before = os.fstat(fd)
        with path.open("ab") as f:
            f.write(b"y" * 50)
        # One read finds 150 bytes where the fstat said 100: no hash of a version that
        # never was, and the careful read says the file moved.
        assert hash_one_chunk(fd, before.st_size) is None
        with pytest.raises(UnstableFileError):
            digest_open(fd, before, str(path))
    finally:
        os.close(fd)
