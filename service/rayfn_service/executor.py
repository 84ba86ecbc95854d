"""The Ray task that runs attempts of a user function: one, or several short ones in turn.

For each call it returns plain data the registry can read without the user's modules:
``("ok", result_bytes)``, ``("error", ErrorInfo)`` or ``("timeout", ErrorInfo)``. Every
user exception is caught here, so a Ray-level failure of this task means the worker
process or its node died.

Each attempt's timeout is kept here, from the moment the call really starts (a task may
wait in Ray's queue for resources first, and a call for the calls before it): SIGALRM
interrupts the function, even in ``time.sleep``. Code that does not return to Python (a
stuck C call) cannot be interrupted that way; a watchdog thread then asks the registry to
force-cancel the task.

Processes the function started and left running are ended when the attempt ends (see
``children.py``): the worker is reused for other calls and must not collect strays.
"""

from __future__ import annotations

import collections
import dataclasses
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import cloudpickle
import ray

from rayfn import _accepts
from rayfn._client import set_in_cluster_namespace
from rayfn._payload import (
    check_arguments,
    encode_exception,
    encode_json,
    encode_result,
    error_of,
    loads_args,
)
from rayfn.exception import (
    ExecutionError,
    FunctionTimeoutError,
    InvalidError,
    SerializationError,
)
from rayfn_service import children
from rayfn_service.call_output import CallLog, captured

FunctionKey = tuple[str, int, str]
Outcome = tuple[str, Any]
# The pickled function itself, or (when large) a one-element list holding its ObjectRef:
# a list, so Ray passes the ref as a handle instead of resolving it for every task.
Code = bytes | list[ray.ObjectRef[Any]]

# A worker keeps the functions it ran, so a deployment's code is fetched once per worker.
_CACHE_SIZE = 64
_functions: collections.OrderedDict[FunctionKey, Callable[..., Any]] = collections.OrderedDict()

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
    registry: tuple[str, str]
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
                    _registry(current.registry).attempt_stuck.remote(current.call_id,
                                                                     current.attempt)
                else:
                    _send_output(current)
            except Exception:
                _registries.pop(current.registry, None)


def _send_output(running: _Running) -> None:
    log = running.log
    if log is None or log.writes == running.writes_sent:
        return
    running.writes_sent = log.writes
    _registry(running.registry).attempt_output.remote(running.call_id, running.attempt,
                                                      log.text())


_watchdog = _Watchdog()

# The registry's handle, looked up once per worker. A worker serves one Ray job, and a
# registry restart keeps its actor ID, so the handle stays valid for the worker's life.
_registries: dict[tuple[str, str], Any] = {}


def _registry(address: tuple[str, str]) -> Any:
    handle = _registries.get(address)
    if handle is None:
        handle = _registries[address] = ray.get_actor(address[1], namespace=address[0])
    return handle


def _report_start(registry: tuple[str, str], call_id: str, attempt: int) -> None:
    """Tell the registry which node runs this attempt (for ``rayfn status``); best effort."""
    try:
        _registry(registry).attempt_started.remote(call_id, attempt,
                                                   ray.get_runtime_context().get_node_id())
    except Exception:  # the registry may be restarting; the node is then shown as unknown
        _registries.pop(registry, None)


def _load(key: FunctionKey, code: Code) -> Callable[..., Any]:
    fn = _functions.get(key)
    if fn is None:
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


def _run_with_deadline(
    fn: Callable[..., Any], name: str, args: bytes, timeout: float
) -> Outcome:
    positional, keywords = _arguments(fn, name, args)
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        value = fn(*positional, **keywords)
    finally:
        if in_main_thread:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return ("ok", (encode_result(value), encode_json(value)))


def execute(
    code: Code,
    key: FunctionKey,
    call_id: str,
    attempt: int,
    args: bytes,
    timeout: float,
    registry: tuple[str, str],
    report_node: bool = True,
    log: CallLog | None = None,
) -> Outcome:
    """Run one attempt. ``report_node``: tell the registry where it runs (a message per
    attempt, so the dispatcher asks only when the cluster has more than one node).
    ``log``: the attempt's output so far, sent to the registry while it runs."""
    started = time.time()
    set_in_cluster_namespace(registry[0])  # spawns from inside go to the same registry
    if report_node:
        _report_start(registry, call_id, attempt)
    try:
        fn = _load(key, code)
    except Exception as exc:
        return ("error", error_of(ExecutionError, f"cannot load function {key[2]!r}: {exc!r}"))
    _watchdog.watch(_Running(registry, call_id, attempt, started + timeout, log))
    before = children.started()
    try:
        return _run_with_deadline(fn, key[2], args, timeout)
    except _InvalidCall as invalid:
        return ("invalid", error_of(type(invalid.error), str(invalid.error)))
    except AttemptTimeout:
        return ("timeout", error_of(
            FunctionTimeoutError,
            f"{key[2]} timed out after {timeout:g} s (attempt {attempt})",
        ))
    except (Exception, SystemExit) as exc:
        return ("error", encode_exception(exc))
    finally:
        _watchdog.clear()
        children.end_new(before)
        _accepts.flush()  # calls the function spawned are committed before it counts as done


# One Ray task: the function, its timeout, where the registry is, whether to report the
# node, and the calls to run in turn, each as (call ID, attempt number, pickled arguments).
Call = tuple[str, int, bytes]
TaskArgs = tuple[Code, FunctionKey, float, tuple[str, str], bool, tuple[Call, ...]]
# Each call's outcome, with the seconds it took in this worker and what it printed.
TimedOutcome = tuple[str, Any, float, str]


def execute_batch(task: TaskArgs) -> list[TimedOutcome]:
    """Run one or more calls of a function in turn, each with its own deadline, outcome,
    output and cleanup. The registry groups a short function's queued calls so that Ray's
    cost per task is shared by many calls; a call's time here tells it how many to group.

    The arguments come as one tuple: Ray prepares each task argument on its own, and one
    argument instead of six makes a submit several times cheaper."""
    code, key, timeout, registry, report_node, calls = task
    outcomes: list[TimedOutcome] = []
    for call_id, attempt, args in calls:
        started = time.perf_counter()
        with captured() as output:
            kind, payload = execute(code, key, call_id, attempt, args, timeout, registry,
                                    report_node, output)
        outcomes.append((kind, payload, time.perf_counter() - started, output.text()))
    return outcomes
