"""Start and stop rayfn: a local Ray head (the embedded default) and the registry actor.

Each local head gets its own temp dir and ports, so several rayfn services (tests, fault
drills) can run on one machine, and ``stop`` ends only the processes of its own head,
never every Ray on the machine.

The embedded head is this machine's only, and its owner's only: its Ray processes listen
on loopback (Ray's single-machine mode, see ``LOOPBACK_RAY_ENV``), and what rayfn and that
head write (the state directory, Ray's temp dir and logs, Ray's auth token) is readable by
the user who runs rayfn alone (directories 0700, files 0600).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import http.client
import json
import logging
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Literal

import ray

from rayfn._net import loopback_bootstrap
from rayfn.exception import ConflictError, ConnectionError, Error
from rayfn.settings import Settings
from rayfn_service.names import HEAD_NODE_RESOURCE, REGISTRY_ACTOR

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
# Files rayfn and its head create are private to the user who runs them.
PRIVATE_UMASK = 0o077


def _owned_by_me(path: Path) -> bool:
    try:
        return path.lstat().st_uid == os.geteuid()
    except OSError:
        return False


def _make_private_dir(path: Path) -> None:
    """Create ``path`` with mode 0700, or narrow it to 0700 if it exists (and is ours)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if _owned_by_me(path) and path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``, atomically, as a file of mode 0600."""
    _make_private_dir(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _open_private_log(path: Path) -> int:
    """A file descriptor appending to the log ``path`` (mode 0600, even if it existed)."""
    _make_private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    return fd


# What rayfn keeps in a state directory (the store's files are made by the registry).
STATE_FILES = ("rayfn.sqlite3", "rayfn.sqlite3-wal", "rayfn.sqlite3-shm",
               "rayfn.sqlite3-journal", "head.json", "ray_address", "token", "server.key",
               "server.pid", "registry-host.json", "host.log", "server.log")


def secure_state_dir(settings: Settings) -> None:
    """Make the state directory 0700 and rayfn's files in it 0600 (an earlier rayfn, or
    a process with a wider umask, may have left them readable by others)."""
    _make_private_dir(settings.state_dir)
    for name in STATE_FILES:
        entry = settings.state_dir / name
        try:
            mode = entry.lstat().st_mode
        except OSError:
            continue  # not there (or removed meanwhile: a SQLite journal)
        if stat.S_ISREG(mode) and mode & 0o077 and _owned_by_me(entry):
            with contextlib.suppress(OSError):
                os.chmod(entry, 0o600)


@dataclasses.dataclass(frozen=True)
class HeadInfo:
    """What ``rayfn start`` records in the state directory about the Ray it uses."""

    address: str
    temp_dir: str | None  # set when rayfn started the head itself
    started_by_rayfn: bool

    def save(self, settings: Settings) -> None:
        _write_private(settings.address_file, self.address + "\n")
        _write_private(_head_file(settings), json.dumps(dataclasses.asdict(self)))

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
    _ensure_ray_token()
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
        if path.is_symlink() or not path.is_dir() or not _owned_by_me(path):
            raise Error(
                f"{path}, where rayfn keeps its Ray heads' temp dirs, exists and is not a "
                "directory of yours; remove it"
            ) from None
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)


def ray_token_path() -> Path:
    """Where Ray reads its auth token: ``RAY_AUTH_TOKEN_PATH``, else ~/.ray/auth_token
    (under ``HOME``)."""
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")


def _ensure_ray_token() -> None:
    """With token auth, make sure Ray has a token, as ``ray.init()`` does for a new local
    cluster: ``ray start --head`` refuses to start without one (~/.ray/auth_token on a
    machine where Ray never ran).

    Ray writes its token with the process's umask (0644 as a rule), and whoever reads it
    controls the cluster: rayfn makes it 0600 (and ~/.ray 0700), and narrows a token
    file of the user's that others could read."""
    from ray._private.authentication.authentication_token_generator import (
        generate_new_authentication_token,
    )
    from ray._raylet import (  # type: ignore[attr-defined]
        AuthenticationMode,
        AuthenticationTokenLoader,
        get_authentication_mode,
    )

    if get_authentication_mode() != AuthenticationMode.TOKEN:
        return
    loader = AuthenticationTokenLoader.instance()
    if not loader.has_token(ignore_auth_mode=True):
        # Where Ray's own ensure_token_if_auth_enabled writes it.
        path = Path.home() / ".ray" / "auth_token"
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another rayfn made it meanwhile
        else:
            with os.fdopen(fd, "w") as f:
                f.write(generate_new_authentication_token())
                f.flush()
                os.fsync(f.fileno())
            logger.info("made a Ray auth token in %s (mode 0600)", path)
        loader.reset_cache()
    for path in {ray_token_path(), Path.home() / ".ray" / "auth_token"}:
        _narrow_token_file(path)


