"""The REST server's security promises, checked against running processes.

Already covered in test_rest.py: every route but /healthz (and the API docs) answers 401
to a missing or wrong token (test_every_route_but_health_needs_the_bearer_token), before
reading the body (test_a_wrong_token_is_refused_before_the_body_is_read).
"""

from __future__ import annotations

import logging
import os
import pickle
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psutil
import pytest

from rayfn.network import is_loopback
from rayfn.protocol.ids import new_call_id
from rayfn.settings import Settings, get_settings
from rayfn_service.api.__main__ import warn_if_exposed
from rayfn_service.api.guard import OPEN_PATHS
from rayfn_service.processes import free_port
from rayfn_service.ray_head import HeadInfo
from rayfn_service.server_process import ensure_token, rotate_token

if TYPE_CHECKING:
    from tests.e2e.conftest import SecondServer

Cli = Callable[..., subprocess.CompletedProcess[str]]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_token_file_is_created_and_rotated_with_mode_0600(tmp_path: Path) -> None:
    assert _mode(get_settings().token_file) == 0o600  # the session's, made by `rayfn start`
    old_umask = os.umask(0)  # even a permissive umask does not widen it
    try:
        settings = Settings(state_dir=tmp_path / "state", token="")
        path = ensure_token(settings)
        assert _mode(path) == 0o600
        first = path.read_text()
        assert ensure_token(settings).read_text() == first  # never overwritten
        assert rotate_token(settings) == path
        assert _mode(path) == 0o600 and path.read_text() != first
        assert len(path.read_text().strip()) >= 40
        assert sorted(p.name for p in path.parent.iterdir()) == ["token"]  # no temp left
    finally:
        os.umask(old_umask)


def test_the_server_listens_on_loopback_by_default() -> None:
    assert Settings.model_fields["server_host"].default == "127.0.0.1"
    settings = get_settings()
    pid = int((settings.state_dir / "server.pid").read_text())
    # Every port: the REST port, and the process's own Ray driver port (the embedded head
    # keeps Ray on loopback).
    listening = [c.laddr for c in psutil.Process(pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert settings.server_port in {a.port for a in listening}, listening
    assert all(is_loopback(addr.ip) for addr in listening), listening


def test_a_server_beyond_loopback_warns(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    for host in ("127.0.0.1", "::1", "127.0.0.2", "localhost", "[::1]"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.0.2.2", "example.com"):
        assert not is_loopback(host), host
    with caplog.at_level(logging.WARNING, logger="rayfn.server"):
        assert warn_if_exposed("0.0.0.0")
        assert not warn_if_exposed("127.0.0.1")
    assert [r.getMessage() for r in caplog.records if "beyond this machine" in r.getMessage()]
    # The real server process: told to listen on an address that is not this machine's
    # (TEST-NET-2), it warns first, then fails to bind. Nothing is exposed.
    head = HeadInfo.load(get_settings())
    assert head is not None
    env = {**os.environ, "RAYFN_SERVER_HOST": "198.51.100.7",
           "RAYFN_SERVER_PORT": str(free_port()), "RAYFN_ADDRESS": head.address,
           "RAYFN_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run([sys.executable, "-m", "rayfn_service.api"], env=env,
                          capture_output=True, text=True, timeout=180)
    output = done.stdout + done.stderr
    assert "beyond this machine" in output, output[-3000:]
    assert done.returncode != 0, output[-3000:]


class _WritesAFile:
    """Unpickling this creates a file: proof of whether anyone unpickled it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def test_pickled_payloads_are_read_only_on_authenticated_routes(
    rest: httpx.Client, tmp_path: Path
) -> None:
    import base64

    marker = tmp_path / "unpickled"
    payload = base64.b64encode(pickle.dumps(_WritesAFile(str(marker)))).decode()
    call_id = new_call_id()
    pickled_bodies = [
        ("/v1/apps/some-app/functions/f/calls/pickled",
         {"calls": [{"call_id": call_id, "args": payload}]}),
        ("/v1/apps/some-app", {"functions": [{"name": "f", "options": {}, "code": payload}]}),
        ("/v1/calls/outcomes", {"call_ids": [call_id]}),
    ]
    with httpx.Client(base_url=str(rest.base_url), timeout=30) as anonymous:
        for route, body in pickled_bodies:
            response = anonymous.post(route, json=body)
            assert response.status_code == 401, (route, response.text)
            response = anonymous.post(route, json=body,
                                      headers={"Authorization": "Bearer not-the-token"})
            assert response.status_code == 401, (route, response.text)
        response = anonymous.get(f"/v1/calls/{call_id}/result",
                                 headers={"Accept": "application/x-python-pickle"})
        assert response.status_code == 401
        # The open paths are read-only pages: they take no body at all.
        for path in OPEN_PATHS:
            response = anonymous.post(path, content=pickle.dumps(_WritesAFile(str(marker))),
                                      headers={"Content-Type": "application/x-python-pickle"})
            assert response.status_code in (404, 405), (path, response.text)
    # With the token, the server and the registry still only move the bytes: a spawn of
    # an unknown function is refused without anyone unpickling its arguments.
    response = rest.post(pickled_bodies[0][0], json=pickled_bodies[0][1])
    assert response.status_code == 404, response.text
    assert not marker.exists()


def test_token_rotate_replaces_the_token_of_a_running_server(
    expiring_server: SecondServer, rayfn_cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_dir = expiring_server.settings.state_dir
    token_file = state_dir / "token"
    old = expiring_server.token
    assert token_file.read_text().strip() == old
    with httpx.Client(base_url=expiring_server.url, timeout=30) as http:
        assert http.get("/v1/apps", headers={"Authorization": f"Bearer {old}"}
                        ).status_code == 200
        monkeypatch.setenv("RAYFN_STATE_DIR", str(state_dir))
        monkeypatch.delenv("RAYFN_TOKEN", raising=False)
        rotated = rayfn_cli("token", "rotate")
        assert "old token no longer works" in rotated.stdout
        new = token_file.read_text().strip()
        assert new and new != old
        assert _mode(token_file) == 0o600
        assert http.get("/v1/apps", headers={"Authorization": f"Bearer {new}"}
                        ).status_code == 200
        refused = http.get("/v1/apps", headers={"Authorization": f"Bearer {old}"})
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "AuthError"
