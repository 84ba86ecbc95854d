"""The scenarios that compare rayfn with raw Ray on the same cluster (all but REST).

Each deploys its own app, runs rayfn and raw Ray with the same function (each side's
workers warmed just before it is timed) and returns rows of the table.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from common import Row, percentile, sample_ms, timed

# Raw tasks run in this driver's job and rayfn's in the registry's, and Ray keeps idle
# workers for only one job per CPU: each side is warmed just before it is timed.
WARM_CALLS = 20


def warm_raw(raw: Any) -> None:
    import ray

    ray.get([raw.remote(0) for _ in range(WARM_CALLS)])


def warm_rayfn(fn: Any) -> None:
    import rayfn

    rayfn.FunctionCall.gather(*fn.spawn_map([0] * WARM_CALLS))


def trivial(n: int) -> list[Row]:
    """1. Spawn N trivial calls one by one and get them all, vs f.remote + ray.get; and the
    same on a registry that runs every call in a task of its own."""
    import ray

    import rayfn

    def deploy() -> tuple[Any, Any]:
        app = rayfn.App("bench-trivial")

        @app.function()
        def echo(x: int) -> int:
            return x

        app.deploy()
        return app, echo

    app, echo = deploy()
    raw = ray.remote(echo.get_raw_f())

    def with_rayfn(fn: Any) -> None:
        calls = [fn.spawn(i) for i in range(n)]
        assert rayfn.FunctionCall.gather(*calls) == list(range(n))

    def with_ray() -> None:
        assert ray.get([raw.remote(i) for i in range(n)]) == list(range(n))

    warm_raw(raw)
    t_ray = timed(with_ray)
    warm_rayfn(echo)
    t_rayfn = timed(lambda: with_rayfn(echo))
    app.stop()
    with _registry_without_batches():
        _, alone = deploy()
        warm_rayfn(alone)
        t_alone = timed(lambda: with_rayfn(alone))
    return [
        Row(f"1. {n:,} trivial calls: spawn each, get all", "throughput", n / t_rayfn,
            n / t_ray, "calls/s"),
        Row("1. the same, one call per Ray task (`RAYFN_BATCH_SECONDS=0`)", "throughput",
            n / t_alone, n / t_ray, "calls/s"),
    ]


@contextlib.contextmanager
def _registry_without_batches() -> Iterator[None]:
    """A second registry on the same cluster, in its own namespace and store, that runs
    every call in a Ray task of its own; the SDK points at it meanwhile."""
    import ray

    import rayfn
    from rayfn._client import reset
    from rayfn.settings import get_settings
    from rayfn_service.launch import ensure_registry
    from rayfn_service.names import REGISTRY_ACTOR

    base = get_settings()
    settings = base.model_copy(update={
        "namespace": f"{base.namespace}-unbatched",
        "state_dir": base.state_dir / "unbatched",
        "batch_seconds": 0.0,
    })
    ensure_registry(settings)
    rayfn.connect(namespace=settings.namespace, state_dir=str(settings.state_dir))
    try:
        yield
    finally:
        ray.kill(ray.get_actor(REGISTRY_ACTOR, namespace=settings.namespace), no_restart=True)
        reset()


def spawn_map(n: int) -> list[Row]:
    """2. spawn_map of N inputs vs submitting N raw tasks: time to accept, to finish."""
    import ray

    import rayfn

    app = rayfn.App("bench-map")

    @app.function()
    def inc(x: int) -> int:
        return x + 1

    app.deploy()
    raw = ray.remote(inc.get_raw_f())

    warm_raw(raw)
    start = time.perf_counter()
    refs = [raw.remote(i) for i in range(n)]
    submitted = time.perf_counter() - start
    ray.get(refs)
    raw_finished = time.perf_counter() - start
    del refs

    warm_rayfn(inc)
    start = time.perf_counter()
    calls = inc.spawn_map(range(n))
    accepted = time.perf_counter() - start
    rayfn.FunctionCall.gather(*calls)
    finished = time.perf_counter() - start
    app.stop()
    label = f"2. spawn_map of {n:,} vs {n:,} raw tasks"
    return [
        Row(label, "time to accept (submit)", accepted, submitted, "s", False),
        Row(label, "time to finish", finished, raw_finished, "s", False),
    ]


def latency(samples: int) -> list[Row]:
    """3. p50/p99 of one spawn and of one get(timeout=0) on a finished call, vs one raw
    actor round trip."""
    import ray

    import rayfn

    app = rayfn.App("bench-latency")

    @app.function()
    def noop() -> None:
        return None

    app.deploy()
    done = noop.spawn()
    done.get(timeout=60)

    @ray.remote(num_cpus=0)
    class Echo:
        def ping(self) -> None:
            return None

    echo = Echo.remote()  # type: ignore[attr-defined]
    ray.get(echo.ping.remote())

    actor = sample_ms(lambda: ray.get(echo.ping.remote()), samples)
    spawned: list[rayfn.FunctionCall[None]] = []

    def accepted_spawn() -> str:
        """Until the call is accepted: reading the ID waits for the commit."""
        call = noop.spawn()
        spawned.append(call)
        return call.object_id

    spawn = sample_ms(accepted_spawn, samples)
    rayfn.FunctionCall.gather(*spawned)  # measure get on an idle registry
    get = sample_ms(lambda: done.get(timeout=0), samples)
    # A lone call after a pause, end to end: whether a warm worker is still there for it.
    raw_noop = ray.remote(noop.get_raw_f())
    ray.get(raw_noop.remote())
    pauses = max(2, min(PAUSED_CALLS, samples // 50))
    after_pause = _paused_ms(lambda: noop.spawn().get(timeout=120), pauses)
    raw_after_pause = _paused_ms(lambda: ray.get(raw_noop.remote()), pauses)
    ray.kill(echo)
    app.stop()
    rows = []
    for q, label in ((0.5, "p50"), (0.99, "p99")):
        rows.append(Row("3. latency vs one actor round trip", f"spawn {label}",
                        percentile(spawn, q), percentile(actor, q), "ms", False))
        rows.append(Row("3. latency vs one actor round trip", f"get(timeout=0) {label}",
                        percentile(get, q), percentile(actor, q), "ms", False))
    rows.append(Row("3. latency vs one raw task", f"spawn + get after a {PAUSE_SECONDS:g} s "
                    "pause, p50", percentile(after_pause, 0.5),
                    percentile(raw_after_pause, 0.5), "ms", False))
    return rows


PAUSE_SECONDS = 1.0
PAUSED_CALLS = 10


def _paused_ms(fn: Callable[[], Any], samples: int) -> list[float]:
    out = []
    for _ in range(samples):
        time.sleep(PAUSE_SECONDS)
        out.extend(sample_ms(fn, 1))
    return out


def _registry_pid() -> int:
    import ray

    from rayfn.settings import get_settings
    from rayfn_service.names import REGISTRY_ACTOR

    handle = ray.get_actor(REGISTRY_ACTOR, namespace=get_settings().namespace)
    return int(ray.get(handle.ping.remote())["pid"])


def _store_bytes() -> int:
    from rayfn.settings import get_settings

    path = get_settings().store_path
    return sum(
        p.stat().st_size
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
        if p.exists()
    )


def million(n: int, samples: int) -> list[Row]:
    """5. spawn_map of N (a million) into a max_containers=2 function: time to accept,
    registry memory and store size, and spawn/get latency with none and with N queued.

    Stopping the app at the end cancels the queue and the two calls that hold the
    window, so the scenario ends by itself."""
    import psutil

    import rayfn

    app = rayfn.App("bench-million")

    @app.function(max_containers=2)
    def hold(x: int) -> int:
        if x < 0:
            time.sleep(3600)  # holds a slot until the app is stopped
        return x

    app.deploy()
    done = hold.spawn(0)
    done.get(timeout=120)
    # Two calls that never end fill the window, so the dispatcher is idle in both
    # measurements and only the queue's length differs between them.
    blockers = [hold.spawn(-1) for _ in range(2)]
    deadline = time.monotonic() + 120
    while any(b.status().state.value != "running" for b in blockers):
        if time.monotonic() > deadline:
            raise RuntimeError("the blocking calls did not start")
        time.sleep(0.2)
    registry = psutil.Process(_registry_pid())

    def latencies() -> tuple[list[float], list[float]]:
        return (sample_ms(lambda: hold.spawn(1).object_id, samples),
                sample_ms(lambda: done.get(timeout=0), samples))

    rss_before = registry.memory_info().rss
    spawn_empty, get_empty = latencies()
    label = f"5. {n:,} queued, max_containers=2"
    rows: list[Row] = []
    try:
        start = time.perf_counter()
        calls: list[Any] = hold.spawn_map(range(n))
        accepted = time.perf_counter() - start
        del calls
        rss_full = registry.memory_info().rss
        store = _store_bytes()
        spawn_full, get_full = latencies()
        rows += [
            Row(label, "time to accept", accepted, None, "s", False),
            Row(label, "accepted per second", n / accepted, None, "calls/s"),
            Row(label, "registry RSS, empty", rss_before / 2**20, None, "MiB", False),
            Row(label, f"registry RSS, {n:,} queued", rss_full / 2**20, None, "MiB", False),
            Row(label, f"store size, {n:,} queued", store / 2**20, None, "MiB", False),
        ]
        # Baseline column: the same figure with an empty queue, so the ratio says whether
        # any cost grows with the queue (1.00: none).
        for q, name in ((0.5, "p50"), (0.99, "p99")):
            rows.append(Row(label, f"spawn {name}, full (vs empty)", percentile(spawn_full, q),
                            percentile(spawn_empty, q), "ms", False))
            rows.append(Row(label, f"get(timeout=0) {name}, full (vs empty)",
                            percentile(get_full, q), percentile(get_empty, q), "ms", False))
    finally:
        stop_start = time.perf_counter()
        cancelled = app.stop()  # cancels the queue, so the run ends by itself
        stopped = time.perf_counter() - stop_start
    rows.append(Row(label, f"stop app ({cancelled:,} cancelled)", stopped, None, "s", False))
    return rows


def drain(n: int) -> list[Row]:
    """6. N calls of a 10 ms function with max_containers=2 vs raw Ray with two CPUs."""
    import ray

    import rayfn

    app = rayfn.App("bench-drain")

    @app.function(max_containers=2)
    def work(x: int) -> int:
        time.sleep(0.01)
        return x

    app.deploy()
    raw = ray.remote(work.get_raw_f())
    warm_raw(raw)
    t_ray = timed(lambda: ray.get([raw.remote(i) for i in range(n)]))
    warm_rayfn(work)
    t_rayfn = timed(lambda: rayfn.FunctionCall.gather(*work.spawn_map(range(n))))
    app.stop()
    return [Row(f"6. drain {n:,} x 10 ms, max_containers=2 vs 2 CPUs", "time to finish",
                t_rayfn, t_ray, "s", False)]
