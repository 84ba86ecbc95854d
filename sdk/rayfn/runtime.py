"""What code running inside the cluster tells the SDK: rayfn's workers and web endpoint
replicas call these, user code never needs to."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from rayfn import _accepts
from rayfn._client import set_in_cluster_namespace

__all__ = ["calling", "current_call", "enter_cluster", "flush_spawns", "spawns_pending"]

# The call whose code runs in this context: calls it spawns are recorded as its children.
_current_call: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "rayfn_current_call", default=None)


@contextlib.contextmanager
def calling(call_id: str) -> Iterator[None]:
    """Code run inside runs for ``call_id`` (its spawns are its children)."""
    token = _current_call.set(call_id)
    try:
        yield
    finally:
        _current_call.reset(token)


def current_call() -> str | None:
    return _current_call.get()


def enter_cluster(namespace: str) -> None:
    """This process runs inside the cluster for the registry of ``namespace``: calls it
    makes (spawns from inside a function) go to that registry over Ray, never over HTTP."""
    set_in_cluster_namespace(namespace)


def spawns_pending() -> bool:
    """Whether some call this process spawned is not yet committed."""
    return _accepts.pending()


def flush_spawns(timeout: float | None = None) -> bool:
    """Wait until every call this process spawned in a burst is committed (or refused);
    False if some were still unanswered after ``timeout`` seconds. A worker calls it as
    an attempt ends, so the calls a function spawned exist before it counts as done."""
    return _accepts.flush(timeout)
