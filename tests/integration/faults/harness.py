"""What the fault scenarios share: counting runs, settling calls, recording each
scenario's tally for the reliability report, and Ray clusters of their own to kill."""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx
import psutil

import rayfn
from rayfn.exception import NotFoundError, TimeoutError
from rayfn_service.processes import free_port

from ..waiting import wait_until

# The report command sets this; each scenario then appends its tally as one JSON line.
RECORD_ENV = "RAYFN_RELIABILITY_LOG"
BIN = Path(sys.executable).parent
__all__ = ["Service", "Tally", "kill_tree", "read_runs", "settle", "wait_until"]


@dataclasses.dataclass
class Tally:
    """One scenario's outcome. ``lost`` counts accepted calls with no readable outcome (no
    terminal state by the deadline, an unknown ID, or a wrong result); it must be 0."""

    scenario: str
    fault: str
    accepted: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    ran_twice: int = 0
    faults_injected: int = 0
    seconds: float = 0.0
    notes: list[str] = dataclasses.field(default_factory=list)

    def record(self) -> None:
        path = os.environ.get(RECORD_ENV)
        if path:
            # "tests/...py::test_name (call)": the report matches the test's outcome by name.
            test = os.environ.get("PYTEST_CURRENT_TEST", "").split("::")[-1].split(" ")[0]
            with open(path, "a") as f:
                f.write(json.dumps({**dataclasses.asdict(self), "test": test}) + "\n")

    def count_runs(self, runs: collections.Counter[str], keys: Iterable[str]) -> None:
        self.ran_twice = sum(1 for k in keys if runs[k] > 1)


def read_runs(path: Path) -> collections.Counter[str]:
    """How often each key ran: the functions append one line per run (O_APPEND writes of a
    short line are atomic, so concurrent runs never interleave)."""
    if not path.exists():
        return collections.Counter()
    return collections.Counter(path.read_text().split())


def settle(
    tally: Tally, calls: Sequence[rayfn.FunctionCall], expected: Sequence[Any], timeout: float
) -> None:
    """Read every call's outcome through the SDK within ``timeout`` and count it."""
    deadline = time.monotonic() + timeout
    for call, want in zip(calls, expected, strict=True):
        try:
            got = call.get(timeout=max(0.0, deadline - time.monotonic()))
        except (TimeoutError, NotFoundError) as exc:
            tally.lost += 1
            tally.notes.append(f"{call.object_id}: {type(exc).__name__}")
        except rayfn.exception.Error as exc:
            tally.failed += 1
            tally.notes.append(f"{call.object_id}: {type(exc).__name__}: {exc}")
        else:
            if got == want:
                tally.completed += 1
            else:
                tally.lost += 1
                tally.notes.append(f"{call.object_id}: wrong result {got!r}")


# ---- clusters of their own ---------------------------------------------------------


def kill_tree(pids: Iterable[int]) -> int:
    """SIGKILL processes and everything below them; return how many there were."""
    victims: list[psutil.Process] = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            victims.append(proc)
            victims.extend(proc.children(recursive=True))
        except psutil.NoSuchProcess:
            continue
    for proc in victims:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=10)
    return len(victims)


def processes_using(marker: str) -> list[int]:
    pids = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if marker in " ".join(proc.info["cmdline"] or []):
                pids.append(int(proc.info["pid"]))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return [p for p in pids if p != os.getpid()]


