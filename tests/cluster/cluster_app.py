"""Functions the cluster tests deploy: each call reports the node it ran on."""

from __future__ import annotations

import time

import ray

import rayfn

app = rayfn.App("cluster-test")


def _hold(seconds: float) -> str:
    time.sleep(seconds)
    return str(ray.get_runtime_context().get_node_id())


@app.function(cpu=1, max_containers=2, timeout=120)
def bounded(seconds: float) -> str:
    """At most two at once, however many nodes the cluster has."""
    return _hold(seconds)


@app.function(cpu=1, timeout=120)
def unbounded(seconds: float) -> str:
    """As many at once as the cluster can fit."""
    return _hold(seconds)
