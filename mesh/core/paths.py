"""Library-relative paths: the one spelling mesh stores and sends, and the checks on it.

A path inside a library is a '/'-separated sequence of names. Every name is non-empty, not
'.' or '..', holds no '/', '\\' or NUL, and fits in 255 UTF-8 bytes; the whole path is valid
UTF-8. Anything else cannot name a file under a root, so it is refused before it reaches
the file system, whoever sent it.

Names that are ordinary on POSIX but mean something else to Windows (CON, NUL, COM1, a
trailing dot, a colon) pass `check_name`: a Linux lender may well have `aux.c`. Where a
borrowed copy would land on Windows, `check_portable_name` refuses them as well.
"""

from __future__ import annotations

from mesh.core.errors import InvalidArgumentError, InvalidPathError
from mesh.core.ids import NodeId

MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096
# Windows opens a device for these whatever the extension ("nul.txt" is NUL too).
_WINDOWS_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{dev}{n}" for dev in ("COM", "LPT") for n in [*"123456789", "¹", "²", "³"]}
)
_WINDOWS_FORBIDDEN = frozenset('<>:"|?*')


def check_name(name: str) -> str:
    """Return `name` if it is a safe single path component, else raise InvalidPathError."""
    # The common case, checked in C: one byte per character, no NUL (not printable).
    if (
        name.isascii()
        and name.isprintable()
        and "/" not in name
        and "\\" not in name
        and 0 < len(name) <= MAX_NAME_BYTES
        and name not in (".", "..")
    ):
        return name
    if name in ("", ".", ".."):
        raise InvalidPathError(f"{name!r} is not a file name")
    for bad in ("/", "\\", "\x00"):
        if bad in name:
            raise InvalidPathError(f"file name {name!r} contains {bad!r}")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidPathError(f"file name {name!r} is not valid UTF-8") from exc
    if len(encoded) > MAX_NAME_BYTES:
        raise InvalidPathError(f"file name is {len(encoded)} bytes, over {MAX_NAME_BYTES}")
    return name


def check_relative(path: str) -> str:
    """Return `path` if it is a safe library-relative path, else raise InvalidPathError."""
    # The common case in a handful of C-level calls (gossip checks 100k paths at a time):
    # printable ASCII, no backslash, no empty, '.' or '..' name, no name over the limit.
    if (
        path.isascii()
        and path.isprintable()
        and "\\" not in path
        and len(path) <= MAX_PATH_BYTES
        and "//" not in (framed := f"/{path}/")  # empty names, a leading or trailing '/'
        and "/./" not in framed
        and "/../" not in framed
        and max(map(len, path.split("/"))) <= MAX_NAME_BYTES
    ):
        return path
    if not path:
        raise InvalidPathError("empty path")
    if path.startswith("/"):
        raise InvalidPathError(f"{path!r} is absolute; a library path is relative")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise InvalidPathError(f"path is over {MAX_PATH_BYTES} bytes")
    for name in path.split("/"):
        check_name(name)
    return path


def split(path: str) -> list[str]:
    """The names of a checked relative path."""
    return check_relative(path).split("/")


def check_portable_name(name: str) -> str:
    """`check_name`, and also refuse what Windows would not take as a plain file name."""
    check_name(name)
    stem = name.split(".", 1)[0].rstrip(" ").upper()
    if stem in _WINDOWS_DEVICES:
        raise InvalidPathError(f"file name {name!r} names a device on Windows")
    if name[-1] in ". ":
        raise InvalidPathError(f"file name {name!r} ends with {name[-1]!r}, which Windows drops")
    bad = sorted({ch for ch in name if ch in _WINDOWS_FORBIDDEN or ord(ch) < 32})
    if bad:
        raise InvalidPathError(f"file name {name!r} holds {''.join(bad)!r}, not allowed on Windows")
    return name


# A lender's folder in the borrowed folder: its node id's for good (fs/lender_links.py).
LENDER_FOLDER_PREFIX = ".mesh-lender-"


def lender_folder(lender: NodeId) -> str:
    """The name of `lender`'s folder in the borrowed folder."""
    return LENDER_FOLDER_PREFIX + lender.text()


def folder_owner(name: str) -> NodeId | None:
    """The lender whose folder `name` is, None if it is not a lender folder."""
    if not name.startswith(LENDER_FOLDER_PREFIX):
        return None
    try:
        return NodeId.parse(name.removeprefix(LENDER_FOLDER_PREFIX))
    except InvalidArgumentError:
        return None
