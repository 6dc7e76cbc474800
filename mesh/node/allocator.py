"""Keep glibc from handing every chunk's buffer back to the kernel.

glibc serves allocations of 128 KiB and more with fresh mmaps and trims freed heap at once,
so every 1 MiB chunk a node sends or receives is paged in anew: about half a million minor
faults per GiB, which on these VMs cost more than the TLS (FIELD-NOTES.md, Throughput).
Raising the mmap and trim thresholds lets the heap keep and reuse a few dozen MiB instead.
A process-wide choice, so only `mesh up` makes it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 << 20  # glibc's upper bound for it on 64-bit; chunks stay on the heap
TRIM_THRESHOLD = 128 << 20  # freed memory kept for reuse, at most
TOP_PAD = 16 << 20


def tune_for_transfers() -> bool:
    """Apply the thresholds if this process runs on glibc; whether they were applied."""
    if platform.libc_ver()[0] != "glibc":
        return False  # musl, macOS and Windows allocators do not page-fault this way
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = all(
        mallopt(param, value) == 1
        for param, value in (
            (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (_M_TOP_PAD, TOP_PAD),
        )
    )
    if not done:
        log.debug("glibc refused the allocator thresholds; transfers will be slower")
    return done


__all__ = ["tune_for_transfers"]
