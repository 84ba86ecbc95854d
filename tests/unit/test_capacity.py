"""Which resource shapes no node can ever run, and strays an attempt leaves behind."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rayfn.options import FunctionOptions
from rayfn_service import capacity
from rayfn_service.capacity import Capacity, monitor_config_path, node_types_of_yaml, shape_of

HEAD = {"CPU": 4.0, "memory": 8.0 * 2**30, "node:__internal_head__": 1.0}
GPU_NODE = {"CPU": 8.0, "GPU": 2.0, "memory": 32.0 * 2**30}


def shape(**options: object) -> dict[str, float]:
    return shape_of(FunctionOptions.build(**options).ray_options())  # type: ignore[arg-type]


def test_shapes_of_function_options() -> None:
    assert shape() == {"CPU": 1.0}
    assert shape(gpu="A100:2", cpu=0.5, memory=1024) == {
        "CPU": 0.5, "GPU": 2.0, "memory": 1024.0 * 2**20}


def test_a_shape_fits_a_present_node_or_none() -> None:
    cluster = Capacity(nodes=(HEAD,), known=True)
    assert cluster.shortfall(shape()) is None
    assert cluster.shortfall(shape(cpu=4)) is None
    reason = cluster.shortfall(shape(gpu=1))
    assert reason is not None
    assert "gpu=1" in reason and "no autoscaler can add one" in reason and "1 nodes" in reason
    assert cluster.shortfall(shape(cpu=5)) is not None
    assert "memory=16384 MiB" in (cluster.shortfall(shape(memory=16384)) or "")
    # Every resource of the shape must be on one node, not spread over several.
    two = Capacity(nodes=(HEAD, {"GPU": 1.0, "CPU": 0.0}), known=True)
    assert two.shortfall(shape(gpu=1)) is not None
    assert Capacity(nodes=(HEAD, GPU_NODE), known=True).shortfall(shape(gpu=2, cpu=8)) is None


def test_nodes_an_autoscaler_can_add_count() -> None:
    scaling = Capacity(nodes=(HEAD,), node_types=(GPU_NODE,), known=True)
    assert scaling.shortfall(shape(gpu=1)) is None
    reason = scaling.shortfall(shape(gpu=4))
    assert reason is not None and "its autoscaler cannot add one" in reason
    # An autoscaler whose node types are unknown might add anything: nothing is refused.
    assert Capacity(nodes=(HEAD,), autoscaler_unknown=True, known=True).shortfall(
        shape(gpu=8)) is None
    # Before the cluster was read once, nothing is refused either.
    assert Capacity().shortfall(shape(gpu=8)) is None


def test_node_types_of_a_cluster_launcher_yaml(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(textwrap.dedent("""\
        cluster_name: demo
        max_workers: 4
        head_node_type: head
        available_node_types:
          head:
            resources: {CPU: 2}
            max_workers: 0
          gpu_workers:
            resources: {CPU: 8, GPU: 1}
            max_workers: 2
          disabled:
            resources: {CPU: 64}
            max_workers: 0
    """))
    assert node_types_of_yaml(str(path)) == (({"CPU": 8.0, "GPU": 1.0},), False)
    # Resources left to be filled in from the instance type: unknown, so nothing refused.
    path.write_text("available_node_types:\n  w:\n    max_workers: 3\n    node_config: {}\n")
    assert node_types_of_yaml(str(path)) == (({},), True)
    assert node_types_of_yaml(str(tmp_path / "missing.yaml")) == ((), True)


def test_the_autoscaling_config_of_this_clusters_monitor(tmp_path: Path) -> None:
    """Found by the monitor's command line, and only for the cluster's own GCS port."""
    config = tmp_path / "autoscaling.yaml"
    monitor = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)",
         "ray/autoscaler/_private/monitor.py", "--gcs-address=127.0.0.1:59999",
         f"--autoscaling-config={config}"],
    )
    try:
        assert monitor_config_path("127.0.0.1:59999") == str(config)
        assert monitor_config_path("127.0.0.1:59998") is None  # another cluster's monitor
    finally:
        monitor.kill()
        monitor.wait()


def test_children_left_by_an_attempt_are_ended(tmp_path: Path) -> None:
    """In a process of its own: becoming a subreaper must not touch the test runner."""
    script = textwrap.dedent("""\
        import os, subprocess, sys, time
        import psutil
        from rayfn_service import children

        before = children.started()
        plain = subprocess.Popen(["sleep", "300"])
        pid_file = sys.argv[1]
        subprocess.run([sys.executable, "-c",
            "import os, subprocess, sys\\n"
            "if os.fork() == 0:\\n"
            "    os.setsid()\\n"
            "    p = subprocess.Popen(['sleep', '300'])\\n"
            "    open(sys.argv[1], 'w').write(str(p.pid))\\n"
            "    p.wait()\\n"
            "os._exit(0)\\n", pid_file], check=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not os.path.exists(pid_file) or not open(pid_file).read():
            time.sleep(0.01)
        daemon = int(open(pid_file).read())
        ended = children.end_new(before)
        assert plain.pid in ended and daemon in ended, (plain.pid, daemon, ended)
        for pid in (plain.pid, daemon):
            assert not psutil.pid_exists(pid), pid  # ended and reaped: no zombie left
        assert children.end_new(children.started()) == []
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "daemon.pid")],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().endswith("ok"), done.stdout + done.stderr


def test_single_node_only_without_an_autoscaler_that_could_add_one() -> None:
    one = {"CPU": 2.0}
    assert Capacity(nodes=(one,), known=True).single_node
    assert not Capacity(nodes=(one, one), known=True).single_node
    assert not Capacity(nodes=(one,), node_types=(one,), known=True).single_node
    assert not Capacity(nodes=(one,), autoscaler_unknown=True, known=True).single_node
    assert not Capacity(nodes=(one,)).single_node  # not read yet: assume more may come


def test_a_refusal_is_confirmed_by_a_reading_begun_after_the_question(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A node may join just after a reading began: a spawn it could run is not refused on
    that reading. Questions that wait together share the next reading."""
    readings = [Capacity(nodes=(HEAD,), known=True), Capacity(nodes=(HEAD, GPU_NODE), known=True)]
    reads: list[Capacity] = []

    def read() -> Capacity:
        time.sleep(0.05)
        reads.append(readings[min(len(reads), 1)])
        return reads[-1]

    monkeypatch.setattr(capacity, "read_capacity", read)

    async def scenario() -> list[str | None]:
        monitor = capacity.CapacityMonitor()
        await monitor.refresh()  # the head alone; then the GPU node joins
        return list(await asyncio.gather(*(monitor.shortfall(shape(gpu=1)) for _ in range(5))))

    assert asyncio.run(scenario()) == [None] * 5
    # The first question's reading began before the others were asked; they share one.
    assert len(reads) == 3
