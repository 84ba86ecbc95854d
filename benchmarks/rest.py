"""4. REST under load from a separate process, vs a bare FastAPI route on the same uvicorn.

Poll: GET a finished call's result vs GET /bare. Submit: POST one call with JSON
arguments vs POST /bare with the same body.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from common import Row

HERE = Path(__file__).resolve().parent


def _wait_up(url: str, process: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the benchmark REST server exited")
        try:
            with urllib.request.urlopen(url + "/bare", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the benchmark REST server did not start")


def _load(url: str, seconds: float, connections: int, token: str,
          method: str = "GET", body: str | None = None) -> dict[str, float]:
    command = [sys.executable, str(HERE / "load.py"), url, "--method", method,
               "--seconds", str(seconds), "--connections", str(connections),
               f"--token={token}"]  # one word: a token may start with "-"
    if body is not None:
        command += ["--body", body]
    out = subprocess.run(command, capture_output=True, text=True, check=True,
                         timeout=seconds + 120).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def rest(seconds: float, connections: int) -> list[Row]:
    import rayfn
    from rayfn.settings import get_settings
    from rayfn_service.processes import free_port
    from rayfn_service.server_process import ensure_token

    settings = get_settings()
    ensure_token(settings)
    token = settings.read_token()
    app = rayfn.App("bench-rest")

    @app.function(max_containers=2)
    def echo(x: int) -> int:
        return x

    app.deploy()
    done = echo.spawn(1)
    done.get(timeout=120)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, str(HERE / "rest_server.py"), str(port)],
                              start_new_session=True)
    try:
        _wait_up(base, server)
        body = json.dumps({"args": [1]})
        runs = {
            "bare GET": _load(f"{base}/bare", seconds, connections, token),
            "poll": _load(f"{base}/v1/calls/{done.object_id}/result", seconds, connections,
                          token),
            "bare POST": _load(f"{base}/bare", seconds, connections, token, "POST", body),
            "submit": _load(f"{base}/v1/apps/bench-rest/functions/echo/calls", seconds,
                            connections, token, "POST", body),
        }
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        app.stop()
    for name, result in runs.items():
        if result["non_2xx"]:
            raise RuntimeError(f"REST load {name}: {result['non_2xx']} answers were not 2xx")
    label = f"4. REST, {connections} connections ({runs['poll'].get('client')})"
    return [
        Row(label, "poll a result vs bare GET", runs["poll"]["per_second"],
            runs["bare GET"]["per_second"], "req/s"),
        Row(label, "submit a call vs bare POST", runs["submit"]["per_second"],
            runs["bare POST"]["per_second"], "req/s"),
    ]
