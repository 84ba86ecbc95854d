"""The REST server's process (``python -m rayfn_service.api``, a Ray driver of its own):
its URL, the REST token, the ``server.key`` with which it proves it is this state
directory's server and not another process on its port, and starting and stopping it
(``server.pid``)."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import os
import secrets
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Literal

from rayfn.exception import ConflictError, Error
from rayfn.settings import Settings
from rayfn_service.private_files import create_secret_file, make_private_dir, write_private
from rayfn_service.processes import listens_on, runs_module, spawn, terminate

logger = logging.getLogger(__name__)


def server_url(settings: Settings) -> str:
    host = settings.server_host if settings.server_host not in ("0.0.0.0", "::") else "127.0.0.1"
    return f"http://{host}:{settings.server_port}"


def _pid_file(settings: Settings) -> Path:
    return settings.state_dir / "server.pid"


def _server_key_file(settings: Settings) -> Path:
    """The REST server's identity: a secret only this user's processes can read."""
    return settings.state_dir / "server.key"


def ensure_token(settings: Settings) -> Path:
    """Create the REST token file (mode 0600) unless it exists; return its path."""
    create_secret_file(settings.token_file, secrets.token_urlsafe(32))
    return settings.token_file


def rotate_token(settings: Settings) -> Path:
    """Replace the REST token file with a new token, atomically and with mode 0600.

    A running server reads the file again when it changes: the new token works at once
    and the old one is refused from then on.
    """
    path = settings.token_file
    make_private_dir(settings.state_dir)
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


def start_server(settings: Settings, address: str, wait_seconds: float = 60.0) -> None:
    """Start the REST server as its own process (a Ray driver), unless it already runs.

    A process on the port that is not this state directory's server (it cannot answer
    ``server_proof``, and it is not the server ``server.pid`` names) is not used, and
    clients are not sent to it: ``ConflictError``."""
    port = settings.server_port
    recorded = _recorded_server_pid(settings)
    found = server_identity(settings, timeout=10.0)
    if recorded is not None and runs_module(recorded, "rayfn_service.api"):
        # Ours runs: it answers, or is slow to (the registry restarts), or still starts,
        # or is busy (503). Only if it is not what holds the port is the port taken.
        if found != "foreign" or listens_on(recorded, port):
            return
        raise _port_taken(settings)
    if found == "ours":
        return
    if found != "none":
        raise _port_taken(settings)
    ensure_token(settings)
    create_secret_file(_server_key_file(settings), secrets.token_hex(32))
    log_path = settings.state_dir / "server.log"
    process = spawn("rayfn_service.api", settings, address, log_path)
    write_private(_pid_file(settings), str(process.pid))
    deadline = time.monotonic() + wait_seconds
    while (found := server_identity(settings, timeout=1.0)) != "ours":
        taken = found == "foreign" and not listens_on(process.pid, port)
        if taken or process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                terminate([process.pid])
            _pid_file(settings).unlink(missing_ok=True)
            if taken:
                raise _port_taken(settings)
            tail = log_path.read_text(errors="replace")[-2000:]
            raise Error(f"the REST server did not start on {server_url(settings)}:\n{tail}")
        time.sleep(0.2)


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
    if runs_module(pid, "rayfn_service.api"):
        terminate([pid])
    else:
        logger.warning("server.pid names process %d, which is not a rayfn REST server; "
                       "it is left alone", pid)
    _pid_file(settings).unlink(missing_ok=True)
