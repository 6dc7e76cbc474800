"""Sizes as people read them, in decimal units (as disks and networks are sold): what the
CLI shows, and what reasons recorded in the ledger say."""

from __future__ import annotations

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_size(n: float) -> str:
    """Decimal units, as disks and networks are sold: 1.2 GB, 340 MB."""
    size = float(n)
    for unit in _UNITS:
        if abs(size) < 1000 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{int(size)} B"
            return f"{size:.1f} {unit}" if abs(size) < 100 else f"{size:.0f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")
