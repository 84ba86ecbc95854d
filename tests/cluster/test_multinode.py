"""rayfn attached to a cluster it did not start: a head without CPUs and two worker nodes,
each started with ``ray start`` on this machine."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from .local import LocalCluster

# Starting three nodes counts against the first test's time; on a loaded machine a node
# start can time out and be retried.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

APP = Path(__file__).with_name("cluster_app.py")

SPREAD = """
import sys
import rayfn

fn = rayfn.Function.from_name("cluster-test", "unbounded")
calls = [fn.spawn(float(sys.argv[1])) for _ in range(int(sys.argv[2]))]
print(" ".join(c.object_id for c in calls))
"""

COLLECT = """
import sys
import rayfn

print(" ".join(rayfn.FunctionCall.from_id(c).get(timeout=120) for c in sys.argv[1:]))
"""


def node_ids(status: dict[str, Any]) -> tuple[str, list[str]]:
    head = next(n["node_id"] for n in status["nodes"] if n["head"] and n["alive"])
    workers = [n["node_id"] for n in status["nodes"] if not n["head"] and n["alive"]]
    return head, workers


def test_attach_is_idempotent_and_stop_leaves_the_users_ray_running(
    three_nodes: LocalCluster,
) -> None:
    first = three_nodes.rayfn("start", "--address", "auto")
    assert "(attached)" in first.stdout
    status = three_nodes.status()
    head, workers = node_ids(status)
    assert len(workers) == 2
    # Pinned to the head by Ray's own head resource, which a user's head has too.
    assert status["registry"]["node_id"] == head
    registry_pid = status["registry"]["pid"]

    again = three_nodes.rayfn("start", "--address", "auto")
    assert "(attached)" in again.stdout
    assert three_nodes.status()["registry"]["pid"] == registry_pid  # the same registry

    stopped = three_nodes.rayfn("stop")
    assert "keeps running" in stopped.stdout
    assert three_nodes.ray_processes_alive()
    assert not (three_nodes.state_dir / "server.pid").exists()
    # Ray still answers, with all three nodes; rayfn comes back on it.
    three_nodes.rayfn("start", "--address", "auto")
    status = three_nodes.status()
    assert node_ids(status) == (head, workers)
    assert status["registry"]["pid"] != registry_pid


def test_calls_spread_across_nodes_and_status_shows_where_they_run(
    three_nodes: LocalCluster,
) -> None:
    three_nodes.rayfn("start", "--address", "auto")
    three_nodes.rayfn("deploy", str(APP))
    _, workers = node_ids(three_nodes.status())
    # Long enough that `rayfn status` sees them running; two at a time fit the cluster.
    call_ids = three_nodes.python("-c", SPREAD, "8", "4").stdout.split()
    assert len(call_ids) == 4

    seen: dict[str, int] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = three_nodes.status()
        stats = next(s for s in status["functions"] if s["function"] == "unbounded")
        if len(stats["nodes"]) == 2:
            seen = stats["nodes"]
            break
        time.sleep(0.5)
    assert set(seen) == set(workers), f"calls never ran on both workers at once: {status}"
    assert all(count == 1 for count in seen.values())
    by_node = {n["node_id"]: n for n in status["nodes"]}
    for worker in workers:
        assert by_node[worker]["running"] == {"cluster-test.unbounded": 1}
        assert by_node[worker]["total"]["CPU"] == 1.0
    table = three_nodes.rayfn("status").stdout
    assert "cluster-test.unbounded x1" in table

    ran_on = three_nodes.python("-c", COLLECT, *call_ids, timeout=240).stdout.split()
    assert set(ran_on) == set(workers)
