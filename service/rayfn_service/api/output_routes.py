"""REST route for following what an app's calls print (``rayfn run`` over HTTP)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from rayfn.protocol.names import validate_name
from rayfn.protocol.operations import RegistryApi
from rayfn.schemas import AppOutputResponse, OutputLineModel
from rayfn_service.api.routes import MAX_WAIT_SECONDS, _errors, registry

router = APIRouter(prefix="/v1")


@router.get(
    "/apps/{app}/output",
    response_model=AppOutputResponse,
    responses=_errors(404),
    summary="Lines the app's calls printed from `cursor` on (0: all kept); waits up to "
    "`wait` seconds for one",
)
async def app_output(
    request: Request,
    app: Annotated[str, Path(description="App name", max_length=200)],
    cursor: Annotated[int, Query(ge=0, le=2**62)] = 0,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 0.0,
) -> AppOutputResponse:
    page = await registry(request).call(RegistryApi.app_output, validate_name("app", app),
                                        cursor, wait)
    return AppOutputResponse(
        lines=[OutputLineModel(function=line.function, call_id=line.call_id, text=line.text)
               for line in page.lines],
        cursor=page.cursor,
    )
