"""Requests that wait in the registry: for a call to end, or for a generator's next value.

A request listens on its calls before it looks at the store, so an end that happens in
between is not missed. At most ``MAX_PARKED_WAITS`` wait at once: the rest of the actor's
``max_concurrency`` (10,000, launch.py) stays free for spawns, pings and workers'
reports; a wait beyond it answers at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Iterator, Sequence

__all__ = ["MAX_PARKED_WAITS", "Waiter", "Waiters"]

MAX_PARKED_WAITS = 9_000


@dataclasses.dataclass
class Waiter:
    """A request waiting for one of its calls, and the calls that ended meanwhile."""

    event: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    ended: list[str] = dataclasses.field(default_factory=list)


class Waiters:
    def __init__(self) -> None:
        self._by_call: dict[str, list[Waiter]] = {}
        self.parked = 0  # requests waiting now

    @contextlib.contextmanager
    def listening(self, call_ids: Sequence[str]) -> Iterator[Waiter]:
        waiter = Waiter()
        for call_id in call_ids:
            self._by_call.setdefault(call_id, []).append(waiter)
        try:
            yield waiter
        finally:
            for call_id in call_ids:
                listeners = self._by_call.get(call_id)
                if listeners is None:
                    continue
                with contextlib.suppress(ValueError):
                    listeners.remove(waiter)
                if not listeners:
                    del self._by_call[call_id]

    async def park(self, waiter: Waiter, timeout: float) -> bool:
        """Until the waiter is woken (True) or ``timeout`` passes; False at once while
        ``MAX_PARKED_WAITS`` others wait."""
        if self.parked >= MAX_PARKED_WAITS:
            return False
        self.parked += 1
        try:
            await asyncio.wait_for(waiter.event.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            self.parked -= 1

    def ended(self, call_id: str) -> None:
        """The call ended: wake whoever waits on it."""
        for waiter in self._by_call.get(call_id, ()):
            waiter.ended.append(call_id)
            waiter.event.set()

    def nudged(self, call_id: str) -> None:
        """The call has news (a value), not an end: wake its waiters, ``ended`` as it is."""
        for waiter in self._by_call.get(call_id, ()):
            waiter.event.set()

    def waited_on(self) -> list[str]:
        return list(self._by_call)
