"""Data rayfn returns about calls, apps and functions; one definition for SDK, CLI and REST."""

from __future__ import annotations

import base64
import binascii
import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
)

from rayfn.protocol.payload import CallOutcome, ErrorInfo
from rayfn.settings import get_settings
from rayfn.states import CallState

__all__ = ["CallStatus", "CallLogs", "AppInfo", "FunctionInfo", "FunctionStats", "ScheduleInfo"]


def json_depth(value: object, limit: int) -> int:
    """How deeply lists and objects nest in ``value`` (a scalar is 0), counted without
    recursion; stops with ValueError once past ``limit``."""
    depth = 0
    level: list[object] = [value]
    while level:
        containers = [v for v in level if isinstance(v, (list, dict))]
        if not containers:
            break
        depth += 1
        if depth > limit:
            raise ValueError(f"JSON nested more than {limit} lists or objects deep "
                             "(RAYFN_MAX_JSON_DEPTH)")
        level = [item for c in containers
                 for item in (c.values() if isinstance(c, dict) else c)]
    return depth


def _shallow(value: Any) -> Any:
    """JSON given to rayfn (arguments, options) nests boundedly, so nothing that renders,
    hashes or pickles it can run out of stack."""
    json_depth(value, get_settings().max_json_depth)
    return value


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc).isoformat()


class CallStatus(BaseModel):
    """Where a call is: its state, attempts made, timestamps (Unix seconds) and error."""

    model_config = ConfigDict(frozen=True)

    call_id: str
    app: str
    function: str
    version: int
    state: CallState
    attempts: int
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    expires_at: float | None = None
    expired: bool = False
    error_type: str | None = None
    error_message: str | None = None
    error_traceback: str | None = None

    def describe(self) -> dict[str, Any]:
        """A flat, human-readable view (ISO timestamps) for printing."""
        data = self.model_dump(mode="json")
        for key in ("created_at", "started_at", "finished_at", "expires_at"):
            data[key] = _iso(getattr(self, key))
        return data


class ScheduleInfo(BaseModel):
    """A scheduled function's schedule and its times (Unix seconds): the next one, the
    latest fired, and how many were skipped (missed while the registry was down)."""

    model_config = ConfigDict(frozen=True)

    function: str
    schedule: str  # as written, e.g. "Period(seconds=60)" or "Cron('0 * * * *', ...)"
    next_fire: float
    last_fire: float | None = None
    skipped: int = 0


class FunctionInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    app: str
    name: str
    version: int
    options: dict[str, Any]
    schedule: ScheduleInfo | None = None


class CallLogs(BaseModel):
    """What a call's attempts printed to stdout and stderr, in order, each attempt after
    the first under a ``--- attempt N ---`` line. A running attempt's output shows about
    a second after it is printed; an ended attempt's is kept with the call's result (and
    deleted with it), except when its worker was killed. Each attempt keeps its last
    64 KiB."""

    model_config = ConfigDict(frozen=True)

    call_id: str
    state: CallState
    logs: str


class AppInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    version: int
    state: str
    ephemeral: bool
    updated_at: float
    functions: list[str]
    schedules: list[ScheduleInfo] = Field(default_factory=list)


class FunctionStats(BaseModel):
    """A function's queue: calls waiting, in Ray, retrying, and its window (the most Ray
    tasks it has at once; a task may carry several short calls).

    ``nodes`` counts the attempts running on each Ray node (by node ID); ``in_ray`` minus
    their sum are waiting in Ray for resources, the demand the autoscaler sees."""

    model_config = ConfigDict(frozen=True)

    app: str
    function: str
    queued: int
    running: int
    retrying: int
    in_ray: int
    window: int
    nodes: dict[str, int] = Field(default_factory=dict)


# ---- REST bodies: the server's request/response models and the HTTP client's ------------


def _from_base64(value: object) -> bytes:
    """Bytes from JSON (base64 text); raw bytes pass through, as built in Python."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not valid base64") from None
    raise ValueError("expected base64 text")


Base64Bytes = Annotated[
    bytes,
    PlainValidator(_from_base64),
    PlainSerializer(lambda b: base64.b64encode(b).decode("ascii"), return_type=str,
                    when_used="json"),
    WithJsonSchema({"type": "string", "format": "byte", "contentEncoding": "base64"}),
]

MAX_BATCH = 10_000


class ErrorDetail(BaseModel):
    type: str
    """The rayfn exception class (``NotFoundError``, ...) or the user's exception type."""
    message: str
    traceback: str | None = None
    state: CallState | None = None
    """For a call that ended without a value: how it ended."""
    expired: bool = False


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ValidationIssue(BaseModel):
    loc: list[str | int]
    """Where: ``["body", "args"]``, ``["query", "wait"]``, ..."""
    msg: str
    type: str


class ValidationErrorResponse(ErrorResponse):
    """A request that does not match this API's schema (422): ``detail`` says where."""

    detail: list[ValidationIssue]


