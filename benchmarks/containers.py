"""The scenarios of classes and containers (7-9), each beside raw Ray on the same cluster.

7. ``cls_enter``: a class whose ``@enter`` takes 2 s, N trivial method calls with
   ``max_containers=2``, timed from the first spawn to the last result (container starts
   and enters included), vs two raw Ray actors with the same 2 s ``__init__`` called
   round-robin (actor creation included). Both sides count their enters in a file.
8. ``concurrent_sleep``: N calls of a 100 ms sleep into one container that takes 100
   inputs at once (``@concurrent(max_inputs=100)``), in threads (a plain function) and on
   the event loop (an ``async`` method), vs the ideal N x 0.1 s / 100 and vs a raw Ray
   actor with ``max_concurrency=100`` of the same kind. The container is started before
   the clock does (the ideal has no start in it); so are the raw actors.
9. ``batched``: N inputs of a modelled forward pass (a fixed cost per invocation plus a
   small one per item) as ``@batched(max_batch_size=32)`` vs one invocation per input (a
   plain function, a container method), and vs raw Ray: one task per input, and tasks of
   32 inputs each (batching by hand). Every side has at most two at a time (two CPUs).

Each scenario deploys its own app, stops it at the end and waits until its containers
have given their CPUs back, so the next side (or scenario) has the whole cluster.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from common import Row, timed
from scenarios import warm_raw, warm_rayfn

ENTER_SECONDS = 2.0
CONTAINERS = 2  # max_containers in 7 and 9: the cluster's two CPUs
SLEEP_SECONDS = 0.1
MAX_INPUTS = 100
BATCH_SIZE = 32
BATCH_WAIT_MS = 10
# The modelled forward pass: a fixed cost per invocation plus a small one per item. It
# sleeps rather than computes, so the registry and the driver keep their share of the
# two CPUs and only the invocations' count differs between the sides.
FIXED_SECONDS = 0.002
PER_ITEM_SECONDS = 0.0001


def _unique(base: str) -> str:
    return f"{base}-{os.getpid()}-{time.monotonic_ns() % 10**6}"


def _wait_cpus_free(timeout: float = 60.0) -> None:
    """Until every CPU of the cluster is free again: a stopped app's containers end a
    moment after ``stop`` returns, and raw actors a moment after ``ray.kill``."""
    import ray

    total = ray.cluster_resources().get("CPU", 0.0)  # type: ignore[no-untyped-call]
    deadline = time.monotonic() + timeout
    while ray.available_resources().get("CPU", 0.0) < total:  # type: ignore[no-untyped-call]
        if time.monotonic() > deadline:
            raise RuntimeError("the cluster's CPUs were not given back in time")
        time.sleep(0.2)


def _stop(app: Any) -> None:
    app.stop()
    _wait_cpus_free()


def _check(got: list[Any], expected: list[Any]) -> None:
    if got != expected:
        raise AssertionError("the calls returned wrong results")


def _gather_all(fn: Any, n: int, plus: int = 0) -> None:
    """spawn_map of range(n) and the results of all the calls (each x + plus)."""
    import rayfn

    _check(rayfn.FunctionCall.gather(*fn.spawn_map(range(n))), [x + plus for x in range(n)])


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def cls_enter(n: int) -> list[Row]:
    """7. N trivial method calls on a class with a 2 s @enter, max_containers=2, vs two
    raw actors with a 2 s __init__ called round-robin."""
    import ray

    import rayfn

    marks = Path(tempfile.mkdtemp(prefix="rayfn-bench-enter-"))
    app = rayfn.App(_unique("bench-cls-enter"))

    @app.cls(max_containers=CONTAINERS, scaledown_window=1)
    class Model:
        marks: str = rayfn.parameter(default="")

        @rayfn.enter()
        def load(self) -> None:
            time.sleep(ENTER_SECONDS)
            with open(Path(self.marks, "rayfn"), "a") as f:
                f.write(f"{os.getpid()}\n")

        @rayfn.method()
        def predict(self, x: int) -> int:
            return x

    @ray.remote(num_cpus=1)
    class RawModel:
        def __init__(self, where: str) -> None:
            time.sleep(ENTER_SECONDS)
            with open(Path(where, "ray"), "a") as f:
                f.write(f"{os.getpid()}\n")

        def predict(self, x: int) -> int:
            return x

    app.deploy()
    expected = list(range(n))
    try:
        start = time.perf_counter()
        actors = [RawModel.remote(str(marks)) for _ in range(CONTAINERS)]  # type: ignore[attr-defined]
        refs = [actors[i % CONTAINERS].predict.remote(i) for i in range(n)]
        ray.get(refs[0])
        first_ray = time.perf_counter() - start
        _check(ray.get(refs), expected)
        t_ray = time.perf_counter() - start
        del refs
        for actor in actors:
            ray.kill(actor)
        _wait_cpus_free()

        model = cast(Any, Model)(marks=str(marks))
        start = time.perf_counter()
        calls = model.predict.spawn_map(range(n))
        calls[0].get(timeout=300)
        first_rayfn = time.perf_counter() - start
        _check(rayfn.FunctionCall.gather(*calls), expected)
        t_rayfn = time.perf_counter() - start
        enters, inits = len(_lines(marks / "rayfn")), len(_lines(marks / "ray"))
    finally:
        _stop(app)
        shutil.rmtree(marks, ignore_errors=True)
    label = (f"7. {n:,} calls, class with a {ENTER_SECONDS:g} s @enter, "
             f"max_containers={CONTAINERS} vs {CONTAINERS} raw actors")
    return [
        Row(label, "throughput, first spawn to last result", n / t_rayfn, n / t_ray,
            "calls/s"),
        Row(label, "time to the first result (container start and enter)", first_rayfn,
            first_ray, "s", False),
        Row(label, "calls/s after the first result", (n - 1) / (t_rayfn - first_rayfn),
            (n - 1) / (t_ray - first_ray), "calls/s"),
        Row(label, f"@enter runs (vs __init__ runs; {CONTAINERS} expected)", enters, inits,
            "runs", False),
    ]


def concurrent_sleep(n: int) -> list[Row]:
    """8. N calls of a 100 ms sleep into one container with @concurrent(max_inputs=100)
    vs the ideal and vs a raw actor with max_concurrency=100."""
    import asyncio

    import ray

    import rayfn

    app = rayfn.App(_unique("bench-concurrent"))

    @app.function(max_containers=1, scaledown_window=1)
    @rayfn.concurrent(max_inputs=MAX_INPUTS)
    def nap(x: int) -> int:
        time.sleep(SLEEP_SECONDS)
        return x

    @app.cls(max_containers=1, scaledown_window=1)
    @rayfn.concurrent(max_inputs=MAX_INPUTS)
    class Napper:
        @rayfn.method()
        async def nap(self, x: int) -> int:
            await asyncio.sleep(SLEEP_SECONDS)
            return x

    @ray.remote(num_cpus=1)
    class RawThreaded:
        def nap(self, x: int) -> int:
            time.sleep(SLEEP_SECONDS)
            return x

    @ray.remote(num_cpus=1)
    class RawAsync:
        async def nap(self, x: int) -> int:
            await asyncio.sleep(SLEEP_SECONDS)
            return x

    app.deploy()
    expected = list(range(n))
    ideal = math.ceil(n / MAX_INPUTS) * SLEEP_SECONDS
    figures: dict[str, tuple[float, float]] = {}
    sides: list[tuple[str, Any, Any]] = [("threads", nap, RawThreaded),
                                         ("async", cast(Any, Napper)().nap, RawAsync)]

    def with_ray(actor: Any) -> None:
        _check(ray.get([actor.nap.remote(i) for i in range(n)]), expected)

    try:
        for kind, fn, raw_cls in sides:
            actor = raw_cls.options(max_concurrency=MAX_INPUTS).remote()
            ray.get(actor.nap.remote(0))  # started before the clock, as the container is
            t_ray = timed(functools.partial(with_ray, actor))
            ray.kill(actor)
            _wait_cpus_free()
            fn.remote(0)  # starts the one container
            t_rayfn = timed(functools.partial(_gather_all, fn, n))
            figures[kind] = (t_rayfn, t_ray)
    finally:
        _stop(app)
    rows = []
    for kind, what in (("threads", "sync function, a thread per input"),
                       ("async", "async method, on the event loop")):
        t_rayfn, t_ray = figures[kind]
        label = (f"8. {n:,} x {SLEEP_SECONDS * 1000:g} ms sleep, @concurrent(max_inputs="
                 f"{MAX_INPUTS}), max_containers=1: {what}")
        rows += [
            Row(label, f"time to finish vs ideal {ideal:g} s", t_rayfn, ideal, "s", False),
            Row(label, f"time to finish vs raw actor, max_concurrency={MAX_INPUTS}",
                t_rayfn, t_ray, "s", False),
        ]
    return rows


def batched(n: int) -> list[Row]:
    """9. N inputs of a modelled forward pass, @batched(max_batch_size=32) vs one
    invocation per input, and vs raw Ray tasks of one input and of 32."""
    import ray

    import rayfn

    app = rayfn.App(_unique("bench-batched"))

    @app.function(max_containers=CONTAINERS, scaledown_window=1)
    @rayfn.batched(max_batch_size=BATCH_SIZE, wait_ms=BATCH_WAIT_MS)
    def forward_batch(xs: list[int]) -> list[int]:
        time.sleep(FIXED_SECONDS + PER_ITEM_SECONDS * len(xs))
        return [x + 1 for x in xs]

    @app.function(max_containers=CONTAINERS)
    def forward(x: int) -> int:
        time.sleep(FIXED_SECONDS + PER_ITEM_SECONDS)
        return x + 1

    @app.cls(max_containers=CONTAINERS, scaledown_window=1)
    class Forward:
        @rayfn.method()
        def forward(self, x: int) -> int:
            time.sleep(FIXED_SECONDS + PER_ITEM_SECONDS)
            return x + 1

    app.deploy()
    expected = [x + 1 for x in range(n)]
    raw_one = ray.remote(forward.get_raw_f())

    @ray.remote
    def raw_chunk(xs: list[int]) -> list[int]:
        time.sleep(FIXED_SECONDS + PER_ITEM_SECONDS * len(xs))
        return [x + 1 for x in xs]

    def with_ray_chunks() -> None:
        chunks = [list(range(i, min(i + BATCH_SIZE, n))) for i in range(0, n, BATCH_SIZE)]
        out = [y for ys in ray.get([raw_chunk.remote(c) for c in chunks]) for y in ys]
        assert out == expected

    try:
        warm_raw(raw_one)
        t_raw_one = timed(lambda: _check(ray.get([raw_one.remote(i) for i in range(n)]),
                                         expected))
        ray.get([raw_chunk.remote([0]) for _ in range(4)])
        t_raw_chunks = timed(with_ray_chunks)
        warm_rayfn(forward)
        t_plain = timed(lambda: _gather_all(forward, n, 1))
        method = Forward().forward
        warm_rayfn(method)
        t_method = timed(lambda: _gather_all(method, n, 1))
        _wait_cpus_free()  # the method's containers idle out, for the batched function's
        warm_rayfn(forward_batch)
        t_batched = timed(lambda: _gather_all(forward_batch, n, 1))
    finally:
        _stop(app)
    cost = f"{FIXED_SECONDS * 1000:g} ms + {PER_ITEM_SECONDS * 1000:g} ms/item"
    label = (f"9. {n:,} inputs of a {cost} forward pass, @batched(max_batch_size="
             f"{BATCH_SIZE}, wait_ms={BATCH_WAIT_MS}), max_containers={CONTAINERS}")
    return [
        Row(label, "throughput vs a plain function, one call per input", n / t_batched,
            n / t_plain, "inputs/s"),
        Row(label, "throughput vs a container method, one call per input", n / t_batched,
            n / t_method, "inputs/s"),
        Row(label, f"throughput vs raw Ray tasks of {BATCH_SIZE} inputs", n / t_batched,
            n / t_raw_chunks, "inputs/s"),
        Row(label, "plain function vs raw Ray, one task per input", n / t_plain,
            n / t_raw_one, "inputs/s"),
    ]

