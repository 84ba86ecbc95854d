"""``rayfn.Queue``: Modal's distributed FIFO queue, durable in the registry's store.

q = rayfn.Queue.from_name("jobs", create_if_missing=True)
q.put({"job": 1}); q.get(timeout=10); q.get_many(100, block=False)

Each partition (``partition="key"``; None is the default one) is a FIFO queue of its own
and expires ``partition_ttl`` (at most a day) after its last put. A get removes the values
it returns in one transaction in the registry, so concurrent consumers never get the same
value. A blocking get waits in the registry, woken by a put.
"""

from __future__ import annotations

import queue as stdlib_queue
import time
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from rayfn._aio import aio_function, aio_iter_method, aio_method
from rayfn._client import get_client
from rayfn._objects import ObjectHandle, batches, check_timeout, dumps, loads, until
from rayfn._objects import delete as delete_object
from rayfn.exception import InvalidError
from rayfn.protocol.objects import (
    DEFAULT_PARTITION_TTL,
    QUEUE,
    Kind,
    ObjectInfo,
    validate_partition,
)
from rayfn.protocol.operations import RegistryApi

__all__ = ["Queue"]


def _deadline(block: bool, timeout: float | None) -> float | None:
    """When a blocking operation gives up (monotonic; None: never)."""
    if not isinstance(block, bool):
        raise InvalidError(f"block must be True or False, not {block!r}")
    limit = check_timeout(timeout)
    return None if limit is None else time.monotonic() + limit


class Queue(ObjectHandle):
    """A named FIFO queue, with independent partitions, shared by every process."""

    _kind: ClassVar[Kind] = QUEUE

    @aio_function
    def delete(name: str, *, allow_missing: bool = False) -> None:  # noqa: N805 - static
        """Delete the Queue named ``name`` and every partition."""
        delete_object(QUEUE, name, allow_missing)

    @aio_method
    def info(self) -> ObjectInfo:
        return self._info()

    @aio_method
    def put(self, v: Any, block: bool = True, timeout: float | None = None, *,
            partition: str | None = None,
            partition_ttl: float = DEFAULT_PARTITION_TTL) -> None:
        """Add ``v`` at the end of the partition. While the partition is full (5,000
        values), wait (``block``) up to ``timeout``; ``queue.Full`` if it stays full, or
        at once without ``block``."""
        self._put([dumps(v, "the value")], block, timeout, partition, partition_ttl)

    @aio_method
    def put_many(self, vs: Iterable[Any], block: bool = True, timeout: float | None = None,
                 *, partition: str | None = None,
                 partition_ttl: float = DEFAULT_PARTITION_TTL) -> None:
        """Add the values in order, as ``put``. Values of more than
        ``max_input_bytes`` in all go in several requests, each all or nothing."""
        if isinstance(vs, (str, bytes)) or not isinstance(vs, Iterable):
            raise InvalidError(f"put_many takes a list of values, not {type(vs).__name__}")
        self._put([dumps(v, "a value") for v in vs], block, timeout, partition, partition_ttl)

    def _put(self, values: list[bytes], block: bool, timeout: float | None,
             partition: str | None, ttl: float) -> None:
        deadline = _deadline(block, timeout) if block else time.monotonic()
        validate_partition(partition)
        name, client = self._ready(), get_client()
        for batch in batches(values, self._max_bytes()):
            def ask(seconds: float, batch: list[bytes] = batch) -> bool:
                return client.call(RegistryApi.queue_put, name, partition, batch, ttl,
                                   seconds if block else 0.0)

            if not until(deadline, ask, bool):
                raise stdlib_queue.Full(f"partition {partition or '(default)'} of the Queue "
                                        "is full")

    @aio_method
    def get(self, block: bool = True, timeout: float | None = None, *,
            partition: str | None = None) -> Any:
        """Remove and return the oldest value. With ``block`` (the default), wait up to
        ``timeout`` (None: forever) for one and raise ``queue.Empty`` if none came;
        without, return None at once when the partition is empty."""
        values = self._get(1, block, timeout, partition)
        return values[0] if values else None

    @aio_method
    def get_many(self, n_values: int, block: bool = True, timeout: float | None = None, *,
                 partition: str | None = None) -> list[Any]:
        """Remove and return up to ``n_values`` of the oldest values, as many as there
        are once there is one. Waits as ``get``; without ``block``, [] when empty."""
        return self._get(n_values, block, timeout, partition)

    def _get(self, n_values: int, block: bool, timeout: float | None,
             partition: str | None) -> list[Any]:
        if isinstance(n_values, bool) or not isinstance(n_values, int) or n_values < 1:
            raise InvalidError(f"n_values must be an int >= 1, not {n_values!r}")
        deadline = _deadline(block, timeout) if block else time.monotonic()
        validate_partition(partition)
        name, client = self._ready(), get_client()

        def ask(seconds: float) -> list[bytes]:
            return client.call(RegistryApi.queue_get, name, partition, n_values,
                               seconds if block else 0.0)

        values = until(deadline, ask, bool)
        if not values and block:
            raise stdlib_queue.Empty(f"no value in partition {partition or '(default)'} "
                                     f"after {timeout:g} s")
        return [loads(v) for v in values]

    @aio_method
    def len(self, *, partition: str | None = None, total: bool = False) -> int:
        """Values in the partition; with ``total``, in every partition."""
        return get_client().call(RegistryApi.queue_len, self._ready(), partition, total)

    @aio_method
    def clear(self, *, partition: str | None = None, all: bool = False) -> None:  # noqa: A002
        """Remove every value of the partition; with ``all``, of every partition."""
        get_client().call(RegistryApi.queue_clear, self._ready(), partition, all)

    @aio_iter_method
    def iterate(self, *, partition: str | None = None,
                item_poll_timeout: float = 0.0) -> Iterator[Any]:
        """The partition's values in order, left in place; after the last, wait up to
        ``item_poll_timeout`` seconds for another before stopping."""
        limit = check_timeout(item_poll_timeout)
        validate_partition(partition)
        return self._iterate(partition, limit)

    def _iterate(self, partition: str | None, limit: float | None) -> Iterator[Any]:
        name, client = self._ready(), get_client()
        after = -1
        while True:
            deadline = None if limit is None else time.monotonic() + limit

            def ask(seconds: float, after: int = after) -> list[tuple[int, bytes]]:
                return client.call(RegistryApi.queue_items, name, partition, after, seconds)

            page = until(deadline, ask, bool)
            if not page:
                return
            for seq, value in page:
                yield loads(value)
                after = seq
