"""The one adapter from a typed operation to a Ray actor call on the registry.

``RegistryActor(namespace).call(RegistryApi.status, call_id)`` is checked by mypy against
the declaration in ``operations.py`` (arguments and return type); only here does an
operation become a method name. An error the registry raised comes back as itself; Ray's
signs of a registry that is restarting are retried (``retry.py``).
"""

from __future__ import annotations

import logging
from typing import Any, ParamSpec, TypeVar

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from rayfn.exception import ConnectionError
from rayfn.protocol.names import REGISTRY_ACTOR
from rayfn.protocol.operations import Operation, operation_name
from rayfn.protocol.retry import Transient, retry, retry_async

try:  # present in recent Ray; a transient "restarting" signal
    from ray.exceptions import ActorUnavailableError
except ImportError:  # pragma: no cover
    ActorUnavailableError = RayActorError  # type: ignore[misc,assignment]

__all__ = ["REGISTRY_ACTOR", "RegistryActor", "registry_error"]

logger = logging.getLogger(__name__)

# The registry is restarting (or just died and Ray restarts it): ask again.
RESTARTING = (RayActorError, ActorUnavailableError)
# Slack on top of the registry's longest wait before a client gives up on one request.
REQUEST_SLACK_SECONDS = 60.0

P = ParamSpec("P")
R = TypeVar("R")


def registry_error(exc: RayTaskError) -> BaseException | None:
    """What a registry method raised, unwrapped from Ray's RayTaskError (None if Ray's own)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and not isinstance(cause, RESTARTING):
        return cause
    return None


def _translated(exc: BaseException) -> BaseException:
    """What a failed actor call raises: the registry's own error as itself, Ray's signs
    of a restart (or of an answer that took too long) as :class:`Transient`."""
    if isinstance(exc, RayTaskError):
        cause = registry_error(exc)
        if cause is not None:
            return cause
    return Transient(exc)  # carries exc: retry raises what give_up makes of it


class RegistryActor:
    """The registry actor of one namespace, called with typed operations.

    The actor is looked up by name, and again after each failure that may mean it was
    replaced (a registry made anew under the same name is a new actor)."""

    def __init__(self, namespace: str, *, retry_seconds: float, wait_seconds: float = 0.0,
                 name: str = REGISTRY_ACTOR) -> None:
        self.namespace = namespace
        self.name = name
        self._retry_seconds = retry_seconds
        # A sync request waits this long past the registry's longest wait.
        self._request_timeout = wait_seconds + REQUEST_SLACK_SECONDS
        self._handle: Any = None

    def lookup(self) -> None:
        """Look the actor up now, once: :class:`ConnectionError` when it is not there."""
        self._actor()

    def _actor(self) -> Any:
        if self._handle is None:
            try:
                self._handle = ray.get_actor(self.name, namespace=self.namespace)
            except ValueError:
                raise ConnectionError(
                    f"the rayfn registry is not running in namespace {self.namespace!r}; "
                    "start it with `rayfn start`"
                ) from None
        return self._handle

    def _forget(self, _: BaseException) -> None:
        self._handle = None

    def submit(self, op: Operation[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Send the operation and return its ObjectRef (not retried): for requests sent
        ahead of their answers, and reports nobody waits for."""
        return getattr(self._actor(), operation_name(op)).remote(*args, **kwargs)

    def result(self, ref: Any, timeout: float | None = None) -> Any:
        """The answer to a submitted operation; the registry's own errors as themselves,
        Ray's signs of a restart as :class:`Transient`."""
        try:
            return ray.get(ref, timeout=self._request_timeout if timeout is None else timeout)
        except (RayTaskError, *RESTARTING, GetTimeoutError) as exc:
            raise _translated(exc) from None

    def call(self, op: Operation[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """The operation's answer, retried while the registry restarts."""

        def attempt() -> R:
            answer: R = self.result(self.submit(op, *args, **kwargs))
            return answer

        return retry(attempt, budget=self._retry_seconds, transient=(ConnectionError,),
                     give_up=self._gave_up, on_retry=self._forget)

    async def acall(self, op: Operation[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """:meth:`call` from an event loop."""

        async def attempt() -> R:
            try:
                answer: R = await self.submit(op, *args, **kwargs)
            except (RayTaskError, *RESTARTING) as exc:
                raise _translated(exc) from None
            return answer

        return await retry_async(attempt, budget=self._retry_seconds,
                                 transient=(ConnectionError,), give_up=self._gave_up,
                                 on_retry=self._forget)

    @staticmethod
    def _gave_up(error: BaseException) -> BaseException:
        if isinstance(error, ConnectionError):
            return error
        return ConnectionError(f"the rayfn registry did not answer: {error}")
