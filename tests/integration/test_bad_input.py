"""Bad input, tried as a user would: each gets a clear rayfn error and the service keeps
serving. Every test runs over both SDK transports (Ray and HTTP) and also reads the same
call over raw REST, so docs/bad-input.md can name one test per row.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import rayfn
from rayfn.exception import (
    ConflictError,
    ExecutionError,
    InvalidError,
    RemoteError,
    ResourcesUnavailableError,
    SerializationError,
)
from rayfn.protocol.ids import new_call_id
from rayfn.protocol.operations import RegistryApi
from rayfn.protocol.records import CallQuery, DeployedFunction
from rayfn.settings import get_settings
from rayfn.states import CallState

from .waiting import wait_until

pytestmark = pytest.mark.usefixtures("transport")
MiB = 1 << 20


# ---- helpers ---------------------------------------------------------------------


def rest_result(call_id: str, wait: float = 60.0) -> tuple[int, dict[str, Any]]:
    """The call's result route over raw REST: (status, JSON error body or {})."""
    from rayfn_service.server_process import server_url

    settings = get_settings()
    with httpx.Client(base_url=server_url(settings), timeout=120,
                      headers={"Authorization": f"Bearer {settings.read_token()}"}) as http:
        response = http.get(f"/v1/calls/{call_id}/result", params={"wait": wait})
    body = response.json() if response.headers["content-type"].startswith(
        "application/json") else {}
    return response.status_code, body


def assert_still_serving(app_name: str) -> None:
    """A normal call of a fresh function works after the bad input."""
    app = rayfn.App(app_name + "-ok")

    @app.function()
    def ping(x: int) -> int:
        return x + 1

    app.deploy()
    assert ping.remote(41) == 42


def queued_calls(app_name: str) -> list[Any]:
    query = CallQuery(app=app_name, limit=1000)
    return rayfn._client.get_client().call(RegistryApi.list_calls, query)



# ---- arguments -------------------------------------------------------------------


