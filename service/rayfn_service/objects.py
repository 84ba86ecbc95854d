"""Dicts and Queues in the registry: checks, writes through the group commit, and the
waits of blocking queue gets and puts.

A blocking ``get`` waits here, not in the client: it listens on its partition before it
looks, parks (counted against ``MAX_PARKED_WAITS``) until a put nudges it or at most
``wait_chunk_seconds`` pass, and takes again; a client with a longer timeout asks again.
A put that finds its partition full waits the same way for a get to make room.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from rayfn.exception import InvalidError, NotFoundError
from rayfn.protocol.objects import (
    DEFAULT_PARTITION_TTL,
    DICT,
    MAX_DICT_PAGE,
    MAX_KEY_BYTES,
    MAX_PARTITION_ITEMS,
    MAX_PARTITIONS,
    MAX_QUEUE_PAGE,
    QUEUE,
    ObjectInfo,
    validate_kind,
    validate_object_name,
    validate_partition,
)
from rayfn.settings import Settings
from rayfn_service.admission import check_wait
from rayfn_service.store import Store
from rayfn_service.store.group_commit import GroupCommit
from rayfn_service.waiting import Waiters

__all__ = ["Objects"]

T = TypeVar("T")
# A read makes an entry's idle time start again; a read this soon after the last use
# writes nothing (reads stay reads), which moves expiry by at most this much.
_TOUCH_FRACTION = 1 / 7


def _label(kind: str) -> str:
    return "Dict" if kind == DICT else "Queue"


def _items_key(name: str, partition: str) -> str:
    """What a blocking get listens on (``Waiters`` keys are strings; no call ID has \\0)."""
    return f"queue\0{name}\0{partition}"


def _room_key(name: str, partition: str) -> str:
    return f"queue-room\0{name}\0{partition}"


def _bytes(value: object, what: str, limit: int) -> bytes:
    if not isinstance(value, bytes):
        raise InvalidError(f"{what} must be pickled bytes, not {type(value).__name__}")
    if len(value) > limit:
        raise InvalidError(f"{what} is {len(value)} bytes pickled; the limit is {limit}")
    return value


def _flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidError(f"{what} must be True or False, not {value!r}")
    return value


class Objects:
    def __init__(self, store: Store, commit: GroupCommit, waiters: Waiters,
                 settings: Settings) -> None:
        self._store = store
        self._commit = commit
        self._waiters = waiters
        self._settings = settings

    # ---- objects -----------------------------------------------------------------

    def _require(self, kind: str, name: str) -> None:
        """NotFoundError unless the object exists (seen by the writer: for writes)."""
        if not self._store.object_exists(kind, name):
            raise self._missing(kind, name)

    def _check(self, kind: str, name: object) -> str:
        """A valid name of an object that exists (for reads)."""
        checked = validate_object_name(kind, name)
        if self._store.get_object(kind, checked) is None:
            raise self._missing(kind, checked)
        return checked

    @staticmethod
    def _missing(kind: str, name: str) -> NotFoundError:
        if name.startswith("~"):
            return NotFoundError(f"the ephemeral {_label(kind)} was deleted (its block ended)")
        return NotFoundError(f"{_label(kind)} {name!r} not found")

    async def open(self, kind: str, name: str, create_if_missing: bool,
                   ephemeral: bool = False) -> ObjectInfo:
        kind = validate_kind(kind)
        name = validate_object_name(kind, name)
        if not _flag(create_if_missing, "create_if_missing"):
            found = self._store.get_object(kind, name)
            if found is None:
                raise self._missing(kind, name)
            return found
        if _flag(ephemeral, "ephemeral") != name.startswith("~"):
            raise InvalidError("an ephemeral object has a name ephemeral() made, and only it")
        return await self._commit.run(lambda: self._store.create_object(
            kind, name, ephemeral=ephemeral, now=time.time()))

    async def delete(self, kind: str, name: str, allow_missing: bool = False) -> None:
        kind = validate_kind(kind)
        name = validate_object_name(kind, name)
        deleted = await self._commit.run(lambda: self._store.delete_object(kind, name))
        if not deleted and not allow_missing:
            raise self._missing(kind, name)

    # ---- dicts -------------------------------------------------------------------

    def _key(self, key: object) -> bytes:
        return _bytes(key, "a Dict key", MAX_KEY_BYTES)

    async def dict_get(self, name: str, key: bytes) -> bytes | None:
        name, key = self._check(DICT, name), self._key(key)
        found = self._store.dict_get(name, key)
        if found is None:
            return None
        value, used_at = found
        now = time.time()
        if now - used_at > self._settings.dict_idle_seconds * _TOUCH_FRACTION:
            await self._commit.run(lambda: self._store.dict_touch(name, key, now),
                                   durable=False)
        return value

    async def dict_contains(self, name: str, key: bytes) -> bool:
        name, key = self._check(DICT, name), self._key(key)
        return self._store.dict_contains(name, key)

    async def dict_put(self, name: str, items: Sequence[tuple[bytes, bytes]],
                       skip_if_exists: bool = False) -> int:
        name = validate_object_name(DICT, name)
        skip = _flag(skip_if_exists, "skip_if_exists")
        if not isinstance(items, (list, tuple)):
            raise InvalidError("items must be a list of (key, value) pairs")
        rows: list[tuple[bytes, bytes]] = []
        for item in items:
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise InvalidError("items must be a list of (key, value) pairs")
            rows.append((self._key(item[0]),
                         _bytes(item[1], "a Dict value", self._settings.max_input_bytes)))

        def write() -> int:
            self._require(DICT, name)
            return self._store.dict_put(name, rows, skip_if_exists=skip, now=time.time())

        return await self._commit.run(write)

    async def dict_pop(self, name: str, key: bytes) -> bytes | None:
        name, key = validate_object_name(DICT, name), self._key(key)

        def write() -> bytes | None:
            self._require(DICT, name)
            return self._store.dict_pop(name, key)

        return await self._commit.run(write)

    async def dict_len(self, name: str) -> int:
        return self._store.dict_len(self._check(DICT, name))

    async def dict_entries(self, name: str, after: bytes | None) -> list[tuple[bytes, bytes]]:
        name = self._check(DICT, name)
        if after is not None:
            after = self._key(after)
        return self._store.dict_page(name, after, MAX_DICT_PAGE,
                                     self._settings.max_input_bytes)

    async def dict_clear(self, name: str) -> None:
        name = validate_object_name(DICT, name)

        def write() -> None:
            self._require(DICT, name)
            self._store.dict_clear(name)

        await self._commit.run(write)

    # ---- queues ------------------------------------------------------------------

    async def _waiting(self, key: str, timeout: float, attempt: Callable[[], Awaitable[T]],
                       done: Callable[[T], bool]) -> T:
        """``attempt()`` until ``done`` with its answer, woken by nudges on ``key``, for
        at most ``timeout`` (capped at one chunk)."""
        limit = min(timeout, self._settings.wait_chunk_seconds)
        with self._waiters.listening([key] if limit > 0 else []) as waiter:  # before looking
            answer = await attempt()
            deadline = time.monotonic() + limit
            while not done(answer):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not await self._waiters.park(waiter, remaining):
                    break
                waiter.event.clear()  # before looking again: a later nudge sets it anew
                answer = await attempt()
        return answer

    async def queue_put(self, name: str, partition: str | None, values: Sequence[bytes],
                        partition_ttl: float = DEFAULT_PARTITION_TTL,
                        timeout: float = 0.0) -> bool:
        name = validate_object_name(QUEUE, name)
        part = validate_partition(partition)
        if not isinstance(values, (list, tuple)):
            raise InvalidError("values must be a list of pickled values")
        rows = [_bytes(v, "a Queue value", self._settings.max_input_bytes) for v in values]
        if len(rows) > MAX_PARTITION_ITEMS:
            raise InvalidError(f"{len(rows)} values can never fit in a partition: it holds "
                               f"at most {MAX_PARTITION_ITEMS}")
        ttl = check_wait(partition_ttl)
        if not 0 < ttl <= DEFAULT_PARTITION_TTL:
            raise InvalidError(f"partition_ttl must be more than 0 and at most "
                               f"{DEFAULT_PARTITION_TTL:g} seconds, not {partition_ttl!r}")
        wait = check_wait(timeout)

        def write() -> bool:
            self._require(QUEUE, name)
            return self._store.queue_put(name, part, rows, now=time.time(), ttl=ttl,
                                         max_items=MAX_PARTITION_ITEMS,
                                         max_partitions=MAX_PARTITIONS)

        async def attempt() -> bool:
            return await self._commit.run(write)

        put = await self._waiting(_room_key(name, part), wait, attempt, bool)
        if put:
            self._waiters.nudged(_items_key(name, part))
        return put

    async def queue_get(self, name: str, partition: str | None, n_values: int,
                        timeout: float = 0.0) -> list[bytes]:
        name = validate_object_name(QUEUE, name)
        part = validate_partition(partition)
        if isinstance(n_values, bool) or not isinstance(n_values, int) or n_values < 1:
            raise InvalidError(f"n_values must be an int >= 1, not {n_values!r}")
        wait = check_wait(timeout)
        limit = min(n_values, MAX_QUEUE_PAGE)

        def write() -> list[bytes]:
            self._require(QUEUE, name)
            return self._store.queue_take(name, part, limit, time.time(),
                                          self._settings.max_input_bytes)

        async def attempt() -> list[bytes]:
            return await self._commit.run(write)

        values = await self._waiting(_items_key(name, part), wait, attempt, bool)
        if values:
            self._waiters.nudged(_room_key(name, part))
        return values

    async def queue_len(self, name: str, partition: str | None, total: bool = False) -> int:
        name = self._check(QUEUE, name)
        if _flag(total, "total") and partition is not None:
            raise InvalidError("partition and total cannot both be set")
        part = None if total else validate_partition(partition)
        return self._store.queue_len(name, part, time.time())

    async def queue_items(self, name: str, partition: str | None, after: int,
                          timeout: float = 0.0) -> list[tuple[int, bytes]]:
        name = self._check(QUEUE, name)
        part = validate_partition(partition)
        if isinstance(after, bool) or not isinstance(after, int) or after < -1:
            raise InvalidError(f"after must be a position >= -1, not {after!r}")
        wait = check_wait(timeout)

        async def attempt() -> list[tuple[int, bytes]]:
            return self._store.queue_page(name, part, after, MAX_QUEUE_PAGE,
                                          self._settings.max_input_bytes, time.time())

        return await self._waiting(_items_key(name, part), wait, attempt, bool)

    async def queue_clear(self, name: str, partition: str | None, all: bool = False) -> None:  # noqa: A002 - Modal's name
        name = validate_object_name(QUEUE, name)
        if _flag(all, "all") and partition is not None:
            raise InvalidError("partition and all cannot both be set")
        part = None if all else validate_partition(partition)

        def write() -> None:
            self._require(QUEUE, name)
            self._store.queue_clear(name, part)

        await self._commit.run(write)
        if part is not None:
            self._waiters.nudged(_room_key(name, part))
        else:
            for key in self._waiters.waited_on():
                if key.startswith(_room_key(name, "")):
                    self._waiters.nudged(key)

    # ---- expiry ------------------------------------------------------------------

    async def sweep(self) -> None:
        """Expired Dict entries, Queue partitions and abandoned ephemeral objects, a
        bounded batch per transaction until none is left."""
        settings = self._settings
        while await self._commit.run(
            lambda: self._store.sweep_objects(
                time.time(), dict_idle=settings.dict_idle_seconds,
                ephemeral_idle=settings.ephemeral_idle_seconds),
            durable=False,
        ):
            pass
