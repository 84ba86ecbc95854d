"""Spawning, polling and the outcomes a call can have, on a real Ray."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import rayfn
from rayfn.exception import InvalidError, NotFoundError, RemoteError, SerializationError
from rayfn.protocol.operations import RegistryApi
from rayfn.protocol.records import CallQuery
from rayfn.states import CallState

pytestmark = pytest.mark.usefixtures("transport")


class JobError(Exception):
    """A user exception the client can import: re-raised with its own type."""


class UnbuildableError(Exception):
    """Cannot be unpickled: __init__ needs two arguments, pickling stores one."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}/{b}")


def deploy(app: rayfn.App) -> None:
    app.deploy()


def test_spawn_and_poll(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def process_job(data: str) -> dict[str, str]:
        return {"result": data}

    deploy(app)
    call = rayfn.Function.from_name(unique_app, "process_job").spawn("my-data")
    assert call.object_id.startswith("fc-") and len(call.object_id) == 29
    fetched = rayfn.FunctionCall.from_id(call.object_id)
    assert fetched.get(timeout=60) == {"result": "my-data"}
    assert fetched.get(timeout=0) == {"result": "my-data"}  # get can be repeated
    status = fetched.status()
    assert status.state is CallState.SUCCEEDED
    assert status.attempts == 1
    assert status.created_at <= status.started_at <= status.finished_at  # type: ignore[operator]
    assert status.expires_at is not None and status.expires_at > status.finished_at  # type: ignore[operator]


def test_pending_raises_builtin_timeout_error(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def slow(seconds: float) -> str:
        import time

        time.sleep(seconds)
        return "done"

    deploy(app)
    call = slow.spawn(3)
    with pytest.raises(TimeoutError):
        call.get(timeout=0)
    with pytest.raises(rayfn.exception.TimeoutError):
        call.get(timeout=0.2)
    assert call.get(timeout=None) == "done"


def test_remote_local_and_decorated_spawn(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def add(a: int, b: int = 1) -> int:
        return a + b

    deploy(app)
    assert add.local(1, b=2) == 3
    assert add.remote(40, b=2) == 42
    assert add.spawn(1).get(timeout=60) == 2


def test_unknown_and_malformed_ids() -> None:
    with pytest.raises(InvalidError):
        rayfn.FunctionCall.from_id("not-an-id")
    with pytest.raises(InvalidError):
        rayfn.FunctionCall.from_id("fc-" + "u" * 26)
    unknown = rayfn.FunctionCall.from_id("fc-01ARZ3NDEKTSV4RRFFQ69G5FAV")
    with pytest.raises(NotFoundError):
        unknown.get(timeout=0)
    with pytest.raises(NotFoundError):
        unknown.status()
    with pytest.raises(NotFoundError):
        unknown.cancel()


def test_unknown_app_or_function_raises_not_found_on_first_use(unique_app: str) -> None:
    missing = rayfn.Function.from_name("no-such-app-" + unique_app, "f")  # lazy: no error yet
    with pytest.raises(NotFoundError, match="not deployed"):
        missing.spawn(1)
    app = rayfn.App(unique_app)

    @app.function()
    def present() -> int:
        return 1

    deploy(app)
    with pytest.raises(NotFoundError, match="no function 'absent'"):
        rayfn.Function.from_name(unique_app, "absent").spawn()
    with pytest.raises(NotFoundError):
        rayfn.Function.from_name(unique_app, "absent").hydrate()


def test_user_exception_reraised_with_type_and_remote_traceback(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def fails(kind: str) -> None:
        if kind == "job":
            raise JobError("bad input 42")
        raise UnbuildableError("a", "b")

    deploy(app)
    call = fails.spawn("job")
    with pytest.raises(JobError, match="bad input 42") as info:
        call.get(timeout=60)
    cause = info.value.__cause__
    assert isinstance(cause, rayfn.exception.RemoteTraceback)
    assert "raise JobError" in cause.text or "JobError: bad input 42" in cause.text
    status = call.status()
    assert status.state is CallState.FAILED
    assert status.error_type is not None and status.error_type.endswith("JobError")

    with pytest.raises(RemoteError) as remote:
        fails.spawn("unbuildable").get(timeout=60)
    assert remote.value.type_name.endswith("UnbuildableError")
    assert "UnbuildableError" in remote.value.traceback


def test_unpicklable_arguments_rejected_before_queueing(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def takes(x: object) -> None:
        return None

    deploy(app)
    client = rayfn._client.get_client()
    before = client.call(RegistryApi.list_calls, CallQuery(app=unique_app, limit=1000))
    with pytest.raises(SerializationError):
        takes.spawn(threading.Lock())
    assert client.call(RegistryApi.list_calls, CallQuery(app=unique_app, limit=1000)) == before


def test_unpicklable_result_fails_with_serialization_error(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def returns_lock() -> object:
        import threading

        return threading.Lock()

    deploy(app)
    with pytest.raises(SerializationError):
        returns_lock.remote()


def test_map_spawn_map_and_gather(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def square(x: int) -> int:
        if x == 13:
            raise JobError("unlucky")
        return x * x

    deploy(app)
    inputs = [i for i in range(30) if i != 13]
    assert list(square.map(inputs)) == [i * i for i in inputs]
    assert sorted(square.map(inputs, order_outputs=False)) == sorted(i * i for i in inputs)
    results = list(square.map(range(15), return_exceptions=True))
    assert isinstance(results[13], JobError)
    assert results[14] == 196
    with pytest.raises(JobError):
        list(square.map(range(15)))
    calls = square.spawn_map(range(5))
    assert all(isinstance(c, rayfn.FunctionCall) for c in calls)
    assert rayfn.FunctionCall.gather(*calls) == [0, 1, 4, 9, 16]
    assert list(square.starmap([(2,), (3,)])) == [4, 9]


def test_get_from_many_threads(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def echo(x: int) -> int:
        import time

        time.sleep(0.5)
        return x

    deploy(app)
    call = echo.spawn(7)
    results: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(rayfn.FunctionCall.from_id(call.object_id).get(timeout=60))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == [7] * 16


def test_redeploy_serves_new_calls_and_running_calls_finish_on_their_version(
    unique_app: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"

    def make(version: str) -> rayfn.App:
        app = rayfn.App(unique_app)

        @app.function(name="which")
        def which(gate_path: str) -> str:
            import os
            import time

            while not os.path.exists(gate_path):
                time.sleep(0.05)
            return version

        return app

    make("v1").deploy()
    fn = rayfn.Function.from_name(unique_app, "which")
    old = fn.spawn(str(gate))
    _wait_for_state(old, CallState.RUNNING)
    make("v2").deploy()
    new = fn.spawn(str(gate))
    gate.touch()
    assert old.get(timeout=60) == "v1"
    assert new.get(timeout=60) == "v2"
    assert new.status().version == old.status().version + 1


def test_ephemeral_run_stops_functions_when_block_ends(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def hello(name: str) -> str:
        return f"hello {name}"

    with app.run():
        assert hello.remote("run") == "hello run"
        running = [a.name for a in rayfn._client.get_client().call(RegistryApi.list_apps)]
        assert any(n.startswith(unique_app + ".run-") for n in running)
        ephemeral_name = hello.app_name
    apps = rayfn._client.get_client().call(RegistryApi.list_apps)
    assert not any(a.name == ephemeral_name for a in apps)
    with pytest.raises(NotFoundError):
        rayfn.Function.from_name(ephemeral_name, "hello").spawn("late")


def test_nested_spawn_from_inside_a_function(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def leaf(x: int) -> int:
        return x + 1

    @app.function()
    def parent(x: int) -> int:
        return leaf.remote(x) * 10

    deploy(app)
    assert parent.remote(1) == 20


def _wait_for_state(call: rayfn.FunctionCall[object], state: CallState) -> None:
    import time

    deadline = time.monotonic() + 60
    while call.status().state is not state:
        assert time.monotonic() < deadline, f"{call} never reached {state}"
        time.sleep(0.05)


def test_a_burst_of_spawns_is_committed_before_ids_are_seen(unique_app: str) -> None:
    """Spawns in a loop return once queued; each ID read is a committed call."""
    app = rayfn.App(unique_app)

    @app.function()
    def double(x: int) -> int:
        return 2 * x

    deploy(app)
    calls = [double.spawn(i) for i in range(300)]
    ids = [c.object_id for c in calls]
    assert len(set(ids)) == 300
    for call_id in ids[::50]:  # a fresh handle asks the service, not this process
        assert rayfn.FunctionCall.from_id(call_id).status().call_id == call_id
    assert rayfn.FunctionCall.gather(*calls) == [2 * i for i in range(300)]


def test_a_burst_into_a_stopped_app_is_refused(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def noop(x: int) -> int:
        return x

    deploy(app)
    warm = [noop.spawn(i) for i in range(5)]
    assert rayfn.FunctionCall.gather(*warm) == list(range(5))
    # Stopped behind this process's back (as another process would): a burst of spawns
    # is refused, at a spawn or when its calls are looked at.
    rayfn._client.get_client().call(RegistryApi.stop_app, unique_app)
    with pytest.raises(NotFoundError):
        ids = [call.object_id for call in [noop.spawn(i) for i in range(20)]]
        raise AssertionError(f"accepted after the app stopped: {ids[:3]}")
