"""Bad input over raw REST: each answer is a 4xx JSON error body (or, for a call that ran
and failed, 424 saying how), and the server keeps serving."""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import quote

import httpx

import rayfn
from rayfn.protocol.ids import new_call_id
from rayfn.settings import get_settings

ODD_NAMES = ["has space", "ünïcödé", "a/b", "../escape", "..", "x" * 1000, "nul\0byte",
             "back\\slash", "semi;colon", "%2e%2e"]


def error_type(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/json"), response.text
    kind: str = response.json()["error"]["type"]
    return kind


def spawn(rest: httpx.Client, app: str, function: str, *args: Any) -> str:
    response = rest.post(f"/v1/apps/{app}/functions/{function}/calls", json={"args": list(args)})
    assert response.status_code == 202, response.text
    call_id: str = response.json()["call_id"]
    return call_id


def result(rest: httpx.Client, call_id: str, wait: float = 60) -> httpx.Response:
    deadline = time.monotonic() + 120
    while True:
        response = rest.get(f"/v1/calls/{call_id}/result", params={"wait": wait})
        if response.status_code != 202:
            return response
        assert time.monotonic() < deadline, f"{call_id} did not end"


def deploy_echo(app_name: str) -> None:
    app = rayfn.App(app_name)

    @app.function()
    def echo(value: Any) -> Any:
        return value

    @app.function()
    def pair(a: int, b: int) -> int:
        return a + b

    @app.function()
    def slow(seconds: float) -> str:
        import time

        time.sleep(seconds)
        return "done"

    @app.function(gpu=1)
    def needs_gpu() -> str:
        return "never"

    @app.function()
    def returns_lock() -> object:
        import threading

        return threading.Lock()

    app.deploy()


def test_odd_names_are_4xx_and_never_touch_the_state_directory(
    rest: httpx.Client, unique_app: str
) -> None:
    deploy_echo(unique_app)
    state_dir = get_settings().state_dir
    before = sorted(p.name for p in state_dir.iterdir())
    code = "gASVBAAAAAAAAAApfZSGlC4="
    for name in ODD_NAMES:
        segment = quote(name, safe="")
        responses = [
            rest.post(f"/v1/apps/{segment}/functions/echo/calls", json={"args": [1]}),
            rest.post(f"/v1/apps/{unique_app}/functions/{segment}/calls", json={"args": [1]}),
            rest.get(f"/v1/apps/{segment}/functions/echo"),
            rest.post(f"/v1/apps/{segment}",
                      json={"functions": [{"name": "f", "options": {}, "code": code}]}),
            rest.post(f"/v1/apps/{unique_app}-odd",
                      json={"functions": [{"name": name, "options": {}, "code": code}]}),
            rest.delete(f"/v1/apps/{segment}"),
        ]
        for response in responses:
            assert 400 <= response.status_code < 500, (name, response.request.url,
                                                       response.text)
            assert error_type(response) in {"InvalidError", "NotFoundError"}, response.text
    assert sorted(p.name for p in state_dir.iterdir()) == before
    assert rest.get(f"/v1/apps/{unique_app}-odd/functions/f").status_code == 404
    assert result(rest, spawn(rest, unique_app, "echo", "fine")).json() == "fine"


def test_negative_nan_and_huge_waits_are_422(rest: httpx.Client, unique_app: str) -> None:
    deploy_echo(unique_app)
    call_id = spawn(rest, unique_app, "slow", 1)
    for wait in ("-1", "-0.5", "nan", "1e9", "inf", "soon"):
        for route in (f"/v1/calls/{call_id}", f"/v1/calls/{call_id}/result"):
            response = rest.get(route, params={"wait": wait})
            assert response.status_code == 422, (route, wait, response.text)
            assert error_type(response) == "InvalidError"
    for wait in (-1, 1e9):
        response = rest.post("/v1/calls/outcomes", json={"call_ids": [call_id], "wait": wait})
        assert response.status_code == 422, response.text
    # The largest wait allowed (60 s) is served in the registry's shorter chunks.
    response = rest.get(f"/v1/calls/{call_id}/result", params={"wait": 60})
    assert response.status_code == 200 and response.json() == "done"


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_deep_json_is_refused_with_a_json_error(rest: httpx.Client, unique_app: str) -> None:
    deploy_echo(unique_app)
    limit = get_settings().max_json_depth
    base = f"/v1/apps/{unique_app}/functions/echo/calls"
    code = "gASVBAAAAAAAAAApfZSGlC4="
    for depth in (limit + 1, 300, 600, 900):
        deep = _nested(depth - 1)  # as one argument, the args list makes it `depth` deep
        for response in (
            rest.post(base, json={"args": [deep]}),  # answered in front of FastAPI
            rest.post(base, json={"args": [deep]}, headers={"Idempotency-Key": "k"}),
            rest.post(base, json={"kwargs": {"value": deep}}),
            rest.post(f"{base}/batch", json={"inputs": [{"args": [1]}, {"args": [deep]}]}),
            rest.post(f"/v1/apps/{unique_app}-deep", json={"functions": [
                {"name": "f", "options": {"x": deep}, "code": code}]}),
        ):
            assert response.status_code == 422, (depth, response.text)
            assert error_type(response) == "InvalidError"
            assert "RAYFN_MAX_JSON_DEPTH" in response.text
    # Deeper than Python's own parser goes: still a JSON 4xx, on every route that reads JSON.
    text = "[" * 30_000 + "]" * 30_000
    for route in (base, f"{base}/batch", f"/v1/apps/{unique_app}-deep", "/v1/calls/outcomes"):
        for body in (f'{{"args": [{text}]}}', text):
            response = rest.post(route, content=body.encode(),
                                 headers={"content-type": "application/json"})
            assert response.status_code in (400, 422), (route, response.text[:300])
            assert error_type(response) == "InvalidError"
    # At the limit, the value goes through and comes back whole.
    at_limit = _nested(limit - 1)
    assert result(rest, spawn(rest, unique_app, "echo", at_limit)).json() == at_limit
    assert rest.get(f"/v1/apps/{unique_app}-deep/functions/f").status_code == 404


def test_wrong_number_of_arguments_fails_the_call_without_retries(
    rest: httpx.Client, unique_app: str
) -> None:
    deploy_echo(unique_app)
    call_id = spawn(rest, unique_app, "pair", 1)
    response = result(rest, call_id)
    assert response.status_code == 424, response.text
    error = response.json()["error"]
    assert error["type"] == "rayfn.exception.InvalidError" and error["state"] == "failed"
    assert "missing a required argument" in error["message"]
    assert rest.get(f"/v1/calls/{call_id}").json()["attempts"] == 1
    assert result(rest, spawn(rest, unique_app, "pair", 1, 2)).json() == 3


def test_an_input_over_the_size_limit_is_400(rest: httpx.Client, unique_app: str) -> None:
    deploy_echo(unique_app)
    settings = get_settings()
    text = "x" * (settings.max_input_bytes + 1)  # under the body limit, over the input limit
    assert len(text) < settings.max_body_bytes
    response = rest.post(f"/v1/apps/{unique_app}/functions/echo/calls", json={"args": [text]})
    assert response.status_code == 400, response.text[:500]
    assert error_type(response) == "InvalidError"
    assert "RAYFN_MAX_INPUT_BYTES" in response.json()["error"]["message"]
    assert rest.get("/v1/calls", params={"app": unique_app}).json()["calls"] == []
    assert result(rest, spawn(rest, unique_app, "echo", "small")).json() == "small"


def test_an_unpicklable_result_answers_424(rest: httpx.Client, unique_app: str) -> None:
    deploy_echo(unique_app)
    response = result(rest, spawn(rest, unique_app, "returns_lock"))
    assert response.status_code == 424, response.text
    error = response.json()["error"]
    assert error["type"] == "rayfn.exception.SerializationError"
    assert "cannot serialize the result" in error["message"]


def test_a_function_no_node_can_run_is_refused(rest: httpx.Client, unique_app: str) -> None:
    deploy_echo(unique_app)
    response = rest.post(f"/v1/apps/{unique_app}/functions/needs_gpu/calls", json={})
    assert response.status_code == 400, response.text
    assert error_type(response) == "ResourcesUnavailableError"
    assert "gpu=1" in response.json()["error"]["message"]
    assert rest.get("/v1/calls", params={"app": unique_app}).json()["calls"] == []
    assert result(rest, spawn(rest, unique_app, "echo", 1)).json() == 1


def test_many_clients_wait_for_one_call_at_once(rest: httpx.Client, unique_app: str) -> None:
    deploy_echo(unique_app)
    call_id = spawn(rest, unique_app, "slow", 1)
    answers: list[tuple[int, Any]] = []
    lock = threading.Lock()

    def wait() -> None:
        with httpx.Client(base_url=str(rest.base_url), headers=dict(rest.headers),
                          timeout=120) as client:
            response = client.get(f"/v1/calls/{call_id}/result", params={"wait": 60})
        with lock:
            answers.append((response.status_code, response.json()))

    threads = [threading.Thread(target=wait) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [(200, "done")] * 16


def test_malformed_and_unknown_ids_in_every_id_route(rest: httpx.Client) -> None:
    """Complements test_rest.py::test_unknown_and_malformed_call_ids with odd characters."""
    for bad in ("fc-" + "0" * 25 + "Ü", "fc-../../token", "fc-" + "0" * 2000, " ", "FC-x"):
        segment = quote(bad, safe="")
        for method, route in (("GET", f"/v1/calls/{segment}"),
                              ("GET", f"/v1/calls/{segment}/result"),
                              ("GET", f"/v1/calls/{segment}/logs"),
                              ("POST", f"/v1/calls/{segment}/cancel")):
            response = rest.request(method, route)
            assert 400 <= response.status_code < 500, (bad, route, response.text)
            assert error_type(response) in {"InvalidError", "NotFoundError"}
    assert rest.get(f"/v1/calls/{new_call_id()}").status_code == 404
    unknown_logs = rest.get(f"/v1/calls/{new_call_id()}/logs")
    assert unknown_logs.status_code == 404 and error_type(unknown_logs) == "NotFoundError"
