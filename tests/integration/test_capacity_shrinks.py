"""When the only node that could run a function leaves (and no autoscaler can bring one
back), its running and queued calls fail with ResourcesUnavailableError, not wait forever.

A second Ray node, declaring one GPU, joins the session's cluster on this machine and is
killed (its raylet and everything under it, by PID) mid-run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import ray

import rayfn
from rayfn.exception import ResourcesUnavailableError
from rayfn.settings import get_settings
from rayfn.states import CallState
from rayfn_service.processes import free_port
from rayfn_service.ray_head import HeadInfo

pytestmark = pytest.mark.fault


def _gpu_nodes() -> int:
    return sum(1 for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU"))


def _raylet(node_manager_port: int) -> psutil.Process | None:
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "raylet" in cmdline and f"--node_manager_port={node_manager_port}" in cmdline:
            return proc
    return None


# The session's head keeps Ray on loopback (single-machine Ray, see rayfn_service.launch),
# which refuses worker nodes and which a worker on Linux would look for at the machine's
# address. This node of the same machine joins it on loopback: `ray start` with the
# multi-node check on, and 127.0.0.1 left as it is.
_JOIN_ON_LOOPBACK = (
    "import sys; import ray._private.ray_constants as c; import ray._private.services as s; "
    "c.ENABLE_RAY_CLUSTER = True; s.resolve_ip_for_localhost = lambda host: host; "
    "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()"
)


@pytest.fixture
def gpu_node(tmp_path: Path) -> Iterator[psutil.Process]:
    """A worker node with one (declared) GPU; yields its raylet. Ended by PID afterwards."""
    head = HeadInfo.load(get_settings())
    assert head is not None
    port = free_port()
    command = [sys.executable, "-c", _JOIN_ON_LOOPBACK, "start", f"--address={head.address}",
               "--num-cpus=1",
               "--num-gpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
               f"--node-manager-port={port}", f"--object-manager-port={free_port()}",
               f"--dashboard-agent-listen-port={free_port()}",
               f"--dashboard-agent-grpc-port={free_port()}",
               f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}"]
    started = subprocess.run(command, capture_output=True, text=True, timeout=120,
                             env=os.environ.copy())
    assert started.returncode == 0, started.stderr[-3000:]
    raylet = _raylet(port)
    assert raylet is not None
    deadline = time.monotonic() + 60
    while _gpu_nodes() == 0:
        assert time.monotonic() < deadline, "the GPU node never joined"
        time.sleep(0.2)
    try:
        yield raylet
    finally:
        _kill_tree(raylet)


def _kill_tree(root: psutil.Process) -> None:
    try:
        procs = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def test_calls_fail_when_the_only_node_that_fits_leaves(
    gpu_node: psutil.Process, unique_app: str, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    app = rayfn.App(unique_app)

    @app.function(gpu=1, max_containers=1, retries=2)
    def on_gpu(path: str, i: int) -> int:
        import time

        with open(path, "a") as f:
            f.write(f"{i}\n")
        time.sleep(120)
        return i

    @app.function()
    def on_cpu() -> str:
        return "cpu"

    app.deploy()
    running = on_gpu.spawn(str(started), 0)
    queued = on_gpu.spawn(str(started), 1)
    deadline = time.monotonic() + 60
    while not started.exists():
        assert time.monotonic() < deadline, "the GPU call never started"
        time.sleep(0.1)
    assert queued.status().state is CallState.QUEUED
    _kill_tree(gpu_node)  # the node is gone; nothing can add another

    for call in (running, queued):
        with pytest.raises(ResourcesUnavailableError, match="gpu=1"):
            call.get(timeout=180)
        assert call.status().state is CallState.FAILED
    assert started.read_text().split() == ["0"]  # the queued call never ran
    with pytest.raises(ResourcesUnavailableError):
        on_gpu.spawn(str(started), 2)
    assert on_cpu.remote() == "cpu"