class SpawnRequest(BaseModel):
    """One call's arguments, as JSON."""

    model_config = ConfigDict(extra="forbid")

    args: Annotated[list[Any], AfterValidator(_shallow)] = Field(default_factory=list)
    kwargs: Annotated[dict[str, Any], AfterValidator(_shallow)] = Field(default_factory=dict)


class SpawnResponse(BaseModel):
    call_id: str


class BatchSpawnRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[SpawnRequest] = Field(min_length=1, max_length=MAX_BATCH)


class BatchSpawnResponse(BaseModel):
    call_ids: list[str]


class CallList(BaseModel):
    calls: list[CallStatus]
    next_cursor: str | None = None
    """Pass as ``cursor`` for the next (older) page; absent on the last page."""


class FunctionSummary(BaseModel):
    name: str
    queued: int
    running: int
    retrying: int
    window: int
    nodes: dict[str, int] = Field(default_factory=dict)  # running attempts per Ray node ID
    schedule: ScheduleInfo | None = None


class AppSummary(BaseModel):
    name: str
    version: int
    ephemeral: bool
    updated_at: float
    functions: list[FunctionSummary]


class AppList(BaseModel):
    apps: list[AppSummary]


class DeployFunction(BaseModel):
    """A function as the SDK deploys it: options, cloudpickled code, runtime env."""

    name: str
    options: Annotated[dict[str, Any], AfterValidator(_shallow)]
    code: Base64Bytes
    runtime_env: Annotated[dict[str, Any], AfterValidator(_shallow)] = Field(
        default_factory=dict)


class DeployRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    functions: list[DeployFunction] = Field(min_length=1)
    ephemeral: bool = False


class DeployResponse(BaseModel):
    app: str
    version: int
    web_urls: dict[str, str] = Field(default_factory=dict)
    """The URL of each web endpoint the deploy serves on Ray Serve, by function name."""


class StopResponse(BaseModel):
    app: str
    cancelled: int


class PickledCall(BaseModel):
    call_id: str
    args: Base64Bytes


class PickledSpawnRequest(BaseModel):
    """The SDK's spawn over HTTP: any Python arguments, pickled, with client-made IDs."""

    model_config = ConfigDict(extra="forbid")

    calls: list[PickledCall] = Field(min_length=1, max_length=MAX_BATCH)


class ErrorPayload(BaseModel):
    type_name: str
    message: str
    traceback: str
    exception: Base64Bytes | None = None


class OutcomeModel(BaseModel):
    call_id: str
    state: CallState
    expired: bool = False
    result: Base64Bytes | None = None
    error: ErrorPayload | None = None


    @classmethod
    def of(cls, outcome: CallOutcome) -> OutcomeModel:
        error = outcome.error
        return cls(
            call_id=outcome.call_id,
            state=outcome.state,
            expired=outcome.expired,
            result=outcome.result,
            error=ErrorPayload(type_name=error.type_name, message=error.message,
                               traceback=error.traceback, exception=error.exception)
            if error else None,
        )

    def to_outcome(self) -> CallOutcome:
        error = self.error
        return CallOutcome(
            call_id=self.call_id,
            state=self.state,
            expired=self.expired,
            result=self.result,
            error=ErrorInfo(type_name=error.type_name, message=error.message,
                            traceback=error.traceback, exception=error.exception)
            if error else None,
        )

class OutcomesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    call_ids: list[str] = Field(min_length=1, max_length=MAX_BATCH)
    wait: float = Field(default=0.0, ge=0.0, le=60.0)
    include_pending: bool = False
    """Also list unfinished calls (state only); otherwise only finished ones."""


class OutcomesResponse(BaseModel):
    outcomes: list[OutcomeModel]


class Health(BaseModel):
    status: str
    registry: bool
    server: str | None = None
    """Only with ``?challenge=``: an HMAC of the challenge under the key in the state
    directory (0600), so a launcher can tell its own server from another process."""


class GeneratorSpawnRequest(BaseModel):
    """The SDK's ``remote_gen`` over HTTP: one call of a generator function."""

    model_config = ConfigDict(extra="forbid")

    call_id: str
    args: Base64Bytes


class GeneratorSpawnResponse(BaseModel):
    call_id: str


class ValuesResponse(BaseModel):
    """Values a generator call yielded from ``start`` on (pickled), and whether it has
    ended with no more to come."""

    start: int
    values: list[Base64Bytes]
    done: bool


class ChildrenResponse(BaseModel):
    """The calls a call's code spawned, oldest first."""

    calls: list[CallStatus]


class CallRootResponse(BaseModel):
    """The root of a call's graph: the call, its topmost calling call, or the web request
    whose handler spawned it (an ID that names no call)."""

    call_id: str


class OutputLineModel(BaseModel):
    """One line a call of an app printed."""

    function: str
    call_id: str
    text: str


class AppOutputResponse(BaseModel):
    """Lines an app's calls printed since ``cursor`` was asked for, and the cursor to ask
    from next."""

    lines: list[OutputLineModel]
    cursor: int
