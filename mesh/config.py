"""Settings: one documented TOML file in the node's home, read into a frozen `Settings`.

Every key has a default, so an empty or missing file is a valid configuration. A bad value
is a ConfigError that names the key and says what is allowed; `mesh up` refuses to start on
one. `mesh config set` rewrites the file from the template below, so the file always
documents every key. Timings that people do not tune (keepalive, backoff) live here too, so
the test preset can shorten them and switch mDNS off: tests outside namespaces never
multicast.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh.core.durations import parse_duration
from mesh.core.errors import ConfigError, InvalidArgumentError

DEFAULT_PORT = 6374  # "mesh" on a phone keypad
LOG_LEVELS = ("debug", "info", "warning", "error")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_size(text: str | int) -> int:
    """Bytes from '0', '500MB', '2 GiB', '1.5g' (decimal units unless 'i' says binary)."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError("a size cannot be negative")
        return text
    if not isinstance(text, str) or not (m := _SIZE.match(text)):
        raise ValueError(f"{text!r} is not a size (examples: 0, 500MB, 2GiB)")
    base = 1024 if m.group(3) else 1000
    return int(float(m.group(1)) * base ** _UNITS[m.group(2).lower()])


def format_size(n: int) -> str:
    for unit, power in (("TB", 4), ("GB", 3), ("MB", 2), ("kB", 1)):
        if n and n % 1000**power == 0:
            return f"{n // 1000**power}{unit}"
    return str(n)


