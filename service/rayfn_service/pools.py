"""Container pools: the registry's side of classes, ``@concurrent`` and ``@batched``.

Each function (or variant: a class with parameter values, or options changed by
``with_options``) that uses containers has a pool. The pool claims calls from the store
as far as its containers can take them (plus one container's worth while it may grow),
holds them in a backlog, and sends each to a ready container of the call's version with
a free input slot (a ``@batched`` function: a list of calls, as soon as the list is full
or its first call has waited ``wait_ms``).

Sizing, as Modal does: enough containers for the calls held at ``target_inputs`` each,
plus ``buffer_containers`` while busy, at least ``min_containers`` (kept warm) and at
most ``max_containers``. A container idle for ``scaledown_window`` stops (its ``@exit``
methods run); one of a version no longer deployed stops as soon as it is idle.

The registry owns every container (they die with it; on restart the store re-queues
what was running). A container that dies by itself loses nothing: its calls run again,
their attempt not counted, up to the system retries. One that cannot start (an
``@enter`` raised) is tried again up to the system retries; then the calls waiting for
it fail with the error, and so do new ones of that version for ``BROKEN_SECONDS``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import itertools
import logging
import math
import time
from typing import TYPE_CHECKING, Any

import ray

from rayfn.exception import ExecutionError
from rayfn.protocol.payload import ErrorInfo, error_of
from rayfn.protocol.records import AttemptOutcome, RegistryAddress, TaskSpec
from rayfn_service.catalog import RuntimeFunction
from rayfn_service.container import EXIT_GRACE_SECONDS, STUCK_GRACE_SECONDS, ContainerSpec
from rayfn_service.settlement import (
    AttemptEnd,
    ContainerDied,
    Lost,
    NotStarted,
    Stranded,
)
from rayfn_service.store import Claim

if TYPE_CHECKING:
    from rayfn_service.attempts import Attempt, Batch, FunctionQueue
    from rayfn_service.dispatch import Dispatcher

logger = logging.getLogger(__name__)

# How long calls of a version whose containers cannot start fail at once, before a
# container is tried again.
BROKEN_SECONDS = 10.0
# How often idle containers are looked at (at most; a short scaledown_window checks
# sooner).
REAP_SECONDS = 1.0
# How far past its deadline (and the container's own grace) an input may go without an
# answer before the registry ends its container.
BACKSTOP_SECONDS = STUCK_GRACE_SECONDS + 10.0

_serials = itertools.count(1)


# Calls shorter than this get more inputs sent ahead: enough to cover the round trip
# from a container through the registry and back, a few milliseconds.
SHORT_CALL_SECONDS = 0.05
MAX_AHEAD = 16


# Calls of a function that is not batched that one input may carry, run in turn, when
# they are short (as the dispatcher groups short calls into one Ray task).
MAX_CALLS_PER_INPUT = 32
IN_TURN_SECONDS = 0.01


def calls_per_input(call_seconds: float | None) -> int:
    if call_seconds is None or call_seconds >= IN_TURN_SECONDS:
        return 1
    return max(1, min(MAX_CALLS_PER_INPUT, int(IN_TURN_SECONDS / max(call_seconds, 1e-5))))


def inputs_sent(max_inputs: int, call_seconds: float | None = None) -> int:
    """Inputs a container is sent at once: ``max_inputs`` run and some wait in the
    container, so that the next starts as soon as one ends rather than a round trip
    through the registry later. A quarter more (at least one); for short calls, as many
    as fit in ``SHORT_CALL_SECONDS``. Long calls get few: an input waiting behind a long
    one could have started in a container that frees up sooner."""
    ahead = max(1, max_inputs // 4)
    if call_seconds is not None and call_seconds < SHORT_CALL_SECONDS:
        ahead = max(ahead, min(MAX_AHEAD, int(SHORT_CALL_SECONDS / max(call_seconds, 1e-4))))
    return max_inputs + ahead


@dataclasses.dataclass(eq=False)
class Box:
    """One container as the registry sees it."""

    actor: Any
    version: int
    serial: int
    state: str = "starting"  # starting | ready | stopping
    node_id: str | None = None
    inputs: int = 0  # runs in flight (a batch is one)
    idle_since: float = dataclasses.field(default_factory=time.monotonic)
    ended_by_registry: bool = False

    def end(self) -> None:
        """Kill it now (an input it cannot stop, a cancel it could not honour): its other
        inputs go back to the queue without using an attempt."""
        if not self.ended_by_registry:
            self.ended_by_registry = True
            self.state = "stopping"
            ray.kill(self.actor, no_restart=True)


@dataclasses.dataclass(eq=False)
class Held:
    claim: Claim
    function: RuntimeFunction
    since: float  # monotonic: when the pool took it


@dataclasses.dataclass(eq=False)
class Pool:
    queue: FunctionQueue
    boxes: list[Box] = dataclasses.field(default_factory=list)
    backlog: collections.deque[Held] = dataclasses.field(default_factory=collections.deque)
    start_failures: dict[int, int] = dataclasses.field(default_factory=dict)
    broken: dict[int, tuple[ErrorInfo, float]] = dataclasses.field(default_factory=dict)
    inflight_calls: dict[int, int] = dataclasses.field(default_factory=dict)  # per version
    reaper: asyncio.Task[None] | None = None
    batch_timer: asyncio.TimerHandle | None = None

    def live(self, version: int | None = None) -> list[Box]:
        return [b for b in self.boxes if b.state != "stopping"
                and (version is None or b.version == version)]

    def held(self, version: int) -> int:
        return self.inflight_calls.get(version, 0) + sum(
            1 for h in self.backlog if h.claim.version == version)


class ContainerPools:
    """The pools of one dispatcher, which settles what their containers return."""

    def __init__(self, dispatcher: Dispatcher, registry: RegistryAddress,
                 system_retries: int, default_max: int) -> None:
        self._d = dispatcher
        self._registry = registry
        self._system_retries = system_retries
        self._default_max = default_max
        self._pools: dict[tuple[str, str], Pool] = {}
        self._losses: dict[str, int] = {}  # call -> containers it lost
        self._loop = asyncio.get_running_loop()

    def has_pool(self, app: str, name: str) -> bool:
        return (app, name) in self._pools

    def containers(self, app: str, name: str) -> int:
        pool = self._pools.get((app, name))
        return 0 if pool is None else len(pool.live())

    # ---- taking calls --------------------------------------------------------------

    async def fill(self, queue: FunctionQueue, current: RuntimeFunction | None) -> None:
        pool = self._pools.get((queue.app, queue.name))
        if pool is None:
            pool = self._pools[(queue.app, queue.name)] = Pool(queue)
        while current is not None:
            room = self._room(pool, current)
            if room <= 0:
                break
            claims = await self._d.take(queue, room)
            self._hold(pool, claims)
            self._scale_up(pool, current)
            self._assign(pool)
            if len(claims) < room:
                break
        self._scale_up(pool, current)
        self._assign(pool)
        self._ensure_reaper(pool)

    @staticmethod
    def _slots(pool: Pool, fn: RuntimeFunction) -> int:
        """Calls one container can hold at once: its inputs, and those sent ahead."""
        per_input = fn.options.max_batch_size or calls_per_input(pool.queue.call_seconds)
        return inputs_sent(fn.options.max_inputs, pool.queue.call_seconds) * per_input

    def _max(self, fn: RuntimeFunction) -> int:
        return fn.options.max_containers or self._default_max

    def _room(self, pool: Pool, fn: RuntimeFunction) -> int:
        """How many more calls to claim: what live containers can take, and one more
        container's worth while the pool may grow."""
        live = len(pool.live())
        could = live + (1 if live < self._max(fn) else 0)
        held = sum(pool.inflight_calls.values()) + len(pool.backlog)
        return could * self._slots(pool, fn) - held

    def _hold(self, pool: Pool, claims: list[Claim]) -> None:
        now = time.monotonic()
        for fn, claim in self._d.checked(pool.queue, claims):
            broken = pool.broken.get(claim.version)
            if broken is not None and now < broken[1]:
                self._d.settle_one(pool.queue, fn, claim, NotStarted(broken[0]))
                continue
            pool.backlog.append(Held(claim, fn, now))

    # ---- sizing ----------------------------------------------------------------------

    def _scale_up(self, pool: Pool, current: RuntimeFunction | None) -> None:
        versions = {h.claim.version: h.function for h in pool.backlog}
        if current is not None:
            versions.setdefault(current.version, current)
        for version, fn in versions.items():
            options = fn.options
            held = pool.held(version)
            per = options.inputs_per_container * max(1, options.max_batch_size)
            needed = math.ceil(held / per) + (options.buffer_containers if held else 0)
            if current is not None and version == current.version:
                needed = max(needed, options.min_containers)
            needed = min(needed, self._max(fn))
            broken = pool.broken.get(version)
            if broken is not None and time.monotonic() < broken[1]:
                continue
            for _ in range(needed - len(pool.live(version))):
                self._start(pool, fn)

    def _start(self, pool: Pool, fn: RuntimeFunction) -> None:
        spec = ContainerSpec(
            code=fn.code,
            label=f"{fn.app}.{fn.variant.describe()}",
            is_class=fn.options.cls is not None,
            params=fn.variant.params,
            max_inputs=fn.options.max_inputs,
            batched=fn.options.max_batch_size > 0,
            registry=self._registry,
        )
        box = Box(actor=fn.container.remote(spec), version=fn.version, serial=next(_serials))
        pool.boxes.append(box)
        ref = box.actor.start.remote()
        ref.future().add_done_callback(
            lambda future: self._loop.call_soon_threadsafe(self._started, pool, box, future))

    def _started(self, pool: Pool, box: Box, future: concurrent.futures.Future[Any]) -> None:
        if box.state == "stopping":
            return
        error = future.exception()
        problem: ErrorInfo | None
        if error is not None:
            problem = error_of(ExecutionError, f"a container of {pool.queue.name} could not "
                               f"start: {type(error).__name__}: {str(error)[:2000]}")
        else:
            box.node_id, problem = future.result()
        if problem is None:
            box.state = "ready"
            box.idle_since = time.monotonic()
            pool.start_failures[box.version] = 0
            self._assign(pool)
            return
        box.end()
        pool.boxes.remove(box)
        failures = pool.start_failures.get(box.version, 0) + 1
        pool.start_failures[box.version] = failures
        logger.warning("%s", problem.message.splitlines()[0])
        if failures > self._system_retries:
            pool.start_failures[box.version] = 0
            pool.broken[box.version] = (problem, time.monotonic() + BROKEN_SECONDS)
            self._fail_waiting(pool, box.version, problem)
        pool.queue.kick.set()  # size the pool again: another container, or none

    def _fail_waiting(self, pool: Pool, version: int, problem: ErrorInfo) -> None:
        keep: collections.deque[Held] = collections.deque()
        for held in pool.backlog:
            if held.claim.version == version:
                self._d.settle_one(pool.queue, held.function, held.claim, NotStarted(problem))
            else:
                keep.append(held)
        pool.backlog = keep

    # ---- sending inputs --------------------------------------------------------------

    def _assign(self, pool: Pool) -> None:
        """Send held calls, oldest first, to ready containers of their version."""
        if pool.batch_timer is not None:
            pool.batch_timer.cancel()
            pool.batch_timer = None
        while pool.backlog:
            head = pool.backlog[0]
            options = head.function.options
            box = self._free_box(pool, head.claim.version,
                                 inputs_sent(options.max_inputs, pool.queue.call_seconds))
            if box is None:
                return
            group = self._batch(pool, head) if options.max_batch_size \
                else self._in_turn(pool, head)
            if not group:
                return
            self._submit(pool, box, group)

    def _in_turn(self, pool: Pool, head: Held) -> list[Held]:
        """The next input of a function that is not batched: one call, or several short
        ones of its version that the container runs in turn, each with its own deadline,
        outcome and cancel (what one Ray task of the task path carries, and for the same
        reason: the cost of an actor call shared by calls much shorter than it)."""
        most = calls_per_input(pool.queue.call_seconds)
        if most == 1 or len(pool.backlog) == 1 or self._d.run_alone(head.claim.id):
            return [pool.backlog.popleft()]
        same = list(itertools.islice(
            (h for h in pool.backlog if h.claim.version == head.claim.version
             and not self._d.must_run_alone(h.claim.id)), most))
        taken = {id(h) for h in same}
        pool.backlog = collections.deque(h for h in pool.backlog if id(h) not in taken)
        return same

    def _batch(self, pool: Pool, head: Held) -> list[Held]:
        """The next batch: full, or whatever is held once its first call has waited
        ``wait_ms`` (else nothing yet, and a timer to look again)."""
        options = head.function.options
        same = list(itertools.islice(
            (h for h in pool.backlog if h.claim.version == head.claim.version),
            options.max_batch_size))
        waited = time.monotonic() - head.since
        wait = options.batch_wait_ms / 1000
        if len(same) < options.max_batch_size and waited < wait:
            pool.batch_timer = self._loop.call_later(wait - waited, self._assign, pool)
            return []
        taken = {id(h) for h in same}
        pool.backlog = collections.deque(h for h in pool.backlog if id(h) not in taken)
        return same

    @staticmethod
    def _free_box(pool: Pool, version: int, most: int) -> Box | None:
        ready = [b for b in pool.boxes
                 if b.state == "ready" and b.version == version and b.inputs < most]
        return min(ready, key=lambda b: (b.inputs, b.serial)) if ready else None

    def _submit(self, pool: Pool, box: Box, group: list[Held]) -> None:
        fn = group[0].function
        claims = [h.claim for h in group]
        wire = TaskSpec.wire(b"", fn.ref, fn.options.timeout, self._registry, False,
                             tuple((c.id, c.attempts, c.args) for c in claims))
        ref = box.actor.run.remote(wire)
        batch = self._d.track(pool.queue, fn, ref, claims, container=box)
        for attempt in batch.attempts:
            attempt.node_id = box.node_id
        box.inputs += 1
        version = box.version
        pool.inflight_calls[version] = pool.inflight_calls.get(version, 0) + len(claims)
        # Sent ahead, an input may wait for a running one's whole attempt first.
        self._loop.call_later(2 * fn.options.timeout + BACKSTOP_SECONDS, self._backstop, batch)

    def _backstop(self, batch: Batch) -> None:
        """An input far past its deadline with no answer: end its container."""
        box = batch.container
        if box is None or not any(self._d.inflight.get(a.claim.id) is a
                                  for a in batch.attempts):
            return
        for attempt in batch.attempts:
            attempt.timed_out = True
        box.end()

    # ---- what comes back -------------------------------------------------------------

    def ended(self, batch: Batch, future: concurrent.futures.Future[Any]) -> list[AttemptEnd]:
        """The ends of the calls of one ``run`` (on the registry's loop)."""
        box = batch.container
        assert box is not None
        pool = self._pools[(batch.queue.app, batch.queue.name)]
        box.inputs -= 1
        pool.inflight_calls[box.version] -= len(batch.attempts)
        if box.inputs == 0:
            box.idle_since = time.monotonic()
        self._loop.call_soon(self._assign, pool)
        error = future.exception()
        if error is None:
            wires, healthy = future.result()
            if not healthy:
                box.end()
            outcomes = [AttemptOutcome.from_wire(wire) for wire in wires]
            return self._d.returned(batch, outcomes)
        if box in pool.boxes and not box.ended_by_registry:
            pool.boxes.remove(box)  # it died by itself
            box.state = "stopping"
        return [self._lost(attempt, box, error) for attempt in batch.attempts]

    def _lost(self, attempt: Attempt, box: Box, error: BaseException) -> AttemptEnd:
        stop = attempt.stop
        if stop is not None:
            return stop
        if box.ended_by_registry:
            return Stranded()
        if len(attempt.batch.attempts) > 1 and not attempt.function.options.max_batch_size:
            # Short calls run in turn: only the one that kills its container when it runs
            # by itself should pay for it.
            return Lost(error, shared=True)
        call_id = attempt.claim.id
        times = self._losses[call_id] = self._losses.get(call_id, 0) + 1
        if times > self._system_retries:
            self._losses.pop(call_id, None)
        return ContainerDied(error, times, self._system_retries)

    def cancel_input(self, attempt: Attempt) -> None:
        """Stop a cancelled call's input where its container can; end the container if
        the input has not stopped after a grace."""
        box = attempt.batch.container
        assert box is not None
        try:
            box.actor.interrupt.remote(attempt.claim.id)
        except Exception:  # the container is gone already; its run reports that
            return
        self._loop.call_later(STUCK_GRACE_SECONDS + 2.0, self._end_if_running, attempt)

    def _end_if_running(self, attempt: Attempt) -> None:
        if self._d.inflight.get(attempt.claim.id) is attempt and attempt.batch.container:
            attempt.batch.container.end()

    def forget_call(self, call_id: str) -> None:
        self._losses.pop(call_id, None)

    def drop_held(self, call_id: str) -> bool:
        """Drop a cancelled call a pool holds for a container; False if none holds it."""
        for pool in self._pools.values():
            for held in pool.backlog:
                if held.claim.id == call_id:
                    pool.backlog.remove(held)
                    return True
        return False

    # ---- scaling down ----------------------------------------------------------------

    def _ensure_reaper(self, pool: Pool) -> None:
        if pool.boxes and (pool.reaper is None or pool.reaper.done()):
            pool.reaper = self._loop.create_task(self._reap(pool))

    async def _reap(self, pool: Pool) -> None:
        while pool.boxes:
            current = self._d.current(pool.queue.app, pool.queue.name)
            window = current.options.scaledown_window if current is not None else 0.0
            await asyncio.sleep(min(REAP_SECONDS, max(window / 4, 0.1)))
            self._scale_down(pool, self._d.current(pool.queue.app, pool.queue.name))
        pool.queue.kick.set()

    def _scale_down(self, pool: Pool, current: RuntimeFunction | None) -> None:
        now = time.monotonic()
        for box in list(pool.boxes):
            if box.state == "stopping" and box.ended_by_registry:
                pool.boxes.remove(box)
                continue
            if box.state != "ready" or box.inputs:
                continue
            is_current = current is not None and box.version == current.version
            floor = current.options.min_containers if current is not None and is_current \
                else 0
            window = current.options.scaledown_window if current is not None and is_current \
                else 0.0
            busy = any(h.claim.version == box.version for h in pool.backlog)
            if busy or now - box.idle_since < window or len(pool.live(box.version)) <= floor:
                continue
            box.state = "stopping"
            self._d.spawn_task(self._stop(pool, box))

    async def _stop(self, pool: Pool, box: Box) -> None:
        """Run the container's ``@exit`` methods, then end it."""
        try:
            problems = await asyncio.wait_for(
                asyncio.wrap_future(box.actor.stop.remote().future()), EXIT_GRACE_SECONDS + 5)
            for problem in problems:
                logger.warning("%s: @exit method %s", pool.queue.name, problem)
        except Exception as exc:  # it died meanwhile, or its exit overran: end it anyway
            logger.warning("%s: a container did not stop cleanly: %r", pool.queue.name, exc)
        box.ended_by_registry = True
        ray.kill(box.actor, no_restart=True)
        if box in pool.boxes:
            pool.boxes.remove(box)
