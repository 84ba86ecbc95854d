"""A driver for the cluster tests: spawns calls on a deployed function and records, every
half second, the cluster's live worker nodes and where the function's calls run.

    python observe.py FUNCTION CALLS SECONDS OUT.json [--until-idle SECONDS]

It runs as its own process (a Ray driver of the test's cluster, not of the test session's
Ray) and writes {"samples": [...], "results": [node IDs]} to OUT.json.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import ray

import rayfn
from rayfn._client import get_client
from rayfn.protocol.operations import RegistryApi

APP = "cluster-test"
POLL_SECONDS = 0.5


def sample(function: str) -> dict[str, Any]:
    workers = [n["NodeID"] for n in ray.nodes()
               if n["Alive"] and "node:__internal_head__" not in n.get("Resources", {})]
    stats = next((s for s in get_client().call(RegistryApi.stats) if s.function == function), None)
    return {
        "t": time.time(),
        "workers": workers,
        "in_ray": stats.in_ray if stats else 0,
        "nodes": stats.nodes if stats else {},
    }


def main(function: str, calls: int, seconds: float, out: str, idle_wait: float) -> None:
    fn = rayfn.Function.from_name(APP, function)
    handles = [fn.spawn(seconds) for _ in range(calls)]
    samples = [sample(function)]
    pending = list(handles)
    deadline = time.monotonic() + 240
    while pending and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        samples.append(sample(function))
        pending = [h for h in pending if h.status().state.is_terminal() is False]
    results = [h.get(timeout=60) for h in handles]
    finished = time.time()
    # Then watch idle workers go (the autoscaler's idle timeout), if asked to.
    idle_deadline = time.monotonic() + idle_wait
    while time.monotonic() < idle_deadline:
        samples.append(sample(function))
        if not samples[-1]["workers"]:
            break
        time.sleep(POLL_SECONDS)
    with open(out, "w") as f:
        json.dump({"samples": samples, "results": results, "finished": finished}, f)


if __name__ == "__main__":
    args = sys.argv[1:]
    idle = float(args[args.index("--until-idle") + 1]) if "--until-idle" in args else 0.0
    main(args[0], int(args[1]), float(args[2]), args[3], idle)
