"""Retries, timeouts, concurrency bounds, cancellation and retention, on a real Ray.

The functions record what happened to them (attempts, start and end times) in files, so
the assertions rest on what ran, not on what the service says about it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import rayfn
from rayfn.exception import CancelledError, FunctionTimeoutError, OutputExpiredError
from rayfn.protocol.operations import RegistryApi
from rayfn.states import CallState

from .waiting import wait_until

pytestmark = pytest.mark.usefixtures("transport")


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_retries_with_backoff_counted_by_the_function(unique_app: str, tmp_path: Path) -> None:
    log = tmp_path / "attempts"
    app = rayfn.App(unique_app)

    @app.function(retries=rayfn.Retries(max_retries=3, backoff_coefficient=2.0,
                                         initial_delay=0.5, max_delay=5.0))
    def flaky(path: str, succeed_on: int) -> int:
        import time

        with open(path, "a") as f:
            f.write(f"{time.time()}\n")
        with open(path) as f:
            attempt = len(f.read().splitlines())
        if attempt < succeed_on:
            raise RuntimeError(f"attempt {attempt} fails")
        return attempt

    app.deploy()
    call = flaky.spawn(str(log), 3)
    assert call.get(timeout=120) == 3
    times = [float(t) for t in _lines(log)]
    assert len(times) == 3
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # backoff: 0.5 s before the first retry, 1.0 s before the second
    assert gaps[0] >= 0.5 and gaps[1] >= 1.0, gaps
    assert call.status().attempts == 3

    exhausted = tmp_path / "exhausted"
    failing = flaky.spawn(str(exhausted), 99)
    with pytest.raises(RuntimeError, match="attempt 4 fails"):
        failing.get(timeout=120)
    assert len(_lines(exhausted)) == 4  # one attempt plus max_retries=3
    assert failing.status().state is CallState.FAILED


def test_timeout_force_stops_the_attempt_and_raises_function_timeout(
    unique_app: str, tmp_path: Path
) -> None:
    log = tmp_path / "starts"
    app = rayfn.App(unique_app)

    @app.function(timeout=1, retries=1)
    def sleeper(path: str) -> str:
        import time

        with open(path, "a") as f:
            f.write("start\n")
        time.sleep(60)  # not interruptible without force-cancel
        with open(path, "a") as f:
            f.write("end\n")
        return "never"

    app.deploy()
    call = sleeper.spawn(str(log))
    with pytest.raises(FunctionTimeoutError):
        call.get(timeout=120)
    status = call.status()
    assert status.state is CallState.TIMED_OUT
    assert status.attempts == 2  # the timeout was retried once
    assert _lines(log) == ["start", "start"]
    assert isinstance(FunctionTimeoutError("x"), TimeoutError)


def test_attempt_that_ignores_its_timeout_is_force_cancelled(
    unique_app: str, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    app = rayfn.App(unique_app)

    @app.function(timeout=1)
    def deaf(path: str) -> str:
        import signal
        import time

        # Block the alarm the executor uses to interrupt: like a C call that never
        # returns to Python, this attempt cannot be stopped from inside.
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])
        with open(path, "a") as f:
            f.write("start\n")
        time.sleep(60)
        with open(path, "a") as f:
            f.write("end\n")
        return "never"

    app.deploy()
    call = deaf.spawn(str(log))
    with pytest.raises(FunctionTimeoutError, match="worker was killed"):
        call.get(timeout=120)
    assert call.status().state is CallState.TIMED_OUT
    assert _lines(log) == ["start"]


def test_max_containers_is_a_hard_bound(unique_app: str, tmp_path: Path) -> None:
    app = rayfn.App(unique_app)

    @app.function(max_containers=2)
    def busy(path: str, i: int) -> int:
        import time

        start = time.time()
        time.sleep(0.4)
        with open(path, "a") as f:
            f.write(f"{start} {time.time()}\n")
        return i

    app.deploy()
    log = tmp_path / "intervals"
    assert list(busy.map([str(log)] * 10, range(10))) == list(range(10))
    intervals = [tuple(map(float, line.split())) for line in _lines(log)]
    assert len(intervals) == 10
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak <= 2, f"{peak} attempts ran at once"
    stats = {(s.app, s.function): s for s in rayfn._client.get_client().call(RegistryApi.stats)}
    assert stats[(unique_app, "busy")].window == 2


def test_cancel_queued_call_never_runs(unique_app: str, tmp_path: Path) -> None:
    app = rayfn.App(unique_app)

    @app.function(max_containers=1)
    def mark(path: str, hold: float) -> str:
        import time

        with open(path, "a") as f:
            f.write("ran\n")
        time.sleep(hold)
        return "ok"

    app.deploy()
    blocker = mark.spawn(str(tmp_path / "blocker"), 3)
    wait_until(lambda: _lines(tmp_path / "blocker"), what="the blocker to start")
    queued = mark.spawn(str(tmp_path / "queued"), 0)
    assert queued.status().state is CallState.QUEUED
    assert queued.cancel().state is CallState.CANCELLED
    with pytest.raises(CancelledError):
        queued.get(timeout=10)
    assert blocker.get(timeout=60) == "ok"
    after = mark.spawn(str(tmp_path / "after"), 0)  # the slot is free again
    assert after.get(timeout=60) == "ok"
    assert not (tmp_path / "queued").exists()
    # cancelling a finished call changes nothing
    assert blocker.cancel().state is CallState.SUCCEEDED
    assert blocker.get(timeout=0) == "ok"


def test_cancel_running_call_stops_it_and_does_not_retry(
    unique_app: str, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    app = rayfn.App(unique_app)

    @app.function(retries=3)
    def long(path: str) -> str:
        import time

        with open(path, "a") as f:
            f.write("start\n")
        time.sleep(30)
        with open(path, "a") as f:
            f.write("end\n")
        return "finished"

    app.deploy()
    call = long.spawn(str(log))
    wait_until(lambda: _lines(log), what="the call to start")
    assert call.cancel().state is CallState.CANCELLED
    with pytest.raises(CancelledError):
        call.get(timeout=10)
    time.sleep(3)  # long enough for a retry to have started, were there one
    assert _lines(log) == ["start"]
    assert call.status().attempts == 1


def test_results_expire_after_retention(isolated_registry: object, unique_app: str) -> None:
    isolated_registry(retention_seconds=2, sweep_interval_seconds=0.5)  # type: ignore[operator]
    app = rayfn.App(unique_app)

    @app.function()
    def value() -> str:
        return "fresh"

    app.deploy()
    call = value.spawn()
    assert call.get(timeout=60) == "fresh"
    wait_until(lambda: call.status().expired, timeout=30, what="expiry")
    with pytest.raises(OutputExpiredError):
        call.get(timeout=0)
    with pytest.raises(TimeoutError):  # Modal's examples catch it as a TimeoutError
        call.get(timeout=0)
    # the tombstone stays: the ID answers "expired", not "unknown"
    assert call.status().state is CallState.SUCCEEDED


def test_status_reports_retrying_and_error(unique_app: str, tmp_path: Path) -> None:
    app = rayfn.App(unique_app)

    @app.function(retries=rayfn.Retries(max_retries=1, initial_delay=3.0))
    def broken() -> None:
        raise ValueError("always")

    app.deploy()
    call = broken.spawn()
    wait_until(lambda: call.status().state is CallState.RETRYING, what="retrying state")
    with pytest.raises(ValueError):
        call.get(timeout=60)
    status = call.status()
    assert status.error_type == "builtins.ValueError"
    assert status.error_message == "always"
    described = status.describe()
    assert json.dumps(described)  # printable as JSON, ISO timestamps
    assert described["finished_at"].endswith("+00:00")
