"""The embedded service is this machine's and its user's only.

One rayfn service of the module's own, started with ``rayfn start`` in a fresh HOME (so
Ray's ~/.ray/auth_token is made there) and a state directory of its own: its files are
readable by their owner alone, every port of its head listens on loopback, a process
already on the REST port is not trusted, and ``rayfn stop`` leaves nothing running.
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from rayfn.settings import Settings
from rayfn_service import launch, ray_head

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMMAND_TIMEOUT = 240.0
# Ports of the head that Ray cannot be made to bind on loopback. None, with the head
# started in Ray's single-machine mode (see ray_head.LOOPBACK_RAY_ENV).
NOT_LOOPBACK: frozenset[str] = frozenset()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback  # ::ffff:127.0.0.1, a dual-stack socket
    return address.is_loopback


class Service:
    """A rayfn service of this module's own."""

    def __init__(self, root: Path) -> None:
        self.home = root / "home"
        self.state_dir = root / "state"
        self.home.mkdir()
        self.server_port = _free_port()

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAYFN_", "RAY_"))}
        env.update({
            "HOME": str(self.home),
            "RAYFN_STATE_DIR": str(self.state_dir),
            "RAYFN_SERVER_HOST": "127.0.0.1",
            "RAYFN_SERVER_PORT": str(self.server_port),
            "RAY_AUTH_MODE": "token",
            "RAYFN_NUM_CPUS": "1",
            "RAYFN_CLIENT_RETRY_SECONDS": "30",
            **extra,
        })
        return env

    def rayfn(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "rayfn"), *args], capture_output=True, text=True,
                              env=self.env(**env), timeout=COMMAND_TIMEOUT, cwd=ROOT)

    def head(self) -> dict[str, Any]:
        head: dict[str, Any] = json.loads((self.state_dir / "head.json").read_text())
        return head

    def pids(self) -> dict[str, int]:
        """The host's and the REST server's PIDs, as rayfn recorded them."""
        host = json.loads((self.state_dir / "registry-host.json").read_text())["pid"]
        return {"host": int(host), "server": int((self.state_dir / "server.pid").read_text())}


def processes_of(head: dict[str, Any], extra: set[int] | None = None) -> set[int]:
    """Live processes of ``head``, found without rayfn's own ``head_processes``: those
    that name its temp dir, or its GCS address or port as a Ray program, their children,
    and ``extra``."""
    temp_dir, address = head["temp_dir"], head["address"]
    port = address.rpartition(":")[2]
    found: set[int] = set()
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
                continue
            args = " ".join(proc.info["cmdline"] or [])
            names_gcs = address in args or any(
                arg.endswith(f":{port}") for arg in proc.info["cmdline"] or [])
            if temp_dir in args or (names_gcs and "ray" in args) or proc.pid in (extra or ()):
                found.add(proc.pid)
                found.update(c.pid for c in proc.children(recursive=True)
                             if c.status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            continue
    return found


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    own = Service(tmp_path_factory.mktemp("isolation"))
    started = own.rayfn("start")
    head: dict[str, Any] | None = None
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        head = own.head()
        yield own
    finally:
        own.rayfn("stop")
        if head is None and (own.state_dir / "head.json").exists():
            head = own.head()
        if head is not None:  # whatever `rayfn stop` left (the test says so, too)
            for pid in processes_of(head):
                try:
                    psutil.Process(pid).kill()
                except psutil.Error:
                    pass


def test_the_state_directory_and_every_file_in_it_are_the_owners_only(
    service: Service,
) -> None:
    assert _mode(service.state_dir) == 0o700
    names = {p.name for p in service.state_dir.iterdir()}
    # The store, made by the registry (a Ray worker), and what the launcher wrote.
    assert {"rayfn.sqlite3", "head.json", "ray_address", "token", "server.pid",
            "host.log", "server.log", "registry-host.json"} <= names, names
    wider = {p.name: oct(_mode(p)) for p in service.state_dir.iterdir()
             if not p.is_file() or _mode(p) != 0o600}
    assert not wider, f"not 0600 files: {wider}"
    # Ray's temp dir (logs with what calls print, the raylet's sockets) is under a
    # directory only its owner can enter; Ray itself makes the dirs below it 0777.
    temp_root = Path(service.head()["temp_dir"]).parent
    assert _mode(temp_root) == 0o700 and temp_root.stat().st_uid == os.geteuid()


def test_rays_auth_token_is_made_0600(service: Service) -> None:
    token = service.home / ".ray" / "auth_token"
    assert len(token.read_text().strip()) >= 32
    assert _mode(token) == 0o600
    assert _mode(token.parent) == 0o700


def test_a_token_others_can_read_is_narrowed(tmp_path: Path) -> None:
    token = tmp_path / ".ray" / "auth_token"
    token.parent.mkdir()
    token.write_text("x" * 64)
    token.chmod(0o644)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(tmp_path), RAY_AUTH_MODE="token")
    subprocess.run(
        [sys.executable, "-c",
         "from rayfn_service.ray_token import ensure_ray_token; ensure_ray_token()"],
        env=env, check=True, timeout=120, capture_output=True)
    assert token.read_text() == "x" * 64  # kept, not replaced
    assert _mode(token) == 0o600