def test_wrong_number_of_arguments(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function(retries=3)
    def pair(a: int, b: int) -> int:
        return a + b

    app.deploy()
    # The signature is known where the function is declared: refused before queueing.
    for bad in ((1,), (1, 2, 3)):
        with pytest.raises(InvalidError, match="wrong arguments"):
            pair.spawn(*bad)
    with pytest.raises(InvalidError, match="unexpected keyword"):
        pair.spawn(1, 2, c=3)
    with pytest.raises(InvalidError, match="wrong arguments"):
        pair.spawn_map([1, 2])
    assert queued_calls(unique_app) == []
    # Looked up by name, the worker checks: the call fails at once, without retries.
    by_name = rayfn.Function.from_name(unique_app, "pair")
    call = by_name.spawn(1)
    with pytest.raises(InvalidError, match=r"pair\(a, b\): wrong arguments: missing"):
        call.get(timeout=60)
    status = call.status()
    assert status.state is CallState.FAILED and status.attempts == 1
    code, body = rest_result(call.object_id)
    assert code == 424 and body["error"]["type"] == "rayfn.exception.InvalidError"
    assert by_name.spawn(1, 2).get(timeout=60) == 3


def test_unpicklable_arguments_sent_anyway_fail_as_serialization_errors(
    unique_app: str,
) -> None:
    app = rayfn.App(unique_app)

    @app.function(retries=3)
    def takes(x: object) -> object:
        return x

    app.deploy()
    # Bytes that are no pickle at all, sent past the SDK (as any REST client could).
    call_id = new_call_id()
    rayfn._client.get_client().call(RegistryApi.spawn, unique_app, "takes",
                                    [(call_id, b"not a pickle")])
    call = rayfn.FunctionCall.from_id(call_id)
    with pytest.raises(SerializationError, match="cannot deserialize the arguments"):
        call.get(timeout=60)
    assert call.status().attempts == 1  # not retried: it cannot get better
    code, body = rest_result(call_id)
    assert code == 424 and body["error"]["type"].endswith("SerializationError")
    assert takes.remote("fine") == "fine"


def test_inputs_over_the_size_limit(unique_app: str) -> None:
    limit = get_settings().max_input_bytes
    app = rayfn.App(unique_app)

    @app.function()
    def size(data: bytes) -> int:
        return len(data)

    app.deploy()
    with pytest.raises(InvalidError, match="RAYFN_MAX_INPUT_BYTES"):
        size.spawn(b"x" * (limit + 1))
    with pytest.raises(InvalidError, match="the limit is"):
        list(size.map([b"x", b"x" * (limit + 1)]))
    # The service checks too, for clients that skip the SDK's check.
    with pytest.raises(InvalidError, match="the limit is"):
        rayfn._client.get_client().call(RegistryApi.spawn,
            unique_app, "size", [(new_call_id(), b"x" * (limit + MiB))])
    assert queued_calls(unique_app) == []
    # Inputs under the limit whose sum is over it (and over a REST body) go in several
    # requests.
    chunk = 3 * MiB
    assert list(size.map([b"y" * chunk] * 5)) == [chunk] * 5


# ---- results ---------------------------------------------------------------------


def test_a_100_mib_result(unique_app: str, transport: str) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def big(n: int) -> bytes:
        return b"z" * n

    app.deploy()
    call = big.spawn(100 * MiB)
    value = call.get(timeout=240)
    assert len(value) == 100 * MiB and value[:1] == b"z"
    del value
    if transport == "http":  # raw REST too: not JSON (406), but there when asked pickled
        code, body = rest_result(call.object_id)
        assert code == 406 and body["error"]["type"] == "InvalidError"
        from rayfn_service.server_process import server_url

        settings = get_settings()
        response = httpx.get(f"{server_url(settings)}/v1/calls/{call.object_id}/result",
                             headers={"Authorization": f"Bearer {settings.read_token()}",
                                      "Accept": "application/x-python-pickle"}, timeout=120)
        assert response.status_code == 200 and len(response.content) > 100 * MiB
    assert_still_serving(unique_app)


def test_an_exception_class_the_client_cannot_import(unique_app: str, tmp_path: Path) -> None:
    module = f"worker_only_{new_call_id()[-8:].lower()}"
    folder = tmp_path / "worker-only"
    folder.mkdir()
    (folder / f"{module}.py").write_text(
        "class WorkerOnlyError(Exception):\n"
        "    '''Importable on the workers only.'''\n"
    )
    app = rayfn.App(unique_app)

    @app.function()
    def raises(where: str, name: str) -> None:
        import importlib
        import sys

        sys.path.insert(0, where)
        raise importlib.import_module(name).WorkerOnlyError("only the worker knows me")

    app.deploy()
    call = raises.spawn(str(folder), module)
    with pytest.raises(RemoteError, match="only the worker knows me") as info:
        call.get(timeout=60)
    assert info.value.type_name == f"{module}.WorkerOnlyError"
    assert "WorkerOnlyError" in info.value.traceback
    with pytest.raises(ModuleNotFoundError):
        __import__(module)  # this process truly cannot import it
    code, body = rest_result(call.object_id)
    assert code == 424 and body["error"]["type"] == f"{module}.WorkerOnlyError"
    assert body["error"]["message"] == "only the worker knows me"


def test_a_recursion_error(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def endless(n: int) -> int:
        def down(k: int) -> int:
            return down(k + 1)

        return down(n)

    app.deploy()
    call = endless.spawn(0)
    with pytest.raises(RecursionError) as info:
        call.get(timeout=60)
    assert "maximum recursion depth" in str(info.value)
    assert isinstance(info.value.__cause__, rayfn.exception.RemoteTraceback)
    code, body = rest_result(call.object_id)
    assert code == 424 and body["error"]["type"] == "builtins.RecursionError"
    assert_still_serving(unique_app)


# ---- functions that misbehave ----------------------------------------------------


def test_a_function_that_calls_os_exit(unique_app: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    app = rayfn.App(unique_app)

    @app.function(retries=2)
    def quits(path: str) -> None:
        import os

        with open(path, "a") as f:
            f.write("run\n")
        os._exit(3)

    app.deploy()
    call = quits.spawn(str(runs))
    with pytest.raises(ExecutionError, match="quits could not run"):
        call.get(timeout=240)
    # Ray re-ran it on a fresh worker `system_retries` times; user retries are not used.
    assert len(runs.read_text().splitlines()) == get_settings().system_retries + 1
    assert call.status().state is CallState.FAILED
    code, body = rest_result(call.object_id)
    assert code == 424 and body["error"]["type"] == "rayfn.exception.ExecutionError"
    assert_still_serving(unique_app)


def test_children_that_outlive_the_call_are_ended(unique_app: str, tmp_path: Path) -> None:
    import psutil

    pids_file = tmp_path / "pids"
    app = rayfn.App(unique_app)

    @app.function()
    def forks(path: str) -> str:
        import os
        import subprocess
        import sys
        import time

        child = subprocess.Popen(["sleep", "300"])  # a plain child
        # A daemon: double fork and a new session, so its parent is gone at once.
        subprocess.run([sys.executable, "-c",
                        "import os, subprocess, sys\n"
                        "if os.fork() == 0:\n"
                        "    os.setsid()\n"
                        "    p = subprocess.Popen(['sleep', '300'])\n"
                        f"    open({path!r} + '.daemon', 'w').write(str(p.pid))\n"
                        "    p.wait()\n"
                        "os._exit(0)\n"], check=True)
        while not os.path.exists(path + ".daemon"):
            time.sleep(0.01)
        with open(path, "w") as f:
            f.write(f"{child.pid} {open(path + '.daemon').read()}")
        return "returned"

    app.deploy()
    assert forks.remote(str(pids_file)) == "returned"
    pids = [int(p) for p in pids_file.read_text().split()]
    assert len(pids) == 2

    def ended(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_until(lambda: all(ended(p) for p in pids), 30, "the children to be ended")
    assert_still_serving(unique_app)


# ---- names -------------------------------------------------------------------------


ODD_NAMES = ["has space", "ünïcödé", "a/b", "../escape", "..", "x" * 1000, "", "nul\0byte",
             "back\\slash"]


def test_odd_names_are_refused_and_never_touch_the_state_directory(unique_app: str) -> None:
    state_dir = get_settings().state_dir
    before = sorted(p.name for p in state_dir.iterdir())
    client = rayfn._client.get_client()
    code = b"any bytes"
    for name in ODD_NAMES:
        if name:  # App("") is the default name, "main"
            with pytest.raises(InvalidError):
                rayfn.App(name)
        with pytest.raises(InvalidError):
            rayfn.Function.from_name(name, "f")
        with pytest.raises(InvalidError):
            rayfn.Function.from_name(unique_app, name)
        with pytest.raises(InvalidError):
            client.call(RegistryApi.deploy, name, [DeployedFunction("f", "{}", code, "{}")])
        with pytest.raises(InvalidError):
            client.call(RegistryApi.deploy, unique_app, [DeployedFunction(name, "{}", code, "{}")])
        with pytest.raises(InvalidError):
            client.call(RegistryApi.spawn, name, "f", [(new_call_id(), b"")])
    app = rayfn.App(unique_app)
    with pytest.raises(InvalidError):
        app.function(name="a/b")(lambda: None)
    after = sorted(p.name for p in state_dir.iterdir())
    assert after == before
    assert not any(a.name not in before and "escape" in a.name
                   for a in state_dir.parent.iterdir())
    assert_still_serving(unique_app)


# ---- deploys -----------------------------------------------------------------------


def test_two_deploys_of_one_app_at_once(unique_app: str) -> None:
    def make(tag: str) -> rayfn.App:
        app = rayfn.App(unique_app)

        @app.function(name="shared")
        def shared() -> str:
            return tag

        @app.function(name=f"only_{tag}")
        def only() -> str:
            return tag

        return app

    versions: dict[str, int] = {}
    errors: list[BaseException] = []

    def deploy(tag: str) -> None:
        try:
            versions[tag] = make(tag).deploy()
        except ConflictError as exc:  # allowed: one of them may be refused
            errors.append(exc)

    threads = [threading.Thread(target=deploy, args=(tag,)) for tag in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(versions) + len(errors) == 2 and versions
    assert len(set(versions.values())) == len(versions)  # never the same version twice
    apps = rayfn._client.get_client().call(RegistryApi.list_apps)
    (info,) = [a for a in apps if a.name == unique_app]
    winner = max(versions, key=lambda tag: versions[tag])
    assert info.version == versions[winner]
    assert sorted(info.functions) == sorted(["shared", f"only_{winner}"])
    shared = rayfn.Function.from_name(unique_app, "shared")
    assert shared.remote() == winner
    loser = ({"a", "b"} - {winner}).pop()
    with pytest.raises(rayfn.exception.NotFoundError):
        rayfn.Function.from_name(unique_app, f"only_{loser}").spawn()


# ---- get -----------------------------------------------------------------------------


def test_negative_and_huge_timeouts_in_get(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def slow(seconds: float) -> str:
        import time

        time.sleep(seconds)
        return "done"

    app.deploy()
    call = slow.spawn(2)
    for bad in (-1, -0.001, math.nan, "5", True):
        with pytest.raises(InvalidError, match="timeout"):
            call.get(timeout=bad)  # type: ignore[arg-type]
    assert call.get(timeout=1e9) == "done"  # waits in bounded chunks, returns at the end
    assert call.get(timeout=math.inf) == "done"
    assert slow.spawn(0).get(timeout=10**12) == "done"


# ---- resources no node has --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Ask:
    options: dict[str, Any]
    words: str


ASKS = [Ask({"gpu": 1}, "gpu=1"), Ask({"gpu": "A100:2"}, "gpu=2"), Ask({"cpu": 64}, "cpu=64"),
        Ask({"memory": 10**6}, "memory=")]


def test_resources_no_node_can_ever_have_fail_at_spawn(unique_app: str) -> None:
    app = rayfn.App(unique_app)
    for i, ask in enumerate(ASKS):
        app.function(name=f"needs_{i}", **ask.options)(lambda: "never")

    @app.function()
    def fits() -> str:
        return "ran"

    app.deploy()  # deploying is fine: the cluster may be given such nodes later
    for i, ask in enumerate(ASKS):
        fn = rayfn.Function.from_name(unique_app, f"needs_{i}")
        with pytest.raises(ResourcesUnavailableError, match="can never run") as info:
            fn.spawn()
        assert ask.words in str(info.value) and "no autoscaler" in str(info.value)
        assert isinstance(info.value, InvalidError)
    assert [c for c in queued_calls(unique_app) if c.function != "fits"] == []
    assert fits.remote() == "ran"


def test_queued_calls_of_a_function_no_node_can_run_fail(
    isolated_registry: Any, unique_app: str
) -> None:
    """Calls accepted when the cluster could run them (here: written to the store while
    the registry was down) fail with ResourcesUnavailableError once dispatched."""
    import ray

    from rayfn.protocol.payload import dumps_args
    from rayfn_service.launch import ensure_registry
    from rayfn_service.names import REGISTRY_ACTOR
    from rayfn_service.store import SqliteStore
    from rayfn_service.store.base import NewCall

    settings = isolated_registry()
    app = rayfn.App(unique_app)

    @app.function(gpu=1, retries=3)
    def needs_gpu() -> str:
        return "never"

    version = app.deploy()
    ray.kill(ray.get_actor(REGISTRY_ACTOR, namespace=settings.namespace), no_restart=True)
    ids = [new_call_id() for _ in range(3)]
    store = SqliteStore(settings.store_path)
    with store.transaction():
        store.insert_calls([NewCall(i, unique_app, "needs_gpu", version, dumps_args((), {}),
                                    time.time()) for i in ids])
    store.close()
    ensure_registry(settings)
    rayfn.connect(namespace=settings.namespace, state_dir=str(settings.state_dir))
    for call_id in ids:
        with pytest.raises(ResourcesUnavailableError, match="gpu=1"):
            rayfn.FunctionCall.from_id(call_id).get(timeout=60)
        status = rayfn.FunctionCall.from_id(call_id).status()
        assert status.state is CallState.FAILED and status.attempts == 1
    assert_still_serving(unique_app)

