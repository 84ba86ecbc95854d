"""The web endpoint kinds without Ray: a FastAPI route, a WSGI app, a proxied web server,
each served by a real uvicorn on loopback; and an app's output lines (app_output.py)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import rayfn
from rayfn import App
from rayfn.exception import ExecutionError, InvalidError
from rayfn.options import WebEndpoint
from rayfn.web import local_app
from rayfn_service.app_output import MAX_LINES, AppOutput, new_lines
from rayfn_service.processes import free_port


@contextlib.contextmanager
def served(asgi: Any) -> Iterator[str]:
    """``asgi`` behind a real uvicorn on a free loopback port, its lifespan run."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _serve(app: App, base_url: str | None = None) -> Any:
    return local_app(app, base_url)[0]


# ---- fastapi_endpoint ----------------------------------------------------------------


def test_fastapi_endpoint_is_one_route_whose_parameters_fastapi_reads() -> None:
    app = App("kinds")

    @app.function()
    @rayfn.fastapi_endpoint()
    def greet(name: str = "world", times: int = 1) -> dict[str, str]:
        return {"greeting": f"hello {name}" * times}

    assert greet.options.web_endpoint == WebEndpoint(kind="fastapi")
    with served(_serve(app)) as url:
        assert httpx.get(url, params={"name": "ray"}).json() == {"greeting": "hello ray"}
        assert httpx.get(url + "/", params={"times": 2}).json() == {
            "greeting": "hello worldhello world"}
        assert httpx.get(url, params={"times": "x"}).status_code == 422
        assert httpx.post(url).status_code == 405
        assert httpx.get(url + "/docs").status_code == 404  # docs=False


def test_fastapi_endpoint_post_takes_a_json_body_and_may_be_async() -> None:
    app = App("kinds")

    @app.function()
    @rayfn.web_endpoint(method="POST", docs=True)  # Modal's old name
    async def total(item: dict[str, Any]) -> dict[str, Any]:
        return {"total": sum(item["values"])}

    with served(_serve(app)) as url:
        assert httpx.post(url, json={"values": [1, 2, 3]}).json() == {"total": 6}
        assert httpx.get(url + "/docs").status_code == 200


def test_several_kinds_in_one_app_each_get_a_path_and_a_web_url() -> None:
    import flask

    app = App("kinds")
    flask_app = flask.Flask("kinds")

    @flask_app.get("/hello")
    def hello() -> dict[str, str]:
        return {"from": "flask"}

    @app.function()
    @rayfn.wsgi_app(label="legacy")
    def wsgi() -> Any:
        return flask_app

    @app.function()
    @rayfn.fastapi_endpoint(method="get")
    def ping() -> str:
        return "pong"

    with served(_serve(app, "http://here")) as url:
        assert httpx.get(url + "/legacy/hello").json() == {"from": "flask"}
        assert httpx.get(url + "/ping/").json() == "pong"
        assert httpx.get(url + "/ping", follow_redirects=True).json() == "pong"
    assert wsgi.get_web_url() == "http://here/legacy"
    assert ping.get_web_url() == "http://here/ping"


