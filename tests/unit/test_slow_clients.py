"""The REST server's limits on clients, over real loopback sockets against real uvicorn.

Clients that stall in a request's head or body, or sit idle, are closed; oversized heads
get 431 before the app (and its token check) sees them; connections past the limit get
503. Timeouts are small here; the bounds asserted are ten times them, never exact.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from rayfn.settings import Settings
from rayfn_service.api.app import create_app
from rayfn_service.api.connections import server_options

TIMEOUT = 0.3  # every client timeout of the servers below, unless a test says otherwise
BOUND = 10 * TIMEOUT  # under uvicorn's own 5 s keep-alive, so the old server fails
TOKEN = "slow-clients-token"


async def echo(scope: dict[str, Any], receive: Callable[..., Any],
               send: Callable[..., Any]) -> None:
    """A tiny app: answers with the size of the body it read."""
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


Serve = Callable[..., int]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Start uvicorn with the REST server's options on a loopback port; returns the port."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: Any = echo, **limits: Any) -> int:
        fields = {
            "server_header_timeout_seconds": TIMEOUT, "server_body_timeout_seconds": TIMEOUT,
            "server_keep_alive_seconds": TIMEOUT, **limits,
        }
        settings = Settings(state_dir=tmp_path, token=TOKEN, **fields)
        if app is None:
            app = create_app(settings)  # the real server's app: Guard, routes
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(app, **{**server_options(settings), "port": 0},
                                log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)
        servers.append((server, thread))
        return int(sock.getsockname()[1])

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=BOUND)
    return sock


def request(path: str = "/", method: str = "GET", headers: str = "", body: bytes = b"") -> bytes:
    length = f"content-length: {len(body)}\r\n" if body or method == "POST" else ""
    return (f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{length}{headers}\r\n").encode() + body


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response (with a content-length), read to its end and not beyond, so the
    next response or the server's close can be read after it."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        assert byte, f"closed before a response; got {head!r}"
        head += byte
    lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        assert chunk, "closed inside a response body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed the connection, or None if it did not in time.
    Anything the server still sends is read and dropped."""
    start = time.monotonic()
    deadline = start + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return time.monotonic() - start
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start
        except TimeoutError:
            return None
    return None


# ---- (a) a request's line and headers --------------------------------------------


def test_half_a_request_line_is_closed(serve: Serve) -> None:
    port = serve()
    with connect(port) as sock:
        sock.sendall(b"GET /v1/ca")
        assert closed_within(sock, BOUND) is not None


def test_a_connection_that_sends_nothing_is_closed(serve: Serve) -> None:
    with connect(serve()) as sock:
        assert closed_within(sock, BOUND) is not None


def test_headers_sent_a_byte_at_a_time_are_closed(serve: Serve) -> None:
    """Progress does not extend the header deadline: a trickle cannot hold a connection."""
    with connect(serve()) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nx-slow: ")
        deadline = time.monotonic() + BOUND
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                sock.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                break
            closed = closed_within(sock, TIMEOUT / 3) is not None
        assert closed or closed_within(sock, 0.1) is not None, "still open after the bound"


# ---- (b) idle connections ---------------------------------------------------------


def test_an_idle_connection_after_a_response_is_closed(serve: Serve) -> None:
    with connect(serve()) as sock:
        sock.sendall(request())
        assert read_response(sock)[0] == 200
        assert closed_within(sock, BOUND) is not None


