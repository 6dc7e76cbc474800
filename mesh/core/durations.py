"""Durations as people type them: 90s, 10m, 1h30m, 2d, 1w."""

from __future__ import annotations

import re

from mesh.core.errors import InvalidArgumentError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds in `text`; InvalidArgumentError (with an example) if it is not a duration."""
    cleaned = text.strip().lower().replace(" ", "")
    if cleaned.isdigit():
        return float(cleaned)
    parts = _PART.findall(cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise InvalidArgumentError(f"{text!r} is not a duration; write e.g. 90s, 10m, 1h30m, 2d")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise InvalidArgumentError("a duration must be longer than zero")
    return seconds
