"""Which addresses stay on this machine, for warnings about tokens and servers that don't."""

from __future__ import annotations

import ipaddress


class InsecureTransportWarning(UserWarning):
    """The REST token is about to travel unencrypted beyond this machine."""


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (bracketed or not, IPv4-mapped too).

    Anything else, including ``0.0.0.0``, ``::`` and names that only usually resolve to
    loopback, counts as reachable from other machines.
    """
    host = host.strip().strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback
