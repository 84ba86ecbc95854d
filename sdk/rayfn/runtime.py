"""What code running inside the cluster tells the SDK: rayfn's workers and web endpoint
replicas call these, user code never needs to."""

from __future__ import annotations

from rayfn import _accepts
from rayfn._client import set_in_cluster_namespace

__all__ = ["enter_cluster", "flush_spawns"]


def enter_cluster(namespace: str) -> None:
    """This process runs inside the cluster for the registry of ``namespace``: calls it
    makes (spawns from inside a function) go to that registry over Ray, never over HTTP."""
    set_in_cluster_namespace(namespace)


def flush_spawns(timeout: float | None = None) -> bool:
    """Wait until every call this process spawned in a burst is committed (or refused);
    False if some were still unanswered after ``timeout`` seconds. A worker calls it as
    an attempt ends, so the calls a function spawned exist before it counts as done."""
    return _accepts.flush(timeout)
