"""Start and stop rayfn: a local Ray head (the embedded default) or an attached cluster,
the registry actor and its host, and the REST server (``server_process``).

Each local head gets its own temp dir and ports, so several rayfn services (tests, fault
drills) can run on one machine, and ``stop`` ends only the processes of its own head,
never every Ray on the machine.

The embedded head is this machine's only, and its owner's only: its Ray processes listen
on loopback (Ray's single-machine mode, see ``LOOPBACK_RAY_ENV``), and what rayfn and that
head write (the state directory, Ray's temp dir and logs, Ray's auth token) is readable by
the user who runs rayfn alone (directories 0700, files 0600: ``private_files``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import ray

from rayfn._net import loopback_bootstrap
from rayfn.exception import ConnectionError, Error
from rayfn.settings import Settings
from rayfn_service.names import HEAD_NODE_RESOURCE, REGISTRY_ACTOR
from rayfn_service.private_files import (
    PRIVATE_UMASK,
    owned_by_me,
    secure_state_dir,
    write_private,
)
from rayfn_service.processes import free_port, runs_module, spawn, terminate
from rayfn_service.ray_token import ensure_ray_token
from rayfn_service.server_process import start_server, stop_server

logger = logging.getLogger(__name__)

REGISTRY_START_TIMEOUT = 120.0
HEAD_START_ATTEMPTS = 3

# Ray 2.60 on Linux turns a node address of 127.0.0.1 into the machine's own address and
# then listens on every interface. With this setting (meant for single-machine Ray on
# Windows and macOS) a head on 127.0.0.1 stays there: GCS, raylet, object manager,
# workers, agents, metrics and the Ray client server all listen on loopback only. A
# driver must connect over loopback too (``loopback_bootstrap``); such a head cannot
# take worker nodes from other machines (use ``rayfn start --address`` on a real cluster).
LOOPBACK_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


@dataclasses.dataclass(frozen=True)
class HeadInfo:
    """What ``rayfn start`` records in the state directory about the Ray it uses."""

    address: str
    temp_dir: str | None  # set when rayfn started the head itself
    started_by_rayfn: bool

    def save(self, settings: Settings) -> None:
        write_private(settings.address_file, self.address + "\n")
        write_private(_head_file(settings), json.dumps(dataclasses.asdict(self)))

    @classmethod
    def load(cls, settings: Settings) -> HeadInfo | None:
        try:
            return cls(**json.loads(_head_file(settings).read_text()))
        except FileNotFoundError:
            return None


def _head_file(settings: Settings) -> Path:
    return settings.state_dir / "head.json"


def _temp_dir_for(settings: Settings) -> str:
    # Short, under /tmp: Ray's socket paths must stay under the 107-byte limit. Ray makes
    # its temp dir and session dirs 0777 (again whenever a worker starts), so they live
    # in a directory of this user's, 0700: no one else can enter what is under it.
    digest = hashlib.sha1(str(settings.state_dir.resolve()).encode()).hexdigest()[:10]
    return f"{_private_temp_root()}/{digest}"


def _private_temp_root() -> str:
    return f"/tmp/rayfn-{os.geteuid()}"


def _ray_executable() -> str:
    candidate = Path(sys.executable).parent / "ray"
    return str(candidate) if candidate.exists() else "ray"


def start_local_head(settings: Settings, num_cpus: int | None = None) -> HeadInfo:
    """Start a Ray head on this machine, on free ports, and return where it is."""
    settings.apply_ray_environment()
    ensure_ray_token()
    _claim_temp_root()
    temp_dir = _temp_dir_for(settings)
    cpus = num_cpus if num_cpus is not None else settings.num_cpus
    for attempt in range(1, HEAD_START_ATTEMPTS + 1):
        port = free_port()
        # The umask reaches every process of the head and every worker (the raylet
        # starts them): logs, sockets and the registry's SQLite store are the user's.
        result = subprocess.run(
            _head_command(port, temp_dir, cpus), capture_output=True, text=True,
            env={**os.environ, **LOOPBACK_RAY_ENV}, umask=PRIVATE_UMASK,
        )
        if result.returncode == 0:
            break
        output = result.stderr.strip() or result.stdout.strip()
        # Ray gives its raylet 30 s to register; on a busy machine that can pass. Clear
        # what the failed start left behind and try again on fresh ports.
        kill_head(temp_dir, grace_seconds=0)
        if "timed out during startup" not in output or attempt == HEAD_START_ATTEMPTS:
            raise Error(f"`ray start` failed:\n{output}")
        logger.warning("the Ray head timed out while starting; trying again (%d)", attempt)
    info = HeadInfo(address=f"127.0.0.1:{port}", temp_dir=temp_dir, started_by_rayfn=True)
    info.save(settings)
    return info


def _claim_temp_root() -> None:
    """Make the parent of this user's Ray temp dirs, 0700, or check the one there is:
    its name is predictable, and someone else's would see (or replace) Ray's files."""
    path = Path(_private_temp_root())
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        if path.is_symlink() or not path.is_dir() or not owned_by_me(path):
            raise Error(
                f"{path}, where rayfn keeps its Ray heads' temp dirs, exists and is not a "
                "directory of yours; remove it"
            ) from None
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)


def _head_command(port: int, temp_dir: str, cpus: int | None) -> list[str]:
    command = [
        _ray_executable(),
        "start",
        "--head",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        f"--temp-dir={temp_dir}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--ray-client-server-port={free_port()}",
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
    ]
    if cpus is not None:
        command.append(f"--num-cpus={cpus}")
    return command


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
    ray.get(handle.ping.remote(), timeout=REGISTRY_START_TIMEOUT)
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


def head_alive(info: HeadInfo) -> bool:
    host, _, port = info.address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=2):
            return True
    except (OSError, ValueError):
        return False


def _gcs_addresses(temp_dir: str) -> set[str]:
    """GCS addresses of the heads and nodes that used ``temp_dir`` (or a temp dir right
    under it): Ray records each in ``ray_current_cluster``."""
    found = set()
    for path in (*Path(temp_dir).glob("ray_current_cluster"),
                 *Path(temp_dir).glob("*/ray_current_cluster")):
        with contextlib.suppress(OSError):
            if address := path.read_text().strip():
                found.add(address)
    return found


def _is_ray_process(cmdline: list[str]) -> bool:
    """Whether a command line runs one of Ray's own modules or programs."""
    ray_dir = str(Path(ray.__file__).parent)
    return any(arg.startswith(ray_dir) or (arg.startswith("ray.") and i > 0
                                           and cmdline[i - 1] == "-m")
               for i, arg in enumerate(cmdline))


