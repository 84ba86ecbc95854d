"""Shared test set-up: one rayfn service (one local Ray head) per session.

Unit tests never touch it; integration and e2e tests ask for ``service``. Ray's auth
mode and rayfn's state directory are fixed here, before anything imports Ray, so the
test process, the CLI subprocesses and the cluster agree.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SESSION_STATE_DIR = Path(tempfile.mkdtemp(prefix="rayfn-tests-"))
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAYFN_STATE_DIR"] = str(SESSION_STATE_DIR)
os.environ.setdefault("RAYFN_CLIENT_RETRY_SECONDS", "120")
# The session's REST server, on a free loopback port (never a user's 8000).
os.environ["RAYFN_SERVER_HOST"] = "127.0.0.1"
os.environ["RAYFN_SERVER_PORT"] = str(_free_port())
# Ray Serve's proxy, which the session's registry starts for web endpoints (never 8200).
os.environ["RAYFN_RAY_SERVE_PORT"] = str(_free_port())
os.environ.pop("RAYFN_SERVER_URL", None)
os.environ.pop("RAYFN_TOKEN", None)
# Fixed CPUs so results do not depend on the machine; tests mostly sleep, not compute.
TEST_NUM_CPUS = 4


@pytest.fixture(scope="session")
def service() -> Iterator[Path]:
    """A running rayfn (local Ray head + registry) for the whole session; its state dir."""
    from rayfn.settings import get_settings
    from rayfn_service import launch

    settings = get_settings()
    assert settings.state_dir == SESSION_STATE_DIR
    launch.start(settings, num_cpus=TEST_NUM_CPUS)
    try:
        yield SESSION_STATE_DIR
    finally:
        import ray

        ray.shutdown()
        launch.stop(settings)
        shutil.rmtree(SESSION_STATE_DIR, ignore_errors=True)
