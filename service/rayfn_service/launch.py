"""Start and stop rayfn: a local Ray head (the embedded default) and the registry actor.

Each local head gets its own temp dir and ports, so several rayfn services (tests, fault
drills) can run on one machine, and ``stop`` ends only the processes of its own head,
never every Ray on the machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import ray

from rayfn.exception import ConnectionError, Error
from rayfn.settings import Settings
from rayfn_service.names import HEAD_NODE_RESOURCE, REGISTRY_ACTOR

logger = logging.getLogger(__name__)

REGISTRY_START_TIMEOUT = 120.0
HEAD_START_ATTEMPTS = 3


@dataclasses.dataclass(frozen=True)
class HeadInfo:
    """What ``rayfn start`` records in the state directory about the Ray it uses."""

    address: str
    temp_dir: str | None  # set when rayfn started the head itself
    started_by_rayfn: bool

    def save(self, settings: Settings) -> None:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        settings.address_file.write_text(self.address + "\n")
        _head_file(settings).write_text(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def load(cls, settings: Settings) -> HeadInfo | None:
        try:
            return cls(**json.loads(_head_file(settings).read_text()))
        except FileNotFoundError:
            return None


def _head_file(settings: Settings) -> Path:
    return settings.state_dir / "head.json"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _temp_dir_for(settings: Settings) -> str:
    # Short, under /tmp: Ray's socket paths must stay under the 107-byte limit.
    digest = hashlib.sha1(str(settings.state_dir.resolve()).encode()).hexdigest()[:10]
    return f"/tmp/rayfn-{digest}"


def _ray_executable() -> str:
    candidate = Path(sys.executable).parent / "ray"
    return str(candidate) if candidate.exists() else "ray"


def start_local_head(settings: Settings, num_cpus: int | None = None) -> HeadInfo:
    """Start a Ray head on this machine, on free ports, and return where it is."""
    settings.apply_ray_environment()
    _ensure_ray_token()
    temp_dir = _temp_dir_for(settings)
    cpus = num_cpus if num_cpus is not None else settings.num_cpus
    for attempt in range(1, HEAD_START_ATTEMPTS + 1):
        port = free_port()
        result = subprocess.run(
            _head_command(port, temp_dir, cpus), capture_output=True, text=True,
            env=os.environ.copy(),
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


def _ensure_ray_token() -> None:
    """With token auth, make sure Ray has a token, as ``ray.init()`` does for a new local
    cluster: ``ray start --head`` refuses to start without one (~/.ray/auth_token on a
    machine where Ray never ran)."""
    from ray._private.authentication.authentication_token_setup import (
        ensure_token_if_auth_enabled,
    )

    ensure_token_if_auth_enabled(create_token_if_missing=True)


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
        ray.init(address=address, logging_level=logging.WARNING, configure_logging=False,
                 log_to_driver=log_to_driver)
    except Exception as exc:
        raise ConnectionError(f"cannot reach the Ray cluster at {address}: {exc}") from exc


def start(settings: Settings, address: str | None = None, num_cpus: int | None = None) -> HeadInfo:
    """Bring rayfn up: attach to ``address`` or start a local head, then the registry.

    Idempotent: when rayfn already runs for this state directory, it is reused.
    """
    info = HeadInfo.load(settings)
    if address:
        info = attach(settings, address, info)
    elif info is None or not head_alive(info):
        info = start_local_head(settings, num_cpus)
    connect_driver(info.address, settings)
    start_host(settings, info)
    if settings.start_server:
        start_server(settings, info)
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
    return pid if _runs_module(pid, "rayfn_service.host") else None


def _runs_module(pid: int, module: str) -> bool:
    """Whether process ``pid`` is ``python -m module`` (a recorded PID may be reused)."""
    import psutil

    try:
        return module in psutil.Process(pid).cmdline()
    except psutil.Error:
        return False


def start_host(settings: Settings, info: HeadInfo) -> None:
    """Start the registry's host (see ``host.py``) unless it runs; return once the
    registry answers."""
    if host_pid(settings) is not None:
        ensure_registry(settings)
        return
    host_file(settings).unlink(missing_ok=True)
    log_path = settings.state_dir / "host.log"
    process = _spawn("rayfn_service.host", settings, info, log_path)
    deadline = time.monotonic() + REGISTRY_START_TIMEOUT
    while host_pid(settings) != process.pid:
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                _terminate([process.pid])
            tail = log_path.read_text(errors="replace")[-2000:]
            raise Error(f"the rayfn registry did not start:\n{tail}")
        time.sleep(0.1)


def stop_host(settings: Settings) -> None:
    pid = host_pid(settings)
    if pid is not None:
        _terminate([pid])
    host_file(settings).unlink(missing_ok=True)


def _spawn(module: str, settings: Settings, info: HeadInfo,
           log_path: Path) -> subprocess.Popen[bytes]:
    """Run ``python -m module`` in the background, in its own session, logging to a file."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it
    env = {**os.environ, "RAYFN_ADDRESS": info.address,
           "RAYFN_STATE_DIR": str(settings.state_dir),
           "RAYFN_NAMESPACE": settings.namespace,
           "RAYFN_SERVER_HOST": settings.server_host,
           "RAYFN_SERVER_PORT": str(settings.server_port)}
    process = subprocess.Popen(
        [sys.executable, "-m", module], stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, env=env, start_new_session=True,
    )
    log.close()
    return process


