"""Many pollers must not starve the registry: one REST server parks a bounded number of
waits there, health probes share pings, statuses never read results, and large results
are read off the server's event loop."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

import rayfn
from rayfn_service.names import REGISTRY_ACTOR

from .conftest import SecondServer, second_server

MAX_WAITERS = 3


@pytest.fixture
def bounded_server(tmp_path: Path) -> Iterator[SecondServer]:
    yield from second_server(tmp_path, {},
                             {"RAYFN_SERVER_MAX_WAITERS": str(MAX_WAITERS)})


def _ping(server: SecondServer) -> dict[str, Any]:
    handle = ray.get_actor(REGISTRY_ACTOR, namespace=server.namespace)
    info: dict[str, Any] = ray.get(handle.ping.remote(), timeout=60)
    return info


def _deploy(server: SecondServer, app_name: str) -> None:
    rayfn.connect(server.url, token=server.token)
    app = rayfn.App(app_name)

    @app.function()
    def slow(seconds: float) -> str:
        import time

        time.sleep(seconds)
        return "done"

    @app.function()
    def large(size: int) -> str:
        return "x" * size

    app.deploy()


def test_a_server_parks_a_bounded_number_of_waits_in_the_registry(
    bounded_server: SecondServer, unique_app: str
) -> None:
    _deploy(bounded_server, unique_app)
    with bounded_server.client() as http:
        call_id = http.post(f"/v1/apps/{unique_app}/functions/slow/calls",
                            json={"args": [6]}).json()["call_id"]

        def poll(route: str) -> httpx.Response:
            with bounded_server.client() as client:
                deadline = time.monotonic() + 120
                while True:
                    response = client.get(route, params={"wait": 30})
                    if response.status_code != 202 or time.monotonic() > deadline:
                        return response

        routes = [f"/v1/calls/{call_id}/result", f"/v1/calls/{call_id}"] * 10
        with concurrent.futures.ThreadPoolExecutor(len(routes)) as pool:
            polls = [pool.submit(poll, route) for route in routes]
            seen = []
            for _ in range(15):  # while the call runs and 20 clients wait on it
                seen.append(_ping(bounded_server)["waiting"])
                # Spawns still go through while every slot is taken.
                spawned = http.post(f"/v1/apps/{unique_app}/functions/slow/calls",
                                    json={"args": [0]})
                assert spawned.status_code == 202, spawned.text
                time.sleep(0.2)
            answers = [p.result(timeout=150) for p in polls]
    assert max(seen) == MAX_WAITERS, seen  # waits did park, and never more than the bound
    for route, answer in zip(routes, answers, strict=True):
        assert answer.status_code == 200, (route, answer.text)
        if route.endswith("/result"):
            assert answer.json() == "done"
        else:
            assert answer.json()["state"] == "succeeded"


def test_health_probes_share_registry_pings(bounded_server: SecondServer) -> None:
    before = _ping(bounded_server)["pings"]

    def probe(_: int) -> int:
        return httpx.get(bounded_server.url + "/healthz", timeout=60).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(probe, range(200)))
    assert codes == [200] * 200
    asked = _ping(bounded_server)["pings"] - before - 1  # less this test's own ping
    assert asked < 50, asked  # one ping per second of probing, not one per probe


def test_a_large_result_is_served_whole_and_its_status_without_it(
    bounded_server: SecondServer, unique_app: str
) -> None:
    _deploy(bounded_server, unique_app)
    size = 3 * 1024 * 1024  # over what the server reads on its event loop
    with bounded_server.client() as http:
        call_id = http.post(f"/v1/apps/{unique_app}/functions/large/calls",
                            json={"args": [size]}).json()["call_id"]
        response = http.get(f"/v1/calls/{call_id}/result", params={"wait": 60})
        assert response.status_code == 200
        assert response.json() == "x" * size
        status = http.get(f"/v1/calls/{call_id}")
        assert status.status_code == 200 and status.json()["state"] == "succeeded"
        assert len(status.content) < 4096
    assert rayfn.FunctionCall.from_id(call_id).get(timeout=60) == "x" * size
