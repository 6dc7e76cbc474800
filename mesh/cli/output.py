"""How the CLI shows things: sizes, times and names as people read them, safely escaped."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from typing import Any

from mesh.core import sizes
from mesh.core.text import shown

human_size = sizes.human_size  # the ledger's reasons say sizes the same way


def human_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"


def safe(text: str) -> str:
    """Text from a file name or a peer, with anything that could drive a terminal escaped."""
    return shown(text)


# An IPv6 link-local address with its scope and port ("[fe80::1c2b:3dff:fe4e:5f60%eth0]:6374")
# is ~38 characters: the column grows to fit one, and elides anything longer in the middle.
_ADDRESS_MAX = 42


def address_width(addresses: Iterable[str], minimum: int) -> int:
    """The width of an ADDRESS column for these (already `safe`) addresses."""
    return min(_ADDRESS_MAX, max([minimum, *(len(a) for a in addresses)]))


def fit(text: str, width: int) -> str:
    """`text` in at most `width` characters, its middle elided: the start tells the
    network, the end the interface and port."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return f"{text[:head]}…{text[len(text) - (width - 1 - head) :]}"


def where(library: str, path: str) -> str:
    """A lent path as users type it: 'Movies/heat.mkv', a folder 'Movies/Docs/', a whole
    library 'Movies/' (whose folder form is '/')."""
    return safe(f"{library}/{path.lstrip('/')}")


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word if n == 1 else (words or word + 's')}"


def human_speed(bytes_per_s: float | None) -> str:
    """340 MB/s; "-" when not known."""
    if bytes_per_s is None:
        return "-"
    return f"{human_size(max(0.0, bytes_per_s))}/s"


def human_time_left(seconds: float) -> str:
    """Time until something ends, rounded at the precision it is shown with, so a loan
    lent `--for 3d` reads "3 days" (not the 2 days 23 h 59 min its milliseconds say):
    42 s, 9 min 30 s, 25 min, 1 h, 1 h 30 min, 3 days, 2 days 12 h."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 600:
        minutes, secs = divmod(whole, 60)
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    minutes = round(whole / 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        hours, minutes = divmod(minutes, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(round(whole / 3600), 24)
    return f"{days} days {hours} h" if hours else f"{days} days"


def human_clock(ms: int) -> str:
    """A wall-clock time as people read it: 14:02 today, else with the date."""
    when = time.localtime(ms / 1000)
    if time.strftime("%Y-%m-%d", when) == time.strftime("%Y-%m-%d"):
        return time.strftime("%H:%M", when)
    return time.strftime("%Y-%m-%d %H:%M", when)


def human_ago(seconds: float) -> str:
    """How long ago, as people say it: just now, 42 s ago, 3 min ago, 5 h ago, 3 days ago."""
    if seconds < 5:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 48 * 3600:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} days ago"


def bar(done: int, total: int, width: int = 20) -> str:
    """A text progress bar, [#######.............]; empty when the total is unknown."""
    if total <= 0:
        return ""
    filled = min(width, max(0, done * width // total))
    return "[" + "#" * filled + "." * (width - filled) + "]"
