"""From the durable queue to Ray: per-function windows, attempts, timeouts and retries.

The queue lives in the store. Each function gets a pump that keeps at most ``window`` Ray
tasks of it in flight (``max_containers`` when set, else the global default). A task runs
one call, or several short calls in turn, as a container takes one input after another:
when a function's calls take well under ``batch_seconds``, Ray's cost per task (often more
than the call itself) is shared by up to ``max_batch`` calls. The registry submits, so it
owns every ObjectRef: a client that exits orphans nothing. The executor keeps each
attempt's timeout from its real start and reports it; an attempt that cannot be
interrupted is force-cancelled here, and the calls that shared its task go back to the
queue without using an attempt. A user error or timeout is retried per ``Retries``; a
dead worker is re-run by Ray (``max_retries``) without using a user retry. What becomes of
a call when an attempt ends is decided in ``settlement.py``; this module carries it out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import ray
from ray.exceptions import TaskCancelledError

from rayfn.exception import (
    DeploymentError,
    ExecutionError,
    StoreError,
)
from rayfn.protocol.payload import ErrorInfo, error_of
from rayfn.protocol.records import AttemptOutcome, RegistryAddress, TaskSpec
from rayfn.protocol.variants import Variant, check_params
from rayfn.states import CallState
from rayfn_service.attempts import Attempt, Batch, FunctionQueue, call_so_far
from rayfn_service.capacity import Capacity, shape_of
from rayfn_service.catalog import Catalog, RuntimeFunction
from rayfn_service.metrics import Metrics
from rayfn_service.pools import Box, ContainerPools
from rayfn_service.settlement import (
    AttemptEnd,
    Decision,
    Fail,
    Lost,
    Nothing,
    Requeue,
    Retry,
    Returned,
    Stranded,
    Succeed,
    Unrunnable,
    attempt_log,
    settle,
)
from rayfn_service.store import Claim, Store
from rayfn_service.store.base import chunks
from rayfn_service.store.group_commit import GroupCommit

logger = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self,
        store: Store,
        commit: GroupCommit,
        catalog: Catalog,
        *,
        default_window: int,
        retention_seconds: float,
        batch_seconds: float = 0.0,
        max_batch: int = 1,
        registry_address: RegistryAddress,
        on_finished: Callable[[str], None],
        capacity: Callable[[], Capacity] = Capacity,
        system_retries: int = 3,
        on_output: Callable[[Claim, str, str, bool], None] | None = None,
    ) -> None:
        self._store = store
        # (claim, output as last reported, output now, whether the attempt ended): the
        # registry follows what an app's calls print (app_output.py).
        self._on_output = on_output
        self._commit = commit
        self._catalog = catalog
        self._default_window = default_window
        self._batch_seconds = batch_seconds
        self._max_batch = max_batch
        self._retention = retention_seconds
        self._registry_address = registry_address
        self._on_finished = on_finished
        self._capacity = capacity
        self._queues: dict[tuple[str, str], FunctionQueue] = {}
        self.inflight: dict[str, Attempt] = {}
        # Calls cancelled while their claim was on its way from the store to Ray.
        self._cancel_before_start: set[str] = set()
        # Calls whose shared task's worker died: they next run one to a task.
        self._alone: set[str] = set()
        self._background: set[asyncio.Task[Any]] = set()
        # Tasks Ray has finished, handed over from Ray's thread and settled together: one
        # loop wake-up and one store write for all that ended meanwhile.
        self._ended: list[tuple[Batch, concurrent.futures.Future[Any]]] = []
        self._ended_lock = threading.Lock()
        self._loop = asyncio.get_running_loop()
        self.metrics = Metrics()
        self._pools = ContainerPools(self, registry_address, system_retries, default_window)

    # ---- queues ------------------------------------------------------------------

    def window_of(self, app: str, name: str) -> int:
        fn = self._catalog.current(app, name)
        if fn is not None and fn.options.max_containers is not None:
            return fn.options.max_containers
        return self._default_window

    def kick(self, app: str, name: str) -> None:
        queue = self._queues.get((app, name))
        if queue is None:
            queue = FunctionQueue(app=app, name=name, window=self.window_of(app, name))
            queue.pump = asyncio.get_running_loop().create_task(self._pump(queue))
            self._queues[(app, name)] = queue
        queue.kick.set()

    def refresh_windows(self) -> None:
        for queue in self._queues.values():
            queue.window = self.window_of(queue.app, queue.name)
            queue.kick.set()

    def running_counts(self) -> dict[tuple[str, str], int]:
        """Calls handed to Ray, per function."""
        return {key: q.calls for key, q in self._queues.items()}

    def batch_size(self, queue: FunctionQueue) -> int:
        """How many calls one task carries: as many as fit in ``batch_seconds`` going by
        the function's recent calls; one until some have run, or when they are long."""
        if queue.call_seconds is None or queue.call_seconds >= self._batch_seconds:
            return 1
        return max(1, min(self._max_batch, int(self._batch_seconds / queue.call_seconds)))

    def _running_attempt(self, call_id: str, attempt_number: int) -> Attempt | None:
        """The call's attempt in Ray, if it is the one a worker reports on (a late report
        from an earlier attempt finds none)."""
        attempt = self.inflight.get(call_id)
        if attempt is not None and attempt.claim.attempts == attempt_number:
            return attempt
        return None

    def must_run_alone(self, call_id: str) -> bool:
        """Whether the call lost its worker or container among others: it runs alone."""
        return call_id in self._alone

    def run_alone(self, call_id: str) -> bool:
        """``must_run_alone``, and it is about to: the mark is used up."""
        if call_id in self._alone:
            self._alone.discard(call_id)
            return True
        return False

    def is_running(self, call_id: str, attempt_number: int) -> bool:
        return self._running_attempt(call_id, attempt_number) is not None

    def attempt_started(self, call_id: str, attempt_number: int, node_id: str) -> None:
        if attempt := self._running_attempt(call_id, attempt_number):
            attempt.node_id = node_id

    def attempt_output(self, call_id: str, attempt_number: int, text: str) -> None:
        if attempt := self._running_attempt(call_id, attempt_number):
            before, attempt.output = attempt.output, text
            if self._on_output is not None:
                self._on_output(attempt.claim, before, text, False)

    def live_log(self, call_id: str) -> str:
        """What the call's running attempt printed so far, as its log will show it."""
        attempt = self.inflight.get(call_id)
        if attempt is None:
            return ""
        return attempt_log(attempt.claim.attempts, attempt.output) or ""

    def running_by_node(self) -> dict[tuple[str, str], dict[str, int]]:
        """Attempts that have started, per function and node (pending ones are not here).

        On a cluster of one node attempts do not report: every attempt in Ray is counted
        on that node, whether it runs or waits there for a CPU."""
        only_node = ray.get_runtime_context().get_node_id() if self._capacity().single_node \
            else None
        counts: dict[tuple[str, str], dict[str, int]] = {}
        for attempt in self.inflight.values():
            node = attempt.node_id or only_node
            if node is not None:
                per_node = counts.setdefault((attempt.claim.app, attempt.claim.function), {})
                per_node[node] = per_node.get(node, 0) + 1
        return counts

    async def _pump(self, queue: FunctionQueue) -> None:
        while True:
            await queue.kick.wait()
            queue.kick.clear()
            try:
                await self._fill(queue)
            except StoreError as exc:  # disk full or read-only: no traceback to add
                logger.warning("dispatch of %s.%s waits for the store: %s",
                               queue.app, queue.name, exc)
                await asyncio.sleep(1.0)
                queue.kick.set()
            except Exception:
                logger.exception("dispatch of %s.%s failed; retrying", queue.app, queue.name)
                await asyncio.sleep(1.0)
                queue.kick.set()

    def current(self, app: str, name: str) -> RuntimeFunction | None:
        return self._catalog.current(app, name)

    def warm(self) -> None:
        """Start the pools of live functions that keep containers warm: a class with
        parameters, the pool of its default values (other values' pools warm up once
        called)."""
        for app, name in self._catalog.live_keys():
            fn = self._catalog.current(app, name)
            if fn is None or not fn.options.uses_containers or not fn.options.min_containers:
                continue
            spec = fn.options.cls
            if spec is not None and spec.parameters:
                if not all(p.has_default for p in spec.parameters):
                    continue
                name = Variant(name, check_params(spec, {}, name)).name()
            self.kick(app, name)

    async def _fill(self, queue: FunctionQueue) -> None:
        current = self._catalog.current(queue.app, queue.name)
        if (current is not None and current.options.uses_containers) \
                or self._pools.has_pool(queue.app, queue.name):
            await self._pools.fill(queue, current)
            return
        # Refill once a quarter of the window is free (any free slot in a small window):
        # one claim then takes many calls, instead of one claim and one pump cycle for
        # every call that ends, and Ray still holds enough to keep its workers busy.
        if queue.running > queue.window - max(1, queue.window // 4) and not queue.retry_ready:
            return
        while queue.running < queue.window:
            claims = await self.take(queue, (queue.window - queue.running)
                                     * self.batch_size(queue))
            if not claims:
                return
            await self._start(queue, claims)

    async def take(self, queue: FunctionQueue, limit: int) -> list[Claim]:
        """Up to ``limit`` calls of the queue to run now: retries that are due first."""
        claims: list[Claim] = []
        while queue.retry_ready and len(claims) < limit:
            call_id = queue.retry_ready.popleft()
            claim = await self._commit.run(
                functools.partial(self._start_retry, call_id), durable=False
            )
            if claim is not None:
                claims.append(claim)
        if len(claims) < limit:
            claims.extend(
                await self._commit.run(
                    functools.partial(self._claim, queue.app, queue.name, limit - len(claims)),
                    durable=False,
                )
            )
        return claims

    def _claim(self, app: str, name: str, limit: int) -> list[Claim]:
        return self._store.claim_queued(app, name, limit, time.time())

    def _start_retry(self, call_id: str) -> Claim | None:
        return self._store.start_retry(call_id, time.time())

    # ---- attempts ----------------------------------------------------------------

    def checked(self, queue: FunctionQueue, claims: list[Claim]
                ) -> list[tuple[RuntimeFunction, Claim]]:
        """The claimed calls that can run, with their functions; the others are settled
        here (cancelled meanwhile, a deployment that cannot load, no node can run it)."""
        capacity = self._capacity()
        runnable: list[tuple[RuntimeFunction, Claim]] = []
        for claim in claims:
            if claim.id in self._cancel_before_start:
                self._cancel_before_start.discard(claim.id)
                continue
            fn = self._catalog.get(claim.app, claim.version, claim.function)
            if fn is None:
                problem = self._catalog.problem(claim.app, claim.version, claim.function)
                self.spawn_task(self._settle_error(claim, error_of(
                    ExecutionError if problem is None else DeploymentError,
                    problem or f"function {claim.app}.{claim.function} "
                    f"version {claim.version} is not in the store",
                )))
                continue
            reason = capacity.shortfall(shape_of(fn.options.ray_options()))
            if reason is not None:
                self.settle_one(queue, fn, claim, Unrunnable(reason))
                continue
            runnable.append((fn, claim))
        return runnable

    def settle_one(self, queue: FunctionQueue, fn: RuntimeFunction, claim: Claim,
                   end: AttemptEnd) -> None:
        now = time.monotonic()
        self.spawn_task(self._carry_out(claim, queue, settle(end, call_so_far(claim, fn), now),
                                        now))

    async def _start(self, queue: FunctionQueue, claims: list[Claim]) -> None:
        """Submit claimed calls in tasks of ``batch_size`` calls of one version each."""
        capacity = self._capacity()
        runnable: dict[int, tuple[RuntimeFunction, list[Claim]]] = {}
        parts: list[tuple[RuntimeFunction, Sequence[Claim]]] = []
        for fn, claim in self.checked(queue, claims):
            if claim.id in self._alone:
                parts.append((fn, [claim]))
            else:
                runnable.setdefault(claim.version, (fn, []))[1].append(claim)
        size = self.batch_size(queue)
        for fn, same_version in runnable.values():
            parts.extend((fn, part) for part in chunks(same_version, size))
        unsent: list[Claim] = []
        for fn, part in parts:
            if queue.running < queue.window:
                self._submit(queue, fn, part, report_node=not capacity.single_node)
            else:  # calls of several versions, or to run alone, made more tasks than fit
                unsent.extend(part)
        if unsent:
            await self._requeue(queue, unsent)

    def _submit(
        self, queue: FunctionQueue, fn: RuntimeFunction, claims: Sequence[Claim],
        *, report_node: bool,
    ) -> None:
        # A task of several calls is not re-run by Ray when its worker dies: its calls go
        # back to the queue one to a task, so a call that kills its worker fails alone.
        task = fn.task if len(claims) == 1 else fn.batch_task
        ref = task.remote(TaskSpec.wire(
            fn.code, fn.ref, fn.options.timeout, self._registry_address,
            report_node,  # on one node, where it runs needs no report
            tuple((claim.id, claim.attempts, claim.args) for claim in claims),
        ))
        if len(claims) == 1:
            self._alone.discard(claims[0].id)
        self.track(queue, fn, ref, claims)

    def track(self, queue: FunctionQueue, fn: RuntimeFunction, ref: ray.ObjectRef[Any],
              claims: Sequence[Claim], container: Box | None = None) -> Batch:
        """Follow a submitted task (or container input) until it ends."""
        batch = Batch(queue=queue, function=fn, ref=ref, submitted_at=time.monotonic(),
                      container=container)
        for claim in claims:
            attempt = Attempt(claim=claim, batch=batch)
            batch.attempts.append(attempt)
            self.inflight[claim.id] = attempt
        queue.running += 1
        queue.calls += len(claims)
        ref.future().add_done_callback(functools.partial(self._batch_ended, batch))
        return batch

    async def _requeue(self, queue: FunctionQueue, claims: Sequence[Claim]) -> None:
        ids = [claim.id for claim in claims]
        await self._write_outcome(functools.partial(self._store.requeue, ids), len(ids))
        queue.kick.set()

    def spawn_task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def attempt_stuck(self, call_id: str, attempt_number: int) -> None:
        """The worker could not interrupt an attempt past its deadline: kill it."""
        if attempt := self._running_attempt(call_id, attempt_number):
            attempt.timed_out = True
            attempt.batch.stop()

    def fail_unrunnable(self) -> None:
        """Stop the attempts waiting in Ray for resources no node can ever offer now."""
        capacity = self._capacity()
        batches = {id(a.batch): a.batch for a in self.inflight.values()}
        for batch in batches.values():
            reason = capacity.shortfall(shape_of(batch.function.options.ray_options()))
            if reason is None:
                continue
            for attempt in batch.attempts:
                if not attempt.stopped:
                    attempt.unrunnable = reason
            batch.stop()

    def _batch_ended(self, batch: Batch, future: concurrent.futures.Future[Any]) -> None:
        """On Ray's thread: hand the ended task to the loop, waking it once for all that
        end before it runs."""
        with self._ended_lock:
            self._ended.append((batch, future))
            if len(self._ended) > 1:
                return  # a wake-up is already on its way
        self._loop.call_soon_threadsafe(self._settle_ended)

    def _settle_ended(self) -> None:
        with self._ended_lock:
            ended, self._ended = self._ended, []
        now = time.monotonic()
        succeeded: list[tuple[Claim, Succeed]] = []
        for batch, future in ended:
            queue = batch.queue
            queue.running -= 1
            queue.calls -= len(batch.attempts)
            queue.kick.set()
            for attempt in batch.attempts:
                self.metrics.attempt_duration(queue.app, queue.name, now - batch.submitted_at)
                if self.inflight.get(attempt.claim.id) is attempt:
                    del self.inflight[attempt.claim.id]
            error = future.exception()
            if batch.container is not None:
                ends = self._pools.ended(batch, future)
            elif error is None:
                outcomes = [AttemptOutcome.from_wire(wire) for wire in future.result()]
                ends = self.returned(batch, outcomes)
            else:
                ends = self._task_failed(batch, error)
            self._settle(batch, ends, now, succeeded)
        if succeeded:
            self.spawn_task(self._finish_succeeded(succeeded))

    def returned(self, batch: Batch, outcomes: list[AttemptOutcome]) -> list[AttemptEnd]:
        """The task returned: each call's outcome, unless the registry stopped the call."""
        queue = batch.queue
        seconds = sum(outcome.seconds for outcome in outcomes) / len(outcomes)
        queue.call_seconds = seconds if queue.call_seconds is None \
            else 0.7 * queue.call_seconds + 0.3 * seconds
        ends: list[AttemptEnd] = []
        for attempt, outcome in zip(batch.attempts, outcomes, strict=True):
            stop = attempt.stop
            ends.append(Returned(outcome) if stop is None else stop)
        return ends

    def _task_failed(self, batch: Batch, error: BaseException) -> list[AttemptEnd]:
        """The task failed: the registry stopped it (for one of its calls, or Ray cancelled
        it), or its worker died."""
        stopped = isinstance(error, TaskCancelledError) or any(a.stopped for a in batch.attempts)
        shared = len(batch.attempts) > 1
        ends: list[AttemptEnd] = []
        for attempt in batch.attempts:
            stop = attempt.stop
            if stop is not None:
                ends.append(stop)
            else:
                ends.append(Stranded() if stopped else Lost(error, shared))
        return ends

    def _settle(
        self, batch: Batch, ends: list[AttemptEnd], now: float,
        succeeded: list[tuple[Claim, Succeed]],
    ) -> None:
        """Decide each call of an ended task and carry the decisions out: successes and
        requeues are written together (one store write for many calls)."""
        requeued: list[Claim] = []
        for attempt, end in zip(batch.attempts, ends, strict=True):
            claim = attempt.claim
            if self._on_output is not None:
                final = end.outcome.output if isinstance(end, Returned) else attempt.output
                self._on_output(claim, attempt.output, final, True)
            decision = settle(end, call_so_far(claim, batch.function), now)
            if isinstance(decision, Succeed):
                succeeded.append((claim, decision))
            elif isinstance(decision, Requeue):
                # A call cancelled meanwhile is no longer running: the requeue leaves it.
                if decision.alone:
                    self._alone.add(claim.id)
                requeued.append(claim)
            elif not isinstance(decision, Nothing):
                self.spawn_task(self._carry_out(claim, batch.queue, decision, now))
        if requeued:
            self.spawn_task(self._requeue(batch.queue, requeued))

    async def _carry_out(
        self, claim: Claim, queue: FunctionQueue, decision: Decision, now: float
    ) -> None:
        """Carry out one call's decision; ``now``: the time the policy was given."""
        if isinstance(decision, Fail):
            await self._finish(claim, decision.state, error=decision.error, logs=decision.logs)
        elif isinstance(decision, Retry):
            logs = decision.logs
            marked = await self._commit.run(
                lambda: self._store.mark_retrying(claim.id, logs), durable=False
            )
            if not marked:
                return  # cancelled meanwhile
            self._loop.call_later(decision.ready_at - now, self._retry_ready, queue, claim.id)
        elif isinstance(decision, Succeed):
            await self._finish_succeeded([(claim, decision)])
        elif isinstance(decision, Requeue):
            if decision.alone:
                self._alone.add(claim.id)
            await self._requeue(queue, [claim])

    def _retry_ready(self, queue: FunctionQueue, call_id: str) -> None:
        queue.retry_ready.append(call_id)
        queue.kick.set()

    async def _settle_error(
        self, claim: Claim, error: ErrorInfo, logs: str | None = None
    ) -> None:
        await self._finish(claim, CallState.FAILED, error=error, logs=logs)

    async def _finish_succeeded(self, succeeded: list[tuple[Claim, Succeed]]) -> None:
        now = time.time()
        write = functools.partial(
            self._store.finish_succeeded,
            [(claim.id, done.result, done.result_json, done.logs) for claim, done in succeeded],
            now=now,
            expires_at=now + self._retention,
        )
        await self._write_outcome(write, len(succeeded))
        for claim, _ in succeeded:
            self.metrics.outcome(claim.app, claim.function, CallState.SUCCEEDED.value)
            self._on_finished(claim.id)

    async def _write_outcome(self, write: Callable[[], Any], calls: int) -> None:
        delay = 0.5
        while True:
            try:
                await self._commit.run(write, durable=False)
                return
            except StoreError as exc:
                # Disk full or read-only: hold the outcome and write it once the disk takes
                # writes again. The call stays running in the store meanwhile, so a registry
                # restart in between runs it again rather than losing it.
                logger.warning("cannot store the outcome of %d calls yet (%s); retrying in "
                               "%.1f s", calls, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _finish(
        self,
        claim: Claim,
        state: CallState,
        *,
        result: bytes | None = None,
        result_json: str | None = None,
        error: ErrorInfo | None = None,
        logs: str | None = None,
    ) -> None:
        now = time.time()
        write = functools.partial(
            self._store.finish,
            claim.id,
            state,
            now=now,
            expires_at=now + self._retention,
            result=result,
            result_json=result_json,
            error=error,
            logs=logs,
        )
        await self._write_outcome(write, 1)
        self.metrics.outcome(claim.app, claim.function, state.value)
        self._on_finished(claim.id)

    # ---- cancellation ------------------------------------------------------------

    async def cancel(self, call_id: str) -> bool:
        now = time.time()
        before = await self._commit.run(
            lambda: self._store.cancel(call_id, now, now + self._retention)
        )
        if before is None:
            return False
        if not self._stop_cancelled(call_id) and before is CallState.RUNNING \
                and not self._pools.drop_held(call_id):
            self._cancel_before_start.add(call_id)
        self._on_finished(call_id)
        return True

    def cancel_all(self, call_ids: list[str]) -> None:
        for call_id in call_ids:
            self._stop_cancelled(call_id)
            self._on_finished(call_id)

    def _stop_cancelled(self, call_id: str) -> bool:
        """Stop the Ray task of a call the store has cancelled; False when it has none."""
        self._alone.discard(call_id)
        self._pools.forget_call(call_id)
        attempt = self.inflight.get(call_id)
        if attempt is None:
            return False
        attempt.cancelled = True
        if attempt.batch.container is not None:
            self._pools.cancel_input(attempt)  # stop the input, not its whole container
        else:
            attempt.batch.stop()
        return True
