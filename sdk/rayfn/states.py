"""Call states: one string enum shared by the SDK, the registry, the store and the CLI."""

from __future__ import annotations

import enum

__all__ = ["CallState"]


class CallState(str, enum.Enum):
    QUEUED = "queued"
    """Accepted and durable; waiting for a slot in its function's window."""
    RUNNING = "running"
    """An attempt has been handed to Ray."""
    RETRYING = "retrying"
    """An attempt failed or timed out; the next waits out its backoff delay."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """The function raised (or could not run) on its last attempt."""
    TIMED_OUT = "timed_out"
    """The last attempt ran past the function's timeout."""
    CANCELLED = "cancelled"

    def is_terminal(self) -> bool:
        return self in _TERMINAL

    def __str__(self) -> str:
        return self.value


_TERMINAL = frozenset(
    {CallState.SUCCEEDED, CallState.FAILED, CallState.TIMED_OUT, CallState.CANCELLED}
)
