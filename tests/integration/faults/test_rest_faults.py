"""Scenario 4: the REST server killed and restarted while HTTP clients submit (with
idempotency keys) and poll. Clients retry through the gap; a retried submit never
makes a second call."""

from __future__ import annotations

import collections
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import rayfn
from rayfn.settings import get_settings
from rayfn_service.processes import free_port
from rayfn_service.ray_head import HeadInfo

from .harness import Tally, read_runs, wait_until

# Drills run minutes on a busy machine; the default per-test limit is for ordinary tests.
pytestmark = [pytest.mark.fault, pytest.mark.timeout(900)]

CLIENTS = 4
PER_CLIENT = 60


class Server:
    """A second REST server on the session's registry, ours to kill."""

    def __init__(self, log: Path) -> None:
        settings = get_settings()
        info = HeadInfo.load(settings)
        assert info is not None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = settings.read_token()
        self.log = log
        self.env = {**os.environ, "RAYFN_ADDRESS": info.address,
                    "RAYFN_SERVER_HOST": "127.0.0.1", "RAYFN_SERVER_PORT": str(self.port)}
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "rayfn_service.api"], env=self.env, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.kills += 1

    def alive(self) -> bool:
        try:
            return httpx.get(self.url + "/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "server.log")
    srv.start()
    try:
        wait_until(srv.alive, timeout=120, what="the REST server to start")
        yield srv
    finally:
        if srv.process is not None and srv.process.poll() is None:
            srv.kill()


class RetryingClient:
    """What a careful HTTP client does: retry connection errors and 5xx, with the same
    idempotency key, until a bounded deadline."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=30)
        self.retries = 0

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        deadline = time.monotonic() + 300
        while True:
            try:
                r = self.http.request(method, path, **kwargs)
                if r.status_code < 500:
                    return r
            except httpx.TransportError:
                pass
            self.retries += 1
            assert time.monotonic() < deadline, f"{method} {path}: no answer for 300 s"
            time.sleep(0.2)


@dataclasses.dataclass
class Shared:
    ids_by_key: dict[str, set[str]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(set))
    results: dict[str, Any] = dataclasses.field(default_factory=dict)
    submitted: int = 0
    polled: int = 0
    errors: list[BaseException] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


class JobClient(threading.Thread):
    """Submits its calls one by one (repeating some on purpose), then polls each."""

    def __init__(self, t: int, http: RetryingClient, app: str, log: str, shared: Shared) -> None:
        super().__init__()
        self.t, self.http, self.app, self.log, self.shared = t, http, app, log, shared

    def run(self) -> None:
        try:
            mine = [self.submit(f"c{self.t}k{k}", repeat=k % 4 == 0) for k in range(PER_CLIENT)]
            for key, call_id in mine:
                self.poll(key, call_id)
        except BaseException as exc:
            self.shared.errors.append(exc)

    def submit(self, key: str, repeat: bool) -> tuple[str, str]:
        call_id = ""
        for _ in range(2 if repeat else 1):
            r = self.http.request("POST", f"/v1/apps/{self.app}/functions/job/calls",
                                  json={"args": [key, self.log]},
                                  headers={"Idempotency-Key": key})
            assert r.status_code == 202, r.text
            call_id = r.json()["call_id"]
            with self.shared.lock:
                self.shared.ids_by_key[key].add(call_id)
        with self.shared.lock:
            self.shared.submitted += 1
        return key, call_id

    def poll(self, key: str, call_id: str) -> None:
        while True:
            r = self.http.request("GET", f"/v1/calls/{call_id}/result")
            if r.status_code != 202:
                break
            time.sleep(0.1)
        with self.shared.lock:
            self.shared.results[key] = r.json() if r.status_code == 200 else r.text
            self.shared.polled += 1


def test_rest_server_killed_while_clients_submit_and_poll(
    server: Server, unique_app: str, tmp_path: Path
) -> None:
    log = tmp_path / "runs"
    app = rayfn.App(unique_app)

    @app.function(max_containers=4)
    def job(key: str, log: str) -> str:
        import time

        with open(log, "a") as f:
            f.write(f"{key}\n")
        time.sleep(0.05)
        return key.upper()

    app.deploy()
    tally = Tally(
        "4. the REST server killed and restarted while clients submit and poll",
        fault=f"{CLIENTS} HTTP clients submit {PER_CLIENT} calls each with an "
        "`Idempotency-Key`, then poll; the server's process SIGKILLed three times "
        "(twice while submitting, once while polling) and restarted after 1 s",
    )
    shared = Shared()
    clients = [
        JobClient(t, RetryingClient(server.url, server.token), unique_app, str(log), shared)
        for t in range(CLIENTS)
    ]
    started = time.monotonic()
    for c in clients:
        c.start()
    total = CLIENTS * PER_CLIENT
    for what, reached in (("submits", lambda: shared.submitted >= total // 4),
                          ("submits", lambda: shared.submitted >= total * 2 // 3),
                          ("polls", lambda: shared.polled >= total // 4)):
        wait_until(lambda r=reached: r() or bool(shared.errors), timeout=600, what=what)
        server.kill()
        time.sleep(1.0)
        server.start()
    for c in clients:
        c.join(timeout=900)
    assert not shared.errors, shared.errors
    ids_by_key, results = shared.ids_by_key, shared.results
    tally.faults_injected = server.kills
    tally.accepted = len(ids_by_key)
    for key, value in results.items():
        if value == key.upper():
            tally.completed += 1
        else:
            tally.failed += 1
            tally.notes.append(f"{key}: {value!r}")
    tally.lost = tally.accepted - tally.completed - tally.failed
    tally.seconds = time.monotonic() - started
    runs = read_runs(log)
    tally.count_runs(runs, [k.lower() for k in ids_by_key])
    duplicated = [k for k, ids in ids_by_key.items() if len(ids) != 1]
    wait_until(server.alive, timeout=120, what="the REST server to be back")
    listed = _all_calls(RetryingClient(server.url, server.token), unique_app)
    tally.notes.append(f"client retries through the gaps: {sum(c.http.retries for c in clients)}")
    tally.notes.append(f"keys that got two call IDs: {len(duplicated)}; calls the service "
                       f"holds for the app: {len(listed)}")
    tally.record()
    assert tally.lost == 0 and tally.failed == 0, tally.notes[:20]
    assert tally.accepted == total
    assert not duplicated
    assert len(listed) == total  # no retried submit made a second call
    assert sum(c.http.retries for c in clients) > 0  # the clients really hit the gaps


def _all_calls(http: RetryingClient, app: str) -> list[str]:
    ids: list[str] = []
    cursor: str | None = None
    for _ in range(100):
        params: dict[str, Any] = {"app": app, "limit": 200}
        if cursor:
            params["cursor"] = cursor
        page = http.request("GET", "/v1/calls", params=params).json()
        ids.extend(c["call_id"] for c in page["calls"])
        cursor = page.get("next_cursor")
        if not cursor:
            break
    return ids
