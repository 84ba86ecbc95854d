"""Clusters of our own for the cluster tests: Ray heads and worker nodes started with
``ray start`` on this machine, each cluster under its own temp dir and on free ports.

Unlike the other tests, these never use the session's ``service``: the test process stays
out of these clusters, and every rayfn command or driver runs as a subprocess pointed at
one cluster with ``RAY_ADDRESS`` (what ``--address auto`` reads). Teardown ends every
process whose command line names the cluster's directory (GCS, raylets, the autoscaler and
the nodes it launched, workers) and the REST server, even when the test failed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from rayfn_service.ray_head import head_processes, kill_head

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMMAND_TIMEOUT = 180.0
# `ray start` gives a raylet 30 s to register; on a loaded machine that can run out, so a
# failed start is cleaned up and tried again.
START_ATTEMPTS = 3


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (held open together, so none repeats)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


PORT_FLAGS = ("--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
              "--runtime-env-agent-port", "--metrics-export-port", "--node-manager-port",
              "--object-manager-port")


def _port_flags() -> list[str]:
    """A node's ports, all distinct (Ray refuses a port named twice)."""
    return [f"{flag}={port}"
            for flag, port in zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True)]


def _failure(command: list[str], result: subprocess.CompletedProcess[str]) -> str:
    return (f"{' '.join(command)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")


class LocalCluster:
    """One Ray cluster on this machine, and rayfn attached to it from the outside."""

    def __init__(self) -> None:
        # Short and under the system temp dir: Ray's socket paths have a 107-byte limit.
        self.root = Path(tempfile.mkdtemp(prefix="rfc-"))
        self.temp_dir = str(self.root / "ray")
        self.state_dir = self.root / "state"
        self.port, self.server_port = free_ports(2)
        self._workers = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("RAYFN_") and k != "RAY_ADDRESS"}
        env.update({
            "RAY_AUTH_MODE": "token",
            "RAY_ADDRESS": self.address,
            "RAYFN_STATE_DIR": str(self.state_dir),
            "RAYFN_SERVER_HOST": "127.0.0.1",
            "RAYFN_SERVER_PORT": str(self.server_port),
            "RAYFN_CLIENT_RETRY_SECONDS": "60",
            "COLUMNS": "250",
            **extra,
        })
        return env

    def _run(self, command: list[str], env: dict[str, str],
             timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(command, capture_output=True, text=True, env=env,
                                timeout=timeout, cwd=ROOT)
        if result.returncode != 0:
            raise AssertionError(_failure(command, result))
        return result

    def _start_node(self, command: Callable[[], list[str]], env: dict[str, str],
                    temp_dir: str) -> None:
        """Run ``ray start`` with the arguments ``command()`` makes (fresh ports each try)."""
        for _ in range(START_ATTEMPTS):
            args = command()
            result = subprocess.run(args, capture_output=True, text=True, env=env,
                                    timeout=COMMAND_TIMEOUT, cwd=ROOT)
            if result.returncode == 0:
                return
            kill_head(temp_dir)  # whatever the failed start left running
        raise AssertionError(_failure(args, result))

    def start_head(self, num_cpus: int, autoscaling_config: Path | None = None) -> None:
        """Start the head; with ``autoscaling_config`` (a fake_multinode file), Ray's fake
        autoscaler runs on it, launching worker nodes on this machine."""
        env = self.env()
        flags = []
        if autoscaling_config is not None:
            # The shipped file expects the head on port 6379; point it at this one.
            config = yaml.safe_load(autoscaling_config.read_text())
            config["provider"]["gcs_address"] = self.address
            path = self.root / "autoscaling.yaml"
            path.write_text(yaml.safe_dump(config))
            flags.append(f"--autoscaling-config={path}")
            # The autoscaler looks every second instead of every five.
            env.update(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1")
        self._start_node(lambda: [
            str(BIN / "ray"), "start", "--head", f"--port={self.port}",
            "--node-ip-address=127.0.0.1", f"--temp-dir={self.temp_dir}",
            "--include-dashboard=false", "--disable-usage-stats", f"--num-cpus={num_cpus}",
            f"--ray-client-server-port={free_ports(1)[0]}", *_port_flags(), *flags,
        ], env, self.temp_dir)

    def add_worker(self, num_cpus: int, resources: dict[str, float]) -> None:
        # A temp dir of its own, so a failed start can be cleaned up without the head.
        self._workers += 1
        temp_dir = str(self.root / f"w{self._workers}")
        self._start_node(lambda: [
            str(BIN / "ray"), "start", f"--address={self.address}",
            "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}", f"--num-cpus={num_cpus}",
            f"--resources={json.dumps(resources)}", "--disable-usage-stats", *_port_flags(),
        ], self.env(), temp_dir)

    def rayfn(self, *args: str, timeout: float = COMMAND_TIMEOUT
              ) -> subprocess.CompletedProcess[str]:
        return self._run([str(BIN / "rayfn"), *args], self.env(), timeout)

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.rayfn("status", "--json").stdout)
        return data

    def python(self, *args: str, timeout: float = COMMAND_TIMEOUT
               ) -> subprocess.CompletedProcess[str]:
        return self._run([sys.executable, *args], self.env(), timeout)

    def ray_processes_alive(self) -> bool:
        return bool(head_processes(str(self.root)))

    def teardown(self) -> None:
        try:
            subprocess.run([str(BIN / "rayfn"), "stop"], env=self.env(), timeout=60,
                           capture_output=True)
        except subprocess.TimeoutExpired:
            pass
        finally:
            server_pid = self.state_dir / "server.pid"
            if server_pid.exists():  # `rayfn stop` failed before it ended the server
                from rayfn_service.processes import terminate

                terminate([int(server_pid.read_text())])
            kill_head(str(self.root))  # every node's temp dir is under the root
            shutil.rmtree(self.root, ignore_errors=True)