def head_processes(temp_dir: str) -> list[int]:
    """PIDs of the Ray processes that belong to the head using ``temp_dir``: those that
    name it on their command line, their children (agents and workers renamed themselves
    ray::...), and Ray processes that name only the head's GCS address (the Ray client
    server, ``python -m ray.util.client.server --address=...``)."""
    import psutil

    address_flags = {f"{flag}={address}" for address in _gcs_addresses(temp_dir)
                     for flag in ("--address", "--gcs-address", "--gcs_address")}
    pids: set[int] = set()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            args = list(proc.info["cmdline"] or [])
            ours = temp_dir in " ".join(args) or (
                bool(address_flags.intersection(args)) and _is_ray_process(args))
            if ours and proc.info["pid"] != os.getpid():
                pids.add(int(proc.info["pid"]))
                pids.update(child.pid for child in proc.children(recursive=True))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    pids.discard(os.getpid())
    return sorted(pids)


def kill_head(temp_dir: str, grace_seconds: float = 5.0) -> None:
    """Stop one local head's processes (SIGTERM, then SIGKILL), leaving other Rays alone."""
    terminate(head_processes(temp_dir), grace_seconds)
    terminate(head_processes(temp_dir), 0)  # workers started meanwhile


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
    settings.address_file.unlink(missing_ok=True)
    _head_file(settings).unlink(missing_ok=True)
    return message
