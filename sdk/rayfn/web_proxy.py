"""``@rayfn.web_server(port)``: the function starts a server; HTTP reaches it through here.

The endpoint (under ``rayfn serve`` or a Ray Serve replica) calls the function, which
starts a server in this process (a thread) or a child of it (a subprocess) listening on
``port``; once the port accepts connections, an ASGI app forwards each request to it over
loopback, streaming both bodies. When the endpoint shuts down (its lifespan ends), the
processes the function started are stopped, so a reload or a redeploy finds the port free.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from rayfn.exception import ExecutionError

__all__ = ["ServerProxy", "start_web_server", "wait_for_port"]

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
# Headers that describe one connection, not the message: never forwarded (RFC 9110 7.6.1).
_HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"transfer-encoding", b"upgrade", b"host",
})


def wait_for_port(port: int, timeout: float, name: str) -> None:
    """Return once ``port`` on loopback accepts connections; ExecutionError after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise ExecutionError(
                    f"web endpoint {name!r}: nothing accepted connections on port {port} "
                    f"within {timeout:g} s (startup_timeout) of starting its server"
                ) from None
            time.sleep(0.05)


def _children() -> set[int]:
    """PIDs of this process's children (empty where /proc cannot tell)."""
    try:
        import psutil

        return {child.pid for child in psutil.Process().children(recursive=True)}
    except Exception:  # no psutil: the children outlive the endpoint
        return set()


def _stop_processes(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)


def start_web_server(factory: Callable[[], Any], port: int, timeout: float,
                     name: str) -> ServerProxy:
    """Call the ``@web_server`` function, wait for its port, and proxy to it."""
    before = _children()
    factory()
    started = _children() - before
    try:
        wait_for_port(port, timeout, name)
    except BaseException:
        _stop_processes(started)
        raise
    return ServerProxy(port, on_shutdown=lambda: _stop_processes(started))


class ServerProxy:
    """An ASGI app that forwards HTTP requests to ``127.0.0.1:port``, streaming."""

    def __init__(self, port: int, on_shutdown: Callable[[], None] | None = None) -> None:
        self.port = port
        self._on_shutdown = on_shutdown
        self._client: Any = None  # an httpx.AsyncClient, made in the serving event loop

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._forward(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1011,
                        "reason": "rayfn's web_server proxy does not forward websockets"})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._on_shutdown is not None:
            self._on_shutdown()
            self._on_shutdown = None

    def _http(self) -> Any:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(
                base_url=f"http://{LOOPBACK}:{self.port}", follow_redirects=False,
                timeout=httpx.Timeout(None, connect=10.0), trust_env=False,
            )
        return self._client

    async def _forward(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        import httpx

        async def body() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return

        path = _route_path(scope)
        query = scope.get("query_string", b"")
        url = path + ("?" + query.decode("latin-1") if query else "")
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() not in _HOP_BY_HOP]
        client = self._http()
        request = client.build_request(scope["method"], url, headers=headers, content=body())
        try:
            response = await client.send(request, stream=True)
        except httpx.TransportError as exc:
            await _plain(send, 502, f"the web server on port {self.port} did not answer: {exc}")
            return
        try:
            await send({
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [(k, v) for k, v in response.headers.raw
                            if k.lower() not in _HOP_BY_HOP],
            })
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()


def _route_path(scope: dict[str, Any]) -> str:
    """The request's path below where the endpoint is mounted (Serve's route prefix, a
    path of ``rayfn serve``), as the server behind expects it."""
    path = str(scope.get("path") or "/")
    root = str(scope.get("root_path") or "")
    if root and path.startswith(root):
        path = path[len(root):]
    return path if path.startswith("/") else "/" + path


async def _plain(send: Any, status: int, text: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": (text + "\n").encode()})