def _narrow_token_file(path: Path) -> None:
    try:
        info = path.stat()
    except OSError:
        return
    if stat.S_ISREG(info.st_mode) and info.st_mode & 0o077 and info.st_uid == os.geteuid():
        os.chmod(path, 0o600)
        logger.warning("%s was readable by other users (mode %o); it is 0600 now",
                       path, stat.S_IMODE(info.st_mode))


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
    """Run ``python -m module`` in the background, in its own session, logging to a file.
    What it writes is private to this user (umask 077, a 0600 log)."""
    _make_private_dir(settings.state_dir)
    log = _open_private_log(log_path)
    env = {**os.environ, "RAYFN_ADDRESS": info.address,
           "RAYFN_STATE_DIR": str(settings.state_dir),
           "RAYFN_NAMESPACE": settings.namespace,
           "RAYFN_SERVER_HOST": settings.server_host,
           "RAYFN_SERVER_PORT": str(settings.server_port)}
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", module], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env, start_new_session=True,
            umask=PRIVATE_UMASK,
        )
    finally:
        os.close(log)  # the child has its own copy
    return process


# ---- the REST server -----------------------------------------------------------


def server_url(settings: Settings) -> str:
    host = settings.server_host if settings.server_host not in ("0.0.0.0", "::") else "127.0.0.1"
    return f"http://{host}:{settings.server_port}"


def _pid_file(settings: Settings) -> Path:
    return settings.state_dir / "server.pid"


def _server_key_file(settings: Settings) -> Path:
    """The REST server's identity: a secret only this user's processes can read."""
    return settings.state_dir / "server.key"


def _create_secret_file(path: Path, value: str) -> bool:
    """Write ``value`` to a new file of mode 0600; False if the file exists already."""
    _make_private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return True


def ensure_token(settings: Settings) -> Path:
    """Create the REST token file (mode 0600) unless it exists; return its path."""
    _create_secret_file(settings.token_file, secrets.token_urlsafe(32))
    return settings.token_file


def rotate_token(settings: Settings) -> Path:
    """Replace the REST token file with a new token, atomically and with mode 0600.

    A running server reads the file again when it changes: the new token works at once
    and the old one is refused from then on.
    """
    path = settings.token_file
    _make_private_dir(settings.state_dir)
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


def server_proof(settings: Settings, challenge: str) -> str | None:
    """What this state directory's REST server answers to ``/healthz?challenge=...``: an
    HMAC of the challenge under the server key (None without a key). A process of another
    user cannot read the key, so cannot answer; a fresh challenge each time means an
    answer overheard once is no use later."""
    try:
        key = _server_key_file(settings).read_bytes().strip()
    except OSError:
        return None
    if not key:
        return None
    return hmac.new(key, b"rayfn-healthz:" + challenge.encode(), hashlib.sha256).hexdigest()


ServerIdentity = Literal["ours", "foreign", "silent", "none"]


