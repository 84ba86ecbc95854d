"""``modal.forward(port)``: make a port of a running call reachable. Modal opens a public
tunnel; rayfn has none to open, so the tunnel is the node's own address on the cluster's
network (reachable from wherever the cluster's nodes are)."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from collections.abc import Iterator

from rayfn.exception import InvalidError

__all__ = ["Tunnel", "forward"]


@dataclasses.dataclass(frozen=True)
class Tunnel:
    host: str
    port: int
    unencrypted_host: str
    unencrypted_port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def tls_socket(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def tcp_socket(self) -> tuple[str, int]:
        return self.unencrypted_host, self.unencrypted_port


@contextlib.contextmanager
def forward(port: int, *, unencrypted: bool = False, h2_enabled: bool = False) -> Iterator[Tunnel]:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidError(f"forward takes a port number, not {port!r}")
    host = _node_address()
    yield Tunnel(host, port, host, port)


def _node_address() -> str:
    try:
        import ray

        if ray.is_initialized():
            return str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]
    except Exception:  # not in a Ray process: this machine's name
        pass
    return socket.gethostname()
