"""This machine's interfaces and addresses, as discovery announces them."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import ifaddr


@dataclass(frozen=True, order=True, slots=True)
class LocalAddress:
    interface: str
    ip: str  # IPv6 link-local addresses carry their scope: fe80::1%eth0
    version: int


def addresses(interfaces: Sequence[str] = (), *, loopback: bool = False) -> list[LocalAddress]:
    """Addresses of the named interfaces, or of every interface but loopback if none named."""
    found: list[LocalAddress] = []
    for adapter in ifaddr.get_adapters():
        name = adapter.nice_name
        if interfaces and name not in interfaces:
            continue
        for ip in adapter.ips:
            if isinstance(ip.ip, tuple):
                text, _flow, scope = ip.ip
                addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(text)
                shown = f"{text}%{name}" if addr.is_link_local and scope else text
                version = 6
            else:
                addr = ipaddress.ip_address(ip.ip)
                shown, version = ip.ip, 4
            if addr.is_loopback and not (loopback or interfaces):
                continue
            found.append(LocalAddress(interface=name, ip=shown, version=version))
    return sorted(found)


def interface_names() -> list[str]:
    return [a.nice_name for a in ifaddr.get_adapters()]


# <linux/if.h>
_IFF_UP = 0x1
_IFF_LOOPBACK = 0x8
_IFF_MULTICAST = 0x1000


@dataclass(frozen=True, kw_only=True, slots=True)
class InterfaceState:
    """What `mesh doctor` tells about an interface; None where the system does not say."""

    name: str
    addresses: tuple[str, ...]
    up: bool | None
    carrier: bool | None  # a cable or Wi-Fi link (operstate up)
    multicast: bool | None
    loopback: bool


def _sys(name: str, leaf: str) -> str | None:
    try:
        with open(f"/sys/class/net/{name}/{leaf}", encoding="ascii") as f:
            return f.read().strip()
    except OSError:  # not Linux, or the interface went away
        return None


def interface_states() -> list[InterfaceState]:
    """Every interface with its addresses and, on Linux, its flags."""
    found = []
    for adapter in ifaddr.get_adapters():
        name = adapter.nice_name
        ips = addresses([name], loopback=True)
        raw = _sys(name, "flags")
        flags = int(raw, 16) if raw else None
        oper = _sys(name, "operstate")
        loopback = bool(flags & _IFF_LOOPBACK) if flags is not None else name == "lo"
        found.append(
            InterfaceState(
                name=name,
                addresses=tuple(a.ip for a in ips),
                up=bool(flags & _IFF_UP) if flags is not None else None,
                carrier=None if oper in (None, "unknown") else oper == "up",
                multicast=bool(flags & _IFF_MULTICAST) if flags is not None else None,
                loopback=loopback,
            )
        )
    return sorted(found, key=lambda s: s.name)
