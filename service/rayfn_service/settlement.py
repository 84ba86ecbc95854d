"""What becomes of a call when one of its attempts ends: the settlement policy.

``settle(end, call, now)`` takes how the attempt ended (an :data:`AttemptEnd`), the call
as it stands (:class:`CallSoFar`) and the time, and answers what to do (a
:data:`Decision`). It is a pure function: no store, no Ray, no event loop. The dispatcher
carries its decisions out (store writes, retry timers, requeues, metrics).

- A returned value succeeds.
- A user error or a timeout (interrupted in the worker, or stuck and its worker killed)
  is retried per the function's ``Retries`` while ``attempts <= max_retries``.
- Arguments the function cannot take, and a function no node can run, fail at once.
- A cancelled call needs nothing: the cancel wrote its outcome.
- A dead worker: the calls of a task that carried several go back to the queue to run
  one to a task, their attempt not counted (a system retry); a task of one call was
  re-run by Ray (``max_retries``) until those retries ran out, and the call fails.
- The other calls of a task the registry stopped for one of them go back to the queue,
  their attempt not counted.
- A container that dies by itself: its calls go back to the queue, their attempt not
  counted, up to the system retries; a container that cannot start fails its calls.
"""

from __future__ import annotations

import dataclasses
from typing import TypeAlias

from rayfn.exception import ExecutionError, FunctionTimeoutError, ResourcesUnavailableError
from rayfn.options import Retries
from rayfn.protocol.payload import ErrorInfo, error_of
from rayfn.protocol.records import AttemptOutcome, FunctionRef, OutcomeKind
from rayfn.states import CallState

__all__ = [
    "AttemptEnd",
    "CallSoFar",
    "Cancelled",
    "ContainerDied",
    "Decision",
    "Fail",
    "Lost",
    "NotStarted",
    "Nothing",
    "Requeue",
    "Retry",
    "Returned",
    "Stranded",
    "Stuck",
    "Succeed",
    "Unrunnable",
    "attempt_log",
    "settle",
    "unrunnable_error",
]


@dataclasses.dataclass(frozen=True, slots=True)
class CallSoFar:
    """The call whose attempt ended: its function, options and attempts."""

    function: FunctionRef
    timeout: float  # seconds per attempt
    retries: Retries | None
    attempts: int  # attempts started so far, the one that ended included


# ---- how an attempt ended ----------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Returned:
    """The task returned, with this outcome for the call."""

    outcome: AttemptOutcome


@dataclasses.dataclass(frozen=True, slots=True)
class Cancelled:
    """The registry stopped it: the call was cancelled."""


@dataclasses.dataclass(frozen=True, slots=True)
class Stuck:
    """The registry stopped it: its worker reported it still running past its timeout
    (it did not return to Python to be interrupted), and the task was force-killed."""


@dataclasses.dataclass(frozen=True, slots=True)
class Unrunnable:
    """The registry stopped it (or never started it): no node can run it any more."""

    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Lost:
    """Its task failed because the worker process or its node died.

    ``shared``: the task carried other calls too (Ray does not re-run such a task).
    Otherwise Ray re-ran the task up to its ``max_retries`` and ``error`` is the last."""

    error: BaseException
    shared: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Stranded:
    """Its task was stopped for another call it carried (or cancelled in Ray): nothing
    this call did."""


@dataclasses.dataclass(frozen=True, slots=True)
class ContainerDied:
    """The container running it died (its process killed, its node lost) without the
    registry ending it: the ``times``-th time this call lost its container. It runs
    again, its attempt not counted, up to ``limit`` times (the system retries)."""

    error: BaseException
    times: int
    limit: int


@dataclasses.dataclass(frozen=True, slots=True)
class NotStarted:
    """No container of its function could start (an ``@enter`` raised, every time the
    system retries allowed): ``error`` says which and why."""

    error: ErrorInfo


AttemptEnd: TypeAlias = (Returned | Cancelled | Stuck | Unrunnable | Lost | Stranded
                         | ContainerDied | NotStarted)


