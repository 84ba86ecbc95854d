"""Start and stop rayfn: a local Ray head (``ray_head``, the embedded default) or an
attached cluster, the registry actor and its host, and the REST server
(``server_process``).

What rayfn writes (the state directory and everything in it) is readable by the user who
runs rayfn alone (directories 0700, files 0600: ``private_files``).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import ray

from rayfn.exception import ConnectionError, Error
from rayfn.network import loopback_bootstrap
from rayfn.protocol.actor import RegistryActor
from rayfn.protocol.operations import RegistryApi
from rayfn.settings import Settings
from rayfn_service.names import HEAD_NODE_RESOURCE, REGISTRY_ACTOR
from rayfn_service.private_files import (
    secure_state_dir,
)
from rayfn_service.processes import runs_module, spawn, terminate
from rayfn_service.ray_head import HeadInfo, head_alive, kill_head, start_local_head
from rayfn_service.server_process import start_server, stop_server

logger = logging.getLogger(__name__)

REGISTRY_START_TIMEOUT = 120.0


def registry_options(settings: Settings) -> dict[str, Any]:
    return {
        "name": REGISTRY_ACTOR,
        "namespace": settings.namespace,
        "lifetime": "detached",
        "get_if_exists": True,
        "max_restarts": -1,
        # Re-running a method after a crash could crash it again forever; clients retry.
        "max_task_retries": 0,
        "num_cpus": 0,
        "max_concurrency": 10_000,
        # The store's SQLite file lives on the head node's disk.
        "resources": {HEAD_NODE_RESOURCE: 0.001},
    }


def ensure_registry(settings: Settings) -> Any:
    """The registry actor of ``settings.namespace``, created if it is not running."""
    from rayfn_service.registry import Registry, settings_for_registry

    actor_class = ray.remote(Registry).options(**registry_options(settings))
    handle: Any = actor_class.remote(settings_for_registry(settings))
    # Created in the background: the first answer says it has opened its store.
    registry = RegistryActor(settings.namespace, retry_seconds=0)
    registry.result(registry.submit(RegistryApi.ping), timeout=REGISTRY_START_TIMEOUT)
    return handle


def connect_driver(address: str, settings: Settings, log_to_driver: bool = True) -> None:
    """Join the cluster as a Ray driver. ``log_to_driver=False`` for a server: printing
    every worker's output would take its CPU (and its GIL) away from requests."""
    settings.apply_ray_environment()
    if ray.is_initialized():
        return
    try:
        with loopback_bootstrap(address):
            ray.init(address=address, logging_level=logging.WARNING,
                     configure_logging=False, log_to_driver=log_to_driver)
    except Exception as exc:
        raise ConnectionError(f"cannot reach the Ray cluster at {address}: {exc}") from exc


def start(settings: Settings, address: str | None = None, num_cpus: int | None = None) -> HeadInfo:
    """Bring rayfn up: attach to ``address`` or start a local head, then the registry.

    Idempotent: when rayfn already runs for this state directory, it is reused.
    """
    secure_state_dir(settings)
    info = HeadInfo.load(settings)
    if address:
        info = attach(settings, address, info)
    elif info is None or not head_alive(info):
        info = start_local_head(settings, num_cpus)
    connect_driver(info.address, settings)
    start_host(settings, info)
    if settings.start_server:
        start_server(settings, info.address)
    return info


def attach(settings: Settings, address: str, known: HeadInfo | None) -> HeadInfo:
    """Join the running cluster at ``address`` (``auto``: this machine's) without starting
    Ray, and record it: ``stop`` then leaves that Ray running."""
    connect_driver(address, settings)
    # Record the resolved address ("auto" means nothing to another process later).
    resolved = str(ray.get_runtime_context().gcs_address)
    if known is not None and head_alive(known):
        if _same_address(known.address, resolved):
            return known  # already running here (perhaps on a head rayfn started)
        if known.started_by_rayfn:
            raise Error(
                f"rayfn already runs on its own Ray head at {known.address} for state "
                f"directory {settings.state_dir}; run `rayfn stop` first, or use another "
                "RAYFN_STATE_DIR"
            )
    info = HeadInfo(address=resolved, temp_dir=None, started_by_rayfn=False)
    info.save(settings)
    return info


def _same_address(a: str, b: str) -> bool:
    """Whether two GCS addresses name one cluster (a local head is recorded on loopback,
    Ray reports it on the machine's address)."""
    host_a, _, port_a = a.rpartition(":")
    host_b, _, port_b = b.rpartition(":")
    if port_a != port_b:
        return False
    local = {"127.0.0.1", "localhost", ray.util.get_node_ip_address()}  # type: ignore[no-untyped-call]
    return host_a == host_b or (host_a in local and host_b in local)


# ---- the registry's host ------------------------------------------------------


def host_file(settings: Settings) -> Path:
    """Written by the host once its registry answers: the host's PID and Ray job."""
    return settings.state_dir / "registry-host.json"


def host_pid(settings: Settings) -> int | None:
    """The PID of this state directory's running host, if one runs."""
    try:
        pid = int(json.loads(host_file(settings).read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if runs_module(pid, "rayfn_service.host") else None


def start_host(settings: Settings, info: HeadInfo) -> None:
    """Start the registry's host (see ``host.py``) unless it runs; return once the
    registry answers."""
    if host_pid(settings) is not None:
        ensure_registry(settings)
        return
    host_file(settings).unlink(missing_ok=True)
    log_path = settings.state_dir / "host.log"
    process = spawn("rayfn_service.host", settings, info.address, log_path)
    deadline = time.monotonic() + REGISTRY_START_TIMEOUT
    while host_pid(settings) != process.pid:
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                terminate([process.pid])
            tail = log_path.read_text(errors="replace")[-2000:]
            raise Error(f"the rayfn registry did not start:\n{tail}")
        time.sleep(0.1)


def stop_host(settings: Settings) -> None:
    pid = host_pid(settings)
    if pid is not None:
        terminate([pid])
    host_file(settings).unlink(missing_ok=True)


def stop(settings: Settings) -> str:
    """Stop rayfn for this state directory. A head rayfn started is stopped with it; an
    attached cluster keeps running and only the registry is removed."""
    info = HeadInfo.load(settings)
    if info is None:
        return "rayfn is not running"
    stop_server(settings)
    stop_host(settings)
    message = "stopped rayfn"
    if info.started_by_rayfn and info.temp_dir:
        kill_head(info.temp_dir)
        message = f"stopped rayfn and its Ray head at {info.address}"
    elif head_alive(info):
        connect_driver(info.address, settings)
        try:
            ray.kill(ray.get_actor(REGISTRY_ACTOR, namespace=settings.namespace), no_restart=True)
        except ValueError:
            pass
        message = f"stopped the rayfn registry; the Ray cluster at {info.address} keeps running"
    HeadInfo.forget(settings)
    return message
