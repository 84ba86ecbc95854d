"""Every rayfn setting, in one place.

Each field reads the environment variable ``RAYFN_<FIELD>`` (for example
``RAYFN_STATE_DIR``). Nothing else in rayfn reads the environment for configuration.

state_dir           where the store (SQLite), the Ray address file and logs live
                    (default ``~/.rayfn``).
address             the Ray cluster to use; empty means the address ``rayfn start``
                    recorded in the state directory.
namespace           Ray namespace of the registry actor; two namespaces give two
                    independent rayfn services on one Ray cluster.
retention_seconds   how long results are kept after a call finishes (7 days).
sweep_interval_seconds  how often expired results are deleted.
default_window      Ray tasks of one function in flight at once when it has no
                    ``max_containers``; the rest of its calls wait in the store.
batch_seconds       a function whose calls take less than this (on average, in the
                    worker) has several queued calls run in turn by one Ray task,
                    about this long in all, so Ray's cost per task is shared; 0 runs
                    every call in a task of its own.
max_batch           most calls one Ray task runs in turn.
system_retries      how often Ray re-runs an attempt whose worker process or node
                    died; these do not count against a function's ``Retries``.
client_retry_seconds  how long a client keeps retrying while the registry restarts.
wait_chunk_seconds  longest single wait the registry serves; longer ``get`` timeouts
                    are made of several such waits.
spawn_batch_size    inputs per request in ``spawn_map``/``map``.
spawn_burst_seconds  a ``spawn`` this soon after the previous one returns once queued,
                    and its call is accepted in the background with others (see
                    ``_accepts.py``); 0 makes every ``spawn`` wait for its accept.
max_input_bytes     largest pickled arguments of one call (8 MiB); a larger input is
                    refused at spawn with ``InvalidError``. Kept below ``max_body_bytes``
                    so one input always fits in a REST request (base64 adds a third).
capacity_refresh_seconds  how often the registry reads the cluster's nodes (and the
                    autoscaler's node types) to fail calls no node can ever run.
ray_auth_mode       value of Ray's ``RAY_AUTH_MODE`` used by every rayfn process, so
                    drivers and cluster agree.
num_cpus            CPUs of the local Ray head that ``rayfn start`` launches
                    (empty: all of the machine's).

server_host         address the REST server binds (loopback unless told otherwise).
server_port         port of the REST server (8000).
serve_port          port of ``rayfn serve`` for local web endpoints (8100).
ray_serve_port      port of Ray Serve's proxy for deployed web endpoints (8200); the
                    registry's, as ``rayfn start`` set it: the registry starts Serve.
server_url          when set, the SDK and CLI talk HTTP to this REST server instead of
                    joining the Ray cluster (e.g. ``http://127.0.0.1:8000``).
token               bearer token for the REST server; empty means the token file that
                    ``rayfn start`` wrote in the state directory.
max_body_bytes      largest request body the REST server accepts (16 MiB).
max_json_depth      deepest nesting of lists and objects in a JSON request body or in
                    JSON arguments (64); deeper input is refused with 400 or 422.
server_header_timeout_seconds  time a client has to send a request's line and headers
                    (10 s); a connection that sends them slower is closed.
server_body_timeout_seconds  longest pause while a client sends a request body (30 s).
server_keep_alive_seconds  an idle connection between requests is closed after this (5 s).
server_max_header_bytes  largest request line and headers (64 KiB); larger gets 431.
server_max_connections  connections the REST server serves at once (2048); more are
                    answered 503 at once.
server_max_waiters  requests of one REST server that wait on the registry for calls to
                    end at once (1000); beyond that a wait answers at once with the
                    call's state, as a wait that ran out does.
start_server        whether ``rayfn start`` also starts the REST server.
volume_root         the directory every node shares that holds the volumes, one folder
                    each (default ``<state_dir>/volumes``; on a cluster, the shared
                    filesystem the nodes mount, see cluster/README.md).
dict_idle_seconds   a Dict entry neither read nor written this long is deleted (7 days,
                    as Modal's).
ephemeral_idle_seconds  an ephemeral Dict or Queue nothing wrote to this long is deleted
                    even though its ``with`` block never ended (its process died; 1 day).
schedule_poll_seconds  how often the registry looks for schedules that are due (0.5 s).
schedule_catch_up   missed times of one schedule fired when the registry comes back
                    after being down (3): the latest ones, each once; older missed times
                    are skipped, logged and counted (see docs/schedules.md).
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAYFN_", frozen=True, extra="ignore")

    state_dir: Path = Field(default_factory=lambda: Path.home() / ".rayfn")
    address: str = ""
    namespace: str = "rayfn"
    retention_seconds: float = Field(default=7 * 24 * 3600, gt=0)
    sweep_interval_seconds: float = Field(default=60.0, gt=0)
    default_window: int = Field(default=64, ge=1)
    batch_seconds: float = Field(default=0.01, ge=0)
    max_batch: int = Field(default=32, ge=1)
    system_retries: int = Field(default=3, ge=0)
    client_retry_seconds: float = Field(default=120.0, ge=0)
    wait_chunk_seconds: float = Field(default=20.0, gt=0)
    spawn_batch_size: int = Field(default=1000, ge=1)
    spawn_burst_seconds: float = Field(default=0.05, ge=0)
    max_input_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    capacity_refresh_seconds: float = Field(default=5.0, gt=0)
    ray_auth_mode: str = Field(default_factory=lambda: os.environ.get("RAY_AUTH_MODE", "token"))
    num_cpus: int | None = Field(default=None, ge=0)
    server_host: str = "127.0.0.1"
    server_port: int = Field(default=8000, ge=0, le=65535)
    serve_port: int = Field(default=8100, ge=0, le=65535)
    ray_serve_port: int = Field(default=8200, ge=0, le=65535)
    server_url: str = ""
    token: str = ""
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_json_depth: int = Field(default=64, ge=2, le=512)
    server_header_timeout_seconds: float = Field(default=10.0, gt=0)
    server_body_timeout_seconds: float = Field(default=30.0, gt=0)
    server_keep_alive_seconds: float = Field(default=5.0, gt=0)
    server_max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    server_max_connections: int = Field(default=2048, ge=1)
    server_max_waiters: int = Field(default=1000, ge=1)
    start_server: bool = True
    volume_root: Path | None = None
    dict_idle_seconds: float = Field(default=7 * 24 * 3600, gt=0)
    ephemeral_idle_seconds: float = Field(default=24 * 3600, gt=0)
    schedule_poll_seconds: float = Field(default=0.5, gt=0)
    schedule_catch_up: int = Field(default=3, ge=1)

    @property
    def volumes_path(self) -> Path:
        """Where volumes live: ``volume_root``, else a folder of the state directory."""
        return self.volume_root or self.state_dir / "volumes"

    @property
    def store_path(self) -> Path:
        return self.state_dir / "rayfn.sqlite3"

    @property
    def address_file(self) -> Path:
        return self.state_dir / "ray_address"

    @property
    def token_file(self) -> Path:
        return self.state_dir / "token"

    def read_token(self) -> str:
        """The REST token: ``RAYFN_TOKEN`` or the state directory's token file."""
        if self.token:
            return self.token
        try:
            return self.token_file.read_text().strip()
        except FileNotFoundError:
            return ""

    def apply_ray_environment(self) -> None:
        """Make this process agree with the cluster on Ray's auth mode.

        Ray reads ``RAY_AUTH_MODE`` into its config when imported; a driver that disagrees
        with the cluster fails with misleading errors, so set it and reload the config.
        """
        if os.environ.get("RAY_AUTH_MODE") == self.ray_auth_mode:
            return
        os.environ["RAY_AUTH_MODE"] = self.ray_auth_mode
        if "ray" in sys.modules:
            from ray._raylet import Config  # type: ignore[attr-defined]

            Config.initialize("")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return Settings()
