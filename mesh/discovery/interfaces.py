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
