"""rayfn beside raw Ray, in one run on one cluster: throughput, latency, queue scale.

    python benchmarks/run.py [--scale 1.0] [--output docs/benchmarks.md]

Starts its own local Ray head and rayfn (own state directory), runs each scenario once
with rayfn and once with plain Ray tasks of the same function, and prints one table of
figures and ratios (rayfn / raw Ray; above 1 means rayfn is faster where higher is
better). ``--scale`` shrinks every N for a quick run. Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Row:
    scenario: str
    metric: str
    rayfn: float
    ray: float | None
    unit: str
    higher_is_better: bool = True

    def ratio(self) -> str:
        if self.ray is None or self.ray == 0 or self.rayfn == 0:
            return "—"
        value = self.rayfn / self.ray if self.higher_is_better else self.ray / self.rayfn
        return f"{value:.2f}"


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def machine() -> dict[str, str]:
    import ray

    import rayfn  # noqa: F401

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cores": str(os.cpu_count()),
        "memory": f"{mem:.0f} GiB",
        "python": platform.python_version(),
        "ray": ray.__version__,
        "platform": platform.platform(),
    }


def scenario_trivial(n: int) -> list[Row]:
    """Spawn N trivial calls and get them all, vs f.remote + ray.get."""
    import ray

    import rayfn

    app = rayfn.App("bench-trivial")

    @app.function()
    def echo(x: int) -> int:
        return x

    app.deploy()
    echo.remote(0)  # warm a worker

    def with_rayfn() -> None:
        calls = [echo.spawn(i) for i in range(n)]
        assert rayfn.FunctionCall.gather(*calls) == list(range(n))

    raw = ray.remote(echo.get_raw_f())
    ray.get(raw.remote(0))

    def with_ray() -> None:
        assert ray.get([raw.remote(i) for i in range(n)]) == list(range(n))

    t_rayfn, t_ray = _timed(with_rayfn), _timed(with_ray)
    return [Row(f"1. {n:,} trivial calls, spawn each + get all", "calls/s", n / t_rayfn,
                n / t_ray, "calls/s")]


def scenario_spawn_map(n: int) -> list[Row]:
    """spawn_map of N inputs vs submitting N raw tasks: time to accept, time to finish."""
    import ray

    import rayfn

    app = rayfn.App("bench-map")

    @app.function()
    def inc(x: int) -> int:
        return x + 1

    app.deploy()
    inc.remote(0)
    raw = ray.remote(inc.get_raw_f())
    ray.get(raw.remote(0))

    start = time.perf_counter()
    calls = inc.spawn_map(range(n))
    accepted = time.perf_counter() - start
    rayfn.FunctionCall.gather(*calls)
    finished = time.perf_counter() - start

    start = time.perf_counter()
    refs = [raw.remote(i) for i in range(n)]
    submitted = time.perf_counter() - start
    ray.get(refs)
    raw_finished = time.perf_counter() - start
    del refs
    return [
        Row(f"2. spawn_map of {n:,}", "time to accept", accepted, submitted, "s", False),
        Row(f"2. spawn_map of {n:,}", "time to finish", finished, raw_finished, "s", False),
    ]


def scenario_latency(samples: int) -> list[Row]:
    """p50/p99 of one spawn and one get(timeout=0) on a finished call, vs an actor call."""
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

    def sample(fn: Callable[[], Any]) -> list[float]:
        out = []
        for _ in range(samples):
            start = time.perf_counter()
            fn()
            out.append((time.perf_counter() - start) * 1000)
        return out

    spawn = sample(noop.spawn)
    get = sample(lambda: done.get(timeout=0))
    actor = sample(lambda: ray.get(echo.ping.remote()))
    rows = []
    for q, label in ((0.5, "p50"), (0.99, "p99")):
        rows.append(Row("3. latency", f"spawn {label}", _percentile(spawn, q),
                        _percentile(actor, q), "ms", False))
        rows.append(Row("3. latency", f"get(timeout=0) {label}", _percentile(get, q),
                        _percentile(actor, q), "ms", False))
    return rows


def scenario_drain(n: int) -> list[Row]:
    """N calls of a 10 ms function with max_containers=2 vs raw Ray on two CPUs."""
    import ray

    import rayfn

    app = rayfn.App("bench-drain")

    @app.function(max_containers=2)
    def work(x: int) -> int:
        time.sleep(0.01)
        return x

    app.deploy()
    work.remote(0)
    raw = ray.remote(work.get_raw_f())
    ray.get(raw.remote(0))
    t_rayfn = _timed(lambda: rayfn.FunctionCall.gather(*work.spawn_map(range(n))))
    t_ray = _timed(lambda: ray.get([raw.remote(i) for i in range(n)]))
    return [Row(f"6. drain {n:,} x 10 ms, max_containers=2", "time", t_rayfn, t_ray, "s",
                False)]


SCENARIOS: dict[str, Callable[[float], list[Row]]] = {
    "trivial": lambda s: scenario_trivial(max(int(10_000 * s), 10)),
    "spawn_map": lambda s: scenario_spawn_map(max(int(100_000 * s), 10)),
    "latency": lambda s: scenario_latency(max(int(1_000 * s), 10)),
    "drain": lambda s: scenario_drain(max(int(2_000 * s), 10)),
}


def render(rows: list[Row], info: dict[str, str], command: str) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
        "| scenario | metric | rayfn | raw Ray | unit | rayfn vs Ray |",
        "|---|---|---:|---:|---|---:|",
    ]
    for r in rows:
        ray_value = "—" if r.ray is None else f"{r.ray:,.2f}"
        lines.append(f"| {r.scenario} | {r.metric} | {r.rayfn:,.2f} | {ray_value} | {r.unit} "
                     f"| {r.ratio()} |")
    lines += ["", "Ratios are rayfn relative to raw Ray: above 1 is better for rayfn "
              "(throughput divided, or times inverted)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), default=None)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args(argv)

    state_dir = Path(tempfile.mkdtemp(prefix="rayfn-bench-"))
    os.environ["RAYFN_STATE_DIR"] = str(state_dir)
    os.environ["RAYFN_START_SERVER"] = "false"
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    from rayfn.settings import get_settings
    from rayfn_service import launch

    settings = get_settings()
    launch.start(settings, num_cpus=args.num_cpus)
    rows: list[Row] = []
    try:
        for name in args.only or list(SCENARIOS):
            print(f"running {name} ...", file=sys.stderr, flush=True)
            rows.extend(SCENARIOS[name](args.scale))
        info = machine()
    finally:
        import ray

        ray.shutdown()
        launch.stop(settings)
    command = "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = render(rows, info, command.strip())
    print(report)
    if args.output:
        args.output.write_text("# Benchmarks\n\n" + report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


