"""The values a generator call yields, sent to the registry as they come (``remote_gen``).

Each value is pickled and sent at once, numbered; the attempt's outcome is returned only
after the registry has stored every value, so a reader never sees the call end before its
last value. A retried attempt yields from the start again: values at indexes the store
has already are kept as first sent (see ``CallLinks.add_values``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from rayfn.protocol.actor import RegistryActor
from rayfn.protocol.operations import RegistryApi
from rayfn.protocol.payload import encode_result

__all__ = ["ValueSender", "drain", "drain_async"]


class ValueSender:
    def __init__(self, registry: RegistryActor, call_id: str, attempt: int,
                 in_flight: int | None = 64) -> None:
        self._registry = registry
        self._in_flight = in_flight  # None: never wait while sending (on an event loop)
        self._call_id = call_id
        self._attempt = attempt
        self._sent = 0
        self._pending: list[Any] = []

    def send(self, value: Any) -> None:
        self._pending.append(self._registry.submit(
            RegistryApi.attempt_values, self._call_id, self._attempt, self._sent,
            [encode_result(value)]))
        self._sent += 1
        if self._in_flight is not None and len(self._pending) >= self._in_flight:
            self._settle(self._pending.pop(0))

    def finish(self) -> int:
        """Wait until the registry has every value; how many were sent."""
        while self._pending:
            self._settle(self._pending.pop(0))
        return self._sent

    def finish_quietly(self) -> None:
        """As ``finish``, while an error is on its way out: that error is the one to
        report."""
        try:
            self.finish()
        except Exception:
            self._pending.clear()

    def _settle(self, ref: Any) -> None:
        self._registry.result(ref, None)  # raises what refused the value


def drain(values: Iterator[Any], sender: ValueSender) -> int:
    try:
        for value in values:
            sender.send(value)
    except BaseException:
        sender.finish_quietly()  # the values before the error count: they were yielded
        raise
    return sender.finish()


async def drain_async(values: AsyncIterator[Any], sender: ValueSender) -> int:
    try:
        async for value in values:
            sender.send(value)
    except BaseException:
        sender.finish_quietly()
        raise
    return sender.finish()