# ---- what to do ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Succeed:
    """Store the value: the call succeeded."""

    result: bytes
    result_json: str | None
    logs: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Retry:
    """Mark the call retrying (adding ``logs``); its next attempt may start at
    ``ready_at``, on the clock ``now`` was read from."""

    ready_at: float
    logs: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Requeue:
    """Put the call back in the queue, its attempt not counted. ``alone``: its next
    task carries it only."""

    alone: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Fail:
    """End the call in ``state`` (FAILED or TIMED_OUT) with ``error``."""

    state: CallState
    error: ErrorInfo
    logs: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Nothing:
    """Nothing to do: the call's outcome is written already (a cancel writes its own)."""


Decision: TypeAlias = Succeed | Retry | Requeue | Fail | Nothing


def settle(end: AttemptEnd, call: CallSoFar, now: float) -> Decision:
    """What to do with ``call`` now that its latest attempt ended as ``end``."""
    name = call.function.name
    if isinstance(end, Returned):
        return _returned(end.outcome, call, now)
    if isinstance(end, Cancelled):
        return Nothing()
    if isinstance(end, Unrunnable):
        return Fail(CallState.FAILED, unrunnable_error(call.function, end.reason))
    if isinstance(end, Stuck):
        # What it printed is lost with its worker: there are no logs to keep.
        return _failed(call, CallState.TIMED_OUT, error_of(
            FunctionTimeoutError,
            f"{name} timed out after {call.timeout:g} s and did not stop; "
            f"its worker was killed (attempt {call.attempts})",
        ), None, now)
    if isinstance(end, Lost):
        if end.shared:  # only a call that kills its worker when run alone should fail
            return Requeue(alone=True)
        return _system_failure(f"{name} could not run", end.error)
    if isinstance(end, Stranded):
        return Requeue(alone=False)
    if isinstance(end, ContainerDied):
        if end.times <= end.limit:
            return Requeue(alone=False)
        return _system_failure(f"{name} lost its container {end.times} times", end.error)
    if isinstance(end, NotStarted):
        return Fail(CallState.FAILED, end.error)
    raise TypeError(f"not an AttemptEnd: {end!r}")


def _system_failure(what: str, error: BaseException) -> Fail:
    """A failure of Ray's, not of the call: its first line is enough."""
    lines = str(error).splitlines()
    return Fail(CallState.FAILED, error_of(
        ExecutionError, f"{what}: {type(error).__name__}: {lines[0] if lines else ''}"))


def _returned(outcome: AttemptOutcome, call: CallSoFar, now: float) -> Decision:
    logs = attempt_log(call.attempts, outcome.output)
    if outcome.kind is OutcomeKind.SUCCEEDED:
        assert outcome.result is not None  # AttemptOutcome checks it
        return Succeed(outcome.result, outcome.result_json, logs)
    error = outcome.error
    assert error is not None  # AttemptOutcome checks it
    if outcome.kind is OutcomeKind.INVALID:  # a retry cannot help
        return Fail(CallState.FAILED, error, logs)
    state = CallState.TIMED_OUT if outcome.kind is OutcomeKind.TIMED_OUT else CallState.FAILED
    return _failed(call, state, error, logs, now)


def _failed(
    call: CallSoFar, state: CallState, error: ErrorInfo, logs: str | None, now: float
) -> Retry | Fail:
    """A user error or timeout: retried while the call's retries allow."""
    retries = call.retries
    if retries is None or call.attempts > retries.max_retries:
        return Fail(state, error, logs)
    return Retry(ready_at=now + retries.delay(call.attempts), logs=logs)


def unrunnable_error(function: FunctionRef, reason: str) -> ErrorInfo:
    return error_of(ResourcesUnavailableError,
                    f"{function.app}.{function.name} can never run on this cluster: {reason}")


def attempt_log(attempt: int, output: str) -> str | None:
    """An attempt's output as it is added to its call's log: None when it printed nothing;
    a heading when it is a retry, so each attempt's lines can be told apart."""
    if not output:
        return None
    if not output.endswith("\n"):
        output += "\n"
    return output if attempt == 1 else f"--- attempt {attempt} ---\n{output}"
