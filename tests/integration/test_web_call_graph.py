"""A call spawned by a web endpoint's handler has the request at the root of its call
graph, as in Modal (where a request is an input): the job-queue wrapper pattern."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx

import rayfn
from rayfn.call_graph import InputStatus
from rayfn.web import local_app
from rayfn_service.processes import free_port


@contextlib.contextmanager
def served(asgi: Any) -> Iterator[str]:
    """``asgi`` behind a real uvicorn on a free loopback port."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=port,
                                           log_level="warning"))
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


def test_a_call_spawned_by_a_request_hangs_under_the_request(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def reverse(text: str) -> str:
        return text[::-1]

    @app.function()
    @rayfn.asgi_app()
    def web() -> Any:
        from fastapi import FastAPI

        api = FastAPI()

        @api.post("/run")
        def submit(text: str) -> dict[str, str]:
            return {"id": reverse.spawn(text).object_id}

        return api

    app.deploy()
    with served(local_app(app)[0]) as base:
        first = httpx.post(f"{base}/run", params={"text": "abc"}).json()["id"]
        second = httpx.post(f"{base}/run", params={"text": "xyz"}).json()["id"]
    call = rayfn.FunctionCall.from_id(first)
    assert call.get(timeout=120) == "cba"
    (root,) = call.get_call_graph()
    assert root.function_name == "web request" and root.object_id != first
    assert [child.function_call_id for child in root.children] == [first]
    assert root.children[0].status is InputStatus.SUCCESS
    # Each request is an input of its own.
    (other,) = rayfn.FunctionCall.from_id(second).get_call_graph()
    assert other.object_id != root.object_id
