"""A short way for the two commonest requests: submit one call, read a finished result.

FastAPI's routing, parameter parsing and response classes cost several times the work of
these two requests themselves, and clients send them in loops. They are answered here,
in front of FastAPI, when they are plain; anything else goes on to the route, which
answers the same for the plain case too (the tests compare both):

- ``GET /v1/calls/{id}/result`` of a call that succeeded. Once a call has finished its
  row never changes, and the server reads it from the store on this node
  (the store's ``Reader``). A call not yet finished, a failure, an expired result, a query
  string or a malformed ID go to the route.
- ``POST /v1/apps/{app}/functions/{function}/calls`` with a small JSON body of ``args``
  and ``kwargs`` and no ``Idempotency-Key``. Anything the route would refuse before
  calling the registry (a bad name, a body of another shape) goes to the route, with the
  body replayed; the registry's own refusals are answered here as the route answers them.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from rayfn.exception import Error, InvalidError
from rayfn.protocol.ids import new_call_ids, validate_call_id
from rayfn.protocol.names import validate_name
from rayfn.protocol.payload import dumps_args
from rayfn.schemas import json_depth
from rayfn.settings import get_settings
from rayfn.states import CallState
from rayfn_service.api.backend import RegistryGateway
from rayfn_service.api.errors import error_body, status_for
from rayfn_service.api.guard import ASGIApp, Message, Receive, Scope, Send
from rayfn_service.api.routes import PICKLE_MEDIA_TYPE, RETRY_AFTER
from rayfn_service.views import outcome_of

_RESULT_PATH = re.compile(r"/v1/calls/([^/]+)/result")
_SPAWN_PATH = re.compile(r"/v1/apps/([^/]+)/functions/([^/]+)/calls")
_PICKLE = PICKLE_MEDIA_TYPE.encode()
# Bodies up to this size are read here; larger ones go to the route unread.
_SMALL_BODY = 64 * 1024


class Shortcuts:
    def __init__(self, app: ASGIApp, backend: RegistryGateway) -> None:
        self.app = app
        self._backend = backend

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["query_string"]:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "GET" and (match := _RESULT_PATH.fullmatch(scope["path"])):
            answer = await self._finished_result(match.group(1), scope)
            if answer is not None:
                await _respond(send, 200, *answer)
                return
        elif scope["method"] == "POST" and (match := _SPAWN_PATH.fullmatch(scope["path"])):
            headers = dict(scope["headers"])
            length = headers.get(b"content-length", b"")
            if (headers.get(b"content-type") == b"application/json"
                    and b"idempotency-key" not in headers
                    and length.isdigit() and int(length) <= _SMALL_BODY):
                body = await _read_body(receive)
                if await self._spawn(match.group(1), match.group(2), body, send):
                    return
                receive = _replay(body, receive)
        await self.app(scope, receive, send)

    async def _spawn(self, app: str, function: str, body: bytes, send: Send) -> bool:
        """Submit one call; False when the route should answer instead."""
        try:
            validate_name("app", app)
            validate_name("function", function)
            request = json.loads(body)
            args, kwargs = _plain_arguments(request)
            payload = dumps_args(tuple(args), kwargs)
        except (ValueError, RecursionError, Error):  # the route gives the detailed refusal
            return False
        (call_id,) = new_call_ids(1)
        try:
            await self._backend.spawn(app, function, [(call_id, payload)], None)
        except Error as exc:
            await _respond(send, status_for(exc), _json(error_body(exc)), b"application/json")
            return True
        await _respond(send, 202, _json({"call_id": call_id}), b"application/json",
                       [(b"location", f"/v1/calls/{call_id}".encode()),
                        (b"retry-after", RETRY_AFTER.encode())])
        return True

    async def _finished_result(self, call_id: str, scope: Scope) -> tuple[bytes, bytes] | None:
        """The body and media type of a call that succeeded; None for anything else."""
        try:
            validate_call_id(call_id)
        except InvalidError:
            return None
        record = await self._backend.finished(call_id)
        if record is None:
            return None
        outcome = outcome_of(record, time.time())
        if outcome.expired or outcome.state is not CallState.SUCCEEDED:
            return None
        accept = next((v for k, v in scope["headers"] if k == b"accept"), b"")
        if _PICKLE in accept and outcome.result is not None:
            return outcome.result, _PICKLE
        if outcome.result_json is None:
            return None
        return outcome.result_json.encode(), b"application/json"


def _plain_arguments(request: Any) -> tuple[list[Any], dict[str, Any]]:
    """``args`` and ``kwargs`` of a body shaped as the route expects; ValueError else."""
    if not isinstance(request, dict) or not set(request) <= {"args", "kwargs"}:
        raise ValueError("not a plain spawn request")
    args = request.get("args", [])
    kwargs = request.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError("not a plain spawn request")
    json_depth(request, get_settings().max_json_depth + 1)  # the body is one level more
    return args, kwargs


def _json(content: Any) -> bytes:
    """JSON as FastAPI's JSONResponse renders it."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None,
                      separators=(",", ":")).encode("utf-8")


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away; the route sees the same
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the route the body already read, then the client's events."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _respond(send: Send, status: int, body: bytes, media_type: bytes,
                   headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-length", str(len(body)).encode()), (b"content-type", media_type),
        *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
