"""The records that cross the line between the SDK and the service, and between the
registry and its workers: named, frozen, and checked by mypy wherever they are built or
read.

Between the registry and its workers, the records of a task cross Ray as plain tuples
(``TaskSpec.wire``, ``AttemptOutcome.to_wire``): Ray serializes builtin types far faster.
Where a record is pickled anyway, the small ones pickle as their class and a tuple of
fields, several times cheaper than the default state dict.
"""

from __future__ import annotations

import dataclasses
import enum
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

from rayfn.protocol.payload import ErrorInfo
from rayfn.states import CallState

if TYPE_CHECKING:
    import ray

__all__ = [
    "AttemptOutcome",
    "CallQuery",
    "DeployResult",
    "DeployedFunction",
    "FunctionRef",
    "MetricsSnapshot",
    "OutcomeKind",
    "OutcomeWire",
    "RegistryAddress",
    "RegistryInfo",
    "TaskCall",
    "TaskSpec",
    "TaskWire",
    "ValuesPage",
]

T = TypeVar("T")


def _pickled_as_tuple(cls: type[T]) -> type[T]:
    """Give a frozen dataclass a ``__reduce__`` of (class, field values)."""
    fields = operator.attrgetter(*(f.name for f in dataclasses.fields(cls)))  # type: ignore[arg-type]

    def __reduce__(self: T) -> tuple[Callable[..., T], tuple[Any, ...]]:
        return cls, fields(self)

    cls.__reduce__ = __reduce__  # type: ignore[method-assign,assignment]
    return cls


@dataclasses.dataclass(frozen=True, slots=True)
class DeployedFunction:
    """One function of an app as it is deployed: what the registry stores and loads."""

    name: str
    options: str  # FunctionOptions as JSON
    code: bytes  # the cloudpickled function
    runtime_env: str  # JSON


@dataclasses.dataclass(frozen=True, slots=True)
class DeployResult:
    """A deploy's answer: the new version, and the URL of each web endpoint it serves."""

    version: int
    web_urls: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class CallQuery:
    """Which calls to list, newest first; ``before`` is the cursor (a call ID)."""

    app: str | None = None
    function: str | None = None
    state: CallState | None = None
    limit: int = 100
    before: str | None = None


@_pickled_as_tuple
@dataclasses.dataclass(frozen=True, slots=True)
class FunctionRef:
    """One version of one deployed function."""

    app: str
    version: int
    name: str


@_pickled_as_tuple
@dataclasses.dataclass(frozen=True, slots=True)
class RegistryAddress:
    """Where a worker reports to: the registry actor's namespace and name."""

    namespace: str
    name: str


@_pickled_as_tuple
@dataclasses.dataclass(frozen=True, slots=True)
class TaskCall:
    """One call a task runs: its ID, which attempt this is, its pickled arguments."""

    call_id: str
    attempt: int
    args: bytes


# TaskSpec and AttemptOutcome as Ray carries them: plain tuples. Ray passes a task's
# argument and its return value through its own serializer, which is much faster for
# builtin types: a record there made a trivial task about 15% slower (measured on Ray
# 2.60). Both ends convert at once, so the typed records are all code ever sees.
TaskCallWire = tuple[str, int, bytes]
TaskWire = tuple[Any, tuple[str, int, str], float, tuple[str, str], bool, tuple[TaskCallWire, ...]]
OutcomeWire = tuple[str, float, str, "bytes | None", "str | None", "ErrorInfo | None"]


