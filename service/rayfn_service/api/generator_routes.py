"""REST routes for generator calls (``remote_gen``) and for a call's children
(``get_call_graph``), under ``/v1``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from rayfn.protocol.ids import validate_call_id
from rayfn.protocol.names import validate_name
from rayfn.protocol.operations import RegistryApi
from rayfn.protocol.variants import MAX_CODE_CHARS, validate_target
from rayfn.schemas import (
    CallRootResponse,
    ChildrenResponse,
    GeneratorSpawnRequest,
    GeneratorSpawnResponse,
    ValuesResponse,
)
from rayfn_service.api.routes import MAX_WAIT_SECONDS, STORE_REFUSED, _errors, registry

router = APIRouter(prefix="/v1")

AppName = Annotated[str, Path(description="App name", max_length=200)]
FunctionName = Annotated[str, Path(description="Generator function name",
                                   max_length=80 + MAX_CODE_CHARS)]
CallId = Annotated[str, Path(description="Call ID, `fc-` and a 26-character ULID")]


@router.post(
    "/apps/{app}/functions/{function}/generator-calls/pickled",
    status_code=201,
    response_model=GeneratorSpawnResponse,
    responses=_errors(404, STORE_REFUSED),
    summary="Start one call of a generator function (pickled arguments, client-made ID)",
)
async def spawn_generator(
    request: Request, app: AppName, function: FunctionName, body: GeneratorSpawnRequest
) -> GeneratorSpawnResponse:
    validate_name("app", app)
    validate_target(function)
    call_id = await registry(request).call(RegistryApi.spawn_generator, app, function,
                                           validate_call_id(body.call_id), body.args)
    return GeneratorSpawnResponse(call_id=call_id)


@router.get(
    "/calls/{call_id}/values",
    response_model=ValuesResponse,
    responses=_errors(404),
    summary="The values a generator call yielded from `start` on; waits up to `wait` "
    "seconds for one",
)
async def generator_values(
    request: Request,
    call_id: CallId,
    start: Annotated[int, Query(ge=0, le=2**62)] = 0,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 0.0,
) -> ValuesResponse:
    page = await registry(request).call(RegistryApi.generator_values,
                                        validate_call_id(call_id), start, wait)
    return ValuesResponse(start=page.start, values=list(page.values), done=page.done)


@router.get(
    "/calls/{call_id}/children",
    response_model=ChildrenResponse,
    responses=_errors(404),
    summary="The calls this call's code spawned, oldest first",
)
async def children(request: Request, call_id: CallId) -> ChildrenResponse:
    calls = await registry(request).call(RegistryApi.children, validate_call_id(call_id))
    return ChildrenResponse(calls=calls)


@router.get(
    "/calls/{call_id}/root",
    response_model=CallRootResponse,
    responses=_errors(404),
    summary="The root of the call's graph: its topmost caller",
)
async def call_root(request: Request, call_id: CallId) -> CallRootResponse:
    root = await registry(request).call(RegistryApi.call_root, validate_call_id(call_id))
    return CallRootResponse(call_id=root)
