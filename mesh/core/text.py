"""Showing text that came from a file name or a peer: nothing in it may drive a terminal.

A name may hold an escape sequence, a newline or a right-to-left override; shown raw, it
could rewrite what a person reads on the screen or forge a line of a log. `shown` escapes
every control and format character (and the backslash, so an escape cannot be faked), and
keeps everything printable as it is.
"""

from __future__ import annotations

import unicodedata


def shown(text: str) -> str:
    """`text` with anything that could drive a terminal escaped as \\xNN or \\uNNNN."""
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text  # the common case, checked in C
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch == "\\":
            out.append("\\\\")
        elif cat[0] == "C" or cat in ("Zl", "Zp"):
            code = ord(ch)
            if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte kept by surrogateescape
                out.append(f"\\x{code - 0xDC00:02x}")
            elif code < 0x100:
                out.append(f"\\x{code:02x}")
            else:
                out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)
