"""rayfn's one exception hierarchy: everything rayfn raises derives from :class:`Error`.

Pending results raise :class:`TimeoutError`, which also derives from the builtin
``TimeoutError`` so ``except TimeoutError:`` works as in Modal's examples.
"""

from __future__ import annotations

import builtins

__all__ = [
    "Error",
    "InvalidError",
    "ResourcesUnavailableError",
    "NotFoundError",
    "TimeoutError",
    "FunctionTimeoutError",
    "OutputExpiredError",
    "RemoteError",
    "ExecutionError",
    "SerializationError",
    "CancelledError",
    "ConflictError",
    "ConnectionError",
    "AuthError",
    "StoreError",
    "DeploymentError",
]


class Error(Exception):
    """Base class of every rayfn error."""


class InvalidError(Error):
    """A value given to rayfn is not valid (an option, an ID, a name)."""


class ResourcesUnavailableError(InvalidError):
    """No node of the cluster can ever run the function (its cpu, memory or gpu), and no
    autoscaler could add one: its calls fail instead of waiting forever."""


class NotFoundError(Error):
    """An app, function or call that rayfn does not know."""


class TimeoutError(Error, builtins.TimeoutError):  # noqa: A001 - Modal's name
    """The result is not ready within the time asked for."""


class FunctionTimeoutError(TimeoutError):
    """The call's last attempt ran past the function's timeout."""


class OutputExpiredError(TimeoutError):
    """The call finished, but its result is past retention and was deleted."""


class RemoteError(Error):
    """The function raised an exception that cannot be rebuilt in this process."""

    def __init__(self, message: str, *, type_name: str = "", traceback: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name
        self.traceback = traceback

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_remote_error, (str(self), self.type_name, self.traceback))


def _rebuild_remote_error(message: str, type_name: str, traceback: str) -> RemoteError:
    return RemoteError(message, type_name=type_name, traceback=traceback)


class ExecutionError(Error):
    """The call could not be executed: its worker kept dying, or its function failed to load."""


class SerializationError(Error):
    """Arguments or a result could not be serialized."""


class CancelledError(Error):
    """The call was cancelled before it finished."""


class ConflictError(Error):
    """A request that contradicts an earlier one (an Idempotency-Key reused for another body)."""


class AuthError(Error):
    """The REST server refused the token (missing, wrong or rotated)."""


class ConnectionError(Error):  # noqa: A001
    """rayfn's service cannot be reached (no cluster, no registry)."""


class StoreError(Error):
    """The state store refused a write (disk full, read-only); nothing was accepted."""


class DeploymentError(Error):
    """A deployed app's stored functions cannot be loaded (stored by an older rayfn, or
    edited): its calls are refused until it is deployed again or stopped."""


class RemoteTraceback(Exception):
    """Carries a remote traceback's text as the ``__cause__`` of a re-raised exception."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "\n\n" + self.text