class Service:
    """A rayfn of its own, driven only through its CLI and its REST server, so the test
    process (a driver of the session's Ray) can kill all of it."""

    def __init__(self, root: Path) -> None:
        self.state_dir = root / "state"
        self.server_port = free_port()
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAYFN_STATE_DIR": str(self.state_dir),
            "RAYFN_SERVER_HOST": "127.0.0.1",
            "RAYFN_SERVER_PORT": str(self.server_port),
        }
        for name in ("RAYFN_ADDRESS", "RAYFN_SERVER_URL", "RAYFN_TOKEN", "RAYFN_NAMESPACE"):
            self.env.pop(name, None)
        self.url = f"http://127.0.0.1:{self.server_port}"
        # Ray's socket paths must stay short: a temp dir directly under /tmp.
        self.temp_dir = tempfile.mkdtemp(prefix="rfx-", dir="/tmp")
        self.head_port: int | None = None
        self._http: httpx.Client | None = None

    # -- processes

    def ray(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            [str(BIN / "ray"), *args], env={**self.env, **(env or {})},
            capture_output=True, text=True, timeout=180,
        )
        assert result.returncode == 0, result.stderr[-3000:] or result.stdout[-3000:]
        return result.stdout

    def rayfn(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(BIN / "rayfn"), *args], env=self.env, capture_output=True, text=True,
            timeout=300,
        )
        if check:
            assert result.returncode == 0, result.stderr[-3000:] or result.stdout[-3000:]
        return result

    def start_head(self, num_cpus: int, env: dict[str, str] | None = None) -> str:
        """``ray start --head`` of our own (rayfn then attaches to it)."""
        self.head_port = free_port()
        self.ray(
            "start", "--head", f"--port={self.head_port}", "--node-ip-address=127.0.0.1",
            f"--temp-dir={self.temp_dir}", "--include-dashboard=false",
            "--disable-usage-stats", f"--num-cpus={num_cpus}",
            *_agent_ports(), env=env,
        )
        return f"127.0.0.1:{self.head_port}"

    def raylets(self) -> set[int]:
        return {
            pid for pid in processes_using(self.temp_dir)
            if psutil.Process(pid).name().startswith("raylet")
        }

    def add_node(self, num_cpus: int, resources: str = "{}") -> int:
        """Start one more node (its own raylet) on this machine; return the raylet's PID."""
        before = self.raylets()
        self.ray(
            "start", f"--address=127.0.0.1:{self.head_port}", "--node-ip-address=127.0.0.1",
            f"--temp-dir={self.temp_dir}", f"--num-cpus={num_cpus}",
            f"--resources={resources}", *_agent_ports(),
        )
        (new,) = self.raylets() - before
        return new

    def raylet_of(self, node_id: str) -> int:
        (pid,) = [p for p in self.raylets()
                  if f"--node_id={node_id}" in psutil.Process(p).cmdline()]
        return pid

    def server_pid(self) -> int | None:
        try:
            return int((self.state_dir / "server.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def host_pid(self) -> int | None:
        """The registry's host (see rayfn_service/host.py), from the file it writes."""
        try:
            return int(json.loads((self.state_dir / "registry-host.json").read_text())["pid"])
        except (FileNotFoundError, ValueError, KeyError):
            return None

    def temp_dirs(self) -> set[str]:
        """Ours, and the one of the head ``rayfn start`` made (when it made one)."""
        try:
            head = json.loads((self.state_dir / "head.json").read_text())
        except FileNotFoundError:
            head = {}
        return {self.temp_dir, head.get("temp_dir") or self.temp_dir}

    def all_pids(self) -> list[int]:
        """Every process of this service: Ray's (by temp dir), the registry's host and
        the REST server."""
        pids = {p for m in self.temp_dirs() for p in processes_using(m)}
        for pid in (self.server_pid(), self.host_pid()):
            if pid is not None and psutil.pid_exists(pid):
                pids.add(pid)
        return sorted(pids)

    def kill_everything(self) -> int:
        """SIGKILL every process of the service; return how many died."""
        return kill_tree(self.all_pids())

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        temp_dirs = self.temp_dirs()
        self.kill_everything()
        for temp_dir in temp_dirs:
            shutil.rmtree(temp_dir, ignore_errors=True)

    # -- REST

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            token = (self.state_dir / "token").read_text().strip()
            self._http = httpx.Client(
                base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=90
            )
        return self._http

    def submit(self, app: str, function: str, args: Sequence[list[Any]]) -> list[str]:
        ids: list[str] = []
        for start in range(0, len(args), 500):
            r = self.http.post(
                f"/v1/apps/{app}/functions/{function}/calls/batch",
                json={"inputs": [{"args": a} for a in args[start:start + 500]]},
            )
            assert r.status_code == 202, r.text
            ids.extend(r.json()["call_ids"])
        return ids

    def settle(self, tally: Tally, ids: Sequence[str], expected: Sequence[Any],
               timeout: float) -> None:
        """Poll every call over REST until it ends (or the deadline), and count it."""
        deadline = time.monotonic() + timeout
        for call_id, want in zip(ids, expected, strict=True):
            while True:
                try:
                    r = self.http.get(f"/v1/calls/{call_id}/result")
                except httpx.TransportError:
                    r = None
                if r is not None and r.status_code == 200:
                    if r.json() == want:
                        tally.completed += 1
                    else:
                        tally.lost += 1
                        tally.notes.append(f"{call_id}: wrong result {r.text[:200]}")
                    break
                if r is not None and r.status_code == 424:
                    tally.failed += 1
                    tally.notes.append(f"{call_id}: {r.text[:300]}")
                    break
                if r is not None and r.status_code == 404 or time.monotonic() > deadline:
                    tally.lost += 1
                    tally.notes.append(f"{call_id}: {r.status_code if r else 'no answer'}")
                    break
                time.sleep(0.2)


def _agent_ports() -> list[str]:
    # Several nodes on one machine: every node needs its own ports.
    return [
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
    ]
