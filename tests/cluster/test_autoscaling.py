"""Autoscaling on Ray's fake multi-node provider, with the config shipped in cluster/.

The head has no CPUs, so every call needs a worker node the autoscaler launches (1 CPU
each, at most 3). The driver records the live worker nodes and where calls run every half
second; the bounds are asserted on that record.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from .local import ROOT, LocalCluster

pytestmark = pytest.mark.cluster

SHIPPED = ROOT / "cluster" / "fake-multinode.yaml"
OBSERVE = Path(__file__).with_name("observe.py")
APP = Path(__file__).with_name("cluster_app.py")
WARM_APP = Path(__file__).with_name("warm_app.py")
CALLS = 12
SECONDS = 3.0
MAX_WORKERS = 3


def observe(cluster: LocalCluster, function: str, until_idle: float) -> dict[str, Any]:
    out = cluster.root / f"{function}.json"
    cluster.python(str(OBSERVE), function, str(CALLS), str(SECONDS), str(out),
                   "--until-idle", str(until_idle), timeout=290)
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def wait_for_workers(cluster: LocalCluster, count: int, timeout: float = 120) -> list[int]:
    """Live worker counts seen until there are ``count``; fails after ``timeout``."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nodes = cluster.status()["nodes"]
        seen.append(sum(1 for n in nodes if n["alive"] and not n["head"]))
        if seen[-1] == count:
            return seen
        time.sleep(1)
    raise AssertionError(f"never {count} live workers; saw {seen}")


def busy_nodes(sample: dict[str, Any]) -> int:
    return sum(1 for count in sample["nodes"].values() if count > 0)


@pytest.mark.timeout(600)  # three node launches and an idle timeout, on a busy machine
def test_queued_calls_drive_the_autoscaler_within_max_containers_and_max_workers(
    local_cluster: LocalCluster,
) -> None:
    config = yaml.safe_load(SHIPPED.read_text())
    assert config["available_node_types"]["ray.worker.cpu"]["max_workers"] == MAX_WORKERS
    local_cluster.start_head(num_cpus=0, autoscaling_config=SHIPPED)
    local_cluster.rayfn("start", "--address", "auto")
    local_cluster.rayfn("deploy", str(APP))

    # max_containers=2: never more than two calls in Ray, so never more than two workers.
    bounded = observe(local_cluster, "bounded", until_idle=0)
    assert len(bounded["results"]) == CALLS
    samples = bounded["samples"]
    assert max(s["in_ray"] for s in samples) == 2
    assert max(busy_nodes(s) for s in samples) <= 2
    assert max(len(s["workers"]) for s in samples) <= 2
    assert len(set(bounded["results"])) == 2  # both of its workers were used

    # No max_containers: the autoscaler grows to max_workers and no further, then the idle
    # workers are removed after idle_timeout_minutes.
    unbounded = observe(local_cluster, "unbounded", until_idle=120)
    samples = unbounded["samples"]
    assert len(unbounded["results"]) == CALLS
    assert max(s["in_ray"] for s in samples) == CALLS  # all the demand reached Ray
    assert max(len(s["workers"]) for s in samples) == MAX_WORKERS
    assert max(busy_nodes(s) for s in samples) == MAX_WORKERS
    assert len(set(unbounded["results"])) == MAX_WORKERS
    after = [s for s in samples if s["t"] > unbounded["finished"]]
    assert after and after[-1]["workers"] == [], "idle workers were not removed"

    # min_containers=1: the registry asks the autoscaler for room for one call, so a worker
    # comes up without any call, stays while the app is deployed and goes when it stops.
    local_cluster.rayfn("deploy", str(WARM_APP))
    wait_for_workers(local_cluster, 1)
    time.sleep(15)  # more than the idle timeout: the request keeps the node
    assert wait_for_workers(local_cluster, 1, timeout=5) == [1]
    local_cluster.rayfn("app", "stop", "cluster-warm")
    wait_for_workers(local_cluster, 0)
