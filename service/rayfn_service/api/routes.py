"""The REST routes, under ``/v1``. Errors are raised, never caught here (see errors.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Awaitable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from rayfn.exception import OutputExpiredError
from rayfn.protocol.ids import new_call_ids, validate_call_id
from rayfn.protocol.names import validate_name
from rayfn.protocol.operations import RegistryApi
from rayfn.protocol.payload import CallOutcome, dumps_args
from rayfn.protocol.records import CallQuery, DeployedFunction
from rayfn.protocol.variants import MAX_CODE_CHARS, validate_target
from rayfn.schemas import (
    AppList,
    AppSummary,
    BatchSpawnRequest,
    BatchSpawnResponse,
    CallList,
    CallLogs,
    CallStatus,
    DeployRequest,
    DeployResponse,
    ErrorDetail,
    ErrorResponse,
    FunctionInfo,
    FunctionSummary,
    OutcomeModel,
    OutcomesRequest,
    OutcomesResponse,
    PickledSpawnRequest,
    SpawnRequest,
    SpawnResponse,
    StopResponse,
    ValidationErrorResponse,
)
from rayfn.states import CallState
from rayfn_service.api.backend import RegistryGateway
from rayfn_service.views import outcome_of, status_of

PICKLE_MEDIA_TYPE = "application/x-python-pickle"
MAX_WAIT_SECONDS = 60.0
RETRY_AFTER = "1"
# Status of a call that ended without a value (failed, timed out, cancelled): neither
# success, nor "not found", nor a server fault.
ENDED_WITHOUT_VALUE = 424

router = APIRouter(prefix="/v1")

AppName = Annotated[str, Path(description="App name", max_length=200)]
FunctionName = Annotated[str, Path(
    description="Function name; calls of a class with parameters, or of options set with "
    "with_options, name its variant (`Model~...`, as the SDK makes it)",
    max_length=80 + MAX_CODE_CHARS)]
CallId = Annotated[str, Path(description="Call ID, `fc-` and a 26-character ULID")]
Wait = Annotated[
    float, Query(ge=0, le=MAX_WAIT_SECONDS, description="Seconds to wait for the call to end")
]
IdempotencyKey = Annotated[
    str | None,
    Header(max_length=200, description="Repeat a submit safely: the same key returns the "
           "same calls; the same key with a different body is refused with 409"),
]


# A write the store refused (disk full, read-only): nothing was accepted (StoreError).
STORE_REFUSED = 507
RETRY_AFTER_HEADER = {"Retry-After": {"description": "Seconds to wait before asking again",
                                      "schema": {"type": "integer"}}}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    responses: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse} for code in (400, 401, 413, 503, *codes)
    }
    responses[422] = {"model": ValidationErrorResponse}
    return responses


def registry(request: Request) -> RegistryGateway:
    gateway: RegistryGateway = request.app.state.registry
    return gateway


def _request_hash(app: str, function: str, body: object) -> str:
    canonical = json.dumps([app, function, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _spawn(
    request: Request,
    app: str,
    function: str,
    inputs: list[SpawnRequest],
    idempotency_key: str | None,
    body: object,
) -> list[str]:
    validate_name("app", app)
    validate_target(function)
    payloads = [dumps_args(tuple(i.args), i.kwargs) for i in inputs]
    ids = new_call_ids(len(payloads))
    idempotency = None
    if idempotency_key is not None:
        idempotency = (f"{app}/{function}/{idempotency_key}",
                       _request_hash(app, function, body))
    return await registry(request).spawn(
        app, function, list(zip(ids, payloads, strict=True)), idempotency
    )


@router.post(
    "/apps/{app}/functions/{function}/calls",
    status_code=202,
    response_model=SpawnResponse,
    responses={
        202: {"description": "Accepted; poll the call at `Location`",
              "headers": {"Location": {"description": "The call's status route",
                                       "required": True, "schema": {"type": "string"}},
                          **RETRY_AFTER_HEADER}},
        **_errors(404, 409, STORE_REFUSED),
    },
    summary="Spawn one call with JSON arguments",
)
async def spawn(
    request: Request,
    response: Response,
    app: AppName,
    function: FunctionName,
    body: SpawnRequest,
    idempotency_key: IdempotencyKey = None,
) -> SpawnResponse:
    (call_id,) = await _spawn(request, app, function, [body], idempotency_key,
                              body.model_dump(mode="json"))
    response.headers["Location"] = f"/v1/calls/{call_id}"
    response.headers["Retry-After"] = RETRY_AFTER
    return SpawnResponse(call_id=call_id)


@router.post(
    "/apps/{app}/functions/{function}/calls/batch",
    status_code=202,
    response_model=BatchSpawnResponse,
    responses=_errors(404, 409, STORE_REFUSED),
    summary="Spawn many calls in one request",
)
async def spawn_batch(
    request: Request,
    app: AppName,
    function: FunctionName,
    body: BatchSpawnRequest,
    idempotency_key: IdempotencyKey = None,
) -> BatchSpawnResponse:
    ids = await _spawn(request, app, function, body.inputs, idempotency_key,
                       body.model_dump(mode="json"))
    return BatchSpawnResponse(call_ids=ids)


@router.post(
    "/apps/{app}/functions/{function}/calls/pickled",
    status_code=202,
    response_model=BatchSpawnResponse,
    responses=_errors(404, STORE_REFUSED),
    summary="Spawn calls with pickled arguments and client-made IDs (the Python SDK)",
)
async def spawn_pickled(
    request: Request, app: AppName, function: FunctionName, body: PickledSpawnRequest
) -> BatchSpawnResponse:
    validate_name("app", app)
    validate_target(function)
    calls = [(validate_call_id(c.call_id), c.args) for c in body.calls]
    ids = await registry(request).spawn(app, function, calls, None)
    return BatchSpawnResponse(call_ids=ids)


@router.get(
    "/apps/{app}/functions/{function}",
    response_model=FunctionInfo,
    responses=_errors(404),
    summary="A deployed function",
)
async def function_info(request: Request, app: AppName, function: FunctionName) -> FunctionInfo:
    return await registry(request).call(RegistryApi.function_info, app, function)


@router.get("/apps", response_model=AppList, responses=_errors(),
            summary="Deployed apps, their functions and queue depths")
async def list_apps(request: Request) -> AppList:
    apps = await registry(request).call(RegistryApi.list_apps)
    stats = await registry(request).call(RegistryApi.stats)
    by_function = {(s.app, s.function): s for s in stats}
    summaries = []
    for a in apps:
        functions = []
        timed = {t.function: t for t in a.schedules}
        for name in a.functions:
            s = by_function.get((a.name, name))
            functions.append(FunctionSummary(
                name=name, queued=s.queued if s else 0, running=s.running if s else 0,
                retrying=s.retrying if s else 0, window=s.window if s else 0,
                nodes=s.nodes if s else {}, schedule=timed.get(name),
            ))
        summaries.append(AppSummary(name=a.name, version=a.version, ephemeral=a.ephemeral,
                                    updated_at=a.updated_at, functions=functions))
    return AppList(apps=summaries)


@router.post("/apps/{app}", status_code=201, response_model=DeployResponse,
             responses=_errors(STORE_REFUSED),
             summary="Deploy an app (pickled functions; the SDK uses it)")
async def deploy(request: Request, app: AppName, body: DeployRequest) -> DeployResponse:
    functions = [
        DeployedFunction(f.name, json.dumps(f.options), f.code, json.dumps(f.runtime_env))
        for f in body.functions
    ]
    result = await registry(request).call(RegistryApi.deploy, app, functions, body.ephemeral)
    return DeployResponse(app=app, version=result.version, web_urls=result.web_urls)


@router.delete("/apps/{app}", response_model=StopResponse,
               responses=_errors(404, STORE_REFUSED),
               summary="Stop an app; its unfinished calls are cancelled")
async def stop_app(request: Request, app: AppName) -> StopResponse:
    cancelled = await registry(request).call(RegistryApi.stop_app, app)
    return StopResponse(app=app, cancelled=cancelled)


@router.get("/calls", response_model=CallList, responses=_errors(),
            summary="Calls, newest first, with filters and cursor pagination")
async def list_calls(
    request: Request,
    app: Annotated[str | None, Query(max_length=200)] = None,
    function: Annotated[str | None, Query(max_length=200)] = None,
    state: CallState | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> CallList:
    query = CallQuery(app=app, function=function, state=state, limit=limit, before=cursor)
    calls = await registry(request).call(RegistryApi.list_calls, query)
    next_cursor = None
    if len(calls) == limit:
        # A full page is the last one when nothing older matches: no cursor to an empty page.
        older = await registry(request).call(
            RegistryApi.list_calls,
            dataclasses.replace(query, limit=1, before=calls[-1].call_id),
        )
        next_cursor = calls[-1].call_id if older else None
    return CallList(calls=calls, next_cursor=next_cursor)


@router.get("/calls/{call_id}", response_model=CallStatus,
            responses={200: {"description": "The call's status; `Retry-After` while it has "
                             "not ended", "headers": RETRY_AFTER_HEADER}, **_errors(404)},
            summary="A call's status; waits up to `wait` seconds for it to end")
async def call_status(
    request: Request, response: Response, call_id: CallId, wait: Wait = 0.0
) -> CallStatus:
    validate_call_id(call_id)
    finished = await registry(request).finished(call_id, status_only=True)
    if finished is not None:
        return status_of(finished, time.time())
    deadline = time.monotonic() + wait
    gateway = registry(request)
    while True:
        status = await gateway.call(RegistryApi.status, call_id)
        remaining = deadline - time.monotonic()
        if status.state.is_terminal() or remaining <= 0:
            break
        # The registry serves one wait chunk at a time; wait out the rest of `wait`.
        await gateway.wait_for(
            remaining, lambda seconds: gateway.call(RegistryApi.wait, call_id, seconds))
    if not status.state.is_terminal():
        response.headers["Retry-After"] = RETRY_AFTER
    return status


def _ended_without_value(outcome: CallOutcome) -> JSONResponse:
    error = outcome.error
    detail = ErrorDetail(
        type=error.type_name if error else "CancelledError",
        message=error.message if error else f"call {outcome.call_id} was cancelled",
        traceback=(error.traceback or None) if error else None,
        state=outcome.state,
    )
    return JSONResponse(ErrorResponse(error=detail).model_dump(mode="json", exclude_none=True),
                        status_code=ENDED_WITHOUT_VALUE)


@router.get(
    "/calls/{call_id}/result",
    summary="A call's return value",
    responses={
        200: {"description": "The return value as JSON (or pickled, when asked for with "
              f"`Accept: {PICKLE_MEDIA_TYPE}`)", "content": {"application/json": {},
                                                             PICKLE_MEDIA_TYPE: {}}},
        202: {"description": "Not finished yet; try again after Retry-After",
              "model": CallStatus, "headers": RETRY_AFTER_HEADER},
        404: {"description": "Unknown call, or its result expired (`error.expired`)",
              "model": ErrorResponse},
        406: {"description": "The value is not JSON; ask for it pickled",
              "model": ErrorResponse},
        ENDED_WITHOUT_VALUE: {"description": "The call failed, timed out or was cancelled; "
                              "`error` says how", "model": ErrorResponse},
        **_errors(),
    },
)
async def call_result(
    request: Request,
    call_id: CallId,
    wait: Wait = 0.0,
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    validate_call_id(call_id)
    deadline = time.monotonic() + wait
    gateway = registry(request)

    def get(seconds: float) -> Awaitable[CallOutcome]:
        return gateway.call(RegistryApi.get, call_id, seconds)

    finished = await gateway.finished(call_id)
    outcome = (
        outcome_of(finished, time.time())
        if finished is not None
        else await gateway.wait_for(wait, get)
    )
    while not outcome.state.is_terminal() and (remaining := deadline - time.monotonic()) > 0:
        outcome = await gateway.wait_for(remaining, get)
    if not outcome.state.is_terminal():
        status = await gateway.call(RegistryApi.status, call_id)
        return JSONResponse(status.model_dump(mode="json"), status_code=202,
                            headers={"Retry-After": RETRY_AFTER})
    if outcome.expired:
        raise OutputExpiredError(f"the result of {call_id} has expired and was deleted")
    if outcome.state is not CallState.SUCCEEDED:
        return _ended_without_value(outcome)
    if accept and PICKLE_MEDIA_TYPE in accept:
        return Response(outcome.result, media_type=PICKLE_MEDIA_TYPE)
    if outcome.result_json is None:
        return JSONResponse(
            ErrorResponse(error=ErrorDetail(
                type="InvalidError",
                message=f"the result of {call_id} is not JSON data; ask for it with "
                        f"'Accept: {PICKLE_MEDIA_TYPE}' and unpickle it",
            )).model_dump(mode="json", exclude_none=True),
            status_code=406,
        )
    return Response(outcome.result_json, media_type="application/json")


@router.get("/calls/{call_id}/logs", response_model=CallLogs, responses=_errors(404),
            summary="What a call's attempts printed to stdout and stderr")
async def call_logs(request: Request, call_id: CallId) -> CallLogs:
    validate_call_id(call_id)
    return await registry(request).call(RegistryApi.logs, call_id)


@router.post("/calls/{call_id}/cancel", response_model=CallStatus,
             responses=_errors(404, STORE_REFUSED),
             summary="Cancel a call: queued ones never run, running ones are stopped")
async def cancel(request: Request, call_id: CallId) -> CallStatus:
    validate_call_id(call_id)
    return await registry(request).call(RegistryApi.cancel, call_id)


@router.post("/calls/outcomes", response_model=OutcomesResponse, responses=_errors(404),
             summary="Outcomes of finished calls among many, pickled (the Python SDK)")
async def outcomes(request: Request, body: OutcomesRequest) -> OutcomesResponse:
    for call_id in body.call_ids:
        validate_call_id(call_id)
    deadline = time.monotonic() + body.wait
    gateway = registry(request)

    def get_many(seconds: float) -> Awaitable[list[CallOutcome]]:
        return gateway.call(RegistryApi.get_many, body.call_ids, seconds, body.include_pending)

    found = await gateway.wait_for(body.wait, get_many)
    while (not any(o.state.is_terminal() for o in found)
           and (remaining := deadline - time.monotonic()) > 0):
        found = await gateway.wait_for(remaining, get_many)
    return OutcomesResponse(outcomes=[OutcomeModel.of(o) for o in found])