@_pickled_as_tuple
@dataclasses.dataclass(frozen=True, slots=True)
class TaskSpec:
    """Everything one Ray task needs, as a single argument (Ray prepares each argument
    on its own: one instead of six makes a submit several times cheaper)."""

    # The pickled function, or (when large) a one-element list holding its ObjectRef: a
    # list, so Ray passes the ref as a handle instead of resolving it for every task.
    code: bytes | list[ray.ObjectRef[Any]]
    function: FunctionRef
    timeout: float  # seconds, per attempt, from its real start
    registry: RegistryAddress
    report_node: bool  # tell the registry where each attempt runs (clusters of >1 node)
    calls: tuple[TaskCall, ...]  # run in turn

    def to_wire(self) -> TaskWire:
        return TaskSpec.wire(self.code, self.function, self.timeout, self.registry,
                             self.report_node,
                             tuple((c.call_id, c.attempt, c.args) for c in self.calls))

    @staticmethod
    def wire(
        code: bytes | list[ray.ObjectRef[Any]], function: FunctionRef, timeout: float,
        registry: RegistryAddress, report_node: bool, calls: tuple[TaskCallWire, ...],
    ) -> TaskWire:
        """A task as Ray carries it, made straight from its parts: the dispatcher builds one
        per task, and making TaskCall records first only to take them apart would cost
        per call."""
        return (code, (function.app, function.version, function.name), timeout,
                (registry.namespace, registry.name), report_node, calls)

    @classmethod
    def from_wire(cls, wire: TaskWire) -> TaskSpec:
        code, function, timeout, registry, report_node, calls = wire
        return cls(code, FunctionRef(*function), timeout, RegistryAddress(*registry),
                   report_node, tuple(TaskCall(*call) for call in calls))


class OutcomeKind(enum.Enum):
    """How an attempt that ran to its end in the worker ended."""

    SUCCEEDED = "succeeded"  # returned a value
    FAILED = "failed"  # raised
    TIMED_OUT = "timed_out"  # interrupted at its deadline
    INVALID = "invalid"  # its arguments cannot be used at all: no retry can help


_KINDS = {kind.value: kind for kind in OutcomeKind}  # a dict lookup is cheaper than the call


@_pickled_as_tuple
@dataclasses.dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What the worker returns for one call: plain data the registry reads without the
    user's modules."""

    kind: OutcomeKind
    seconds: float  # the call's time in the worker
    output: str  # what it printed
    result: bytes | None = None  # SUCCEEDED: the value, pickled
    result_json: str | None = None  # SUCCEEDED: the value as JSON text, when it has one
    error: ErrorInfo | None = None  # every other kind

    def __post_init__(self) -> None:
        if (self.kind is OutcomeKind.SUCCEEDED) != (self.result is not None):
            raise ValueError("a succeeded attempt has a result and no other kind has one")
        if (self.kind is OutcomeKind.SUCCEEDED) == (self.error is not None):
            raise ValueError("every attempt that did not succeed carries its error")

    def to_wire(self) -> OutcomeWire:
        return (self.kind.value, self.seconds, self.output, self.result, self.result_json,
                self.error)

    @classmethod
    def from_wire(cls, wire: OutcomeWire) -> AttemptOutcome:
        kind, seconds, output, result, result_json, error = wire
        return cls(_KINDS[kind], seconds, output, result, result_json, error)


@dataclasses.dataclass(frozen=True, slots=True)
class ValuesPage:
    """Values a generator call yielded (pickled, from index ``start``), and whether the
    call has ended with no more to come (then ``get`` says how it ended)."""

    start: int
    values: tuple[bytes, ...]
    done: bool


@dataclasses.dataclass(frozen=True)
class MetricsSnapshot:
    """The registry's counters, rendered by the REST server's ``/metrics``."""

    outcomes: dict[tuple[str, str, str], int]  # (app, function, state) -> calls
    durations: dict[tuple[str, str], tuple[list[int], float]]  # bucket counts, total
    accepted: dict[tuple[str, str], int]


class RegistryInfo(TypedDict):
    """The registry's own account of itself (``ping``)."""

    started_at: float
    store: str  # where its store is (no secrets)
    pid: int
    node_id: str
    job_id: str  # of the process that made the actor
    store_problem: str | None  # why the store cannot be opened now
    waiting: int  # requests waiting for calls to end now
    pings: int  # this one included


@dataclasses.dataclass(frozen=True, slots=True)
class OutputLine:
    """One line a call of an app printed (``text`` ends with a newline)."""

    function: str
    call_id: str
    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class OutputPage:
    """Lines an app's calls printed since a cursor, and the cursor to ask from next."""

    lines: tuple[OutputLine, ...]
    cursor: int
