"""A hash whose state is saved in one process and continued in another gives the digest of
the whole input; a state it cannot continue from is refused, never half-used."""

from __future__ import annotations

import mmap
import os
import struct
import subprocess
import sys

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.fs import resumable_hash
from mesh.fs.resumable_hash import ResumableHash, usable

pytestmark = pytest.mark.skipif(
    resumable_hash._library() is None,
    reason=f"xxHash {xxhash.XXHASH_VERSION}: its state cannot be saved; pulls read back",
)


def test_the_state_saved_here_continues_in_another_process() -> None:
    data = os.urandom(3 * 1024 * 1024 + 77)
    first = ResumableHash.create()
    first.update(data[:1_500_001])
    saved = first.save()
    first.close()
    assert saved is not None and usable(saved)
    # Another interpreter: other addresses for the library and its secret.
    script = (
        "import sys; from mesh.fs.resumable_hash import ResumableHash\n"
        "h = ResumableHash.create(bytes.fromhex(sys.argv[1]))\n"
        "h.update(sys.stdin.buffer.read()); print(h.digest().hex())"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, saved.hex()],
        input=data[1_500_001:],
        capture_output=True,
        check=True,
    )
    assert bytes.fromhex(out.stdout.decode().strip()) == xxhash.xxh3_128_digest(data)


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=5000), cuts=st.lists(st.integers(0, 5000), max_size=4))
def test_any_split_and_any_number_of_saves_give_the_one_shot_digest(
    data: bytes, cuts: list[int]
) -> None:
    h = ResumableHash.create()
    start = 0
    for cut in sorted(c for c in cuts if c <= len(data)):
        h.update(data[start:cut])
        saved = h.save()
        h.close()
        assert saved is not None
        h = ResumableHash.create(saved)
        start = cut
    h.update(data[start:])
    assert h.digest() == xxhash.xxh3_128_digest(data)
    h.close()


def test_an_mmap_buffer_is_hashed_up_to_the_length_given() -> None:
    buffer = mmap.mmap(-1, 1 << 16)
    buffer[:] = os.urandom(1 << 16)
    h = ResumableHash.create()
    h.update(buffer, 1000)
    assert h.digest() == xxhash.xxh3_128_digest(buffer[:1000])
    with pytest.raises(ValueError, match="bytes asked"):
        h.update(buffer, (1 << 16) + 1)
    h.close()
    buffer.close()  # no ctypes view of it is left behind


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s[:-1],  # cut short
        lambda s: s + b"\0",  # too long
        lambda s: s.replace(xxhash.XXHASH_VERSION.encode(), b"9.9.9", 1),  # another build
        lambda s: b"sha256/" + s[7:],  # not ours at all
    ],
)
def test_a_state_it_cannot_continue_is_refused(damage: object) -> None:
    h = ResumableHash.create()
    h.update(b"some bytes")
    saved = h.save()
    h.close()
    assert saved is not None
    bad = damage(saved)  # type: ignore[operator]
    assert not usable(bad)
    with pytest.raises(ValueError, match="another xxHash build or damaged"):
        ResumableHash.create(bad)


def test_a_closed_hash_says_so() -> None:
    h = ResumableHash.create()
    h.close()
    h.close()  # twice is fine
    with pytest.raises(ValueError, match="closed"):
        h.update(b"x")


def _with_counter(saved: bytes, offset: int, fmt: str, value: int) -> bytes:
    tag = len(saved) - 576
    body = bytearray(saved[tag:])
    struct.pack_into(fmt, body, offset, value)
    return saved[:tag] + bytes(body)


@pytest.mark.parametrize(
    ("offset", "fmt", "value"),
    [
        (512, "<I", 10_000),  # more buffered than the buffer holds
        (520, "<Q", 1 << 40),  # stripes past the block
        (536, "<Q", 3),  # another block length
        (552, "<Q", 42),  # a seed
    ],
)
def test_a_state_whose_counters_do_not_hold_up_is_refused(
    offset: int, fmt: str, value: int
) -> None:
    # A damaged store must give a clear refusal, never a state that sends xxHash out of
    # its buffers.
    h = ResumableHash.create()
    h.update(b"x" * 1000)
    saved = h.save()
    h.close()
    assert saved is not None
    with pytest.raises(ValueError, match="damaged"):
        ResumableHash.create(_with_counter(saved, offset, fmt, value))


def test_a_state_is_refused_for_another_length_than_it_went_over() -> None:
    h = ResumableHash.create()
    h.update(b"y" * 5000)
    saved = h.save()
    h.close()
    assert saved is not None
    ResumableHash.create(saved, 5000).close()
    with pytest.raises(ValueError, match="damaged"):
        ResumableHash.create(saved, 4999)
