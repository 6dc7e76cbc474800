"""Writing a staging file the fast way: whole chunks with O_DIRECT where the file system
takes it, the rest through the page cache, and the content hash built while writing."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import xxhash

from mesh.core.chunks import CHUNK_SIZE, chunk_count, chunk_span
from mesh.core.errors import NoSpaceError, PlacementError
from mesh.fs import resumable_hash
from mesh.fs.borrowed import BorrowedFolder
from mesh.fs.whole_hash import SavedHash, WholeHash

SIZE = 3 * CHUNK_SIZE + 12345  # three whole chunks and a short last one


def content(size: int = SIZE) -> bytes:
    block = os.urandom(CHUNK_SIZE)
    return b"".join(
        (i.to_bytes(8, "big") + block[8:])[: min(CHUNK_SIZE, size - i * CHUNK_SIZE)]
        for i in range(chunk_count(size))
    )


def chunk(data: bytes, index: int) -> bytes:
    offset, length = chunk_span(len(data), index)
    return data[offset : offset + length]


@pytest.mark.parametrize("direct", [True, False])
def test_chunks_written_in_any_order_make_the_file_and_its_hash(
    tmp_path: Path, direct: bool
) -> None:
    folder = BorrowedFolder(tmp_path / "borrowed")
    data = content()
    order = list(range(chunk_count(SIZE)))
    random.Random(7).shuffle(order)
    with folder.staging("ab12", SIZE) as staging:
        if not direct:
            staging._stop_direct()
        whole = WholeHash(staging, chunk_count(SIZE))
        for index in order:
            staging.write_chunk(index, chunk(data, index))
            whole.add(index, chunk(data, index))
        digest = whole.digest()
    assert digest == xxhash.xxh3_128_digest(data)
    staged = tmp_path / "borrowed" / ".mesh-staging" / "ab12"
    assert staged.read_bytes() == data


def test_whole_chunks_bypass_the_page_cache_where_the_disk_allows_it(tmp_path: Path) -> None:
    folder = BorrowedFolder(tmp_path / "borrowed")
    with folder.staging("cd34", SIZE) as staging:
        if not staging.direct:
            pytest.skip("this file system refuses O_DIRECT; writes go through the page cache")
        data = content()
        for index in range(chunk_count(SIZE)):
            staging.write_chunk(index, chunk(data, index))
        assert staging.direct  # no write fell back
        assert staging.read_chunk(1) == chunk(data, 1)


def test_a_resumed_pull_hashes_the_chunks_it_had_from_the_disk(tmp_path: Path) -> None:
    folder = BorrowedFolder(tmp_path / "borrowed")
    data = content()
    with folder.staging("ef56", SIZE) as staging:
        for index in (0, 2):  # verified before the restart
            staging.write_chunk(index, chunk(data, index))
    with folder.staging("ef56", SIZE) as staging:
        whole = WholeHash(staging, chunk_count(SIZE), present=[0, 2])
        for index in (3, 1):
            staging.write_chunk(index, chunk(data, index))
            whole.add(index, chunk(data, index))
        assert whole.digest() == xxhash.xxh3_128_digest(data)


def test_the_hash_is_none_until_every_chunk_went_in(tmp_path: Path) -> None:
    folder = BorrowedFolder(tmp_path / "borrowed")
    data = content()
    with folder.staging("ab34", SIZE) as staging:
        whole = WholeHash(staging, chunk_count(SIZE))
        for index in (0, 1, 3):
            staging.write_chunk(index, chunk(data, index))
            whole.add(index, chunk(data, index))
        assert whole.digest() is None


def test_placing_with_a_hash_built_while_writing_still_refuses_a_wrong_one(
    tmp_path: Path,
) -> None:
    folder = BorrowedFolder(tmp_path / "borrowed")
    data = content()
    with folder.staging("ab56", SIZE) as staging:
        for index in range(chunk_count(SIZE)):
            staging.write_chunk(index, chunk(data, index))
    right = xxhash.xxh3_128_digest(data)
    with pytest.raises(PlacementError, match="content hash"):
        folder.place("ab56", ["tower", "Films", "a.mkv"], right, replacing=None, hashed=b"x" * 16)
    placed = folder.place("ab56", ["tower", "Films", "a.mkv"], right, replacing=None, hashed=right)
    copy = tmp_path / "borrowed" / "tower" / "Films" / "a.mkv"
    assert copy.read_bytes() == data and copy.stat().st_ino == placed.inode


def test_a_resumed_pull_goes_on_from_its_saved_hash_without_reading_back(tmp_path: Path) -> None:
    folder = BorrowedFolder(tmp_path / "borrowed")
    data = content()
    with folder.staging("ab78", SIZE) as staging:
        whole = WholeHash(staging, chunk_count(SIZE))
        for index in (0, 1, 3):  # 3 arrives ahead of its turn: it is on disk, not hashed
            staging.write_chunk(index, chunk(data, index))
            whole.add(index, chunk(data, index))
        saved = whole.saved()
        whole.close()
    if saved is None:
        pytest.skip(f"xxHash {xxhash.XXHASH_VERSION}: its state cannot be saved")
    assert saved.hashed == 2
    # Chunk 0 rots on disk after it went into the saved hash: a resume that read it back
    # would hash the rot, one that goes on from the saved state does not see it.
    staged = tmp_path / "borrowed" / ".mesh-staging" / "ab78"
    with staged.open("r+b") as f:
        f.write(b"ROT")
    with folder.staging("ab78", SIZE) as staging:
        whole = WholeHash(staging, chunk_count(SIZE), present=[0, 1, 3], saved=saved)
        assert whole.hashed == 2
        staging.write_chunk(2, chunk(data, 2))
        whole.add(2, chunk(data, 2))
        assert whole.digest() == xxhash.xxh3_128_digest(data)  # 3 was read back from disk
        whole.close()


def test_a_saved_hash_that_does_not_fit_falls_back_to_reading_back(tmp_path: Path) -> None:
    folder = BorrowedFolder(tmp_path / "borrowed")
    data = content()
    with folder.staging("ab9a", SIZE) as staging:
        for index in (0, 1):
            staging.write_chunk(index, chunk(data, index))
    damaged = SavedHash(hashed=2, state=b"xxh3-128/0.0.0/" + b"\0" * 576)
    with folder.staging("ab9a", SIZE) as staging:
        whole = WholeHash(staging, chunk_count(SIZE), present=[0, 1], saved=damaged)
        try:
            # No assert on `hashed` here: the read-back thread may already be past chunk 1.
            # Had the damaged state been taken (2 chunks in a zeroed hash), the digest would
            # be wrong; it is right only if chunks 0 and 1 were read back.
            for index in (2, 3):
                staging.write_chunk(index, chunk(data, index))
                whole.add(index, chunk(data, index))
            assert whole.digest() == xxhash.xxh3_128_digest(data)
        finally:
            whole.close()


def test_a_staging_file_says_whether_an_earlier_run_left_it(tmp_path: Path) -> None:
    folder = BorrowedFolder(tmp_path / "borrowed")
    staged = tmp_path / "borrowed" / ".mesh-staging" / "abcd"
    with folder.staging("abcd", SIZE) as staging:
        assert not staging.kept  # made just now
    with folder.staging("abcd", SIZE) as staging:
        assert staging.kept
    os.truncate(staged, SIZE // 2)  # cut short: what it verified may be gone
    with folder.staging("abcd", SIZE) as staging:
        assert not staging.kept
    staged.unlink()
    with folder.staging("abcd", SIZE) as staging:
        assert not staging.kept


def test_where_the_hash_state_cannot_be_saved_the_hash_is_still_right(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resumable_hash, "_library", lambda: None)  # another xxHash build
    folder = BorrowedFolder(tmp_path / "borrowed")
    data = content()
    with folder.staging("abce", SIZE) as staging:
        whole = WholeHash(staging, chunk_count(SIZE))
        for index in (1, 0, 2, 3):
            staging.write_chunk(index, chunk(data, index))
            whole.add(index, chunk(data, index))
        assert whole.saved() is None  # a resume reads back instead
        assert whole.digest() == xxhash.xxh3_128_digest(data)
        whole.close()


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_a_disk_that_fills_mid_chunk_fails_the_write_and_frees_everything(
    tmp_path: Path,
) -> None:
    """ENOSPC part-way into an O_DIRECT chunk: NoSpaceError, then close() frees the buffer
    and both descriptors (no BufferError from a slice the error kept), and discarding the
    staging file gives the disk back."""
    from tests.faults.harness import tmpfs

    # Room for two and a half chunks: the third one is cut short by the full disk.
    with tmpfs(tmp_path / "small", f"{CHUNK_SIZE * 5 // 2 // 1024}k") as where:
        folder = BorrowedFolder(where)
        free = folder.free_bytes()
        before = _open_fds()
        data = content(6 * CHUNK_SIZE)
        staging = folder.staging("ee77", len(data))
        if not staging.direct:
            staging.close()
            pytest.skip("this tmpfs refuses O_DIRECT")
        with pytest.raises(NoSpaceError, match="no space left on the disk") as failed:
            for index in range(6):
                staging.write_chunk(index, chunk(data, index))
        assert staging.direct, "the O_DIRECT path failed for another reason"
        staging.close()  # while the error (and its traceback) is still alive
        assert failed.value is not None
        assert _open_fds() == before
        folder.discard("ee77")
        assert folder.free_bytes() == free
        assert folder.staged_keys() == []
