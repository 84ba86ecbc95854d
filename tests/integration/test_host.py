"""The registry's host: the registry belongs to a Ray job that stays alive, so the workers
that ran calls are still there after a pause (Ray ends a finished job's idle workers)."""

from __future__ import annotations

import json
import os
import time

import psutil

import rayfn


def test_the_registry_belongs_to_the_running_host() -> None:
    import ray

    from rayfn.settings import get_settings
    from rayfn_service.launch import host_file, host_pid
    from rayfn_service.names import REGISTRY_ACTOR

    settings = get_settings()
    host = json.loads(host_file(settings).read_text())
    assert host_pid(settings) == host["pid"]
    assert psutil.Process(host["pid"]).is_running()
    assert host["pid"] != os.getpid()  # not this test process, which will exit
    registry = ray.get_actor(REGISTRY_ACTOR, namespace=settings.namespace)
    assert ray.get(registry.ping.remote(), timeout=60)["job_id"] == host["job_id"]


def test_a_worker_outlives_a_pause_between_calls(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function()
    def worker_pid() -> int:
        return os.getpid()

    app.deploy()
    pid = worker_pid.spawn().get(timeout=120)
    # A finished job's idle worker is ended within about 0.2 s; an idle worker of a live
    # job is kept (up to one per CPU) for at least a second.
    time.sleep(0.6)
    assert psutil.pid_exists(pid)
    assert " ".join(psutil.Process(pid).cmdline()).startswith("ray::")  # still Ray's worker
