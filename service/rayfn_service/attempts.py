"""What the dispatcher follows while calls run: each function's queue, each Ray task (or
container input) in flight, and each attempt it carries."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from typing import TYPE_CHECKING, Any

import ray

from rayfn_service.catalog import RuntimeFunction
from rayfn_service.settlement import CallSoFar, Cancelled, Stuck, Unrunnable
from rayfn_service.store import Claim

if TYPE_CHECKING:
    from rayfn_service.pools import Box

__all__ = ["Attempt", "Batch", "FunctionQueue", "call_so_far"]


@dataclasses.dataclass
class FunctionQueue:
    app: str
    name: str
    window: int
    running: int = 0  # Ray tasks in flight
    calls: int = 0  # calls those tasks carry
    call_seconds: float | None = None  # a call's recent time in a worker (moving average)
    kick: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    retry_ready: collections.deque[str] = dataclasses.field(default_factory=collections.deque)
    pump: asyncio.Task[None] | None = None


@dataclasses.dataclass(eq=False)
class Batch:
    """One Ray task: one or more calls of one function version, run in turn."""

    queue: FunctionQueue
    function: RuntimeFunction
    ref: ray.ObjectRef[Any]
    submitted_at: float  # monotonic
    attempts: list[Attempt] = dataclasses.field(default_factory=list)
    container: Box | None = None  # the container it runs in (else a Ray task of its own)

    def stop(self) -> None:
        if self.container is not None:
            self.container.end()
        else:
            ray.cancel(self.ref, force=True)


@dataclasses.dataclass(eq=False)
class Attempt:
    claim: Claim
    batch: Batch  # the Ray task that runs it
    cancelled: bool = False
    timed_out: bool = False
    node_id: str | None = None  # reported by the executor once the attempt starts
    unrunnable: str | None = None  # why no node can ever run it (the cluster shrank)
    output: str = ""  # what it printed so far, as its worker last reported

    @property
    def function(self) -> RuntimeFunction:
        return self.batch.function

    @property
    def queue(self) -> FunctionQueue:
        return self.batch.queue

    @property
    def stopped(self) -> bool:
        """Stopped by the registry, whatever its task returns."""
        return self.cancelled or self.timed_out or self.unrunnable is not None

    @property
    def stop(self) -> Cancelled | Unrunnable | Stuck | None:
        """Why the registry stopped it, if it did. A cancel comes first (it wrote the
        outcome), whatever else happened to the attempt."""
        if self.cancelled:
            return Cancelled()
        if self.unrunnable is not None:
            return Unrunnable(self.unrunnable)
        if self.timed_out:
            return Stuck()
        return None


def call_so_far(claim: Claim, fn: RuntimeFunction) -> CallSoFar:
    return CallSoFar(fn.ref, fn.options.timeout, fn.options.retries, claim.attempts)
