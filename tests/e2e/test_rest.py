"""The REST server, driven over loopback with httpx: every /v1 route and its statuses.

Functions are defined and deployed with the Python SDK (through Ray, the test process is
a driver of the session's cluster); everything else goes over HTTP to the session's REST
server, the way a client in another language would use it.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle
import httpx
from prometheus_client.parser import text_string_to_metric_families

import rayfn
from rayfn.protocol.ids import new_call_id
from rayfn.settings import get_settings

if TYPE_CHECKING:
    from tests.e2e.conftest import SecondServer

PICKLE = "application/x-python-pickle"
TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}


@dataclasses.dataclass(frozen=True)
class Point:
    """A return value that is not JSON data."""

    x: int
    y: int


# ---- helpers ---------------------------------------------------------------------


def spawn(rest: httpx.Client, app: str, function: str, *args: Any, **kwargs: Any) -> str:
    response = rest.post(f"/v1/apps/{app}/functions/{function}/calls",
                         json={"args": list(args), "kwargs": kwargs})
    assert response.status_code == 202, response.text
    call_id = response.json()["call_id"]
    assert isinstance(call_id, str)
    return call_id


def finished(rest: httpx.Client, call_id: str, within: float = 90.0) -> dict[str, Any]:
    """The call's status once it has ended (long-polls; fails after ``within`` seconds)."""
    deadline = time.monotonic() + within
    while True:
        response = rest.get(f"/v1/calls/{call_id}", params={"wait": 20})
        assert response.status_code == 200, response.text
        status: dict[str, Any] = response.json()
        if status["state"] in TERMINAL:
            return status
        assert time.monotonic() < deadline, f"{call_id} did not end: {status}"


