"""rayfn beside raw Ray (and beside a bare FastAPI route), in one run on one cluster.

    python benchmarks/run.py [--scale 1.0] [--only NAME ...] [--output docs/benchmarks.md]

Starts its own local Ray head and rayfn (own state directory, own ports), runs the six
scenarios of the performance issue and the three of classes and containers (7-9, in
containers.py) in this process tree, prints one table of figures and ratios, and stops
everything it started. ``--scale`` shrinks every N for a quick run.
Nothing here is a pass/fail test: it records figures, it never asserts on time.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import containers  # noqa: E402
import rest  # noqa: E402
import scenarios  # noqa: E402
from common import Row  # noqa: E402


def _n(base: int, scale: float, least: int = 10) -> int:
    return max(int(base * scale), least)


SCENARIOS: dict[str, Callable[[float], list[Row]]] = {
    "trivial": lambda s: scenarios.trivial(_n(10_000, s)),
    "spawn_map": lambda s: scenarios.spawn_map(_n(100_000, s)),
    "latency": lambda s: scenarios.latency(_n(1_000, s)),
    "rest": lambda s: rest.rest(seconds=max(10 * min(s, 1.0), 1.0), connections=32),
    "million": lambda s: scenarios.million(_n(1_000_000, s), samples=_n(200, s)),
    "drain": lambda s: scenarios.drain(_n(2_000, s)),
    "cls_enter": lambda s: containers.cls_enter(_n(1_000, s)),
    "concurrent_sleep": lambda s: containers.concurrent_sleep(_n(2_000, s)),
    "batched": lambda s: containers.batched(_n(2_000, s)),
}


def machine() -> dict[str, str]:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = {name: metadata.version(name)
                for name in ("rayfn", "ray", "fastapi", "uvicorn", "httpx")}
    return {
        "cores": str(os.cpu_count()),
        "memory": f"{mem:.0f} GiB",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        **versions,
        "load client": "wrk" if shutil.which("wrk") else "httpx (async)",
        "platform": platform.platform(),
    }


def _load_average() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def render(rows: list[Row], info: dict[str, str], command: str, load: tuple[str, str]) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
        f"Load average (1/5/15 min) before: {load[0]}, after: {load[1]} "
        "(above the core count means other work shared the machine).",
        "",
        "| scenario | metric | rayfn | baseline | unit | ratio |",
        "|---|---|---:|---:|---|---:|",
    ]
    for r in rows:
        baseline = "—" if r.baseline is None else f"{r.baseline:,.2f}"
        ratio = r.ratio()
        lines.append(f"| {r.scenario} | {r.metric} | {r.rayfn:,.2f} | {baseline} | {r.unit} "
                     f"| {'—' if ratio is None else f'{ratio:.2f}'} |")
    lines += [
        "",
        "Baseline: raw Ray on the same cluster (1-3, 6, 7, 9), a bare FastAPI route on the "
        "same uvicorn (4), the same figure with an empty queue (5), the ideal time or a raw "
        "actor (8), the same work unbatched (9). Ratio: rayfn relative to the baseline, "
        "above 1 is better for rayfn (rates divided, times and counts inverted).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--only", nargs="*", choices=list(SCENARIOS), default=None)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args(argv)

    state_dir = Path(tempfile.mkdtemp(prefix="rayfn-bench-"))
    os.environ["RAYFN_STATE_DIR"] = str(state_dir)
    os.environ["RAYFN_START_SERVER"] = "false"
    os.environ.pop("RAYFN_SERVER_URL", None)
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    from rayfn.exception import Error
    from rayfn.settings import get_settings
    from rayfn_service import launch

    get_settings.cache_clear()
    settings = get_settings()
    load_before = _load_average()
    rows: list[Row] = []
    try:
        try:
            launch.start(settings, num_cpus=args.num_cpus)
        except Error as exc:  # an overloaded machine can time Ray's start out: once more
            print(f"starting Ray failed, trying again: {exc}", file=sys.stderr, flush=True)
            launch.start(settings, num_cpus=args.num_cpus)
        for name in args.only or list(SCENARIOS):
            print(f"running {name} ...", file=sys.stderr, flush=True)
            rows.extend(SCENARIOS[name](args.scale))
    finally:
        import ray

        ray.shutdown()
        launch.stop(settings)
        shutil.rmtree(state_dir, ignore_errors=True)
    command = "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = render(rows, machine(), command.strip(), (load_before, _load_average()))
    print(report)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
