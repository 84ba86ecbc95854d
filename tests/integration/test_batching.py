"""Short calls share Ray tasks, and each keeps its own outcome, timeout and cancellation.

Most tests here use a registry that puts exactly four calls in a task (``max_batch=4``,
and any call counts as short), so which calls share a task is known: a ``spawn_map`` of
inputs 0..N-1 runs as tasks of inputs 0-3, 4-7, ... The functions log each start with the
Ray task that ran it, so assertions rest on what ran.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import rayfn
from rayfn.exception import CancelledError, ExecutionError, FunctionTimeoutError
from rayfn.states import CallState

from .waiting import wait_until

FOUR_TO_A_TASK = {"batch_seconds": 60.0, "max_batch": 4}
CALLS = 16
SLOW = 7  # the last call of the task that runs inputs 4-7


def _starts(path: Path) -> list[tuple[int, str]]:
    """(input, Ray task ID) of every start, in order."""
    if not path.exists():
        return []
    return [(int(x), task) for x, task in (line.split() for line in path.read_text().splitlines())]


def _warm(fn: Any) -> None:
    """Run a few calls first, so the registry has seen how long the function's calls take."""
    assert list(fn.map(["", ""], [-1, -2])) == [-1, -2]


def test_short_calls_share_tasks_long_calls_do_not(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def where(x: int) -> tuple[int, str]:
        import ray

        return x, ray.get_runtime_context().get_task_id()

    @app.function()
    def slow_where(x: int) -> tuple[int, str]:
        import time

        import ray

        time.sleep(0.05)  # longer than the default batch_seconds (10 ms)
        return x, ray.get_runtime_context().get_task_id()

    app.deploy()
    list(where.map(range(20)))
    results = rayfn.FunctionCall.gather(*where.spawn_map(range(400)))
    assert [x for x, _ in results] == list(range(400))
    assert len({task for _, task in results}) <= 100  # at least four calls to a task

    list(slow_where.map(range(3)))
    slow = list(slow_where.map(range(12)))
    assert [x for x, _ in slow] == list(range(12))
    assert len({task for _, task in slow}) == 12


def test_batching_off_runs_every_call_in_its_own_task(
    isolated_registry: Any, unique_app: str
) -> None:
    isolated_registry(batch_seconds=0)
    app = rayfn.App(unique_app)

    @app.function()
    def where(x: int) -> str:
        import ray

        return ray.get_runtime_context().get_task_id()

    app.deploy()
    list(where.map(range(10)))
    assert len(set(where.map(range(100)))) == 100


def _deploy_step(app_name: str, behaviour: str, **options: Any) -> Any:
    """A function that logs its start and, for input SLOW, sleeps (``sleep``), sleeps where
    no alarm reaches it (``deaf``) or ends its worker process (``exit``)."""
    app = rayfn.App(app_name)

    @app.function(**options)
    def step(path: str, x: int) -> int:
        import os
        import signal
        import time

        import ray

        if path:
            with open(path, "a") as f:
                f.write(f"{x} {ray.get_runtime_context().get_task_id()}\n")
        if x == SLOW and behaviour == "deaf":  # like a stuck C call (see test_execution)
            signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])
        if x == SLOW and behaviour in ("sleep", "deaf"):
            time.sleep(60)
        if x == SLOW and behaviour == "exit":
            os._exit(1)
        return x

    app.deploy()
    _warm(step)
    return step


@pytest.fixture
def spawn_steps(
    isolated_registry: Any, unique_app: str, tmp_path: Path
) -> Callable[..., tuple[Path, list[Any]]]:
    """On a registry that puts four calls in a task: deploy ``step`` with ``behaviour``
    and spawn inputs 0..CALLS-1; return the start log and the calls."""

    def spawn(behaviour: str, system_retries: int = 3, **options: Any) -> tuple[Path, list[Any]]:
        isolated_registry(system_retries=system_retries, **FOUR_TO_A_TASK)
        log = tmp_path / "starts"
        step = _deploy_step(unique_app, behaviour, **options)
        return log, step.spawn_map([str(log)] * CALLS, range(CALLS))

    return spawn


def _runs(log: Path) -> dict[int, int]:
    starts = [x for x, _ in _starts(log)]
    return {x: starts.count(x) for x in range(CALLS)}


def _gather_all_but_slow(calls: list[Any]) -> None:
    """The calls other than SLOW succeed, each on its first counted attempt."""
    for x, call in enumerate(calls):
        if x != SLOW:
            assert call.get(timeout=120) == x
            assert call.status().attempts == 1


def test_a_call_that_times_out_leaves_its_task_mates_alone(
    spawn_steps: Callable[..., tuple[Path, list[Any]]],
) -> None:
    log, calls = spawn_steps("sleep", timeout=2)
    with pytest.raises(FunctionTimeoutError, match="timed out after 2 s"):
        calls[SLOW].get(timeout=120)
    _gather_all_but_slow(calls)
    assert _runs(log) == dict.fromkeys(range(CALLS), 1)
    task_of = dict(_starts(log))
    # The timeout stopped its own call only: the rest of its task ran on.
    assert {task_of[x] for x in (4, 5, 6, SLOW)} == {task_of[SLOW]}


def test_cancelling_a_call_reruns_the_rest_of_its_task_without_using_attempts(
    spawn_steps: Callable[..., tuple[Path, list[Any]]],
) -> None:
    log, calls = spawn_steps("sleep")
    wait_until(lambda: SLOW in dict(_starts(log)), timeout=60)
    calls[SLOW].cancel()
    with pytest.raises(CancelledError):
        calls[SLOW].get(timeout=120)
    _gather_all_but_slow(calls)
    assert calls[SLOW].status().state is CallState.CANCELLED
    first_task = dict(reversed(_starts(log)))
    # Inputs 4-6 ran in the cancelled call's task, whose worker was killed before it
    # returned: they ran again. The other tasks' calls ran once.
    assert {first_task[x] for x in (4, 5, 6)} == {first_task[SLOW]}
    assert _runs(log) == {x: 2 if x in (4, 5, 6) else 1 for x in range(CALLS)}


def test_a_stuck_call_is_killed_and_its_task_mates_run_again(
    spawn_steps: Callable[..., tuple[Path, list[Any]]],
) -> None:
    log, calls = spawn_steps("deaf", timeout=1)
    with pytest.raises(FunctionTimeoutError, match="worker was killed"):
        calls[SLOW].get(timeout=120)
    _gather_all_but_slow(calls)
    assert _runs(log) == {x: 2 if x in (4, 5, 6) else 1 for x in range(CALLS)}


def test_a_call_that_kills_its_worker_fails_alone(
    spawn_steps: Callable[..., tuple[Path, list[Any]]],
) -> None:
    log, calls = spawn_steps("exit", system_retries=1)
    with pytest.raises(ExecutionError, match="could not run"):
        calls[SLOW].get(timeout=120)
    _gather_all_but_slow(calls)
    # The shared task died at input 7 and was not re-run as a whole: 4-7 then ran one to
    # a task, and 7 alone used Ray's retry (system_retries=1).
    assert _runs(log) == {x: 2 if x in (4, 5, 6) else 3 if x == SLOW else 1
                          for x in range(CALLS)}
