"""Fuzz the live REST server from its own OpenAPI description (schemathesis).

Every operation gets a fixed budget of generated requests (valid ones, then invalid ones),
derandomized so each run sends the same. Each response must not be a 5xx, must have a
status the operation documents, and must match the documented schema, content type and
headers. About half the requests are aimed at a real deployed function and a real
finished call, so the fuzz reaches past "not found"; DELETE and deploy only ever see
generated names, and the only real call is finished, so no ``wait`` blocks.

Each operation is its own pytest item running a Hypothesis test over
``operation.as_strategy()``: schemathesis' lazy pytest loader (``from_fixture``) relies on
a pytest node attribute that pytest 9.2 no longer has.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import rayfn
from rayfn.protocol.ids import new_call_id
from rayfn.settings import get_settings

# Generated requests per operation: valid ones, then invalid ones. Derandomized, so every
# run (and CI) sends the same requests.
BUDGETS = ((GenerationMode.POSITIVE, 15), (GenerationMode.NEGATIVE, 10))
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance,
          content_type_conformance, response_headers_conformance]


@dataclasses.dataclass(frozen=True)
class Target:
    base_url: str
    token: str
    app: str
    function: str
    call_id: str  # a finished call of ``function``


@pytest.fixture(scope="module")
def fuzz_target(service: object) -> Iterator[Target]:
    """One small deployed app and a finished call; apps the fuzz deploys are stopped after."""
    from rayfn._client import reset
    from rayfn_service.server_process import server_url

    reset()
    session = get_settings()
    name = f"fuzz-{new_call_id()[-8:].lower()}"
    app = rayfn.App(name)

    @app.function(timeout=10)
    def echo(*args: Any, **kwargs: Any) -> Any:
        return [list(args), kwargs]

    app.deploy()
    base_url, token = server_url(session), session.read_token()
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"},
                      timeout=90) as client:
        before = {a["name"] for a in client.get("/v1/apps").json()["apps"]}
        response = client.post(f"/v1/apps/{name}/functions/echo/calls", json={"args": [1]})
        call_id = response.json()["call_id"]
        result = client.get(f"/v1/calls/{call_id}/result", params={"wait": 60})
        assert result.status_code == 200, result.text
        try:
            yield Target(base_url=base_url, token=token, app=name, function="echo",
                         call_id=call_id)
        finally:
            listed = client.get("/v1/apps")
            if listed.status_code == 200:  # stop what the fuzz deployed, and the target
                for deployed in listed.json()["apps"]:
                    if deployed["name"] not in before or deployed["name"] == name:
                        client.delete(f"/v1/apps/{deployed['name']}")
            reset()


@pytest.fixture(scope="module")
def live_schema(fuzz_target: Target) -> Any:
    """The schema the running server publishes at /openapi.json (default configuration,
    not a schemathesis.toml found on disk)."""
    return schemathesis.openapi.from_url(f"{fuzz_target.base_url}/openapi.json",
                                         config=SchemathesisConfig())


def _documented_operations() -> list[tuple[str, str]]:
    """The operations, known at collection (the server is not up yet): this code's own
    description, which the live one is checked against below."""
    from rayfn_service.api.app import create_app

    spec = create_app(get_settings()).app.app.openapi()  # guard, shortcuts, FastAPI
    return [(method.upper(), path) for path, methods in spec["paths"].items()
            for method in methods]


OPERATIONS = _documented_operations()


def _aim(case: Any, target: Target) -> None:
    """Point about half of the cases (chosen by their content, so a replay chooses the
    same) at the real function and the real call. Never DELETE or redeploy the target."""
    params = case.path_parameters
    if not params or case.method.upper() == "DELETE":
        return
    if set(params) == {"app"}:  # deploy: only under generated names
        return
    if zlib.crc32(repr(sorted(params.items())).encode()) % 2:
        return
    if "app" in params:
        params["app"] = target.app
    if "function" in params:
        params["function"] = target.function
    if "call_id" in params:
        params["call_id"] = target.call_id


def test_the_live_description_lists_these_operations(live_schema: Any) -> None:
    live = {(op.ok().method.upper(), op.ok().path) for op in live_schema.get_all_operations()}
    assert live == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_the_server_keeps_to_its_openapi_description(
    method: str, path: str, live_schema: Any, fuzz_target: Target
) -> None:
    operation = live_schema[path][method]
    auth = {"Authorization": f"Bearer {fuzz_target.token}"}
    for mode, budget in BUDGETS:
        strategy = operation.as_strategy(generation_mode=mode)

        @settings(max_examples=budget, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck), print_blob=False)
        @given(case=strategy)
        def fuzz(case: Any) -> None:
            _aim(case, fuzz_target)
            case.call_and_validate(headers=auth, checks=CHECKS)

        try:
            fuzz()
        except Unsatisfiable:
            # No request to this operation can be invalid (no body, and parameters any
            # string is valid for): nothing to send in negative mode.
            if mode is not GenerationMode.NEGATIVE:
                raise