def server_identity(settings: Settings, timeout: float = 2.0) -> ServerIdentity:
    """Who holds the REST server's port: ``ours`` (this state directory's server, proven
    by ``server_proof``), ``foreign`` (something that answers otherwise), ``silent``
    (something accepts connections but gives no answer in time: perhaps a server of ours
    still starting) or ``none`` (nothing listens)."""
    url = server_url(settings)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError:
        return "none"
    challenge = secrets.token_urlsafe(24)
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no HTTP_PROXY
    try:
        with direct.open(f"{url}/healthz?challenge={challenge}", timeout=timeout) as response:
            body = json.loads(response.read(65536))
    except urllib.error.HTTPError:
        return "foreign"  # it answers HTTP, but not as our health check does
    except urllib.error.URLError as exc:
        return "silent" if isinstance(exc.reason, TimeoutError) else "foreign"
    except (TimeoutError, ConnectionResetError):  # incl. a connection closed unanswered
        return "silent"
    except (OSError, ValueError, http.client.HTTPException):
        return "foreign"  # not HTTP, or not JSON
    expected = server_proof(settings, challenge)
    answer = body.get("server") if isinstance(body, dict) else None
    if expected is not None and isinstance(answer, str) and hmac.compare_digest(answer, expected):
        return "ours"
    return "foreign"


def server_alive(settings: Settings, timeout: float = 2.0) -> bool:
    """Whether this state directory's REST server answers on its port."""
    return server_identity(settings, timeout) == "ours"


def _port_taken(settings: Settings) -> ConflictError:
    return ConflictError(
        f"port {settings.server_port} ({server_url(settings)}) is in use by a process "
        f"that is not the rayfn REST server of {settings.state_dir}; rayfn does not use it "
        "(clients would send it their token). Stop that process, or choose a free port "
        "with RAYFN_SERVER_PORT (and point clients at it with RAYFN_SERVER_URL)"
    )


def start_server(settings: Settings, info: HeadInfo, wait_seconds: float = 60.0) -> None:
    """Start the REST server as its own process (a Ray driver), unless it already runs.

    A process on the port that is not this state directory's server (it cannot answer
    ``server_proof``, and it is not the server ``server.pid`` names) is not used, and
    clients are not sent to it: ``ConflictError``."""
    port = settings.server_port
    recorded = _recorded_server_pid(settings)
    found = server_identity(settings, timeout=10.0)
    if recorded is not None and _runs_module(recorded, "rayfn_service.api"):
        # Ours runs: it answers, or is slow to (the registry restarts), or still starts,
        # or is busy (503). Only if it is not what holds the port is the port taken.
        if found != "foreign" or _listens_on(recorded, port):
            return
        raise _port_taken(settings)
    if found == "ours":
        return
    if found != "none":
        raise _port_taken(settings)
    ensure_token(settings)
    _create_secret_file(_server_key_file(settings), secrets.token_hex(32))
    log_path = settings.state_dir / "server.log"
    process = _spawn("rayfn_service.api", settings, info, log_path)
    _write_private(_pid_file(settings), str(process.pid))
    deadline = time.monotonic() + wait_seconds
    while (found := server_identity(settings, timeout=1.0)) != "ours":
        taken = found == "foreign" and not _listens_on(process.pid, port)
        if taken or process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                _terminate([process.pid])
            _pid_file(settings).unlink(missing_ok=True)
            if taken:
                raise _port_taken(settings)
            tail = log_path.read_text(errors="replace")[-2000:]
            raise Error(f"the REST server did not start on {server_url(settings)}:\n{tail}")
        time.sleep(0.2)


def _listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a listening TCP socket on ``port``."""
    import psutil

    try:
        return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                   for c in psutil.Process(pid).net_connections(kind="inet"))
    except psutil.Error:
        return False


def _recorded_server_pid(settings: Settings) -> int | None:
    try:
        return int(_pid_file(settings).read_text())
    except (OSError, ValueError):
        return None


def stop_server(settings: Settings) -> None:
    """Stop the server ``server.pid`` names, if that process is a rayfn REST server (the
    PID may have been reused, or the file written by someone else)."""
    pid = _recorded_server_pid(settings)
    if pid is None:
        _pid_file(settings).unlink(missing_ok=True)
        return
    if _runs_module(pid, "rayfn_service.api"):
        _terminate([pid])
    else:
        logger.warning("server.pid names process %d, which is not a rayfn REST server; "
                       "it is left alone", pid)
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
