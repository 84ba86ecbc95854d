"""The REST server's way to the registry: awaited actor calls, retried across restarts.

Submissions to one function that arrive while the previous one is on its way to the
registry are sent together in one request (one commit), each answered once it is
committed, so many concurrent clients cost the registry a request per batch, not per
call. Requests with an Idempotency-Key go alone: the registry records one key each.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import ray

from rayfn.exception import StoreError
from rayfn.protocol.actor import RegistryActor
from rayfn.protocol.operations import Idempotency, Operation, RegistryApi
from rayfn.protocol.payload import check_input_size
from rayfn.settings import Settings
from rayfn_service.store import CallRecord, Reader, open_reader

logger = logging.getLogger(__name__)

# Results up to this size are read on the event loop; larger ones on a thread.
INLINE_RESULT_BYTES = 1024 * 1024
# A wait beyond the server's bound on waiters looks again after this long at most.
OVERFLOW_WAIT_SECONDS = 1.0
ALIVE_CACHE_SECONDS = 1.0

Calls = list[tuple[str, bytes]]
P = ParamSpec("P")
R = TypeVar("R")


@dataclasses.dataclass
class _SpawnQueue:
    """Submissions to one function waiting for the request before theirs to be answered."""

    waiting: collections.deque[tuple[Calls, asyncio.Future[list[str]]]] = dataclasses.field(
        default_factory=collections.deque)
    wake: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    sender: asyncio.Task[None] | None = None


class RegistryGateway:
    """The REST server's calls to the registry actor; rayfn errors come back as
    themselves, restarts are waited out (``rayfn.protocol.retry``)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._spawn_queues: dict[tuple[str, str], _SpawnQueue] = {}
        self._registry = RegistryActor(settings.namespace,
                                       retry_seconds=settings.client_retry_seconds)
        self._reader: Reader | None = None
        self._reader_checked = False
        self._waiting = 0  # requests waiting in the registry now (see wait_for)
        self._alive, self._alive_at = False, -ALIVE_CACHE_SECONDS
        self._alive_ping: asyncio.Task[bool] | None = None

    async def call(self, op: Operation[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._registry.acall(op, *args, **kwargs)

    async def spawn(
        self, app: str, function: str, calls: Calls, idempotency: Idempotency | None
    ) -> list[str]:
        """Accept calls; answer once they are committed."""
        if idempotency is not None:
            return await self.call(RegistryApi.spawn, app, function, calls, idempotency)
        for _, payload in calls:  # checked here: one bad input must not fail a batch
            check_input_size(payload, self._settings.max_input_bytes, f"{app}.{function}")
        queue = self._spawn_queues.get((app, function))
        if queue is None:
            queue = self._spawn_queues[(app, function)] = _SpawnQueue()
            queue.sender = asyncio.get_running_loop().create_task(
                self._send_spawns(app, function, queue))
        answer: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        queue.waiting.append((calls, answer))
        queue.wake.set()
        return await answer

    async def _send_spawns(self, app: str, function: str, queue: _SpawnQueue) -> None:
        limit = self._settings.spawn_batch_size
        while True:
            await queue.wake.wait()
            queue.wake.clear()
            while queue.waiting:
                batch = [queue.waiting.popleft()]  # then more, up to ~limit calls
                size = len(batch[0][0])
                while queue.waiting and size < limit:
                    batch.append(queue.waiting.popleft())
                    size += len(batch[-1][0])
                try:
                    await self.call(RegistryApi.spawn, app, function,
                                    [c for calls, _ in batch for c in calls], None)
                except Exception as exc:
                    for _, answer in batch:
                        if not answer.done():  # its client may have gone away
                            answer.set_exception(exc)
                    continue
                for calls, answer in batch:
                    if not answer.done():
                        answer.set_result([call_id for call_id, _ in calls])

    async def wait_for(self, timeout: float, ask: Callable[[float], Awaitable[R]]) -> R:
        """``ask(seconds)``: a registry call that waits up to that long for calls to end.
        At most ``server_max_waiters`` of them wait in the registry at once, so polls
        cannot take the slots that spawns, pings and workers' reports need; the others
        wait here, a second at most, then look once, as a wait that ran out."""
        if timeout <= 0:
            return await ask(0.0)
        if self._waiting < self._settings.server_max_waiters:
            self._waiting += 1
            try:
                return await ask(timeout)
            finally:
                self._waiting -= 1
        await asyncio.sleep(min(timeout, OVERFLOW_WAIT_SECONDS))
        return await ask(0.0)

    async def alive(self) -> bool:
        """Whether the registry answers; concurrent asks share one ping, and an answer is
        reused for a second, so health probes cost the registry next to nothing."""
        if time.monotonic() - self._alive_at < ALIVE_CACHE_SECONDS:
            return self._alive
        if self._alive_ping is None:
            self._alive_ping = asyncio.get_running_loop().create_task(self._ping())
        return await asyncio.shield(self._alive_ping)

    async def _ping(self) -> bool:
        try:
            await asyncio.wait_for(self.call(RegistryApi.ping), timeout=5)
            alive = True
        except Exception:
            alive = False
        self._alive, self._alive_at, self._alive_ping = alive, time.monotonic(), None
        return alive

    async def finished(self, call_id: str, status_only: bool = False) -> CallRecord | None:
        """The call from the store when it has finished and the store is readable here
        (this process runs on the registry's node); else None: ask the registry.

        ``status_only`` leaves the result out. A large result is read on a thread, so
        clients polling it do not stall every other request."""
        if not self._reader_checked:
            await self._open_reader()
        if self._reader is None:
            return None
        try:
            if status_only or self._reader.result_bytes(call_id) <= INLINE_RESULT_BYTES:
                return self._reader.finished_call(call_id, status_only=status_only)
            return await asyncio.to_thread(_read_finished, self._reader, call_id)
        except StoreError:
            return None

    async def _open_reader(self) -> None:
        info = await self.call(RegistryApi.ping)
        if info["store_problem"]:
            return  # the registry cannot open its store yet: look again next time
        self._reader_checked = True
        if info["node_id"] != ray.get_runtime_context().get_node_id():
            return  # the store is on the registry's node, not readable from here
        try:
            self._reader = open_reader(info["store"])
        except StoreError:
            logger.warning("cannot read the store at %s; asking the registry", info["store"])


def _read_finished(reader: Reader, call_id: str) -> CallRecord | None:
    """A finished call read on a connection of its own (for a thread: connections are
    not shared across threads)."""
    own = reader.reopen()
    try:
        return own.finished_call(call_id)
    finally:
        own.close()
