"""The embedded default's Ray head: started on this machine, on free ports and loopback,
in a temp dir of its own, and stopped by its own PIDs (never every Ray on the machine).

Each local head gets its own temp dir and ports, so several rayfn services (tests, fault
drills) can run on one machine. Its Ray processes listen on loopback (Ray's
single-machine mode, see ``LOOPBACK_RAY_ENV``), and what it writes (Ray's temp dir, logs,
auth token) is readable by the user who runs rayfn alone (``private_files``).
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
from pathlib import Path

import ray

from rayfn.exception import Error
from rayfn.settings import Settings
from rayfn_service.private_files import PRIVATE_UMASK, owned_by_me, write_private
from rayfn_service.processes import free_port, terminate
from rayfn_service.ray_token import ensure_ray_token

__all__ = ["HeadInfo", "LOOPBACK_RAY_ENV", "head_alive", "head_processes", "kill_head",
           "start_local_head"]

logger = logging.getLogger(__name__)

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

    @staticmethod
    def forget(settings: Settings) -> None:
        """Remove the record (rayfn stopped)."""
        settings.address_file.unlink(missing_ok=True)
        _head_file(settings).unlink(missing_ok=True)

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