def test_empty_lines_do_not_keep_an_idle_connection(serve: Serve) -> None:
    """Any byte cancels uvicorn's own keep-alive timer; bare CRLFs start no request."""
    with connect(serve()) as sock:
        sock.sendall(request())
        assert read_response(sock)[0] == 200
        deadline = time.monotonic() + BOUND
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                sock.sendall(b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            closed = closed_within(sock, TIMEOUT / 3) is not None
        assert closed or closed_within(sock, 0.1) is not None, "still open after the bound"


def test_keep_alive_still_serves_the_next_request(serve: Serve) -> None:
    with connect(serve(server_keep_alive_seconds=30)) as sock:
        for size in (0, 5, 70_000):
            sock.sendall(request(method="POST", body=b"x" * size))
            assert read_response(sock)[0:3:2] == (200, str(size).encode())


# ---- (c) bodies -------------------------------------------------------------------


def test_a_body_that_stops_halfway_is_closed(serve: Serve) -> None:
    with connect(serve()) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n" + b"x" * 50)
        assert closed_within(sock, BOUND) is not None


def test_a_chunked_body_that_stops_is_closed(serve: Serve) -> None:
    with connect(serve()) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n")
        assert closed_within(sock, BOUND) is not None


def test_a_body_answered_early_then_stalled_is_closed(serve: Serve) -> None:
    """The real server answers 401 before reading the body; the rest never comes."""
    with connect(serve(app=None)) as sock:
        sock.sendall(b"POST /v1/apps/a HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n"
                     + b"x" * 10)
        assert read_response(sock)[0] == 401
        assert closed_within(sock, BOUND) is not None


def test_a_slow_body_that_keeps_coming_is_served(serve: Serve) -> None:
    """The body timeout is per pause: a body slower than it in total still arrives."""
    with connect(serve()) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 8\r\n\r\n")
        for _ in range(8):  # 8 x TIMEOUT/3: longer than the body timeout
            time.sleep(TIMEOUT / 3)
            sock.sendall(b"x")
        assert read_response(sock)[0:3:2] == (200, b"8")


# ---- (d) oversized heads ----------------------------------------------------------


def test_oversized_headers_get_431_before_they_end(serve: Serve) -> None:
    """The real server (token check first) answers 431, not 401, and before the client
    has even finished sending: the server does not read the whole head."""
    port = serve(app=None, server_header_timeout_seconds=30)
    with connect(port) as sock:
        sock.sendall(b"GET /v1/calls/fc-x HTTP/1.1\r\nhost: x\r\nx-big: ")
        sent = 0
        while sent < 160 * 1024:  # 2.5 times the limit, without the end of the head
            sock.sendall(b"a" * 16384)
            sent += 16384
        status, headers, body = read_response(sock)
        assert status == 431
        assert headers["connection"] == "close"
        assert json.loads(body)["error"]["type"] == "InvalidError"
        assert closed_within(sock, BOUND) is not None


def test_a_client_that_sends_all_of_a_huge_head_then_reads_gets_431(serve: Serve) -> None:
    """The server drains what the refused client still sends for a moment, so a client
    that writes the whole request before reading gets the answer, not a reset."""
    port = serve(app=None, server_header_timeout_seconds=30)
    head = b"GET /v1/calls/fc-x HTTP/1.1\r\nhost: x\r\nx-h: " + b"a" * (8 << 20) + b"\r\n\r\n"
    with connect(port) as sock:
        sock.sendall(head)
        status, _, body = read_response(sock)
        assert status == 431, body
        assert closed_within(sock, BOUND) is not None


def test_headers_under_the_limit_and_a_large_body_are_served(serve: Serve) -> None:
    """No false 431: a head just under the limit, a body of many reads in the same send."""
    port = serve(server_max_header_bytes=64 * 1024)
    with connect(port) as sock:
        body = b"y" * (1 << 20)
        sock.sendall(request(method="POST", headers=f"x-big: {'a' * 60_000}\r\n", body=body)
                     + request())
        assert read_response(sock)[0:3:2] == (200, str(len(body)).encode())
        assert read_response(sock)[0:3:2] == (200, b"0")


def test_an_oversized_head_on_a_kept_alive_connection_gets_431(serve: Serve) -> None:
    with connect(serve()) as sock:
        sock.sendall(request())
        assert read_response(sock)[0] == 200
        sock.sendall(request(headers=f"x-big: {'a' * 70_000}\r\n"))
        assert read_response(sock)[0] == 431


def test_a_pipelined_oversized_head_is_refused(serve: Serve) -> None:
    """Counted short when it begins inside an earlier request's bytes, so checked exactly
    once its headers end; an answer to the earlier request is still due, so the server
    closes instead of answering out of turn."""
    with connect(serve()) as sock:
        sock.sendall(request() + request(headers=f"x-big: {'a' * 70_000}\r\n"))
        received = b""
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            received += chunk
        assert time.monotonic() < deadline, "still open after the bound"
        assert received.count(b"HTTP/1.1 200") < 2


# ---- (e) too many connections -----------------------------------------------------


def test_connections_past_the_limit_get_503(serve: Serve) -> None:
    port = serve(server_max_connections=2, server_keep_alive_seconds=30,
                 server_header_timeout_seconds=30)
    first, second = connect(port), connect(port)
    with first, second:
        for sock in (first, second):  # both served once, then held open (keep-alive)
            sock.sendall(request())
            assert read_response(sock)[0] == 200
        third = connect(port)
        third.sendall(request())
        assert read_response(third)[0] == 503
        assert closed_within(third, BOUND) is not None
        third.close()
        first.sendall(request())  # the two within the limit are still served
        assert read_response(first)[0] == 200


# ---- (f) normal requests ----------------------------------------------------------


def test_a_normal_request_is_served(serve: Serve) -> None:
    port = serve(app=None)
    with connect(port) as sock:
        sock.sendall(request("/openapi.json"))
        status, _, body = read_response(sock)
        assert status == 200 and json.loads(body)["info"]["title"] == "rayfn"
        sock.sendall(request("/v1/calls/fc-x", headers="authorization: Bearer wrong\r\n"))
        assert read_response(sock)[0] == 401
