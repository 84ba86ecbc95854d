"""A container: a Ray actor that lives across calls and runs one function's inputs.

Classes run here (one instance per container: its ``@enter`` methods run once in
``start``, its ``@exit`` methods in ``stop``, its state lives between inputs), and so do
functions that take several inputs at once (``@concurrent``) or in lists
(``@batched``). The registry makes containers, sizes each pool and sends each input as
one ``run`` (a batch as one ``run`` of several calls); it never sends a container more
than ``max_inputs`` at once.

Inputs run on the actor's event loop when they are coroutines and in a thread each when
they are plain code. Each input keeps its own deadline, log and outcome. A thread cannot
be stopped from outside while it is in C code (``time.sleep`` included): a timeout or
cancel then takes effect when it returns to Python, and if it never does in time the
registry ends the whole container (its other inputs run again elsewhere, without using
an attempt).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import ctypes
import dataclasses
import inspect
import threading
import time
from collections.abc import Callable
from typing import Any

import cloudpickle
import ray

from rayfn.cls import instantiate, lifecycle_methods
from rayfn.exception import ExecutionError, FunctionTimeoutError, InvalidError
from rayfn.partial_function import Role
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
    OutcomeKind,
    OutcomeWire,
    RegistryAddress,
    TaskCall,
    TaskSpec,
    TaskWire,
)
from rayfn.runtime import calling, enter_cluster, flush_spawns, spawns_pending
from rayfn_service import call_environment
from rayfn_service.call_output import CallLog, captured_in_context
from rayfn_service.executor import secret_fetcher
from rayfn_service.yielded import ValueSender, drain, drain_async

__all__ = ["Container", "ContainerSpec", "InputCancelled"]

# Seconds an @exit method may take before the container is ended anyway (Modal's grace).
EXIT_GRACE_SECONDS = 30.0
# How long past its deadline (or its cancel) a thread may stay in code that cannot be
# interrupted before the container asks to be ended.
STUCK_GRACE_SECONDS = 5.0
# How often a running input's new output is sent to the registry (call.logs() live).
OUTPUT_INTERVAL_SECONDS = 1.0


class InputCancelled(BaseException):
    """Raised inside an input's thread when its call is cancelled (a BaseException, so
    ``except Exception`` in user code does not swallow it)."""


class InputTimeout(BaseException):
    """Raised inside an input's thread when its attempt runs out of time."""


@dataclasses.dataclass(frozen=True)
class ContainerSpec:
    """What a container is made with: the code, which variant, where to report."""

    code: bytes | list[ray.ObjectRef[Any]]
    label: str  # for errors and logs: "app.Model(size=1)"
    is_class: bool
    params: tuple[tuple[str, Any], ...]
    max_inputs: int
    batched: bool
    registry: RegistryAddress


@dataclasses.dataclass
class _Input:
    call_id: str
    attempt: int
    log: CallLog
    group: int  # calls in its input (several short calls run in turn)
    thread: int | None = None  # the thread running it, for plain code
    task: asyncio.Task[Any] | None = None  # the task running it, for coroutines
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    done: bool = False
    waiting: asyncio.Task[Any] | None = None  # the run waiting for a slot, until it starts
    cancelled: bool = False  # cancelled before its turn: it never starts
    sent_writes: int = 0


