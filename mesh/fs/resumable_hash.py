"""An xxh3-128 whose running state can be saved and picked up again in another process.

A pull hashes the whole file in order as its chunks are written. Killed half-way, it used to
read back everything it had verified to rebuild that hash (half a gigabyte from the disk,
competing with the chunks still arriving). Saving the hash's state beside the verified set
lets a restarted pull go on from where the hash stood, the way resumable uploads keep their
digest's state.

The xxhash package does not expose its state, but its extension module exports the C
functions of xxHash itself. This module drives them through ctypes, which also lets an
update run without the GIL. It is used only where it checks out: xxHash 0.8 (whose state
layout is fixed), every function present, and a self-test that a saved and restored state
gives the same digest as the package. Anywhere else `ResumableHash.create` hands out a plain
xxhash object whose state cannot be saved, and a resumed pull reads its chunks back as before.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import struct
from typing import Protocol

import xxhash

# XXH3_state_t in xxHash 0.8: accumulators, custom secret and input buffer (512 bytes), then
# counters, the seed, and last a pointer to the secret in use. That pointer is this process's
# address of the library's default secret: it is taken from a fresh state on restore.
_STATE_SIZE = 576
_SECRET_POINTER = 568
# The default secret begins with these bytes (xxhash.h, XXH3_kSecret): how the pointer's
# place in the state is confirmed before the state is ever restored.
_SECRET_START = bytes.fromhex("b8fe6c3923a44bbe7c01812cf721ad1c")
_TAG = b"xxh3-128/"


class _Hash128(ctypes.Structure):
    _fields_ = [("low64", ctypes.c_uint64), ("high64", ctypes.c_uint64)]


class Hash(Protocol):
    def update(self, data: bytes | mmap.mmap, length: int | None = None) -> None: ...

    def digest(self) -> bytes: ...

    def save(self) -> bytes | None: ...

    def close(self) -> None: ...


class _Library:
    def __init__(self, lib: ctypes.CDLL) -> None:
        self.create = lib.XXH3_createState
        self.create.restype = ctypes.c_void_p
        self.create.argtypes = []
        self.free = lib.XXH3_freeState
        self.free.restype = ctypes.c_int
        self.free.argtypes = [ctypes.c_void_p]
        self.reset = lib.XXH3_128bits_reset
        self.reset.restype = ctypes.c_int
        self.reset.argtypes = [ctypes.c_void_p]
        self.update = lib.XXH3_128bits_update
        self.update.restype = ctypes.c_int
        self.update.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        self.digest = lib.XXH3_128bits_digest
        self.digest.restype = _Hash128
        self.digest.argtypes = [ctypes.c_void_p]


class ResumableHash:
    """xxh3-128 of data fed in order; `save()` gives its state as bytes, `create(saved)`
    continues from them. Not thread-safe: one thread at a time, as with xxhash objects."""

    def __init__(self, lib: _Library, saved: bytes | None, length: int | None = None) -> None:
        self._lib = lib
        state = lib.create()
        if not state:
            raise MemoryError("xxHash could not allocate a hash state")
        self._state: int | None = state
        lib.reset(state)
        if saved is not None:
            fresh = ctypes.string_at(state, _STATE_SIZE)
            body = saved[len(_state_tag()) :]
            if not (usable(saved) and _sound(body, fresh, length)):
                self.close()
                raise ValueError("the saved hash state is from another xxHash build or damaged")
            ctypes.memmove(state, body[:_SECRET_POINTER] + fresh[_SECRET_POINTER:], _STATE_SIZE)

    @staticmethod
    def create(saved: bytes | None = None, length: int | None = None) -> Hash:
        """A new hash, or one continuing from `saved` (what `save()` gave, maybe in another
        process) after `length` bytes if given. Raises ValueError for saved bytes this
        build cannot continue from, or that do not hold up."""
        lib = _library()
        if lib is None:
            if saved is not None:
                raise ValueError("this xxhash cannot continue a saved hash")
            return _PlainHash()
        return ResumableHash(lib, saved, length)

    def _live(self) -> int:
        if self._state is None:
            raise ValueError("the hash is closed")
        return self._state

    def update(self, data: bytes | mmap.mmap, length: int | None = None) -> None:
        """Feed `data` (its first `length` bytes if given). The GIL is let go meanwhile."""
        state = self._live()
        n = len(data) if length is None else length
        if isinstance(data, bytes):
            self._lib.update(state, data, n)
            return
        if n > len(data):
            raise ValueError(f"{n} bytes asked of a buffer of {len(data)}")
        window = (ctypes.c_char * n).from_buffer(data)
        try:
            self._lib.update(state, ctypes.addressof(window), n)
        finally:
            del window  # the mmap cannot close while a ctypes view holds it

    def digest(self) -> bytes:
        value = self._lib.digest(self._live())
        return struct.pack(">QQ", value.high64, value.low64)

    def save(self) -> bytes:
        return _state_tag() + ctypes.string_at(self._live(), _STATE_SIZE)

    def close(self) -> None:
        if self._state is not None:
            state, self._state = self._state, None
            self._lib.free(state)

    def __del__(self) -> None:
        self.close()


class _PlainHash:
    """The package's own xxh3-128 where its C functions cannot be reached."""

    def __init__(self) -> None:
        self._hash = xxhash.xxh3_128()

    def update(self, data: bytes | mmap.mmap, length: int | None = None) -> None:
        if length is None:
            self._hash.update(data)
        else:
            with memoryview(data) as view:
                self._hash.update(view[:length])

    def digest(self) -> bytes:
        return self._hash.digest()

    def save(self) -> None:
        return None

    def close(self) -> None:
        pass


