"""Which addresses stay on this machine, for warnings about tokens and servers that don't."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator


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


@contextlib.contextmanager
def loopback_bootstrap(address: str) -> Iterator[None]:
    """While ``ray.init`` runs, keep a loopback Ray ``address`` (``host:port``, or
    ``auto``) on loopback.

    rayfn's embedded head listens on loopback only (Ray's single-machine mode, see
    ``rayfn_service.launch``). Ray 2.60 on Linux replaces 127.0.0.1 in the address a
    driver gives it by the machine's own address, which such a head does not answer,
    unless it runs single-machine: this process says so for the connection only, so a
    later ``ray start`` in it may still join other machines.
    """
    from ray._private import ray_constants

    # "auto" may find a loopback head of this machine; for a remote head the setting
    # would change nothing, and it is left alone.
    if address != "auto" and not is_loopback(address.rpartition(":")[0]):
        yield
        return
    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
