"""Web endpoints end to end: Modal's endpoint example served by ``rayfn serve`` (a real
subprocess, reloading on change) and deployed on Ray Serve by ``rayfn deploy``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rayfn_service.processes import free_port

Cli = Callable[..., subprocess.CompletedProcess[str]]
ROOT = Path(__file__).resolve().parents[2]
QUEUE_EXAMPLE = "examples/my_job_queue.py"
ENDPOINT_EXAMPLE = ROOT / "examples" / "my_job_queue_endpoint.py"
PIP_IMAGE = 'modal.Image.debian_slim().pip_install("fastapi[standard]")'

NEW_ROUTE = '''

@web_app.get("/hello")
async def hello():
    return {"hello": "reloaded"}
'''

SECOND_ENDPOINT = '''

health_app = fastapi.FastAPI()


@health_app.get("/ping")
def ping():
    return {"ok": True}


@app.function()
@modal.asgi_app(label="health")
def health_endpoint():
    return health_app
'''


def _request(method: str, url: str) -> tuple[int | None, Any]:
    """Status and JSON body; ``(None, None)`` while nothing listens."""
    try:
        response = httpx.request(method, url, timeout=30.0)
    except httpx.TransportError:
        return None, None
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text


def _wait_for(
    condition: Callable[[], bool], what: str, timeout: float, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-4000:] if log else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{tail}")
        time.sleep(0.25)


def _submit_and_poll(base_url: str, timeout: float = 60.0) -> None:
    """The example's flow: POST /submit gives a call ID; GET /result/<id> answers 202
    until the call finishes, then 200 with the result."""
    status, body = _request("POST", f"{base_url}/submit?data=data")
    assert status == 200, body
    assert set(body) == {"call_id"} and re.fullmatch(r"fc-[0-9A-Z]{26}", body["call_id"])
    call_id = body["call_id"]
    statuses = []
    deadline = time.monotonic() + timeout
    while True:
        status, body = _request("GET", f"{base_url}/result/{call_id}")
        statuses.append(status)
        if status == 200:
            break
        assert status == 202 and body == "", (status, body)
        assert time.monotonic() < deadline, f"no result after {timeout:g} s"
        time.sleep(0.2)
    assert body == {"result": "data"}
    assert set(statuses) <= {202, 200}


def _spawn_is_refused(app: str, function: str) -> None:
    """Looked up by name, the endpoint cannot be spawned: the registry refuses it."""
    import rayfn
    from rayfn._client import reset

    reset()  # through Ray, as a driver of the session's cluster
    try:
        with pytest.raises(rayfn.exception.InvalidError, match="is a web endpoint"):
            rayfn.Function.from_name(app, function).spawn()
    finally:
        reset()


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``rayfn serve`` in a process group of its own; stop that group afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, log: Path) -> subprocess.Popen[bytes]:
        executable = Path(sys.executable).parent / "rayfn"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [str(executable), "serve", *args], stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=ROOT, start_new_session=True,
                env={**os.environ, "COLUMNS": "200"},
            )
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:  # the group is uvicorn's reloader and its server process
            _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def test_rayfn_serve_runs_the_example_and_reloads_on_change(
    rayfn_cli: Cli, tmp_path: Path, serve_process: Any
) -> None:
    rayfn_cli("deploy", QUEUE_EXAMPLE)
    served = tmp_path / "served_endpoint.py"
    served.write_text(ENDPOINT_EXAMPLE.read_text())
    port = free_port()
    log = tmp_path / "serve.log"
    process = serve_process(str(served), "--port", str(port), log=log)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, log.read_text()
        return _request("GET", url + "/openapi.json")[0] == 200

    _wait_for(up, f"rayfn serve on {url}", 60, log)
    assert f"web endpoint fastapi_app: {url}/" in log.read_text()
    _submit_and_poll(url)

    # Changing the file reloads the server: the new route answers, the old ones still do.
    with served.open("a") as f:
        f.write(NEW_ROUTE)
    _wait_for(lambda: _request("GET", url + "/hello") == (200, {"hello": "reloaded"}),
              "the reloaded route", 60, log)
    _submit_and_poll(url)

    # A broken file answers 500 with the reason (the server stays up), until it is fixed.
    good = served.read_text()
    served.write_text(good + "\ndef broken(:\n")
    _wait_for(lambda: _request("GET", url + "/hello")[0] == 500, "the error page", 60, log)
    status, body = _request("GET", url + "/hello")
    assert "syntax error" in body, body
    served.write_text(good)
    _wait_for(lambda: _request("GET", url + "/hello") == (200, {"hello": "reloaded"}),
              "the fixed file", 60, log)
    assert process.poll() is None
    text = log.read_text()
    assert "Reloading" in text and "Traceback" not in text, text

    _stop_group(process)
    assert process.returncode is not None
    assert _request("GET", url + "/hello") == (None, None)


def test_deploy_runs_the_example_on_ray_serve_and_app_stop_removes_it(
    rayfn_cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Serve's proxy on a free port of the session's Ray (never a user's 8200). The pip
    # image would make Ray build a virtualenv from PyPI for the replica; the test uses the
    # cluster's own environment, which has FastAPI.
    port = int(os.environ["RAYFN_RAY_SERVE_PORT"])  # the session registry's (conftest)
    source = ENDPOINT_EXAMPLE.read_text()
    assert PIP_IMAGE in source
    app_file = tmp_path / "fastapi_modal_on_serve.py"
    app_file.write_text(source.replace(PIP_IMAGE, "modal.Image.debian_slim()"))

    rayfn_cli("deploy", QUEUE_EXAMPLE)
    deployed = rayfn_cli("deploy", str(app_file))
    assert "deployed app 'fastapi-modal'" in deployed.stdout
    match = re.search(r"web endpoint fastapi_app: (\S+)", deployed.stdout)
    assert match, deployed.stdout
    url = match.group(1)
    assert url == f"http://127.0.0.1:{port}/fastapi-modal"
    try:
        _submit_and_poll(url)
        # Its code is the registry's too (app list shows it), but it is served, not called.
        apps = rayfn_cli("app", "list", "--json").stdout
        assert '"fastapi-modal"' in apps and "fastapi_app" in apps
        _spawn_is_refused("fastapi-modal", "fastapi_app")

        # A redeploy with a second endpoint: each gets its own path, the old route goes.
        app_file.write_text(app_file.read_text() + SECOND_ENDPOINT)
        redeployed = rayfn_cli("deploy", str(app_file)).stdout
        urls = dict(re.findall(r"web endpoint (\w+): (\S+)", redeployed))
        assert urls == {"fastapi_app": f"{url}/fastapi_app", "health_endpoint": f"{url}/health"}
        assert _request("GET", f"{url}/health/ping") == (200, {"ok": True})
        _submit_and_poll(urls["fastapi_app"])
        _wait_for(lambda: _request("GET", f"{url}/openapi.json")[0] == 404,
                  "the old route to be removed", 30)
    finally:
        stopped = rayfn_cli("app", "stop", "fastapi-modal")
    assert "stopped app 'fastapi-modal'" in stopped.stdout
    for gone in (f"{url}/fastapi_app/openapi.json", f"{url}/health/ping"):
        _wait_for(lambda gone=gone: _request("GET", gone)[0] in (404, None),
                  f"{gone} to be removed", 30)