def _raise_in_thread(thread_id: int, exc_type: type[BaseException] | None) -> None:
    """Raise ``exc_type`` in another thread at its next Python instruction (None clears
    a pending one)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type) if exc_type else None)


class Container:
    """The actor (made with the function's resources by ``catalog``)."""

    def __init__(self, spec: ContainerSpec) -> None:
        self._spec = spec
        self._target: Any = None  # the instance (a class) or the function
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=spec.max_inputs, thread_name_prefix="rayfn-input")
        self._inputs: dict[str, _Input] = {}
        self._reporter: asyncio.Task[None] | None = None
        self._registry: RegistryActor | None = None
        self._methods: set[str] = set()
        self.healthy = True
        self._slots = asyncio.Semaphore(spec.max_inputs)  # inputs running at once

    # ---- lifecycle -----------------------------------------------------------------

    async def start(self) -> tuple[str, ErrorInfo | None]:
        """Load the code and run the class's ``@enter`` methods. Answers the node this
        container runs on and, when it cannot start, why (the container is then ended)."""
        node = ray.get_runtime_context().get_node_id()
        enter_cluster(self._spec.registry.namespace)
        try:
            await self._in_thread(call_environment.prepare,
                                  secret_fetcher(self._spec.registry))
            code = self._spec.code
            loaded = cloudpickle.loads(code if isinstance(code, bytes) else ray.get(code[0]))
        except Exception as exc:
            return node, error_of(ExecutionError,
                                  f"cannot load {self._spec.label}: {exc!r}")
        if not self._spec.is_class:
            self._target = loaded
            return node, None
        name = getattr(loaded, "__name__", self._spec.label)
        try:
            instance = await self._in_thread(instantiate, loaded, dict(self._spec.params))
        except Exception as exc:
            return node, self._start_error(f"{name}() raised", exc)
        for method in lifecycle_methods(loaded, Role.ENTER):
            try:
                await self._call(getattr(instance, method))
            except Exception as exc:
                return node, self._start_error(f"@enter method {name}.{method} raised", exc)
        self._target = instance
        self._methods = set(lifecycle_methods(loaded, Role.METHOD))
        return node, None

    def _start_error(self, what: str, exc: BaseException) -> ErrorInfo:
        cause = encode_exception(exc)
        return error_of(
            ExecutionError,
            f"a container of {self._spec.label} could not start: {what} "
            f"{type(exc).__name__}: {exc}\n{cause.traceback or ''}".rstrip(),
        )

    async def stop(self) -> list[str]:
        """Run the ``@exit`` methods (each within ``EXIT_GRACE_SECONDS``); answers the
        errors they raised, which end nothing."""
        problems: list[str] = []
        if self._spec.is_class and self._target is not None:
            for method in lifecycle_methods(type(self._target), Role.EXIT):
                try:
                    await asyncio.wait_for(self._call(getattr(self._target, method)),
                                           EXIT_GRACE_SECONDS)
                except BaseException as exc:  # noqa: BLE001 - reported, the stop goes on
                    problems.append(f"{method}: {exc!r}")
        flush_spawns(EXIT_GRACE_SECONDS)
        return problems

    async def interrupt(self, call_id: str) -> bool:
        """Stop one running input (its call was cancelled); False when it is not here."""
        running = self._inputs.get(call_id)
        if running is None:
            return False
        if running.group > 1 and running.task is None and running.thread is None:
            running.cancelled = True  # the other calls of its input still run
            return True
        if running.waiting is not None:  # sent ahead, not started: it never will
            running.waiting.cancel()
            return True
        if running.task is not None:
            running.task.cancel()
        self._raise_in(running, InputCancelled)
        return True

    # ---- inputs --------------------------------------------------------------------

    async def run(self, wire: TaskWire) -> tuple[list[OutcomeWire], bool]:
        """One input: one call, several short calls run in turn, or (batched) one list
        of calls. An outcome per call, and whether the container is still sound (False:
        a thread it could not stop is left)."""
        task = TaskSpec.from_wire(wire)
        self._ensure_reporter()
        inputs = [_Input(c.call_id, c.attempt, CallLog(), len(task.calls)) for c in task.calls]
        for item in inputs:
            self._inputs[item.call_id] = item
        try:
            ended = await self._in_turn(task, inputs)
        finally:
            for item in inputs:
                self._inputs.pop(item.call_id, None)
            if spawns_pending():  # what it spawned is committed before it ends
                await asyncio.get_running_loop().run_in_executor(None, flush_spawns)
        return [outcome.to_wire() for outcome in ended], self.healthy

    async def _in_turn(self, task: TaskSpec, inputs: list[_Input]) -> list[AttemptOutcome]:
        """Run once a slot is free. The registry sends a few inputs ahead of the free
        slots, so that the next one is here when one ends; they wait here, and a cancel
        while they wait ends them at once. Each call's time counts from its own start
        (the wait not counted: the registry sizes what it sends ahead by it)."""
        for item in inputs:
            item.waiting = asyncio.current_task()
        try:
            await self._slots.acquire()
        except asyncio.CancelledError:
            return [_cancelled(item)(0.0, "") for item in inputs]
        finally:
            for item in inputs:
                item.waiting = None
        try:
            if self._spec.batched:  # one invocation, one log for the whole batch
                started = time.perf_counter()
                with captured_in_context() as log, calling(inputs[0].call_id):
                    for item in inputs:
                        item.log = log
                    made = await self._run_batch(task, inputs)
                seconds = (time.perf_counter() - started) / len(made)
                return [m(seconds, log.text()) for m in made]
            return [await self._run_alone(task, call, item)
                    for call, item in zip(task.calls, inputs, strict=True)]
        finally:
            self._slots.release()

    async def _run_alone(self, task: TaskSpec, call: TaskCall, item: _Input) -> AttemptOutcome:
        """One call, with its own log and as the parent of what it spawns."""
        if item.cancelled:  # cancelled while the calls before it in this input ran
            return _cancelled(item)(0.0, "")
        started = time.perf_counter()
        with captured_in_context() as log, calling(call.call_id):
            item.log = log
            made = await self._run_one(task, call, item)
        return made(time.perf_counter() - started, log.text())

    async def _run_one(self, task: TaskSpec, call: TaskCall, item: _Input) -> _Made:
        try:
            fn, args, kwargs = self._resolve(task.function.name, call.args)
        except _Refused as refused:
            return _made(OutcomeKind.INVALID, refused.error)
        value, failed = await self._guarded(task, item, fn, args, kwargs)
        if failed is not None:
            return failed
        return _made(OutcomeKind.SUCCEEDED, None, result=encode_result(value),
                     result_json=encode_json(value))

    async def _run_batch(self, task: TaskSpec, inputs: list[_Input]) -> list[_Made]:
        """Call the function once with a list per parameter: element i from input i."""
        name = task.function.name
        rows: list[tuple[Any, ...]] = []
        fn: Callable[..., Any] | None = None
        for call in task.calls:
            try:
                fn, args, kwargs = self._resolve(name, call.args)
                rows.append(_positional(fn, args, kwargs))
            except _Refused as refused:  # one bad input fails its batch, as in Modal
                return [_made(OutcomeKind.INVALID, refused.error)] * len(task.calls)
        assert fn is not None
        columns = [list(column) for column in zip(*rows, strict=True)]
        values, failed = await self._guarded(task, inputs[0], fn, columns, {})
        if failed is not None:
            return [failed] * len(task.calls)  # an error fails every call of the batch
        if not isinstance(values, list) or len(values) != len(task.calls):
            got = f"{len(values)} values" if isinstance(values, list) \
                else f"a {type(values).__name__}"
            error = error_of(ExecutionError, f"@batched function {name} returned {got} for "
                             f"{len(task.calls)} inputs; it must return a list of one value "
                             "per input, in order")
            return [_made(OutcomeKind.FAILED, error)] * len(task.calls)
        return [_made(OutcomeKind.SUCCEEDED, None, result=encode_result(v),
                      result_json=encode_json(v)) for v in values]

    def _resolve(self, name: str, payload: bytes) -> tuple[Callable[..., Any], Any, Any]:
        """The callable an input names, and its arguments, checked."""
        try:
            args, kwargs = loads_args(payload)
        except Exception as exc:
            raise _Refused(error_of(type(exc) if isinstance(exc, InvalidError)
                                    else ExecutionError, str(exc))) from None
        fn = self._target
        if self._spec.is_class:
            if not args or not isinstance(args[0], str):
                raise _Refused(error_of(InvalidError, f"a call of class {name} names no "
                                        "method"))
            method, args = args[0], tuple(args[1:])
            if method not in self._methods:
                raise _Refused(error_of(InvalidError, f"{name}.{method} is not a @method() "
                                        "of the class"))
            fn = getattr(self._target, method)
            name = f"{name}.{method}"
        try:
            check_arguments(fn, name, args, kwargs)
        except InvalidError as exc:
            raise _Refused(error_of(InvalidError, str(exc))) from None
        return fn, args, kwargs

    async def _guarded(self, task: TaskSpec, item: _Input, fn: Callable[..., Any],
                       args: Any, kwargs: Any) -> tuple[Any, _Made | None]:
        """Run one invocation under the attempt's deadline: its value, or the outcome of
        its failure."""
        name, timeout = task.function.name, task.timeout
        try:
            if inspect.iscoroutinefunction(fn):
                item.task = asyncio.current_task()
                value = await asyncio.wait_for(fn(*args, **kwargs), timeout)
            elif inspect.isasyncgenfunction(fn):
                item.task = asyncio.current_task()
                value = await asyncio.wait_for(
                    self._drain_here(fn(*args, **kwargs), item), timeout)
            else:
                value = await self._in_input_thread(fn, args, kwargs, item, timeout)
        except (InputTimeout, asyncio.TimeoutError):
            return None, _made(OutcomeKind.TIMED_OUT, error_of(
                FunctionTimeoutError, f"{name} timed out after {timeout:g} s "
                f"(attempt {item.attempt})"))
        except (InputCancelled, asyncio.CancelledError):
            return None, _made(OutcomeKind.FAILED, error_of(
                ExecutionError, f"{item.call_id} was cancelled"))
        except (Exception, SystemExit) as exc:
            return None, _made(OutcomeKind.FAILED, encode_exception(exc))
        return value, None

    async def _in_input_thread(self, fn: Callable[..., Any], args: Any, kwargs: Any,
                               item: _Input, timeout: float) -> Any:
        """Plain code in a thread of its own; at the deadline it is interrupted, and if it
        does not stop within a grace the container asks to be ended."""
        future = asyncio.get_running_loop().run_in_executor(
            self._threads, contextvars.copy_context().run, self._thread_body,
            fn, args, kwargs, item)
        done, _ = await asyncio.wait([future], timeout=timeout)
        if not done:
            self._raise_in(item, InputTimeout)
            done, _ = await asyncio.wait([future], timeout=STUCK_GRACE_SECONDS)
            if not done:
                self.healthy = False  # a thread it cannot stop: the registry ends it
                raise InputTimeout()
        return future.result()

    async def _drain_here(self, values: Any, item: _Input) -> int:
        """An async generator on the actor's loop; the registry's answers to its values
        are awaited in a thread, which leaves the loop free."""
        sender = ValueSender(self._registry_actor(), item.call_id, item.attempt, None)
        loop = asyncio.get_running_loop()
        try:
            async for value in values:
                sender.send(value)
        except BaseException:
            await loop.run_in_executor(None, sender.finish_quietly)
            raise
        return int(await loop.run_in_executor(None, sender.finish))

    @staticmethod
    def _raise_in(item: _Input, exc_type: type[BaseException]) -> None:
        with item.lock:
            if item.thread is not None and not item.done:
                _raise_in_thread(item.thread, exc_type)

    def _thread_body(self, fn: Callable[..., Any], args: Any, kwargs: Any,
                     item: _Input) -> Any:
        with item.lock:
            item.thread = threading.get_ident()
        try:
            try:
                value = fn(*args, **kwargs)
                if inspect.isawaitable(value):  # a sync wrapper that returns a coroutine
                    value = asyncio.run(_awaited(value))
                elif inspect.isgenerator(value):  # remote_gen: each value sent as it comes
                    value = drain(value, self._sender(item))
                elif inspect.isasyncgen(value):
                    value = asyncio.run(drain_async(value, self._sender(item)))
                return value
            finally:
                with item.lock:
                    item.done = True
        finally:
            _raise_in_thread(threading.get_ident(), None)  # one raised just too late

    def _sender(self, item: _Input) -> ValueSender:
        return ValueSender(self._registry_actor(), item.call_id, item.attempt)

    async def _call(self, fn: Callable[..., Any]) -> Any:
        if inspect.iscoroutinefunction(fn):
            return await fn()
        return await self._in_thread(fn)

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        ctx = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self._threads, ctx.run, fn,
                                                                *args)

    # ---- live output -----------------------------------------------------------------

    def _ensure_reporter(self) -> None:
        if self._reporter is None or self._reporter.done():
            self._reporter = asyncio.get_running_loop().create_task(self._report_output())

    async def _report_output(self) -> None:
        """About once a second, send the registry what running inputs printed since."""
        while True:
            await asyncio.sleep(OUTPUT_INTERVAL_SECONDS)
            for item in list(self._inputs.values()):
                if item.log.writes == item.sent_writes:
                    continue
                item.sent_writes = item.log.writes
                try:
                    self._registry_actor().submit(RegistryApi.attempt_output, item.call_id,
                                                  item.attempt, item.log.text())
                except Exception:  # the registry may be restarting; the next try may work
                    self._registry = None

    def _registry_actor(self) -> RegistryActor:
        if self._registry is None:
            address = self._spec.registry
            self._registry = RegistryActor(address.namespace, retry_seconds=0.0,
                                           name=address.name)
        return self._registry


class _Refused(Exception):
    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(error.message)
        self.error = error


# An outcome waiting for its seconds and output: AttemptOutcome's other fields, bound.
@dataclasses.dataclass(frozen=True)
class _Made:
    kind: OutcomeKind
    keywords: dict[str, Any]

    def __call__(self, seconds: float, output: str) -> AttemptOutcome:
        return AttemptOutcome(self.kind, seconds, output, **self.keywords)


def _cancelled(item: _Input) -> _Made:
    return _made(OutcomeKind.FAILED, error_of(ExecutionError, f"{item.call_id} was cancelled"))


def _made(kind: OutcomeKind, error: ErrorInfo | None, **keywords: Any) -> _Made:
    if error is not None:
        keywords["error"] = error
    return _Made(kind, keywords)


async def _awaited(value: Any) -> Any:
    return await value


def _positional(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
                ) -> tuple[Any, ...]:
    """One input's arguments in parameter order (a batch is called with a list each)."""
    if not kwargs:
        return tuple(args)
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as exc:
        raise _Refused(error_of(InvalidError, f"wrong arguments: {exc}")) from None
    return tuple(bound.arguments.values())
