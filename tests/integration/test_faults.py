"""Accepted calls survive killed processes: the registry actor and Ray workers."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import ray

import rayfn
from rayfn.states import CallState
from rayfn_service.names import REGISTRY_ACTOR

pytestmark = pytest.mark.fault


def _wait_until(predicate: Callable[[], bool], timeout: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _registry(namespace: str) -> Any:
    return ray.get_actor(REGISTRY_ACTOR, namespace=namespace)


def test_registry_killed_while_200_calls_queued_or_running(
    isolated_registry: Callable[..., Any], unique_app: str, tmp_path: Path
) -> None:
    settings = isolated_registry()
    runs = tmp_path / "runs"
    runs.mkdir()
    app = rayfn.App(unique_app)

    @app.function(max_containers=4)
    def job(i: int, folder: str) -> int:
        import os
        import time

        time.sleep(0.1)
        # one file per run: a call that ran twice leaves two files
        open(os.path.join(folder, f"{i}-{os.getpid()}-{time.time_ns()}"), "w").close()
        return i * 2

    app.deploy()
    calls = job.spawn_map(range(200), [str(runs)] * 200)
    done = lambda n: len({p.name.split("-")[0] for p in runs.iterdir()}) >= n  # noqa: E731

    _wait_until(lambda: done(20), what="20 calls to finish")
    ray.kill(_registry(settings.namespace), no_restart=False)  # restart by Ray
    _wait_until(lambda: done(80), what="80 calls to finish after the first kill")
    pid = ray.get(_registry(settings.namespace).ping.remote(), timeout=120)["pid"]
    os.kill(pid, signal.SIGKILL)  # the actor's process dies without warning

    assert rayfn.FunctionCall.gather(*calls) == [i * 2 for i in range(200)]
    statuses = [c.status() for c in calls]
    assert all(s.state is CallState.SUCCEEDED for s in statuses)
    ran = {p.name.split("-")[0] for p in runs.iterdir()}
    assert ran == {str(i) for i in range(200)}  # every call ran; some may have run twice
    new_pid = ray.get(_registry(settings.namespace).ping.remote(), timeout=120)["pid"]
    assert new_pid != pid


def test_worker_killed_mid_call_completes_without_a_user_retry(
    unique_app: str, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    app = rayfn.App(unique_app)

    @app.function(retries=0)
    def victim(path: str) -> str:
        import os
        import time

        with open(path, "a") as f:
            f.write(f"{os.getpid()}\n")
        with open(path) as f:
            runs = len(f.read().splitlines())
        if runs == 1:
            time.sleep(60)  # killed here
        return f"finished on run {runs}"

    app.deploy()
    call = victim.spawn(str(pids))
    _wait_until(lambda: pids.exists() and pids.read_text().strip() != "", what="first run")
    os.kill(int(pids.read_text().split()[0]), signal.SIGKILL)
    assert call.get(timeout=120) == "finished on run 2"
    status = call.status()
    assert status.state is CallState.SUCCEEDED
    assert status.attempts == 1  # Ray re-ran it; no user retry was used
