"""The REST server's HTTP protocol: uvicorn's httptools protocol with deadlines on clients.

uvicorn alone waits forever for a request line and headers, for a body that stops
halfway, and for an idle connection once any byte has cancelled its keep-alive timer; it
also parses headers of any size. Here one timer per connection bounds each phase in which
the server waits on the client:

- head: from the connection (later: the request's first byte) until its headers end,
  ``server_header_timeout_seconds``; a line and headers over ``server_max_header_bytes``
  get 431 as soon as that many bytes arrived, before the app sees the request;
- body: each pause while the body arrives, ``server_body_timeout_seconds``;
- idle: between a response and the next request, ``server_keep_alive_seconds``.

While the app works on a request there is no deadline. A missed deadline closes the
connection. Phases only move ``_deadline``; the timer is re-armed when it fires early or
when a deadline comes before it, so a request usually costs no timer operation at all.
Past ``server_max_connections`` open connections, uvicorn's ``limit_concurrency``
answers 503 (see ``server_options``).
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from rayfn.settings import Settings

HEAD: Final = 0  # reading a request line and headers
BODY: Final = 1  # reading a request body
WAIT: Final = 2  # the app has the whole request; nothing is due from the client
IDLE: Final = 3  # between requests
REFUSED: Final = 4  # answered 431; dropping input until the client closes

# How long a refused client may still send before the socket closes: closing with unread
# input resets the connection, and the reset can destroy the 431 before it is read.
LINGER_SECONDS: Final = 2.0


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout = 10.0
    body_timeout = 30.0
    keep_alive = 5.0
    max_header_bytes = 64 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase: int = HEAD
        self._deadline = math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        # Bytes received since the last headers ended, outside bodies: at least the size
        # of the head being read, unless it began inside a read counted short (_short).
        self._head_bytes = 0
        self._uncounted = False  # part of the read being parsed is not in _head_bytes
        self._short = False

    # ---- the deadline ------------------------------------------------------------

    def _expect(self, phase: int, seconds: float) -> None:
        self._phase = phase
        self._deadline = deadline = self.loop.time() + seconds
        if deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_at(deadline, self._check)
            self._timer_at = deadline

    def _check(self) -> None:
        self._timer, self._timer_at = None, math.inf
        if self.transport.is_closing():
            return
        phase, now = self._phase, self.loop.time()
        if self._deadline > now:
            if self._deadline < math.inf:
                self._timer = self.loop.call_at(self._deadline, self._check)
                self._timer_at = self._deadline
            return
        if phase in (HEAD, BODY) and self.flow.read_paused:
            # The server stopped reading (a pipelined request waits, or the app has not
            # taken the body yet): the client is not the one stalling.
            self._expect(phase, self.header_timeout if phase == HEAD else self.body_timeout)
            return
        if phase in (HEAD, BODY):
            self.logger.info("%s: closed, the request's %s stalled", self._peer(),
                             "headers" if phase == HEAD else "body")
        self.transport.close()

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "client"

    # ---- phases, from uvicorn's protocol and parser callbacks ----------------------

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._expect(HEAD, self.header_timeout)  # also bounds a client that sends nothing

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        phase = self._phase
        if phase == REFUSED:
            return
        if phase == BODY:
            self._uncounted = True  # a request may begin after this body, in this read
        else:
            self._head_bytes += len(data)
            self._uncounted = False
        super().data_received(data)
        # Refuse before the rest of an oversized head is read and buffered by the parser.
        if self._phase == HEAD and self._head_bytes > self.max_header_bytes:
            self._refuse_head()

    def on_message_begin(self) -> None:
        if self._phase == REFUSED:
            return
        super().on_message_begin()
        self._short = self._uncounted
        if self._phase != HEAD:  # the first request's time runs from the connection
            self._expect(HEAD, self.header_timeout)

    def on_headers_complete(self) -> None:
        if self._phase == REFUSED:
            return
        if self._short or self._head_bytes > self.max_header_bytes:
            size = len(self.url)  # the exact size, only when the count cannot tell
            for name, value in self.headers:
                size += len(name) + len(value) + 4
            if size > self.max_header_bytes:
                self._refuse_head()
                return
        self._head_bytes = 0
        self._uncounted = True  # the rest of this read is not counted for the next head
        # A timer is armed (heads always have one); it will move to this later deadline.
        self._phase, self._deadline = BODY, self.loop.time() + self.body_timeout
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._phase != BODY:
            return  # refused: dropped
        self._deadline = self.loop.time() + self.body_timeout
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._phase == REFUSED:
            return
        super().on_message_complete()
        if self.cycle is not None and self.cycle.response_complete:
            self._expect(IDLE, self.keep_alive)  # answered before the body ended
        else:
            self._phase, self._deadline = WAIT, math.inf

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._phase == WAIT and self.cycle.response_complete \
                and not self.transport.is_closing():
            self._expect(IDLE, self.keep_alive)

    # ---- refusing ------------------------------------------------------------------

    def _refuse_head(self) -> None:
        if self.transport.is_closing():
            return  # uvicorn answered 400 already
        self._phase = REFUSED
        self.logger.info("%s: request headers over %d bytes refused", self._peer(),
                         self.max_header_bytes)
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # an earlier response is due first; no answer out of turn
            return
        message = f"the request line and headers exceed {self.max_header_bytes} bytes"
        body = json.dumps({"error": {"type": "InvalidError", "message": message}}).encode()
        head = [STATUS_LINE[431]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\n"
                    b"connection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the client reads the answer, then EOF
        self._expect(REFUSED, min(LINGER_SECONDS, self.header_timeout))


def protocol_for(settings: Settings) -> type[BoundedHttpToolsProtocol]:
    class Protocol(BoundedHttpToolsProtocol):
        header_timeout = settings.server_header_timeout_seconds
        body_timeout = settings.server_body_timeout_seconds
        keep_alive = settings.server_keep_alive_seconds
        max_header_bytes = settings.server_max_header_bytes

    return Protocol


def server_options(settings: Settings) -> dict[str, Any]:
    """Options of ``uvicorn.run``/``uvicorn.Config`` that put the settings' limits on clients."""
    return {
        "host": settings.server_host, "port": settings.server_port,
        "http": protocol_for(settings),
        "ws": "none",  # no route speaks WebSocket; an upgrade would escape these deadlines
        # uvicorn counts the asking connection too: +1 serves exactly max_connections.
        "limit_concurrency": settings.server_max_connections + 1,
        # Only a backstop (uvicorn wants whole seconds): the protocol closes idle
        # connections itself, after the exact setting.
        "timeout_keep_alive": math.ceil(settings.server_keep_alive_seconds),
    }
