"""Client addresses as throttles count them (the worker's auth and the master's login)."""

from __future__ import annotations

import functools
import ipaddress


@functools.lru_cache(maxsize=4096)
def throttle_key(address: str) -> str:
    """The throttle key of a client address: itself, or its /64 for IPv6 (one host usually
    holds a whole /64, so counting single IPv6 addresses would let it rotate through fresh
    ones and never be locked); an IPv4-mapped IPv6 address counts as its IPv4 address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6 and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)
