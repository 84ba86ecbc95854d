"""The Ray task that runs attempts of a user function: one, or several short ones in turn.

For each call it returns an ``AttemptOutcome``: plain data the registry can read without
the user's modules. Every user exception is caught here, so a Ray-level failure of this
task means the worker process or its node died.

Each attempt's timeout is kept here, from the moment the call really starts (a task may
wait in Ray's queue for resources first, and a call for the calls before it): SIGALRM
interrupts the function, even in ``time.sleep``. Code that does not return to Python (a
stuck C call) cannot be interrupted that way; a watchdog thread then asks the registry to
force-cancel the task. An ``async def`` function runs on an event loop of its own, under
the same deadline.

Processes the function started and left running are ended when the attempt ends (see
``children.py``): the worker is reused for other calls and must not collect strays.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import inspect
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import cloudpickle
import ray

from rayfn.exception import (
    ExecutionError,
    FunctionTimeoutError,
    InvalidError,
    SerializationError,
)
from rayfn.protocol.actor import RegistryActor
from rayfn.protocol.operations import RegistryApi
from rayfn.protocol.payload import (
    ErrorInfo,
    check_arguments,
    encode_exception,
    encode_json,
    encode_result,
    error_of,
    loads_args,
)
from rayfn.protocol.records import (
    AttemptOutcome,
    FunctionRef,
    OutcomeKind,
    OutcomeWire,
    RegistryAddress,
    TaskCall,
    TaskSpec,
    TaskWire,
)
from rayfn.runtime import calling, enter_cluster, flush_spawns
from rayfn_service import call_environment, children
from rayfn_service.call_output import CallLog, captured
from rayfn_service.yielded import ValueSender, drain, drain_async

# TaskSpec.code: the pickled function itself, or (when large) a one-element list holding
# its ObjectRef.
Code = bytes | list[ray.ObjectRef[Any]]
# How an attempt ended, made into its AttemptOutcome once its seconds and output are known.
MakeOutcome = Callable[[float, str], AttemptOutcome]

# A worker keeps the functions it ran, so a deployment's code is fetched once per worker.
_CACHE_SIZE = 64
_functions: collections.OrderedDict[FunctionRef, Callable[..., Any]] = collections.OrderedDict()

# How long past its deadline an attempt may stay uninterrupted before the watchdog asks
# the registry to kill its worker.
STUCK_GRACE_SECONDS = 5.0


class AttemptTimeout(BaseException):
    """Raised inside the user's function when its attempt runs out of time.

    A BaseException, so ``except Exception`` in user code does not swallow it.
    """


def _on_alarm(signum: int, frame: object) -> None:
    raise AttemptTimeout()


@dataclasses.dataclass
class _Running:
    registry: RegistryAddress
    call_id: str
    attempt: int
    deadline: float
    log: CallLog | None = None
    writes_sent: int = 0  # the log's write count when it was last sent


class _Watchdog:
    """One thread per worker that reports attempts stuck past their deadline, and sends
    the registry what a running attempt printed so far (``call.logs()`` while it runs),
    about once a second and only when there is something new."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: _Running | None = None
        self._thread: threading.Thread | None = None

    def watch(self, running: _Running) -> None:
        with self._lock:
            self._current = running
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rayfn-watchdog",
                                                daemon=True)
                self._thread.start()

    def clear(self) -> None:
        with self._lock:
            self._current = None

    def _run(self) -> None:
        while True:
            time.sleep(1.0)
            with self._lock:
                current = self._current
                if current is None:
                    continue
                stuck = time.time() >= current.deadline + STUCK_GRACE_SECONDS
                if stuck:
                    self._current = None
            try:  # the registry may be restarting: it re-queues running calls on start
                if stuck:
                    _registry(current.registry).submit(RegistryApi.attempt_stuck,
                                                       current.call_id, current.attempt)
                else:
                    _send_output(current)
            except Exception:
                _registries.pop(current.registry, None)


