"""The background processes rayfn runs (the registry's host, the REST server, a local
head's Ray processes): starting ``python -m module`` in its own session with a private
log, telling whether a recorded PID still runs that module or listens on a port, ending
processes (SIGTERM, then SIGKILL), and finding a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from rayfn.settings import Settings
from rayfn_service.private_files import PRIVATE_UMASK, make_private_dir, open_private_log


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def runs_module(pid: int, module: str) -> bool:
    """Whether process ``pid`` is ``python -m module`` (a recorded PID may be reused)."""
    import psutil

    try:
        return module in psutil.Process(pid).cmdline()
    except psutil.Error:
        return False


def listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a listening TCP socket on ``port``."""
    import psutil

    try:
        return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                   for c in psutil.Process(pid).net_connections(kind="inet"))
    except psutil.Error:
        return False


def spawn(module: str, settings: Settings, address: str,
           log_path: Path) -> subprocess.Popen[bytes]:
    """Run ``python -m module`` in the background, in its own session, logging to a file.
    What it writes is private to this user (umask 077, a 0600 log)."""
    make_private_dir(settings.state_dir)
    log = open_private_log(log_path)
    env = {**os.environ, "RAYFN_ADDRESS": address,
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


def terminate(pids: list[int], grace_seconds: float = 5.0) -> None:
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
