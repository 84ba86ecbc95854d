"""The contract between the SDK and the service: operations, transports, retries, and the
import line between the two packages."""

from __future__ import annotations

import ast
import asyncio
import inspect
from pathlib import Path

import pytest

from rayfn._client.http import _HANDLERS, HttpClient
from rayfn.exception import ConnectionError, InvalidError, NotFoundError
from rayfn.protocol import retry as retry_module
from rayfn.protocol.operations import RegistryApi, operation_name
from rayfn.protocol.retry import Backoff, Transient, retry, retry_async
from rayfn.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = {name for name, member in vars(RegistryApi).items()
              if inspect.iscoroutinefunction(member)}
# Operations for code inside the cluster (health, reports of workers, metrics for the
# server itself): the REST API does not offer them to SDK clients.
NOT_OVER_REST = {"ping", "wait", "metrics", "attempt_started", "attempt_output",
                 "attempt_stuck", "attempt_values", "secret_values"}


def test_an_operation_is_named_only_through_its_declaration() -> None:
    assert operation_name(RegistryApi.status) == "status"
    assert operation_name(RegistryApi.list_calls) == "list_calls"

    async def status(self: object, call_id: str) -> None: ...

    with pytest.raises(TypeError, match="not an operation"):
        operation_name(status)  # the same name, not the declaration
    with pytest.raises(TypeError, match="not an operation"):
        operation_name(print)


def test_every_operation_is_either_a_rest_route_or_kept_inside_the_cluster() -> None:
    assert set(_HANDLERS) == OPERATIONS - NOT_OVER_REST
    assert NOT_OVER_REST <= OPERATIONS


def test_the_http_client_refuses_an_operation_it_has_no_route_for() -> None:
    client = HttpClient(Settings(server_url="http://127.0.0.1:9", token="t"))
    try:
        with pytest.raises(InvalidError, match="ping is not offered over REST"):
            client.call(RegistryApi.ping)
    finally:
        client.close()


def test_backoff_doubles_up_to_its_cap_and_stops_at_the_budget() -> None:
    backoff = Backoff(budget=5.0)
    delays = []
    while (delay := backoff.next_delay()) is not None and len(delays) < 10:
        delays.append(delay)
    assert delays[:5] == [0.1, 0.2, 0.4, 0.8, 1.6]
    assert max(delays) == retry_module.MAX_DELAY_SECONDS
    assert Backoff(budget=0.0).next_delay() is None


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(retry_module.time, "sleep", slept.append)

    async def asleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(retry_module.asyncio, "sleep", asleep)
    return slept


def test_a_transient_error_is_retried_until_the_attempt_succeeds(no_sleep: list[float]) -> None:
    answers: list[object] = [OSError("refused"), Transient(NotFoundError("503")), "ok"]
    retried: list[BaseException] = []

    def attempt() -> str:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return str(answer)

    assert retry(attempt, budget=10, transient=(OSError,), give_up=lambda e: e,
                 on_retry=retried.append) == "ok"
    assert no_sleep == [0.1, 0.2]
    assert [type(e) for e in retried] == [OSError, NotFoundError]  # the error, unwrapped


def test_an_error_that_is_not_transient_is_raised_at_once(no_sleep: list[float]) -> None:
    def attempt() -> str:
        raise NotFoundError("no such call")

    with pytest.raises(NotFoundError):
        retry(attempt, budget=10, transient=(OSError,), give_up=lambda e: e)
    assert no_sleep == []


def test_past_the_budget_the_caller_names_the_error(no_sleep: list[float]) -> None:
    def attempt() -> str:
        raise Transient(OSError("still restarting"))

    def give_up(error: BaseException) -> BaseException:
        assert isinstance(error, OSError)
        return ConnectionError(f"gave up: {error}")

    with pytest.raises(ConnectionError, match="gave up: still restarting"):
        retry(attempt, budget=0.0, transient=(), give_up=give_up)


def test_the_async_retry_waits_without_blocking(no_sleep: list[float]) -> None:
    calls = 0

    async def attempt() -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise OSError("refused")
        return calls

    result = asyncio.run(retry_async(attempt, budget=10, transient=(OSError,),
                                     give_up=lambda e: e))
    assert result == 3 and no_sleep == [0.1, 0.2]


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_service_imports_nothing_private_from_the_sdk() -> None:
    private = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "service").rglob("*.py")
        for name in _imports(path)
        if name.startswith("rayfn.") and any(part.startswith("_") and part != "__main__"
                                             for part in name.split(".")[1:])
    }
    assert private == set()


def test_the_sdk_library_does_not_import_the_service() -> None:
    """Only the operator CLI (start, stop, token) reaches into the service package."""
    reaching = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "sdk" / "rayfn").rglob("*.py")
        if "cli" not in path.relative_to(ROOT / "sdk" / "rayfn").parts
        for name in _imports(path)
        if name.split(".")[0] == "rayfn_service"
    }
    assert reaching == set()
