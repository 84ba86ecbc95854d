from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rayfn_service.processes import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _uses_service(service: Path) -> None:
    """Every e2e test runs against the session's rayfn, through its state directory."""


@pytest.fixture
def rayfn_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the ``rayfn`` command as a user would: a separate process, same environment."""

    def run(
        *args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        executable = Path(sys.executable).parent / "rayfn"
        result = subprocess.run(
            [str(executable), *args], capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "COLUMNS": "200"}, cwd=ROOT,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"rayfn {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    return run


# ---- the REST server, driven over loopback with httpx ------------------------------


@pytest.fixture
def unique_app(request: pytest.FixtureRequest) -> str:
    """An app name no other test uses."""
    from rayfn.protocol.ids import new_call_id

    base = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:30]
    return f"t-{base}-{new_call_id()[-6:]}"


@pytest.fixture
def rest() -> Iterator[httpx.Client]:
    """An httpx client for the session's REST server, with its token.

    The SDK in this process is reset first, so it deploys through Ray (the test process is
    a driver of the session's cluster) whatever an earlier test connected it to.
    """
    from rayfn._client import reset
    from rayfn.settings import get_settings
    from rayfn_service.server_process import server_url

    reset()
    settings = get_settings()
    client = httpx.Client(
        base_url=server_url(settings),
        headers={"Authorization": f"Bearer {settings.read_token()}"},
        timeout=httpx.Timeout(REST_TIMEOUT_SECONDS, connect=10.0),
    )
    try:
        yield client
    finally:
        client.close()
        reset()


REST_TIMEOUT_SECONDS = 90.0


@dataclasses.dataclass(frozen=True)
class SecondServer:
    """A REST server of its own, in front of its own registry on the session's Ray."""

    url: str
    token: str
    namespace: str
    settings: Any  # rayfn.settings.Settings of its registry

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=httpx.Timeout(REST_TIMEOUT_SECONDS, connect=10.0),
        )


def _healthy(url: str) -> bool:
    try:
        response = httpx.get(url + "/healthz", timeout=2.0)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.json().get("registry") is True


@pytest.fixture
def expiring_server(tmp_path: Path) -> Iterator[SecondServer]:
    """An isolated registry that keeps results 2 s (swept every 0.5 s) and serves waits in
    0.5 s chunks, with its own REST server process (``python -m rayfn_service.api``) on a
    free loopback port."""
    yield from second_server(tmp_path, {"retention_seconds": 2.0,
                                        "sweep_interval_seconds": 0.5,
                                        "wait_chunk_seconds": 0.5})


def second_server(tmp_path: Path, registry_settings: dict[str, Any],
                  server_env: dict[str, str] | None = None) -> Iterator[SecondServer]:
    """An isolated registry with ``registry_settings`` and its own REST server process,
    whose environment adds ``server_env``; removed afterwards."""
    import ray

    from rayfn._client import reset
    from rayfn.settings import get_settings
    from rayfn_service.launch import ensure_registry
    from rayfn_service.names import REGISTRY_ACTOR
    from rayfn_service.ray_head import HeadInfo
    from rayfn_service.server_process import ensure_token

    session = get_settings()
    head = HeadInfo.load(session)
    assert head is not None, "the session's rayfn is not running"
    namespace = f"rayfn-rest-{tmp_path.name[-20:]}"
    settings = session.model_copy(update={
        "namespace": namespace,
        "state_dir": tmp_path / "state",
        **registry_settings,
    })
    process: subprocess.Popen[bytes] | None = None
    log_path = tmp_path / "server.log"
    try:
        ensure_registry(settings)
        ensure_token(settings)
        port = free_port()
        env = {
            **os.environ,
            "RAYFN_ADDRESS": head.address,
            "RAYFN_NAMESPACE": namespace,
            "RAYFN_STATE_DIR": str(settings.state_dir),
            "RAYFN_SERVER_HOST": "127.0.0.1",
            "RAYFN_SERVER_PORT": str(port),
            **(server_env or {}),
        }
        env.pop("RAYFN_TOKEN", None)
        env.pop("RAYFN_SERVER_URL", None)
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "rayfn_service.api"], stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"the second REST server did not start:\n{log_path.read_text()[-3000:]}"
                )
            time.sleep(0.2)
        yield SecondServer(url=url, token=settings.read_token(), namespace=namespace,
                           settings=settings)
    finally:
        if process is not None:  # only the process this fixture started, by its PID
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        try:
            ray.kill(ray.get_actor(REGISTRY_ACTOR, namespace=namespace), no_restart=True)
        except ValueError:
            pass
        reset()
