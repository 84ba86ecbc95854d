"""Scenario 2: worker processes SIGKILLed at random while calls run. Ray re-runs the
attempt; no user retry is spent and every call ends with its result."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import rayfn
from rayfn.states import CallState

from .harness import Tally, read_runs, settle, wait_until

# Drills run minutes on a busy machine; the default per-test limit is for ordinary tests.
pytestmark = [pytest.mark.fault, pytest.mark.timeout(900)]


def test_workers_sigkilled_at_random_during_500_calls(
    isolated_registry: Callable[..., Any], unique_app: str, tmp_path: Path
) -> None:
    # Random kills can hit one call again and again; RAYFN_SYSTEM_RETRIES (3 by default)
    # bounds how often Ray re-runs it, so a worker that always crashes cannot loop forever.
    # The drill raises the bound so that it measures loss, not bad luck.
    isolated_registry(system_retries=10)
    log = tmp_path / "runs"
    running = tmp_path / "running"
    running.mkdir()
    n = 500
    app = rayfn.App(unique_app)

    @app.function(retries=0, max_containers=4)
    def job(i: int, log: str, running: str) -> int:
        import os
        import time

        with open(log, "a") as f:
            f.write(f"{i}\n")
        mark = os.path.join(running, str(os.getpid()))
        open(mark, "w").close()
        time.sleep(0.2)
        os.unlink(mark)
        return i * 2

    app.deploy()
    tally = Tally(
        "2. worker processes SIGKILLed at random during 500 calls of 0.2 s",
        fault="every 0.5-1.5 s, SIGKILL of a random worker process that is running a call; "
        "the function has `retries=0`; `RAYFN_SYSTEM_RETRIES=10`",
    )
    rng = random.Random(4)
    stop = threading.Event()

    def killer() -> None:
        while not stop.wait(rng.uniform(0.5, 1.5)):
            marks = list(running.iterdir())
            if not marks:
                continue
            victim = rng.choice(marks)
            try:
                os.kill(int(victim.name), signal.SIGKILL)
                tally.faults_injected += 1
            except ProcessLookupError:
                pass
            victim.unlink(missing_ok=True)

    started = time.monotonic()
    calls = job.spawn_map(range(n), [str(log)] * n, [str(running)] * n)
    tally.accepted = len(calls)
    thread = threading.Thread(target=killer)
    thread.start()
    try:
        settle(tally, calls, [i * 2 for i in range(n)], timeout=900)
    finally:
        stop.set()
        thread.join()
    tally.seconds = time.monotonic() - started
    runs = read_runs(log)
    tally.count_runs(runs, [str(i) for i in range(n)])
    attempts = [c.status() for c in calls]
    user_retries = sum(1 for s in attempts if s.attempts != 1)
    tally.notes.append(f"user retries used: {user_retries}")
    tally.record()
    assert tally.lost == 0 and tally.failed == 0, tally.notes[:20]
    assert tally.faults_injected > 0 and tally.ran_twice > 0, tally  # the drill hit calls
    assert all(s.state is CallState.SUCCEEDED for s in attempts)
    assert user_retries == 0, [s for s in attempts if s.attempts != 1][:5]


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
    wait_until(lambda: pids.exists() and pids.read_text().strip() != "", timeout=120,
               what="first run")
    os.kill(int(pids.read_text().split()[0]), signal.SIGKILL)
    assert call.get(timeout=120) == "finished on run 2"
    status = call.status()
    assert status.state is CallState.SUCCEEDED
    assert status.attempts == 1  # Ray re-ran it; no user retry was used