def format_interval(seconds: float) -> str:
    """'5m', '1h', '90s', '0': how the config file spells a duration."""
    whole = round(seconds)
    if whole != seconds or not whole:
        return "0" if not seconds else f"{seconds}s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def parse_peer(text: str) -> tuple[str, int]:
    """HOST[:PORT] (IPv6 in brackets when a port follows) -> (host, port)."""
    text = text.strip()
    host, port = text, DEFAULT_PORT
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"{text!r}: missing ']' after an IPv6 address")
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r}: expected ':PORT' after ']'")
            port = _port(text, rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(text, port_text)
    if not host or any(c.isspace() for c in host) or not 0 < port < 65536:
        raise ValueError(f"{text!r} is not HOST[:PORT]")
    return host, port


def _port(text: str, port: str) -> int:
    if not port.isdigit():
        raise ValueError(f"{text!r}: the port {port!r} is not a number")
    return int(port)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything a node can be told, with its defaults."""

    # [node]
    port: int = DEFAULT_PORT
    listen: str = "::"  # every address, IPv6 and IPv4
    interfaces: tuple[str, ...] = ()  # empty: every interface but loopback
    mdns: bool = True
    log_level: str = "info"
    # [peers]
    static_peers: tuple[str, ...] = ()
    # [borrowing]
    borrowed_folder: str = "~/Borrowed"
    borrow_ask_first: bool = False
    quota: int = 0  # bytes of borrowed files; 0: no quota
    reserve: int = 2 * 1000**3  # free space to leave on the borrowed folder's disk
    # Copies opened through the mount or a stream (issue 21): most bytes kept, and how
    # long one unread is kept before it is returned.
    cache: int = 10 * 1000**3
    cache_idle_s: float = 7 * 24 * 3600.0
    # [lending]
    lend_ask_first: bool = False
    # [network]
    limit: int = 0  # bytes/s for serving and pulling each; 0: no limit
    # [libraries]
    watch: bool = True  # index changes as files settle (events, or polling without them)
    rescan_interval_s: float = 300.0  # full rescan of every library; 0: never
    # Timings (not in the file): seconds.
    # A dead link is seen within keepalive + ping timeout (4 s); gRPC answers pings in its
    # core, so a second is ample for the answer on a LAN, and a ping every 3 s instead of
    # 2 costs an idle mesh a third less.
    keepalive_s: float = 3.0
    ping_timeout_s: float = 1.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    shutdown_grace_s: float = 2.0
    progress_interval_s: float = 1.0
    settle_s: float = 0.5  # a changed file is indexed once quiet this long
    poll_interval_s: float = 5.0  # how often a library without file-system events is walked
    handshake_timeout_s: float = 5.0
    maintenance_interval_s: float = 30.0
    # A refused or failed pull is tried again after this, doubling up to 8 times as long
    # while it keeps failing; sooner when what stopped it clears (node/agent.py).
    retry_interval_s: float = 30.0
    check_interval_s: float = 5.0  # held copies and the staging folder are checked this often
    # A read through the mount or a stream waits this long for an answer to its borrow
    # request, or for chunks that no source is sending, before it fails (EACCES, EIO).
    open_timeout_s: float = 30.0
    read_timeout_s: float = 30.0

    @classmethod
    def for_tests(cls, **overrides: Any) -> Settings:
        """Short timings, no mDNS, an ephemeral-friendly setup for tests and benchmarks."""
        base: dict[str, Any] = {
            "mdns": False,
            "keepalive_s": 0.5,
            "ping_timeout_s": 1.0,
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.5,
            "shutdown_grace_s": 0.2,
            "progress_interval_s": 0.2,
            "handshake_timeout_s": 2.0,
            "maintenance_interval_s": 1.0,
            "retry_interval_s": 1.0,
            "check_interval_s": 0.5,
            "settle_s": 0.3,
            "poll_interval_s": 0.5,
            "reserve": 0,
        }
        base.update(overrides)
        return cls(**base)

    @property
    def borrowed_path(self) -> Path:
        return Path(os.path.expanduser(self.borrowed_folder))

    def peers(self) -> list[tuple[str, int]]:
        return [parse_peer(p) for p in self.static_peers]


# key in the file -> (Settings field, parser, what is allowed, comment for the template)
@dataclass(frozen=True)
class _Key:
    field: str
    parse: Callable[[Any], Any]
    allowed: str
    comment: str


def _int_port(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise ValueError
    port = int(v)
    if not 0 < port < 65536:
        raise ValueError
    return port


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "yes", "on", "1"):
        return True
    if isinstance(v, str) and v.lower() in ("false", "no", "off", "0"):
        return False
    raise ValueError


def _str_list(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        return tuple(x.strip() for x in v.split(",") if x.strip())
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return tuple(v)
    raise ValueError


def _peers(v: Any) -> tuple[str, ...]:
    peers = _str_list(v)
    for p in peers:
        parse_peer(p)
    return peers


def _level(v: Any) -> str:
    if isinstance(v, str) and v.lower() in LOG_LEVELS:
        return v.lower()
    raise ValueError


def _folder(v: Any) -> str:
    if isinstance(v, str) and v.strip():
        return v.strip()
    raise ValueError


def _interval(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError
    if isinstance(v, int | float):
        seconds = float(v)
    elif isinstance(v, str):
        try:
            seconds = 0.0 if v.strip() == "0" else parse_duration(v)
        except InvalidArgumentError as exc:
            raise ValueError from exc
    else:
        raise ValueError
    if seconds < 0:
        raise ValueError
    return seconds


def _address(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError
    ipaddress.ip_address(v)
    return v


KEYS: dict[str, _Key] = {
    "node.port": _Key("port", _int_port, "a TCP port, 1-65535", "TCP port for other nodes"),
    "node.listen": _Key(
        "listen",
        _address,
        'an IP address such as "::" (all), "0.0.0.0" or "192.168.1.10"',
        "the address to accept other nodes on",
    ),
    "node.interfaces": _Key(
        "interfaces",
        _str_list,
        'a list of interface names, e.g. ["eth0", "wlan0"]',
        "interfaces to announce this node on; empty: every interface but loopback",
    ),
    "node.mdns": _Key("mdns", _bool, "true or false", "find other nodes on the LAN with mDNS"),
    "node.log_level": _Key("log_level", _level, " | ".join(LOG_LEVELS), "how much to log"),
    "peers.static": _Key(
        "static_peers",
        _peers,
        'a list of "HOST" or "HOST:PORT"',
        "nodes to reach without mDNS (other subnets, VPNs)",
    ),
    "borrowing.folder": _Key(
        "borrowed_folder", _folder, "a folder path", "where borrowed files are placed"
    ),
    "borrowing.ask_first": _Key(
        "borrow_ask_first", _bool, "true or false", "incoming loans wait for `mesh accept`"
    ),
    "borrowing.quota": _Key(
        "quota", parse_size, "a size such as 0, 500MB, 2TB", "most bytes to hold; 0: no quota"
    ),
    "borrowing.reserve": _Key(
        "reserve", parse_size, "a size such as 2GB", "free space to leave on that disk"
    ),
    "borrowing.cache": _Key(
        "cache", parse_size, "a size such as 10GB", "most bytes of opened copies to keep"
    ),
    "borrowing.cache_idle": _Key(
        "cache_idle_s",
        _interval,
        "a duration such as 7d, 12h; 0: until space is needed",
        "an opened copy unread this long is returned",
    ),
    "lending.ask_first": _Key(
        "lend_ask_first", _bool, "true or false", "borrow requests wait for `mesh approve`"
    ),
    "network.limit": _Key(
        "limit", parse_size, "bytes per second such as 0, 20MB", "cap per direction; 0: none"
    ),
    "libraries.watch": _Key(
        "watch",
        _bool,
        "true or false",
        "index changed files as they settle (file-system events, else polling)",
    ),
    "libraries.rescan_interval": _Key(
        "rescan_interval_s",
        _interval,
        "a duration such as 5m, 1h; 0: never",
        "how often every library is rescanned whole, for changes events missed",
    ),
}


def _parse(key: str, value: Any) -> Any:
    spec = KEYS.get(key)
    if spec is None:
        raise ConfigError(f"unknown setting {key!r}; known: {', '.join(KEYS)}")
    try:
        return spec.parse(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{key} = {value!r} is not allowed; use {spec.allowed}") from exc


def load(path: Path) -> Settings:
    """Settings from `path` (defaults for what it does not say; a missing file is fine)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Settings()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    values: dict[str, Any] = {}
    for section, body in data.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: {section!r} must be a [section]")
        for name, value in body.items():
            key = f"{section}.{name}"
            values[KEYS[key].field if key in KEYS else key] = _parse(key, value)
    return Settings(**values)


def with_value(settings: Settings, key: str, text: str) -> Settings:
    """Settings with one key changed from its command-line text (checked)."""
    value: Any = text
    spec = KEYS.get(key)
    if spec is not None and spec.parse in (_str_list, _peers) and text.startswith("["):
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{key}: {text!r} is not a list") from exc
    return dataclasses.replace(settings, **{_key_field(key): _parse(key, value)})


def _key_field(key: str) -> str:
    spec = KEYS.get(key)
    if spec is None:
        raise ConfigError(f"unknown setting {key!r}; known: {', '.join(KEYS)}")
    return spec.field


def display(settings: Settings) -> dict[str, Any]:
    """Every key of the file with its current value, as the file spells it."""
    out: dict[str, Any] = {}
    for key, spec in KEYS.items():
        value = getattr(settings, spec.field)
        if spec.parse is parse_size:
            value = format_size(value)
        elif spec.parse is _interval:
            value = format_interval(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[key] = value
    return out


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def render(settings: Settings) -> str:
    """The whole config file, every key documented, current values filled in."""
    lines = [
        "# mesh configuration. Edit here or with `mesh config set KEY VALUE`;",
        "# `mesh config show` prints the values in effect. Restart `mesh up` to apply.",
    ]
    section = ""
    for key, value in display(settings).items():
        head, _, name = key.partition(".")
        if head != section:
            section = head
            lines += ["", f"[{head}]"]
        spec = KEYS[key]
        lines.append(f"# {spec.comment} ({spec.allowed})")
        lines.append(f"{name} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def save(settings: Settings, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render(settings), encoding="utf-8")
    os.replace(tmp, path)
