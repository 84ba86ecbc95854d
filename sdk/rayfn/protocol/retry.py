"""One way to retry a request that failed for a reason that passes: the registry
restarting, the REST server restarting, a connection refused.

Every client (the Ray client, the HTTP client, the REST server's way to the registry)
retries through :func:`retry` or :func:`retry_async`, with the same backoff, the same
budget (``client_retry_seconds``) and the same rule: an error that is not transient is
raised at once, a transient one is retried until the budget is spent, then turned into
the error the caller names (``give_up``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["Backoff", "Transient", "retry", "retry_async"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
FIRST_DELAY_SECONDS = 0.1
MAX_DELAY_SECONDS = 2.0


class Transient(Exception):
    """Raised by an attempt to say "this passes, ask again" for an answer that is not an
    exception of its own (an HTTP 503, say); ``error`` is what to raise at the end."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class Backoff:
    """Delays that double from 0.1 s to 2 s, while they fit in ``budget`` seconds."""

    def __init__(self, budget: float) -> None:
        self._deadline = time.monotonic() + budget
        self._delay = FIRST_DELAY_SECONDS

    def next_delay(self) -> float | None:
        """The delay before the next try, or None when it would end past the budget."""
        delay = self._delay
        if time.monotonic() + delay > self._deadline:
            return None
        self._delay = min(delay * 2, MAX_DELAY_SECONDS)
        return delay


def _next(
    backoff: Backoff,
    exc: BaseException,
    give_up: Callable[[BaseException], BaseException],
    on_retry: Callable[[BaseException], None] | None,
) -> float:
    cause = exc.error if isinstance(exc, Transient) else exc
    delay = backoff.next_delay()
    if delay is None:
        raise give_up(cause) from cause
    if on_retry is not None:
        on_retry(cause)
    logger.info("%s; retrying in %.1f s", type(cause).__name__, delay)
    return delay


def retry(
    attempt: Callable[[], T],
    *,
    budget: float,
    transient: tuple[type[BaseException], ...],
    give_up: Callable[[BaseException], BaseException],
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """``attempt()``, tried again after each ``transient`` error (or :class:`Transient`)
    for up to ``budget`` seconds; then ``give_up(error)`` is raised. ``on_retry`` runs
    before each new try (to look a restarted actor up again, say)."""
    backoff = Backoff(budget)
    catch: tuple[type[BaseException], ...] = (Transient, *transient)
    while True:
        try:
            return attempt()
        except catch as exc:
            time.sleep(_next(backoff, exc, give_up, on_retry))


async def retry_async(
    attempt: Callable[[], Awaitable[T]],
    *,
    budget: float,
    transient: tuple[type[BaseException], ...],
    give_up: Callable[[BaseException], BaseException],
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """:func:`retry` for a coroutine: waits without blocking the event loop."""
    backoff = Backoff(budget)
    catch: tuple[type[BaseException], ...] = (Transient, *transient)
    while True:
        try:
            return await attempt()
        except catch as exc:
            await asyncio.sleep(_next(backoff, exc, give_up, on_retry))