def _send_output(running: _Running) -> None:
    log = running.log
    if log is None or log.writes == running.writes_sent:
        return
    running.writes_sent = log.writes
    _registry(running.registry).submit(RegistryApi.attempt_output, running.call_id,
                                       running.attempt, log.text())


_watchdog = _Watchdog()

# The registry, looked up once per worker (dropped after a failed report). A worker serves
# one Ray job, and a registry restart keeps its actor ID, so the handle stays valid for
# the worker's life. Reports are sent, never awaited: retry_seconds is not used.
_registries: dict[RegistryAddress, RegistryActor] = {}


def _registry(address: RegistryAddress) -> RegistryActor:
    actor = _registries.get(address)
    if actor is None:
        actor = _registries[address] = RegistryActor(address.namespace, retry_seconds=0.0,
                                                     name=address.name)
    return actor


def secret_fetcher(address: RegistryAddress) -> call_environment.SecretFetcher:
    """Asks the registry for secret values (waiting through a registry restart)."""
    def fetch(names: list[str]) -> dict[str, str]:
        actor = RegistryActor(address.namespace, retry_seconds=60.0, name=address.name)
        return actor.call(RegistryApi.secret_values, names)

    return fetch


def _report_start(registry: RegistryAddress, call_id: str, attempt: int) -> None:
    """Tell the registry which node runs this attempt (for ``rayfn status``); best effort."""
    try:
        _registry(registry).submit(RegistryApi.attempt_started, call_id, attempt,
                                   ray.get_runtime_context().get_node_id())
    except Exception:  # the registry may be restarting; the node is then shown as unknown
        _registries.pop(registry, None)


def _load(key: FunctionRef, code: Code, registry: RegistryAddress) -> Callable[..., Any]:
    fn = _functions.get(key)
    if fn is None:
        call_environment.prepare(secret_fetcher(registry))  # before the code imports
        fn = cloudpickle.loads(code if isinstance(code, bytes) else ray.get(code[0]))
        _functions[key] = fn
        if len(_functions) > _CACHE_SIZE:
            _functions.popitem(last=False)
    else:
        _functions.move_to_end(key)
    return fn


class _InvalidCall(Exception):
    """The arguments cannot be used at all: the call fails without retries."""

    def __init__(self, error: InvalidError | SerializationError) -> None:
        super().__init__(str(error))
        self.error = error


def _arguments(fn: Callable[..., Any], name: str, args: bytes) -> tuple[Any, Any]:
    try:
        positional, keywords = loads_args(args)
    except SerializationError as exc:
        raise _InvalidCall(exc) from None
    try:
        check_arguments(fn, name, positional, keywords)
    except InvalidError as exc:
        raise _InvalidCall(exc) from None
    return positional, keywords


def _ended(kind: OutcomeKind, error: ErrorInfo) -> MakeOutcome:
    return functools.partial(AttemptOutcome, kind, error=error)


def _run_with_deadline(
    fn: Callable[..., Any], name: str, args: bytes, timeout: float,
    sender: Callable[[], ValueSender],
) -> MakeOutcome:
    positional, keywords = _arguments(fn, name, args)
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        value = fn(*positional, **keywords)
        if inspect.iscoroutine(value):  # an async def function: awaited here, in time
            value = _run_coroutine(value, in_main_thread)
        elif inspect.isgenerator(value):  # remote_gen: each value sent as it comes
            value = drain(value, sender())
        elif inspect.isasyncgen(value):
            value = _run_coroutine(drain_async(value, sender()), in_main_thread)
    finally:
        if in_main_thread:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return functools.partial(AttemptOutcome, OutcomeKind.SUCCEEDED,
                             result=encode_result(value), result_json=encode_json(value))