# After the 512 bytes of buffers: bufferedSize and useSeed (32 bits each), nbStripesSoFar,
# totalLen, nbStripesPerBlock, secretLimit, seed and a reserved word (64 bits each).
_COUNTERS = struct.Struct("<IIQQQQQQ")
_INPUT_BUFFER = 256


def _sound(body: bytes, fresh: bytes, length: int | None) -> bool:
    """Whether a saved state (without its tag) is safe to hand to xxHash: its counters
    within their bounds, its fixed settings those of a fresh state, and the bytes it went
    over `length` where that is known. A damaged store must not become a bad pointer."""
    buffered, use_seed, stripes, total, per_block, limit, seed, _ = _COUNTERS.unpack_from(body, 512)
    fixed = _COUNTERS.unpack_from(fresh, 512)
    return (
        buffered <= _INPUT_BUFFER
        and buffered <= total
        and stripes < per_block
        and (use_seed, per_block, limit, seed) == (fixed[1], fixed[4], fixed[5], fixed[6])
        and (length is None or total == length)
    )


def _state_tag() -> bytes:
    return _TAG + xxhash.XXHASH_VERSION.encode() + b"/"


def usable(saved: bytes) -> bool:
    """Whether `saved` is a state this process can continue from."""
    tag = _state_tag()
    return saved.startswith(tag) and len(saved) == len(tag) + _STATE_SIZE


@functools.cache
def _library() -> _Library | None:
    """xxHash's C functions, or None where they are missing or do not check out."""
    if not xxhash.XXHASH_VERSION.startswith("0.8."):
        return None
    module = getattr(xxhash, "_xxhash", None)
    path = getattr(module, "__file__", None)
    if not path:
        return None
    try:
        lib = _Library(ctypes.CDLL(path))
    except (OSError, AttributeError):
        return None
    return lib if _checks_out(lib) else None


def _checks_out(lib: _Library) -> bool:
    state = lib.create()
    if not state:
        return False
    try:
        lib.reset(state)
        pointer = ctypes.c_void_p.from_address(state + _SECRET_POINTER).value
        if not pointer or ctypes.string_at(pointer, len(_SECRET_START)) != _SECRET_START:
            return False
    finally:
        lib.free(state)
    data = bytes(range(256)) * 1000 + b"tail"
    first = ResumableHash(lib, None)
    try:
        first.update(data[:70001])
        saved = first.save()
    finally:
        first.close()
    second = ResumableHash(lib, saved)
    try:
        second.update(data[70001:])
        return second.digest() == xxhash.xxh3_128_digest(data)
    finally:
        second.close()


__all__ = ["Hash", "ResumableHash", "usable"]
