"""The one place rayfn's exceptions become HTTP statuses (the HTTP client maps them back).

Routes raise rayfn errors and never catch them for this; these handlers answer with an
``ErrorResponse`` body whose ``type`` names the exception class.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rayfn import exception
from rayfn.schemas import (
    ErrorDetail,
    ErrorResponse,
    ValidationErrorResponse,
    ValidationIssue,
)

# Status for each rayfn error; the most specific class wins (checked in MRO order).
STATUS: dict[type[exception.Error], int] = {
    exception.InvalidError: 400,
    exception.SerializationError: 400,
    exception.AuthError: 401,
    exception.NotFoundError: 404,
    exception.OutputExpiredError: 404,
    exception.ConflictError: 409,
    exception.DeploymentError: 409,
    exception.StoreError: 507,
    exception.ConnectionError: 503,
    exception.ExecutionError: 500,
    exception.RemoteError: 500,
    exception.CancelledError: 409,
    exception.TimeoutError: 504,
}


def status_for(exc: exception.Error) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_body(exc: exception.Error) -> dict[str, object]:
    detail = ErrorDetail(
        type=type(exc).__name__,
        message=str(exc),
        expired=isinstance(exc, exception.OutputExpiredError),
    )
    return ErrorResponse(error=detail).model_dump(mode="json", exclude_none=True)


async def _rayfn_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, exception.Error)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, exception.AuthError) else None
    return JSONResponse(error_body(exc), status_code=status_for(exc), headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    body = ValidationErrorResponse(
        error=ErrorDetail(type="InvalidError", message="invalid request"),
        detail=[
            ValidationIssue(loc=list(e.get("loc", ())), msg=str(e.get("msg", "")),
                            type=str(e.get("type", "")))
            for e in exc.errors()
        ],
    )
    return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = {401: "AuthError", 404: "NotFoundError", 405: "InvalidError"}.get(
        exc.status_code, "InvalidError"
    )
    body = ErrorResponse(error=ErrorDetail(type=kind, message=str(exc.detail)))
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(exception.Error, _rayfn_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