def test_bad_options_of_the_kinds_are_refused() -> None:
    with pytest.raises(InvalidError, match="method must be one of"):
        rayfn.fastapi_endpoint(method="FETCH")
    with pytest.raises(InvalidError, match="port must be a port number"):
        rayfn.web_server(0)
    with pytest.raises(InvalidError, match="startup_timeout must be more than 0"):
        rayfn.web_server(8000, startup_timeout=0)
    with pytest.raises(InvalidError, match="parentheses"):
        rayfn.wsgi_app(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(InvalidError, match="takes no arguments"):
        rayfn.web_server(8000)(lambda port: None)
    with pytest.raises(InvalidError, match="not `async def`"):
        async def server() -> None: ...
        rayfn.wsgi_app()(server)
    with pytest.raises(InvalidError, match="port is for"):
        WebEndpoint(kind="asgi", port=80)


def test_a_wsgi_app_function_must_return_an_app() -> None:
    app = App("kinds")

    @app.function()
    @rayfn.wsgi_app()
    def nothing() -> None:
        return None

    with pytest.raises(InvalidError, match="must return a WSGI app"):
        _serve(app)


# ---- web_server ----------------------------------------------------------------------


def test_web_server_proxies_to_a_subprocess_and_stops_it_with_the_endpoint(
    tmp_path: Any,
) -> None:
    port = free_port()
    (tmp_path / "file.txt").write_text("served by http.server\n" * 1000)
    started: list[subprocess.Popen[bytes]] = []
    app = App("kinds")

    @app.function()
    @rayfn.web_server(port, startup_timeout=30)
    def files() -> None:
        started.append(subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    try:
        with served(_serve(app)) as url:
            response = httpx.get(url + "/file.txt")
            assert response.status_code == 200
            assert response.text == "served by http.server\n" * 1000
            assert httpx.get(url + "/missing").status_code == 404
            with httpx.stream("GET", url + "/file.txt") as streamed:
                assert b"".join(streamed.iter_raw()).count(b"http.server") == 1000
        # The endpoint's shutdown stopped the server it started.
        assert started[0].wait(timeout=30) is not None
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_web_server_in_a_thread_gets_posted_bodies() -> None:
    import http.server

    port = free_port()

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(201)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Path", self.path)
            self.end_headers()
            self.wfile.write(body.upper())

        def log_message(self, *args: Any) -> None:
            pass

    servers: list[http.server.ThreadingHTTPServer] = []
    app = App("kinds")

    @app.function()
    @rayfn.web_server(port)
    def echo() -> None:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Echo)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()

    try:
        with served(_serve(app)) as url:
            response = httpx.post(url + "/a/b?c=d", content=b"hello")
            assert (response.status_code, response.content) == (201, b"HELLO")
            assert response.headers["x-path"] == "/a/b?c=d"
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_web_server_that_never_listens_fails_after_its_startup_timeout() -> None:
    port = free_port()
    app = App("kinds")

    @app.function()
    @rayfn.web_server(port, startup_timeout=0.2)
    def silent() -> None:
        pass

    with pytest.raises(ExecutionError, match=f"nothing accepted connections on port {port}"):
        _serve(app)
    with socket.socket() as sock:  # and nothing was left listening
        assert sock.connect_ex(("127.0.0.1", port)) != 0


# ---- what an app's calls print ---------------------------------------------------------


def test_new_lines_are_the_complete_lines_not_sent_before() -> None:
    assert new_lines("", "a\nb", final=False) == ["a\n"]
    assert new_lines("a\nb", "a\nbc\nd\n", final=False) == ["bc\n", "d\n"]
    assert new_lines("a\nbc\nd\n", "a\nbc\nd\n", final=True) == []
    assert new_lines("a\nb", "a\nbc", final=True) == ["bc\n"]
    assert new_lines("", "", final=True) == []
    # A long output keeps its end only (call_output.CallLog): positions still line up.
    assert new_lines("[10 earlier characters not kept]\nxx\ny",
                     "[13 earlier characters not kept]\ny z\nw\n", final=False) == [
        "y z\n", "w\n"]
    assert new_lines("ab\n", "[100 earlier characters not kept]\nlast\n", final=False) == [
        "[97 characters not kept]\n", "last\n"]


def test_app_output_pages_follow_a_cursor_and_wake_followers() -> None:
    woken: list[str] = []
    output = AppOutput(woken.append)
    output.progress("a", "f", "fc-1", "", "lost\n", final=True)  # not followed: not kept
    assert output.page("a", 0).lines == ()
    output.open("a")
    output.progress("a", "f", "fc-1", "", "one\ntw", final=False)
    output.progress("a", "g", "fc-2", "", "other", final=True)
    output.progress("a", "f", "fc-1", "one\ntw", "one\ntwo\n", final=True)
    assert woken == [AppOutput.key("a")] * 3
    page = output.page("a", 0)
    assert [(line.function, line.text) for line in page.lines] == [
        ("f", "one\n"), ("g", "other\n"), ("f", "two\n")]
    assert output.page("a", page.cursor).lines == ()
    output.progress("a", "f", "fc-3", "", "three\n", final=True)
    assert [line.text for line in output.page("a", page.cursor).lines] == ["three\n"]
    output.close("a")
    assert not output.is_open("a")


def test_app_output_keeps_the_last_lines_and_says_how_many_went() -> None:
    output = AppOutput(lambda key: None)
    output.open("a")
    first = output.page("a", 0).cursor
    output.progress("a", "f", "fc-1", "", "x\n" * (MAX_LINES + 5), final=True)
    page = output.page("a", first)
    assert page.lines[0].text == "[5 lines not kept]\n"
    assert len(page.lines) == 1001  # the marker and a page
    assert output.page("a", page.cursor).lines[0].text == "x\n"