def test_every_port_of_the_head_listens_on_loopback_only(service: Service) -> None:
    head = service.head()
    pids = processes_of(head, extra=set(service.pids().values()))
    listening: dict[str, list[str]] = {}
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            name = " ".join(proc.cmdline()[:3])[:100] or proc.name()
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    listening.setdefault(name, []).append(f"{conn.laddr.ip}:{conn.laddr.port}")
        except psutil.Error:
            continue
    everything = [addr for addrs in listening.values() for addr in addrs]
    gcs_port = head["address"].rpartition(":")[2]
    assert any(addr.endswith(f":{gcs_port}") for addr in everything), listening
    assert any(addr.endswith(f":{service.server_port}") for addr in everything), listening
    assert len(everything) >= 8, listening  # GCS, raylet, agents, client server, workers
    exposed = {name: [a for a in addrs if not _is_loopback(a.rpartition(":")[0])]
               for name, addrs in listening.items()}
    exposed = {name: addrs for name, addrs in exposed.items()
               if addrs and name not in NOT_LOOPBACK}
    assert not exposed, f"listening beyond loopback: {exposed}"


class _Foreign(http.server.BaseHTTPRequestHandler):
    """Someone else's server on the port: healthy, and interested in tokens."""

    seen_authorization: list[str] = []

    def do_GET(self) -> None:
        if self.headers.get("Authorization"):
            self.seen_authorization.append(self.headers["Authorization"])
        body = json.dumps({"status": "ok", "registry": True, "server": "0" * 64}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_foreign_server_on_the_port_is_refused_not_used(service: Service) -> None:
    foreign = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Foreign)
    port = foreign.server_address[1]
    thread = threading.Thread(target=foreign.serve_forever, daemon=True)
    thread.start()
    try:
        result = service.rayfn("start", RAYFN_SERVER_PORT=str(port))
    finally:
        foreign.shutdown()
        foreign.server_close()
    assert result.returncode == 1, result.stdout + result.stderr
    message = result.stdout + result.stderr
    assert str(port) in message and "RAYFN_SERVER_PORT" in message, message
    assert not _Foreign.seen_authorization
    # The service's own server is still the one on its port.
    assert service.rayfn("start").returncode == 0


def test_stop_does_not_kill_a_process_that_is_not_the_server(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    settings.state_dir.mkdir()
    # An attached cluster that is gone: stop has only the server and host to end.
    ray_head.HeadInfo(address=f"127.0.0.1:{_free_port()}", temp_dir=None,
                    started_by_rayfn=False).save(settings)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (settings.state_dir / "server.pid").write_text(str(sleeper.pid))
        launch.stop(settings)
        time.sleep(0.5)
        assert sleeper.poll() is None, "stop killed a process that is not the REST server"
        assert not (settings.state_dir / "server.pid").exists()
    finally:
        sleeper.kill()
        sleeper.wait(timeout=10)


def test_stop_leaves_no_process_of_the_head(service: Service) -> None:
    head = service.head()
    recorded = set(service.pids().values())
    before = processes_of(head, extra=recorded)
    assert len(before) >= 6, before
    client_servers = [p for p in before
                      if "ray.util.client.server" in " ".join(psutil.Process(p).cmdline())]
    assert client_servers, "the head has no Ray client server to check"
    stopped = service.rayfn("stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    deadline = time.monotonic() + 15
    while (left := processes_of(head, extra=recorded)) and time.monotonic() < deadline:
        time.sleep(0.5)
    described = {}
    for pid in left:
        try:
            described[pid] = " ".join(psutil.Process(pid).cmdline())[:160]
        except psutil.Error:
            continue
    assert not described, f"still running after `rayfn stop`: {described}"