def until(condition: Any, within: float, message: str, every: float = 0.1) -> Any:
    """Poll ``condition()`` until it returns something truthy, for at most ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, message
        time.sleep(every)


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    detail: dict[str, Any] = response.json()["error"]
    assert isinstance(detail["type"], str) and isinstance(detail["message"], str)
    return detail


def assert_rejected_json(response: httpx.Response) -> list[dict[str, Any]]:
    """A 422 with the error body and FastAPI-style ``detail`` entries."""
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"]["type"] == "InvalidError"
    assert isinstance(body["detail"], list) and body["detail"], body
    for entry in body["detail"]:
        assert {"loc", "msg", "type"} <= set(entry), entry
    detail: list[dict[str, Any]] = body["detail"]
    return detail


def deploy_basic(app_name: str) -> None:
    app = rayfn.App(app_name)

    @app.function()
    def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"args": list(args), "kwargs": kwargs}

    @app.function()
    def sleep_then(seconds: float, value: Any) -> Any:
        import time

        time.sleep(seconds)
        return value

    app.deploy()


# ---- spawn, status, result ---------------------------------------------------------


def test_spawn_answers_202_with_location_and_the_result_is_json(
    rest: httpx.Client, unique_app: str
) -> None:
    deploy_basic(unique_app)
    response = rest.post(f"/v1/apps/{unique_app}/functions/echo/calls",
                         json={"args": ["my-data", 2], "kwargs": {"k": [1, None]}})
    assert response.status_code == 202, response.text
    call_id = response.json()["call_id"]
    assert call_id.startswith("fc-") and len(call_id) == 29
    assert response.headers["Location"] == f"/v1/calls/{call_id}"
    assert int(response.headers["Retry-After"]) >= 1

    status = rest.get(response.headers["Location"])
    assert status.status_code == 200
    assert status.json()["call_id"] == call_id
    assert status.json()["app"] == unique_app and status.json()["function"] == "echo"

    result = rest.get(f"/v1/calls/{call_id}/result", params={"wait": 60})
    assert result.status_code == 200, result.text
    assert result.headers["content-type"] == "application/json"
    assert result.json() == {"args": ["my-data", 2], "kwargs": {"k": [1, None]}}

    done = rest.get(f"/v1/calls/{call_id}")
    assert done.status_code == 200
    assert done.json()["state"] == "succeeded" and done.json()["attempts"] == 1
    assert "Retry-After" not in done.headers  # nothing left to wait for


def test_status_and_result_while_pending_then_long_poll(
    rest: httpx.Client, unique_app: str
) -> None:
    deploy_basic(unique_app)
    call_id = spawn(rest, unique_app, "sleep_then", 2.5, "late")

    status = rest.get(f"/v1/calls/{call_id}")
    assert status.status_code == 200
    assert status.json()["state"] in ("queued", "running")
    assert status.headers["Retry-After"] == "1"

    pending = rest.get(f"/v1/calls/{call_id}/result")
    assert pending.status_code == 202, pending.text
    assert pending.headers["Retry-After"] == "1"
    assert pending.json()["call_id"] == call_id
    assert pending.json()["state"] in ("queued", "running")

    waited = rest.get(f"/v1/calls/{call_id}", params={"wait": 45})
    assert waited.status_code == 200
    # One request held until the call ended (2.5 s after the spawn).
    assert waited.json()["state"] == "succeeded"
    assert "Retry-After" not in waited.headers

    assert rest.get(f"/v1/calls/{call_id}/result").json() == "late"
    # 60 s is the longest wait; a finished call answers at once.
    assert rest.get(f"/v1/calls/{call_id}", params={"wait": 60}).status_code == 200
    for route in (f"/v1/calls/{call_id}", f"/v1/calls/{call_id}/result"):
        for wait in ("60.5", "61", "-1", "soon"):
            detail = assert_rejected_json(rest.get(route, params={"wait": wait}))
            assert detail[0]["loc"] == ["query", "wait"]


def test_batch_spawn(rest: httpx.Client, unique_app: str) -> None:
    deploy_basic(unique_app)
    body = {"inputs": [{"args": [i]} for i in range(3)] + [{"kwargs": {"key": "v"}}]}
    response = rest.post(f"/v1/apps/{unique_app}/functions/echo/calls/batch", json=body)
    assert response.status_code == 202, response.text
    call_ids = response.json()["call_ids"]
    assert len(call_ids) == 4 and len(set(call_ids)) == 4
    results = [rest.get(f"/v1/calls/{c}/result", params={"wait": 60}) for c in call_ids]
    assert [r.status_code for r in results] == [200] * 4
    assert [r.json() for r in results] == [
        {"args": [0], "kwargs": {}}, {"args": [1], "kwargs": {}}, {"args": [2], "kwargs": {}},
        {"args": [], "kwargs": {"key": "v"}},
    ]
    route = f"/v1/apps/{unique_app}/functions/echo/calls/batch"
    assert_rejected_json(rest.post(route, json={"inputs": []}))
    assert_rejected_json(rest.post(route, json={"inputs": {"args": [1]}}))
    assert_rejected_json(rest.post(route, json={"inputs": [{"args": [1]}], "extra": 1}))


def test_concurrent_submits_are_each_accepted_and_one_bad_input_fails_alone(
    rest: httpx.Client, unique_app: str
) -> None:
    """Submits that arrive together share a request to the registry; an input over the
    size limit among them is refused alone and the others are accepted."""
    deploy_basic(unique_app)
    route = f"/v1/apps/{unique_app}/functions/echo/calls"
    too_big = "x" * (get_settings().max_input_bytes + 1)

    async def submit_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=str(rest.base_url), headers=rest.headers,
                                     timeout=120) as client:
            bodies = [{"args": [i]} for i in range(60)]
            bodies.insert(30, {"args": [too_big]})
            return await asyncio.gather(*(client.post(route, json=b) for b in bodies))

    responses = asyncio.run(submit_all())
    bad = responses.pop(30)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "InvalidError"
    assert [r.status_code for r in responses] == [202] * 60
    call_ids = [r.json()["call_id"] for r in responses]
    assert len(set(call_ids)) == 60
    results = [rest.get(f"/v1/calls/{c}/result", params={"wait": 60}) for c in call_ids]
    assert [r.json()["args"] for r in results] == [[i] for i in range(60)]


def test_unknown_and_malformed_call_ids(rest: httpx.Client) -> None:
    unknown = new_call_id()
    for method, route in (("GET", f"/v1/calls/{unknown}"),
                          ("GET", f"/v1/calls/{unknown}/result"),
                          ("POST", f"/v1/calls/{unknown}/cancel")):
        response = rest.request(method, route)
        assert response.status_code == 404, (route, response.text)
        detail = error_of(response)
        assert detail["type"] == "NotFoundError" and detail["expired"] is False
        assert unknown in detail["message"]
    for method, route in (("GET", "/v1/calls/not-an-id"),
                          ("GET", "/v1/calls/not-an-id/result"),
                          ("POST", "/v1/calls/not-an-id/cancel"),
                          ("GET", "/v1/calls/fc-" + "U" * 26 + "/result")):  # U: not Crockford
        response = rest.request(method, route)
        assert response.status_code == 400, (route, response.text)
        assert error_of(response)["type"] == "InvalidError"
    response = rest.post("/v1/calls/outcomes", json={"call_ids": ["nope"]})
    assert response.status_code == 400 and error_of(response)["type"] == "InvalidError"
    response = rest.post("/v1/calls/outcomes", json={"call_ids": [unknown]})
    assert response.status_code == 404 and error_of(response)["type"] == "NotFoundError"


def test_calls_that_end_without_a_value_answer_424(rest: httpx.Client, unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def fail(message: str) -> None:
        raise ValueError(message)

    @app.function(timeout=1)
    def overrun() -> None:
        import time

        time.sleep(30)

    @app.function()
    def wait_long() -> None:
        import time

        time.sleep(60)

    app.deploy()
    failed = spawn(rest, unique_app, "fail", "boom-4711")
    timed_out = spawn(rest, unique_app, "overrun")
    cancelled = spawn(rest, unique_app, "wait_long")
    assert rest.post(f"/v1/calls/{cancelled}/cancel").status_code == 200

    response = rest.get(f"/v1/calls/{failed}/result", params={"wait": 60})
    assert response.status_code == 424, response.text
    detail = error_of(response)
    assert detail["state"] == "failed"
    assert detail["type"] == "builtins.ValueError"
    assert detail["message"] == "boom-4711"
    assert "Traceback" in detail["traceback"] and "boom-4711" in detail["traceback"]
    assert ", in fail" in detail["traceback"]  # the frame of the function that raised

    assert finished(rest, timed_out)["state"] == "timed_out"
    response = rest.get(f"/v1/calls/{timed_out}/result")
    assert response.status_code == 424, response.text
    detail = error_of(response)
    assert detail["state"] == "timed_out"
    assert detail["type"].endswith("FunctionTimeoutError")
    assert "timed out" in detail["message"]

    response = rest.get(f"/v1/calls/{cancelled}/result", params={"wait": 5})
    assert response.status_code == 424, response.text
    detail = error_of(response)
    assert detail["state"] == "cancelled" and detail["type"] == "CancelledError"
    assert cancelled in detail["message"]

    # Asking for the pickle changes nothing: there is no value.
    response = rest.get(f"/v1/calls/{failed}/result", headers={"Accept": PICKLE})
    assert response.status_code == 424 and error_of(response)["state"] == "failed"


def test_values_that_are_not_json_answer_406_unless_asked_for_pickled(
    rest: httpx.Client, unique_app: str
) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def a_set() -> set[int]:
        return {3, 1, 2}

    @app.function()
    def a_point() -> Point:
        return Point(1, 2)

    @app.function()
    def a_dict() -> dict[str, float]:
        return {"pi": 3.25}

    app.deploy()
    ids = {name: spawn(rest, unique_app, name) for name in ("a_set", "a_point", "a_dict")}
    for call_id in ids.values():
        assert finished(rest, call_id)["state"] == "succeeded"

    for name in ("a_set", "a_point"):
        response = rest.get(f"/v1/calls/{ids[name]}/result")
        assert response.status_code == 406, response.text
        detail = error_of(response)
        assert PICKLE in detail["message"]

    response = rest.get(f"/v1/calls/{ids['a_set']}/result", headers={"Accept": PICKLE})
    assert response.status_code == 200
    assert response.headers["content-type"] == PICKLE
    assert cloudpickle.loads(response.content) == {1, 2, 3}

    response = rest.get(f"/v1/calls/{ids['a_point']}/result",
                        headers={"Accept": f"{PICKLE}, application/json;q=0.5"})
    assert response.status_code == 200
    point = cloudpickle.loads(response.content)
    assert type(point).__name__ == "Point" and (point.x, point.y) == (1, 2)

    # JSON values come as JSON, or pickled when asked.
    assert rest.get(f"/v1/calls/{ids['a_dict']}/result").json() == {"pi": 3.25}
    response = rest.get(f"/v1/calls/{ids['a_dict']}/result", headers={"Accept": PICKLE})
    assert cloudpickle.loads(response.content) == {"pi": 3.25}


def test_finished_results_answered_before_the_route_match_the_route(
    rest: httpx.Client, unique_app: str
) -> None:
    """A plain GET of a finished call's result is answered by the shortcut (see
    api/shortcut.py); with a query string it goes to the route. Both answer the same."""
    app = rayfn.App(unique_app)

    @app.function()
    def a_dict() -> dict[str, float]:
        return {"pi": 3.25}

    @app.function()
    def a_set() -> set[int]:
        return {1}

    app.deploy()
    ids = [spawn(rest, unique_app, name) for name in ("a_dict", "a_set")]
    for call_id in ids:
        assert finished(rest, call_id)["state"] == "succeeded"
    for call_id in ids:
        for headers in ({}, {"Accept": PICKLE}, {"Accept": f"{PICKLE}, application/json"}):
            short = rest.get(f"/v1/calls/{call_id}/result", headers=headers)
            routed = rest.get(f"/v1/calls/{call_id}/result", params={"wait": 0},
                              headers=headers)
            assert (short.status_code, short.content) == (routed.status_code, routed.content)
            assert short.headers["content-type"] == routed.headers["content-type"]
            assert short.headers["content-length"] == routed.headers["content-length"]
    unauthorized = httpx.get(f"{rest.base_url}/v1/calls/{ids[0]}/result")
    assert unauthorized.status_code == 401  # the token is checked before the shortcut


def test_plain_submits_answered_before_the_route_match_the_route(
    rest: httpx.Client, unique_app: str
) -> None:
    """A plain JSON submit is answered by the shortcut (see api/shortcut.py); with a query
    string it goes to the route. Both answer the same, refusals included."""
    from rayfn.settings import get_settings

    app = rayfn.App(unique_app)

    @app.function()
    def add(a: int, b: int = 0) -> int:
        return a + b

    app.deploy()
    base = f"/v1/apps/{unique_app}/functions"
    big = "x" * (get_settings().max_input_bytes + 1)
    cases = [
        (f"{base}/add/calls", {"args": [1], "kwargs": {"b": 2}}, 202),
        (f"{base}/add/calls", {"args": [5]}, 202),
        (f"{base}/nope/calls", {"args": [1]}, 404),
        (f"/v1/apps/{unique_app}-nope/functions/add/calls", {"args": [1]}, 404),
        (f"{base}/add/calls", {"args": [big]}, 400),
        (f"{base}/add/calls", {"args": 1}, 422),
        (f"{base}/add/calls", {"args": [], "extra": 1}, 422),
        (f"{base}/add/calls", [1, 2], 422),
        ("/v1/apps/bad%20name/functions/add/calls", {"args": [1]}, 400),
    ]
    for path, body, status in cases:
        short = rest.post(path, json=body)
        routed = rest.post(path, json=body, params={"via": "route"})
        assert short.status_code == routed.status_code == status, (path, body, short.text)
        assert short.headers["content-type"] == routed.headers["content-type"]
        if status == 202:
            assert set(short.json()) == set(routed.json()) == {"call_id"}
            for response in (short, routed):
                call_id = response.json()["call_id"]
                assert response.headers["location"] == f"/v1/calls/{call_id}"
                assert response.headers["retry-after"] == "1"
                assert finished(rest, call_id)["state"] == "succeeded"
        else:
            assert short.content == routed.content
    malformed = rest.post(f"{base}/add/calls", content=b"{not json",
                          headers={"content-type": "application/json"})
    assert malformed.status_code == 422  # refused by the route, the body replayed to it


# ---- cancel --------------------------------------------------------------------------


def test_cancel_a_queued_call_never_runs_and_a_running_one_stops(
    rest: httpx.Client, unique_app: str, tmp_path: Path
) -> None:
    app = rayfn.App(unique_app)

    @app.function(max_containers=1)
    def heartbeat(path: str, seconds: float) -> str:
        import time

        end = time.time() + seconds
        while time.time() < end:
            with open(path, "a") as f:
                f.write(".")
            time.sleep(0.05)
        return "done"

    app.deploy()
    beats_running = tmp_path / "running"
    beats_queued = tmp_path / "queued"
    running = spawn(rest, unique_app, "heartbeat", str(beats_running), 120)
    queued = spawn(rest, unique_app, "heartbeat", str(beats_queued), 120)
    until(beats_running.exists, 60, "the first call never started")
    assert rest.get(f"/v1/calls/{running}").json()["state"] == "running"
    assert rest.get(f"/v1/calls/{queued}").json()["state"] == "queued"  # max_containers=1

    response = rest.post(f"/v1/calls/{queued}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["call_id"] == queued and response.json()["state"] == "cancelled"
    response = rest.post(f"/v1/calls/{running}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "cancelled"

    # The running attempt stops: its file stops growing (for a whole second).
    def stopped() -> bool:
        before = beats_running.stat().st_size
        time.sleep(1.0)
        return beats_running.stat().st_size == before

    until(stopped, 20, "the cancelled call kept running", every=0)
    # The slot it freed does not go to the cancelled queued call.
    time.sleep(1.5)
    assert not beats_queued.exists()
    for call_id in (running, queued):
        status = rest.get(f"/v1/calls/{call_id}").json()
        assert status["state"] == "cancelled" and status["finished_at"] is not None
    assert rest.get(f"/v1/calls/{queued}").json()["attempts"] == 0
    # Cancelling again, or cancelling a finished call, changes nothing.
    assert rest.post(f"/v1/calls/{queued}/cancel").json()["state"] == "cancelled"


def test_cancel_a_finished_call_keeps_its_result(rest: httpx.Client, unique_app: str) -> None:
    deploy_basic(unique_app)
    call_id = spawn(rest, unique_app, "echo", 1)
    assert finished(rest, call_id)["state"] == "succeeded"
    response = rest.post(f"/v1/calls/{call_id}/cancel")
    assert response.status_code == 200 and response.json()["state"] == "succeeded"
    assert rest.get(f"/v1/calls/{call_id}/result").json() == {"args": [1], "kwargs": {}}


# ---- listing -------------------------------------------------------------------------


def test_list_calls_filters_and_cursor_pages(rest: httpx.Client, unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def ok(i: int) -> int:
        return i

    @app.function()
    def bad(i: int) -> int:
        raise RuntimeError(str(i))

    app.deploy()
    oks = [spawn(rest, unique_app, "ok", i) for i in range(4)]
    bads = [spawn(rest, unique_app, "bad", i) for i in range(2)]
    for call_id in oks + bads:
        finished(rest, call_id)
    everything = oks + bads
    newest_first = sorted(everything, reverse=True)

    def walk(limit: int, **filters: str) -> list[list[str]]:
        pages: list[list[str]] = []
        params: dict[str, Any] = {"app": unique_app, "limit": limit, **filters}
        for _ in range(20):  # bounded: 6 calls never need more pages
            response = rest.get("/v1/calls", params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            pages.append([c["call_id"] for c in body["calls"]])
            cursor = body.get("next_cursor")
            if cursor is None:
                return pages
            params["cursor"] = cursor
        raise AssertionError(f"pagination did not end: {pages}")

    for limit, sizes in ((2, [2, 2, 2]), (4, [4, 2]), (5, [5, 1]), (6, [6]), (100, [6])):
        pages = walk(limit)
        assert [len(p) for p in pages] == sizes, (limit, pages)  # no empty last page
        flat = [c for page in pages for c in page]
        assert flat == newest_first  # newest first, every call once
    assert [c for p in walk(1) for c in p] == newest_first

    assert [c for p in walk(3, function="ok") for c in p] == sorted(oks, reverse=True)
    assert [c for p in walk(3, state="failed") for c in p] == sorted(bads, reverse=True)
    assert [c for p in walk(3, state="succeeded", function="ok") for c in p] == sorted(
        oks, reverse=True
    )
    assert walk(3, state="queued") == [[]]
    assert walk(3, function="nope") == [[]]

    listed = rest.get("/v1/calls", params={"app": unique_app, "function": "bad"}).json()
    for status in listed["calls"]:
        assert status["state"] == "failed" and status["error_type"] == "builtins.RuntimeError"
    assert listed.get("next_cursor") is None

    assert_rejected_json(rest.get("/v1/calls", params={"state": "bogus"}))
    assert_rejected_json(rest.get("/v1/calls", params={"limit": 0}))
    assert_rejected_json(rest.get("/v1/calls", params={"limit": 1001}))
    assert_rejected_json(rest.get("/v1/calls", params={"limit": "many"}))
    response = rest.get("/v1/calls", params={"cursor": "not-an-id"})
    assert response.status_code == 400 and error_of(response)["type"] == "InvalidError"


def test_list_apps_with_queue_depths_and_stop_an_app(rest: httpx.Client, unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function(max_containers=1)
    def hold(seconds: float) -> None:
        import time

        time.sleep(seconds)

    @app.function()
    def other() -> int:
        return 1

    app.deploy()
    calls = [spawn(rest, unique_app, "hold", 120) for _ in range(3)]

    def summary() -> dict[str, Any] | None:
        response = rest.get("/v1/apps")
        assert response.status_code == 200, response.text
        mine = [a for a in response.json()["apps"] if a["name"] == unique_app]
        assert len(mine) == 1
        functions = {f["name"]: f for f in mine[0]["functions"]}
        assert set(functions) == {"hold", "other"}
        hold_queue = functions["hold"]
        if (hold_queue["running"], hold_queue["queued"]) == (1, 2):
            return mine[0]
        return None

    listed = until(summary, 60, "the queue never showed 1 running and 2 queued")
    functions = {f["name"]: f for f in listed["functions"]}
    assert functions["hold"]["window"] == 1 and functions["hold"]["retrying"] == 0
    assert functions["other"] == {"name": "other", "queued": 0, "running": 0, "retrying": 0,
                                  "window": functions["other"]["window"], "nodes": {},
                                  "schedule": None}
    # The running call is on the session's only node (once its worker has reported in).
    assert len(functions["hold"]["nodes"]) <= 1
    assert set(functions["hold"]["nodes"].values()) <= {1}
    assert functions["other"]["window"] >= 1
    assert listed["version"] >= 1 and listed["ephemeral"] is False

    info = rest.get(f"/v1/apps/{unique_app}/functions/hold")
    assert info.status_code == 200
    assert info.json()["options"]["max_containers"] == 1 and info.json()["app"] == unique_app

    stopped = rest.delete(f"/v1/apps/{unique_app}")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json() == {"app": unique_app, "cancelled": 3}
    for call_id in calls:
        assert rest.get(f"/v1/calls/{call_id}").json()["state"] == "cancelled"
    assert unique_app not in [a["name"] for a in rest.get("/v1/apps").json()["apps"]]

    response = rest.post(f"/v1/apps/{unique_app}/functions/other/calls", json={})
    assert response.status_code == 404, response.text
    assert error_of(response)["type"] == "NotFoundError"
    assert rest.get(f"/v1/apps/{unique_app}/functions/other").status_code == 404
    again = rest.delete(f"/v1/apps/{unique_app}")
    assert again.status_code == 404 and error_of(again)["type"] == "NotFoundError"


# ---- deploy and unknown targets --------------------------------------------------------


def test_unknown_app_or_function_is_404(rest: httpx.Client, unique_app: str) -> None:
    deploy_basic(unique_app)
    pickled = {"calls": [{"call_id": new_call_id(),
                          "args": "gASVBAAAAAAAAAApfZSGlC4="}]}
    for app, function in (("no-such-app-" + unique_app, "echo"), (unique_app, "nope")):
        base = f"/v1/apps/{app}/functions/{function}"
        for response in (
            rest.post(f"{base}/calls", json={"args": [1]}),
            rest.post(f"{base}/calls/batch", json={"inputs": [{"args": [1]}]}),
            rest.post(f"{base}/calls/pickled", json=pickled),
            rest.get(base),
        ):
            assert response.status_code == 404, (base, response.text)
            detail = error_of(response)
            assert detail["type"] == "NotFoundError", detail
            assert app in detail["message"] or function in detail["message"]
    response = rest.delete(f"/v1/apps/no-such-app-{unique_app}")
    assert response.status_code == 404 and error_of(response)["type"] == "NotFoundError"
    # A name rayfn would never issue is a bad request, not "not found".
    response = rest.post("/v1/apps/bad name!/functions/echo/calls", json={})
    assert response.status_code == 400 and error_of(response)["type"] == "InvalidError"


def test_deploy_refuses_malformed_bodies_and_invalid_options(
    rest: httpx.Client, unique_app: str
) -> None:
    code = "gASVBAAAAAAAAAApfZSGlC4="  # any bytes: the registry never unpickles code
    route = f"/v1/apps/{unique_app}"
    for body in (
        {},
        {"functions": []},
        {"functions": [{"name": "f"}]},
        {"functions": [{"name": "f", "options": {}, "code": "not base64!"}]},
        {"functions": [{"name": "f", "options": [], "code": code}]},
        {"functions": [{"name": "f", "options": {}, "code": code}], "surprise": True},
        {"functions": "f"},
    ):
        assert_rejected_json(rest.post(route, json=body))
    assert_rejected_json(rest.post(route, content=b"{", headers={"content-type":
                                                                 "application/json"}))
    # Well-formed JSON whose options @app.function() would refuse: 400, nothing deployed.
    for options in ({"no_such_option": 1}, {"timeout": 0}, {"timeout": "long"},
                    {"retries": "twice"}, {"retries": {"max_retries": -1}},
                    {"max_containers": 0}, {"memory": -5}, {"cpu": 0},
                    # Values past any cluster: once stored, they broke the registry.
                    {"min_containers": 10**30}, {"max_containers": 10**30},
                    {"memory": 10**30}, {"cpu": 1e309}, {"gpu": "A100:1e309"},
                    {"gpu": 1e309}):
        # Python's JSON (which FastAPI parses with) reads 1e309 as infinity.
        body = json.dumps({"functions": [{"name": "f", "options": options, "code": code}]})
        response = rest.post(route, content=body.encode(),
                             headers={"content-type": "application/json"})
        assert response.status_code == 400, (options, response.text)
        assert error_of(response)["type"] == "InvalidError"
    response = rest.post(route, json={"functions": [
        {"name": "f", "options": {}, "code": code, "runtime_env": {"pip": 5}}]})
    assert response.status_code == 400, response.text
    response = rest.post(route, json={"functions": [
        {"name": "f", "options": {}, "code": code}, {"name": "f", "options": {}, "code": code}]})
    assert response.status_code == 400, response.text
    response = rest.post(route, json={"functions": [
        {"name": "no spaces", "options": {}, "code": code}]})
    assert response.status_code == 400, response.text
    assert rest.get(f"/v1/apps/{unique_app}/functions/f").status_code == 404

    # ... and the service still deploys and runs functions afterwards.
    deploy_basic(unique_app)
    call_id = spawn(rest, unique_app, "echo", "still-works")
    assert rest.get(f"/v1/calls/{call_id}/result", params={"wait": 60}).json() == {
        "args": ["still-works"], "kwargs": {}}
    assert rest.get("/v1/apps").status_code == 200


def test_the_sdk_deploys_over_rest(rest: httpx.Client, unique_app: str) -> None:
    from rayfn_service.server_process import server_url

    settings = get_settings()
    rayfn.connect(server_url(settings), token=settings.read_token())
    app = rayfn.App(unique_app)

    @app.function(timeout=30, retries=2)
    def double(x: int) -> int:
        return 2 * x

    assert app.deploy() == 1
    info = rest.get(f"/v1/apps/{unique_app}/functions/double")
    assert info.status_code == 200, info.text
    assert info.json()["version"] == 1 and info.json()["options"]["timeout"] == 30
    assert info.json()["options"]["retries"]["max_retries"] == 2
    call_id = spawn(rest, unique_app, "double", 21)
    assert rest.get(f"/v1/calls/{call_id}/result", params={"wait": 60}).json() == 42
    assert app.deploy() == 2  # a redeploy is a new version


# ---- idempotency ---------------------------------------------------------------------


def test_idempotency_key(rest: httpx.Client, unique_app: str, tmp_path: Path) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def count_run(path: str) -> int:
        with open(path, "a") as f:
            f.write("run\n")
        with open(path) as f:
            return len(f.read().splitlines())

    app.deploy()
    route = f"/v1/apps/{unique_app}/functions/count_run/calls"
    single = str(tmp_path / "single")
    first = rest.post(route, json={"args": [single]}, headers={"Idempotency-Key": "k-1"})
    second = rest.post(route, json={"args": [single]}, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == second.status_code == 202, (first.text, second.text)
    call_id = first.json()["call_id"]
    assert second.json()["call_id"] == call_id
    assert second.headers["Location"] == f"/v1/calls/{call_id}"

    conflict = rest.post(route, json={"args": [single, 2]}, headers={"Idempotency-Key": "k-1"})
    assert conflict.status_code == 409, conflict.text
    assert error_of(conflict)["type"] == "ConflictError"

    batch_body = {"inputs": [{"args": [str(tmp_path / "b0")]}, {"args": [str(tmp_path / "b1")]}]}
    batch1 = rest.post(f"{route}/batch", json=batch_body, headers={"Idempotency-Key": "k-2"})
    batch2 = rest.post(f"{route}/batch", json=batch_body, headers={"Idempotency-Key": "k-2"})
    assert batch1.status_code == batch2.status_code == 202
    assert batch1.json()["call_ids"] == batch2.json()["call_ids"]
    batch_body["inputs"].reverse()
    reordered = rest.post(f"{route}/batch", json=batch_body, headers={"Idempotency-Key": "k-2"})
    assert reordered.status_code == 409, reordered.text

    # Without a key, the same body is a new call.
    other = rest.post(route, json={"args": [str(tmp_path / "free")]})
    again = rest.post(route, json={"args": [str(tmp_path / "free")]})
    assert other.json()["call_id"] != again.json()["call_id"]

    ids = [call_id, *batch1.json()["call_ids"]]
    for c in ids:
        assert rest.get(f"/v1/calls/{c}/result", params={"wait": 60}).json() == 1
    assert (tmp_path / "single").read_text() == "run\n"  # ran once, not twice
    assert (tmp_path / "b0").read_text() == (tmp_path / "b1").read_text() == "run\n"
    listed = rest.get("/v1/calls", params={"app": unique_app}).json()["calls"]
    assert len(listed) == 5  # 1 + 2 with keys, 2 without


# ---- expiry ----------------------------------------------------------------------------


def test_an_expired_result_answers_404_expired(
    rest: httpx.Client, expiring_server: SecondServer, unique_app: str
) -> None:
    rayfn.connect(expiring_server.url, token=expiring_server.token)  # deploy over its REST
    app = rayfn.App(unique_app)

    @app.function()
    def value() -> str:
        return "short-lived"

    app.deploy()
    with expiring_server.client() as client:
        call_id = spawn(client, unique_app, "value")
        response = client.get(f"/v1/calls/{call_id}/result", params={"wait": 60})
        assert response.status_code == 200, response.text  # kept 2 s after it finished
        assert response.json() == "short-lived"

        def expired() -> httpx.Response | None:
            response = client.get(f"/v1/calls/{call_id}/result")
            return response if response.status_code != 200 else None

        response = until(expired, 30, "the result never expired", every=0.25)
        assert response.status_code == 404, response.text
        detail = error_of(response)
        assert detail["type"] == "OutputExpiredError" and detail["expired"] is True
        assert call_id in detail["message"]
        pickled = client.get(f"/v1/calls/{call_id}/result", headers={"Accept": PICKLE})
        assert pickled.status_code == 404 and error_of(pickled)["expired"] is True
        status = client.get(f"/v1/calls/{call_id}").json()
        assert status["state"] == "succeeded" and status["expired"] is True
        # An ID it never issued is still "not found", not "expired".
        unknown = client.get(f"/v1/calls/{new_call_id()}/result")
        assert unknown.status_code == 404 and error_of(unknown)["expired"] is False
        # The other server's registry does not know this call.
    assert rest.get(f"/v1/calls/{call_id}").status_code == 404


def test_an_idempotency_key_is_forgotten_after_retention(
    expiring_server: SecondServer, unique_app: str
) -> None:
    rayfn.connect(expiring_server.url, token=expiring_server.token)
    app = rayfn.App(unique_app)

    @app.function()
    def value(x: int) -> int:
        return x

    app.deploy()
    route = f"/v1/apps/{unique_app}/functions/value/calls"
    key = {"Idempotency-Key": "kept-2s"}
    with expiring_server.client() as client:
        first = client.post(route, json={"args": [1]}, headers=key)
        assert first.status_code == 202, first.text
        conflict = client.post(route, json={"args": [2]}, headers=key)
        assert conflict.status_code == 409, conflict.text  # remembered for now

        def reused() -> httpx.Response | None:
            response = client.post(route, json={"args": [2]}, headers=key)
            return response if response.status_code != 409 else None

        # Swept with the results (kept 2 s here): the key then makes a new call.
        response = until(reused, 30, "the key was never forgotten", every=0.5)
        assert response.status_code == 202, response.text
        assert response.json()["call_id"] != first.json()["call_id"]


def test_long_polls_outlast_the_registrys_wait_chunk(
    rest: httpx.Client, expiring_server: SecondServer, unique_app: str
) -> None:
    """The registry serves waits in chunks (0.5 s on this server); a ``wait`` longer than
    that is still one request that answers when the call ends."""
    rayfn.connect(expiring_server.url, token=expiring_server.token)
    deploy_basic(unique_app)
    with expiring_server.client() as client:
        call_id = spawn(client, unique_app, "sleep_then", 2, "status")
        response = client.get(f"/v1/calls/{call_id}", params={"wait": 30})
        assert response.json()["state"] == "succeeded", response.text

        call_id = spawn(client, unique_app, "sleep_then", 2, "result")
        response = client.get(f"/v1/calls/{call_id}/result", params={"wait": 30})
        assert response.status_code == 200, response.text
        assert response.json() == "result"

        call_id = spawn(client, unique_app, "sleep_then", 2, "outcomes")
        response = client.post("/v1/calls/outcomes",
                               json={"call_ids": [call_id], "wait": 30, "include_pending": True})
        assert response.status_code == 200, response.text
        (outcome,) = response.json()["outcomes"]
        assert outcome["state"] == "succeeded"
        assert cloudpickle.loads(base64.b64decode(outcome["result"])) == "outcomes"

        # A short wait still answers "not yet" once it is over.
        call_id = spawn(client, unique_app, "sleep_then", 5, "late")
        started = time.monotonic()
        response = client.get(f"/v1/calls/{call_id}/result", params={"wait": 1.2})
        assert response.status_code == 202, response.text
        assert time.monotonic() - started >= 1.0  # the wait asked for was honoured
        response = client.post("/v1/calls/outcomes", json={"call_ids": [call_id], "wait": 0.7})
        assert response.json() == {"outcomes": []}
        assert client.post(f"/v1/calls/{call_id}/cancel").json()["state"] == "cancelled"


# ---- auth, limits, validation ------------------------------------------------------------


def _operations(rest: httpx.Client) -> Iterator[tuple[str, str]]:
    spec = rest.get("/openapi.json").json()
    for path, methods in spec["paths"].items():
        for method in methods:
            concrete = (path.replace("{app}", "some-app").replace("{function}", "f")
                        .replace("{call_id}", new_call_id()))
            yield method.upper(), concrete


def test_every_route_but_health_needs_the_bearer_token(rest: httpx.Client) -> None:
    token = get_settings().read_token()
    operations = [op for op in _operations(rest) if op[1] != "/healthz"]
    paths = {p for _, p in operations}
    assert {"/metrics", "/v1/apps", "/v1/calls", "/v1/calls/outcomes"} <= paths
    assert len(operations) >= 13
    bad_headers: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer wrong-" + token},
        {"Authorization": f"Basic {token}"},
        {"Authorization": token},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {token[:-1]}"},
    ]
    with httpx.Client(base_url=str(rest.base_url), timeout=30) as anonymous:
        for method, path in [*operations, ("GET", "/v1/no-such-route")]:
            for headers in bad_headers:
                response = anonymous.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.headers["WWW-Authenticate"] == "Bearer"
                assert error_of(response)["type"] == "AuthError"
        # The scheme is case-insensitive; the token is what counts.
        response = anonymous.get("/v1/apps", headers={"Authorization": f"bearer {token}"})
        assert response.status_code == 200


def test_health_docs_and_schema_need_no_token(rest: httpx.Client) -> None:
    with httpx.Client(base_url=str(rest.base_url), timeout=30) as anonymous:
        health = anonymous.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "registry": True}
        docs = anonymous.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        spec = anonymous.get("/openapi.json")
        assert spec.status_code == 200
        paths = spec.json()["paths"]
        assert "/v1/calls/{call_id}/result" in paths
        assert "/v1/apps/{app}/functions/{function}/calls" in paths


def test_a_wrong_token_is_refused_before_the_body_is_read(rest: httpx.Client) -> None:
    limit = get_settings().max_body_bytes
    oversize = b"x" * (limit + 1)
    route = "/v1/apps/some-app/functions/f/calls"
    with httpx.Client(base_url=str(rest.base_url), timeout=60) as client:
        wrong = {"Authorization": "Bearer wrong", "Content-Type": "application/json"}
        response = client.post(route, content=oversize, headers=wrong)
        assert response.status_code == 401, response.text  # not 413: the body was not read
        assert response.headers["WWW-Authenticate"] == "Bearer"

        def chunks() -> Iterator[bytes]:
            for _ in range(limit // (1 << 20) + 2):
                yield b"x" * (1 << 20)

        response = client.post(route, content=chunks(), headers=wrong)
        assert response.request.headers.get("Transfer-Encoding") == "chunked"
        assert response.status_code == 401, response.text
        assert error_of(response)["type"] == "AuthError"


def test_a_body_over_the_limit_is_413(rest: httpx.Client, unique_app: str) -> None:
    deploy_basic(unique_app)
    limit = get_settings().max_body_bytes
    route = f"/v1/apps/{unique_app}/functions/echo/calls"
    padding = "x" * limit
    body = json.dumps({"args": [padding]}).encode()
    assert len(body) > limit
    response = rest.post(route, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert error_of(response)["type"] == "InvalidError"
    assert str(limit) in error_of(response)["message"]

    def streamed() -> Iterator[bytes]:  # no Content-Length: the server counts as it reads
        for start in range(0, len(body), 1 << 20):
            yield body[start:start + (1 << 20)]

    response = rest.post(route, content=streamed(), headers={"Content-Type": "application/json"})
    assert "Content-Length" not in response.request.headers
    assert response.status_code == 413, response.text
    assert error_of(response)["type"] == "InvalidError"
    response = rest.post(f"/v1/apps/{unique_app}", content=streamed(),
                         headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    # Nothing was spawned by the refused requests, and a body under the limit is fine.
    assert rest.get("/v1/calls", params={"app": unique_app}).json()["calls"] == []
    small = rest.post(route, json={"args": ["x" * 1000]})
    assert small.status_code == 202


def test_malformed_json_and_wrong_types_are_422(rest: httpx.Client, unique_app: str) -> None:
    deploy_basic(unique_app)
    route = f"/v1/apps/{unique_app}/functions/echo/calls"
    json_header = {"Content-Type": "application/json"}
    detail = assert_rejected_json(rest.post(route, content=b'{"args": [1,', headers=json_header))
    assert detail[0]["type"] == "json_invalid"
    for body in ({"args": 5}, {"args": "abc"}, {"kwargs": [1]}, {"kwargs": {"a": 1}, "x": 1},
                 [1, 2], "text", None):
        detail = assert_rejected_json(rest.post(route, json=body))
        assert detail[0]["loc"][0] == "body", (body, detail)
    assert_rejected_json(rest.post(route, content=b"", headers=json_header))
    assert_rejected_json(rest.post("/v1/calls/outcomes", json={"call_ids": "fc-x"}))
    assert_rejected_json(rest.post("/v1/calls/outcomes",
                                   json={"call_ids": [new_call_id()], "wait": 61}))
    assert_rejected_json(rest.post(f"{route}/pickled", json={"calls": [{"call_id": 1}]}))
    too_long = "k" * 201
    assert_rejected_json(rest.post(route, json={}, headers={"Idempotency-Key": too_long}))
    # Nothing was spawned by any of them.
    assert rest.get("/v1/calls", params={"app": unique_app}).json()["calls"] == []


# ---- metrics ---------------------------------------------------------------------------


def test_metrics_count_calls_per_app_and_function(rest: httpx.Client, unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def fine() -> int:
        return 1

    @app.function()
    def broken() -> int:
        raise KeyError("x")

    app.deploy()
    ids = [spawn(rest, unique_app, "fine"), spawn(rest, unique_app, "fine"),
           spawn(rest, unique_app, "broken")]
    for call_id in ids:
        finished(rest, call_id)

    def samples() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        response = rest.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        found = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.labels.get("app") == unique_app:
                    labels = {k: v for k, v in sample.labels.items() if k != "app"}
                    found[(sample.name, frozenset(labels.items()))] = sample.value
        fine_key = frozenset({("function", "fine"), ("state", "succeeded")})
        if found.get(("rayfn_calls_finished_total", fine_key)) != 2:
            return None
        if found.get(("rayfn_attempt_duration_seconds_count",
                      frozenset({("function", "fine")}))) != 2:
            return None
        return found

    found = until(samples, 20, "the metrics never counted the finished calls", every=0.25)
    fine_only = frozenset({("function", "fine")})
    broken_only = frozenset({("function", "broken")})
    assert found[("rayfn_calls_accepted_total", fine_only)] == 2
    assert found[("rayfn_calls_accepted_total", broken_only)] == 1
    assert found[("rayfn_calls_finished_total",
                  frozenset({("function", "broken"), ("state", "failed")}))] == 1
    assert found[("rayfn_calls_queued", fine_only)] == 0
    assert found[("rayfn_calls_running", broken_only)] == 0
    assert found[("rayfn_attempt_duration_seconds_count", broken_only)] == 1
    assert found[("rayfn_attempt_duration_seconds_bucket",
                  frozenset({("function", "fine"), ("le", "+Inf")}))] == 2
    assert found[("rayfn_attempt_duration_seconds_sum", fine_only)] > 0

    text = rest.get("/metrics").text
    for name in ("rayfn_calls_accepted", "rayfn_calls_finished", "rayfn_calls_queued",
                 "rayfn_attempt_duration_seconds"):
        assert any(line.startswith(name) and f'app="{unique_app}"' in line
                   and 'function="fine"' in line for line in text.splitlines()), name
