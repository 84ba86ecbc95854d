"""Scenarios 1 and 6: the registry actor dies while calls are queued, running, or being
spawned. Every accepted call must end with its result."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import ray

import rayfn
from rayfn_service.names import REGISTRY_ACTOR

from .harness import Tally, read_runs, settle, wait_until

# Drills run minutes on a busy machine; the default per-test limit is for ordinary tests.
pytestmark = [pytest.mark.fault, pytest.mark.timeout(900)]


def _registry_pid(namespace: str) -> int:
    handle = ray.get_actor(REGISTRY_ACTOR, namespace=namespace)
    return int(ray.get(handle.ping.remote(), timeout=120)["pid"])


def test_registry_killed_three_times_during_2000_calls(
    isolated_registry: Callable[..., Any], unique_app: str, tmp_path: Path
) -> None:
    settings = isolated_registry()
    log = tmp_path / "runs"
    n = 2000
    app = rayfn.App(unique_app)

    @app.function(max_containers=4)
    def job(i: int, log: str) -> int:
        import time

        with open(log, "a") as f:
            f.write(f"{i}\n")
        time.sleep(0.01)
        return i * 2

    app.deploy()
    tally = Tally(
        "1. registry killed three times during 2,000 calls",
        fault="registry actor: `ray.kill` (restarted by Ray), SIGKILL of its process, "
        "`ray.kill` again; at 10 %, 40 % and 70 % of the calls run",
    )
    started = time.monotonic()
    calls = job.spawn_map(range(n), [str(log)] * n)
    tally.accepted = len(calls)
    kills: list[Callable[[], None]] = [
        lambda: ray.kill(ray.get_actor(REGISTRY_ACTOR, namespace=settings.namespace),
                         no_restart=False),
        lambda: os.kill(_registry_pid(settings.namespace), signal.SIGKILL),
        lambda: ray.kill(ray.get_actor(REGISTRY_ACTOR, namespace=settings.namespace),
                         no_restart=False),
    ]
    for fraction, kill in zip((0.1, 0.4, 0.7), kills, strict=True):
        wait_until(lambda f=fraction: len(read_runs(log)) >= f * n, timeout=600,
                   what=f"{fraction:.0%} of the calls to run")
        kill()
        tally.faults_injected += 1

    settle(tally, calls, [i * 2 for i in range(n)], timeout=600)
    tally.seconds = time.monotonic() - started
    runs = read_runs(log)
    tally.count_runs(runs, [str(i) for i in range(n)])
    tally.record()
    assert tally.lost == 0 and tally.failed == 0, tally.notes[:20]
    assert tally.completed == n
    assert set(runs) == {str(i) for i in range(n)}


def test_flood_of_spawns_with_the_registry_sigkilled(
    isolated_registry: Callable[..., Any], unique_app: str, tmp_path: Path
) -> None:
    settings = isolated_registry()
    log = tmp_path / "runs"
    app = rayfn.App(unique_app)

    @app.function(max_containers=4)
    def job(key: str, log: str) -> str:
        with open(log, "a") as f:
            f.write(f"{key}\n")
        return key.upper()

    app.deploy()
    tally = Tally(
        "6. registry SIGKILLed during a flood of concurrent spawns",
        fault="8 threads spawn 150 calls each, one `spawn` at a time; the registry's "
        "process is SIGKILLed once 300 IDs have been handed out",
    )
    received: list[tuple[rayfn.FunctionCall[Any], str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(t: int) -> None:
        try:
            for k in range(150):
                key = f"k{t}x{k}"
                call = job.spawn(key, str(log))
                with lock:
                    received.append((call, key.upper()))
        except BaseException as exc:  # reported below; a client must never give up
            errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(received) >= 300 or bool(errors), timeout=300,
               what="300 spawns to be accepted")
    os.kill(_registry_pid(settings.namespace), signal.SIGKILL)
    tally.faults_injected = 1
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors
    tally.accepted = len(received)
    settle(tally, [c for c, _ in received], [want for _, want in received], timeout=600)
    tally.seconds = time.monotonic() - started
    runs = read_runs(log)
    tally.count_runs(runs, [want.lower() for _, want in received])
    tally.notes.append(f"{len({c.object_id for c, _ in received})} distinct call IDs handed out")
    tally.record()
    assert tally.accepted == 8 * 150
    assert tally.lost == 0 and tally.failed == 0, tally.notes[:20]
    assert len({c.object_id for c, _ in received}) == tally.accepted
