"""What running code can ask about where it runs (Modal's ``current_input_id``,
``current_function_call_id``, ``is_local``, ``interact``)."""

from __future__ import annotations

from rayfn import _client
from rayfn.runtime import current_call

__all__ = ["current_function_call_id", "current_input_id", "interact", "is_local"]


def current_function_call_id() -> str | None:
    """The ID (``fc-…``) of the call running this code; None outside a call."""
    return current_call()


def current_input_id() -> str | None:
    """The input being processed: in rayfn each call is one input, named by its call ID."""
    return current_call()


def is_local() -> bool:
    """True on the machine that deploys or runs the app; False inside the cluster's calls
    and web endpoints."""
    return _client._in_cluster_namespace is None


def interact() -> None:
    """Modal opens an interactive shell into a container here; rayfn calls are not
    attached to a terminal, so this does nothing (debug locally or with call logs)."""
