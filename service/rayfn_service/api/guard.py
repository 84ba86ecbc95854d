"""ASGI middleware in front of every route: bearer-token auth, then the body size limit.

Both answer before the body is read: a request without the right token gets 401 however
large its body, and a body over the limit gets 413 without being buffered.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

from rayfn.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Health for probes; the API's own description, so /docs opens in a browser.
OPEN_PATHS = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})


async def _reject(send: Send, status: int, kind: str, message: str,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": {"type": kind, "message": message}}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()), *(headers or [])],
    })
    await send({"type": "http.response.body", "body": body})


class TokenSource:
    """The token to expect: ``RAYFN_TOKEN``, else the state directory's token file, read
    again only when the file changes (a rotation), not on every request."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._seen: tuple[int, int, int] | None = None
        self._token = ""

    def __call__(self) -> str:
        if self._settings.token:
            return self._settings.token
        try:
            info = os.stat(self._settings.token_file)
        except FileNotFoundError:
            return ""
        seen = (info.st_ino, info.st_mtime_ns, info.st_size)
        if seen != self._seen:
            self._token = self._settings.read_token()
            self._seen = seen
        return self._token


class Guard:
    def __init__(self, app: ASGIApp, *, token: Callable[[], str], max_body_bytes: int) -> None:
        self.app = app
        self._token = token
        self._max = max_body_bytes

    def _authorized(self, scope: Scope) -> bool:
        expected = self._token()
        if not expected:
            return False  # no token configured: refuse rather than serve openly
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, given = value.decode("latin-1").partition(" ")
                return scheme.lower() == "bearer" and hmac.compare_digest(
                    given.strip().encode(), expected.encode()
                )
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if not self._authorized(scope):
            await _reject(send, 401, "AuthError", "missing or wrong bearer token",
                          [(b"www-authenticate", b"Bearer")])
            return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self._max:
            await _reject(send, 413, "InvalidError",
                          f"request body over the limit of {self._max} bytes")
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max:
                    # Raised while the route reads its body; FastAPI passes HTTPException
                    # through to the error handlers, which answer 413.
                    raise HTTPException(413, f"request body over the limit of {self._max} bytes")
            return message

        await self.app(scope, limited_receive, send)