# ---- the REST server -----------------------------------------------------------


def server_url(settings: Settings) -> str:
    host = settings.server_host if settings.server_host not in ("0.0.0.0", "::") else "127.0.0.1"
    return f"http://{host}:{settings.server_port}"


def _pid_file(settings: Settings) -> Path:
    return settings.state_dir / "server.pid"


def ensure_token(settings: Settings) -> Path:
    """Create the REST token file (mode 0600) unless it exists; return its path."""
    path = settings.token_file
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    return path


def rotate_token(settings: Settings) -> Path:
    """Replace the REST token file with a new token, atomically and with mode 0600.

    A running server reads the file again when it changes: the new token works at once
    and the old one is refused from then on.
    """
    path = settings.token_file
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def server_alive(settings: Settings, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(server_url(settings) + "/healthz", timeout=timeout) as r:
            return bool(r.status == 200)
    except (OSError, ValueError):
        return False


def start_server(settings: Settings, info: HeadInfo, wait_seconds: float = 60.0) -> None:
    """Start the REST server as its own process (a Ray driver), unless it already runs."""
    if _server_process_running(settings) or server_alive(settings):
        return
    ensure_token(settings)
    process = _spawn("rayfn_service.api", settings, info, settings.state_dir / "server.log")
    _pid_file(settings).write_text(str(process.pid))
    deadline = time.monotonic() + wait_seconds
    while not server_alive(settings, timeout=1.0):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = (settings.state_dir / "server.log").read_text(errors="replace")[-2000:]
            raise Error(f"the REST server did not start on {server_url(settings)}:\n{tail}")
        time.sleep(0.2)


def _server_process_running(settings: Settings) -> bool:
    """Whether the server this state directory recorded still runs (it may be slow to
    answer a health check meanwhile, e.g. while the registry restarts)."""
    try:
        pid = int(_pid_file(settings).read_text())
    except (OSError, ValueError):
        return False
    return _runs_module(pid, "rayfn_service.api")


def stop_server(settings: Settings) -> None:
    try:
        pid = int(_pid_file(settings).read_text())
    except (FileNotFoundError, ValueError):
        return
    _terminate([pid])
    _pid_file(settings).unlink(missing_ok=True)


def _terminate(pids: list[int], grace_seconds: float = 5.0) -> None:
    import psutil

    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and any(psutil.pid_exists(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def head_alive(info: HeadInfo) -> bool:
    host, _, port = info.address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=2):
            return True
    except (OSError, ValueError):
        return False


def head_processes(temp_dir: str) -> list[int]:
    """PIDs of the Ray processes that belong to the head using ``temp_dir``."""
    import psutil

    pids: set[int] = set()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            if temp_dir in cmdline and proc.info["pid"] != os.getpid():
                pids.add(int(proc.info["pid"]))
                # Agents and workers renamed themselves (ray::...); they are children.
                pids.update(child.pid for child in proc.children(recursive=True))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    pids.discard(os.getpid())
    return sorted(pids)


def kill_head(temp_dir: str, grace_seconds: float = 5.0) -> None:
    """Stop one local head's processes (SIGTERM, then SIGKILL), leaving other Rays alone."""
    _terminate(head_processes(temp_dir), grace_seconds)
    _terminate(head_processes(temp_dir), 0)  # workers started meanwhile


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