def _run_coroutine(coro: Coroutine[Any, Any, Any], in_main_thread: bool) -> Any:
    """Run an async function's coroutine to its end, on an event loop of its own.

    At the deadline the alarm raises AttemptTimeout wherever the main thread is, as for
    plain code (so blocking code inside the coroutine is interrupted too), and it also
    cancels the coroutine: the loop logs and drops an exception raised in a callback.
    """
    loop = asyncio.new_event_loop()
    main = loop.create_task(coro)
    timed_out = False

    def on_alarm(signum: int, frame: object) -> None:
        nonlocal timed_out
        timed_out = True
        loop.call_soon_threadsafe(main.cancel)
        raise AttemptTimeout()

    if in_main_thread:
        signal.signal(signal.SIGALRM, on_alarm)
    try:
        value = loop.run_until_complete(main)
    except BaseException:
        if timed_out:  # whatever the interruption became on its way out of the loop
            raise AttemptTimeout() from None
        raise
    finally:
        if in_main_thread:
            signal.signal(signal.SIGALRM, _on_alarm)
        _close_loop(loop)
    if timed_out:  # the coroutine caught its cancellation and returned, too late
        raise AttemptTimeout()
    return value


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks the coroutine left, then close the loop, as ``asyncio.run`` does
    but without waiting for threads of the loop's executor: a thread the function left
    blocked must not hold the attempt past its end."""
    try:
        leftover = asyncio.all_tasks(loop)
        for task in leftover:
            task.cancel()
        if leftover:
            loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


def execute(task: TaskSpec, call: TaskCall, log: CallLog | None = None) -> MakeOutcome:
    """Run one attempt of one of the task's calls. ``log``: the attempt's output so far,
    sent to the registry while it runs."""
    started = time.time()
    registry, name, timeout = task.registry, task.function.name, task.timeout
    enter_cluster(registry.namespace)  # spawns from inside go to the same registry
    if task.report_node:  # a message per attempt: asked for on clusters of several nodes
        _report_start(registry, call.call_id, call.attempt)
    try:
        fn = _load(task.function, task.code, registry)
    except Exception as exc:
        return _ended(OutcomeKind.FAILED,
                      error_of(ExecutionError, f"cannot load function {name!r}: {exc!r}"))
    _watchdog.watch(_Running(registry, call.call_id, call.attempt, started + timeout, log))
    before = children.started()
    try:
        with calling(call.call_id):  # what it spawns are its children
            return _run_with_deadline(
                fn, name, call.args, timeout,
                lambda: ValueSender(_registry(registry), call.call_id, call.attempt))
    except _InvalidCall as invalid:
        return _ended(OutcomeKind.INVALID, error_of(type(invalid.error), str(invalid.error)))
    except AttemptTimeout:
        return _ended(OutcomeKind.TIMED_OUT, error_of(
            FunctionTimeoutError,
            f"{name} timed out after {timeout:g} s (attempt {call.attempt})",
        ))
    except (Exception, SystemExit) as exc:
        return _ended(OutcomeKind.FAILED, encode_exception(exc))
    finally:
        _watchdog.clear()
        children.end_new(before)
        flush_spawns()  # calls the function spawned are committed before it counts as done


def execute_batch(wire: TaskWire) -> list[OutcomeWire]:
    """The Ray task: a TaskSpec in, an AttemptOutcome per call out, as Ray carries them
    (``TaskWire``, ``OutcomeWire``: tuples, much cheaper for Ray than records)."""
    return [outcome.to_wire() for outcome in run_task(TaskSpec.from_wire(wire))]


def run_task(task: TaskSpec) -> list[AttemptOutcome]:
    """Run one or more calls of a function in turn, each with its own deadline, outcome,
    output and cleanup. The registry groups a short function's queued calls so that Ray's
    cost per task is shared by many calls; a call's time here tells it how many to group."""
    outcomes: list[AttemptOutcome] = []
    for call in task.calls:
        started = time.perf_counter()
        with captured() as output:
            ended = execute(task, call, output)
        outcomes.append(ended(time.perf_counter() - started, output.text()))
    return outcomes
