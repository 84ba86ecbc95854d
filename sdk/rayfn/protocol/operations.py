"""The registry's operations: declared once, here.

The registry actor implements :class:`RegistryApi` (mypy checks it, see
``rayfn_service.registry``). Callers never name an operation by a string: they pass the
operation itself, ``client.call(RegistryApi.status, call_id)``, and the transport turns it
into a Ray actor call (``rayfn.protocol.actor``) or a REST request (the HTTP client), with
the argument and return types of the declaration below.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from rayfn.protocol.objects import DEFAULT_PARTITION_TTL, ObjectInfo
from rayfn.protocol.payload import CallOutcome
from rayfn.protocol.records import (
    CallQuery,
    DeployedFunction,
    DeployResult,
    MetricsSnapshot,
    OutputPage,
    RegistryInfo,
    ValuesPage,
)
from rayfn.protocol.secrets import SecretInfo
from rayfn.protocol.volumes import VolumeEntry, VolumeInfo
from rayfn.schemas import AppInfo, CallLogs, CallStatus, FunctionInfo, FunctionStats

__all__ = ["Idempotency", "Operation", "RegistryApi", "operation_name"]

P = ParamSpec("P")
R = TypeVar("R")

# (key, hash of the request): a repeated request with the key returns the first one's calls.
Idempotency = tuple[str, str]


class RegistryApi(Protocol):
    """What the registry does. Every operation is safe to repeat: spawns carry IDs the
    client made, so a client retries freely while the registry restarts."""

    # ---- health and deployments ----
    async def ping(self) -> RegistryInfo: ...
    async def deploy(
        self, app: str, functions: Sequence[DeployedFunction], ephemeral: bool = False
    ) -> DeployResult:
        """Store a new version of ``app`` and serve its web endpoints (an ``ephemeral``
        app's too, until it stops); returns the version and the endpoints' URLs."""
    async def stop_app(self, app: str) -> int:
        """Stop ``app``: no new calls, unfinished ones cancelled; returns how many."""
    async def list_apps(self) -> list[AppInfo]: ...
    async def function_info(self, app: str, name: str) -> FunctionInfo: ...

    # ---- calls ----
    async def spawn(
        self,
        app: str,
        name: str,
        calls: Sequence[tuple[str, bytes]],
        idempotency: Idempotency | None = None,
        parent: str | None = None,
    ) -> list[str]:
        """Accept ``(call ID, pickled arguments)`` pairs; answer once they are committed.
        Returns the accepted IDs (the first request's, for a repeated idempotency key).
        ``parent``: the call whose code spawned them (``get_call_graph``)."""
    async def spawn_generator(
        self, app: str, name: str, call_id: str, args: bytes, parent: str | None = None
    ) -> str:
        """Accept one call of a generator function (``remote_gen``); its values are read
        with ``generator_values`` as they are yielded."""
    async def generator_values(self, call_id: str, start: int, timeout: float) -> ValuesPage:
        """The values a generator call has yielded from index ``start`` on, waiting up to
        ``timeout`` (capped) for one while there are none and the call runs."""
    async def children(self, call_id: str) -> list[CallStatus]:
        """The calls this call's code spawned, oldest first."""
    async def call_root(self, call_id: str) -> str:
        """The topmost caller of the call: the call itself, the call that spawned it (and
        so on up), or the web request whose handler spawned it (an ID with no call)."""
    async def get(self, call_id: str, timeout: float | None) -> CallOutcome:
        """The call's outcome, waiting up to ``timeout`` (capped) while it is unfinished."""
    async def wait(self, call_id: str, timeout: float) -> None:
        """Return when the call has ended, or after ``timeout`` (capped)."""
    async def get_many(
        self, call_ids: Sequence[str], timeout: float, include_pending: bool = False
    ) -> list[CallOutcome]:
        """The finished calls among ``call_ids``, waiting up to ``timeout`` for the first
        (with ``include_pending``, unfinished ones too, state only)."""
    async def status(self, call_id: str) -> CallStatus: ...
    async def logs(self, call_id: str) -> CallLogs: ...
    async def cancel(self, call_id: str) -> CallStatus: ...
    async def list_calls(self, query: CallQuery) -> list[CallStatus]: ...
    async def stats(self) -> list[FunctionStats]: ...
    async def metrics(self) -> tuple[MetricsSnapshot, list[FunctionStats]]: ...

    # ---- dicts and queues (rayfn.Dict, rayfn.Queue; keys and values pickled) ----
    async def object_open(
        self, kind: str, name: str, create_if_missing: bool, ephemeral: bool = False
    ) -> ObjectInfo:
        """The Dict or Queue (``kind``) named ``name``, made first with
        ``create_if_missing``; NotFoundError if there is none."""
    async def object_delete(self, kind: str, name: str, allow_missing: bool = False) -> None:
        """Delete the object and all it holds."""
    async def dict_get(self, name: str, key: bytes) -> bytes | None:
        """The value under ``key``, or None when there is none."""
    async def dict_contains(self, name: str, key: bytes) -> bool: ...
    async def dict_put(
        self, name: str, items: Sequence[tuple[bytes, bytes]], skip_if_exists: bool = False
    ) -> int:
        """Set entries in one transaction (keys present keep their value with
        ``skip_if_exists``); returns how many were written."""
    async def dict_pop(self, name: str, key: bytes) -> bytes | None:
        """Remove the entry and return its value (None: there was none)."""
    async def dict_len(self, name: str) -> int: ...
    async def dict_entries(self, name: str, after: bytes | None) -> list[tuple[bytes, bytes]]:
        """A page of (key, value) in key order after ``after``; empty at the end."""
    async def dict_clear(self, name: str) -> None: ...
    async def queue_put(
        self, name: str, partition: str | None, values: Sequence[bytes],
        partition_ttl: float = DEFAULT_PARTITION_TTL, timeout: float = 0.0,
    ) -> bool:
        """Append the values, waiting up to ``timeout`` (capped) while the partition is
        full; False if it stayed full."""
    async def queue_get(
        self, name: str, partition: str | None, n_values: int, timeout: float = 0.0
    ) -> list[bytes]:
        """Remove and return up to ``n_values`` of the oldest values, waiting up to
        ``timeout`` (capped) for one while there are none."""
    async def queue_len(self, name: str, partition: str | None, total: bool = False) -> int: ...
    async def queue_items(
        self, name: str, partition: str | None, after: int, timeout: float = 0.0
    ) -> list[tuple[int, bytes]]:
        """(position, value) of the values after position ``after``, left in place,
        waiting up to ``timeout`` (capped) for one."""
    async def queue_clear(
        self, name: str, partition: str | None, all: bool = False  # noqa: A002
    ) -> None: ...
    # ---- secrets (values go out only by secret_values, over Ray) ----
    async def secret_create(self, name: str, values: dict[str, str],
                            overwrite: bool = False) -> None:
        """Store the secret (ConflictError if it exists, unless ``overwrite``)."""
    async def secret_list(self) -> list[SecretInfo]:
        """Every stored secret with its keys' names, never their values."""
    async def secret_delete(self, name: str) -> None: ...
    # ---- volumes (rayfn.Volume; directories under the shared volume root) ----
    async def volume_create(self, name: str, exist_ok: bool = False) -> VolumeInfo: ...
    async def volume_list(self) -> list[VolumeInfo]: ...
    async def volume_delete(self, name: str) -> None: ...
    async def volume_listdir(
        self, name: str, path: str, recursive: bool = False
    ) -> list[VolumeEntry]: ...
    async def volume_read(self, name: str, path: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes (capped at MAX_CHUNK_BYTES) of the file from ``offset``;
        fewer at its end."""
    async def volume_write(
        self, name: str, path: str, upload: str, offset: int, data: bytes, final: bool
    ) -> None:
        """A chunk of the upload ``upload``; the file appears whole at ``path`` with
        ``final``."""
    async def volume_remove(self, name: str, path: str, recursive: bool = False) -> None: ...
    async def volume_copy(self, name: str, sources: Sequence[str], dest: str) -> None: ...
    # ---- what an app's calls print ----
    async def app_output(self, app: str, cursor: int, timeout: float) -> OutputPage:
        """Lines the app's calls printed from ``cursor`` on (0: all kept), waiting up to
        ``timeout`` (capped) for one; live output only, kept in memory while the app
        runs (an ephemeral app's from its deploy on)."""

    # ---- reports from workers ----
    async def attempt_started(self, call_id: str, attempt: int, node_id: str) -> None: ...
    async def attempt_output(self, call_id: str, attempt: int, text: str) -> None: ...
    async def attempt_values(
        self, call_id: str, attempt: int, start: int, values: list[bytes]
    ) -> None:
        """Values ``start``, ``start + 1``, ... a running generator attempt yielded."""
    async def attempt_stuck(self, call_id: str, attempt: int) -> None:
        """The attempt ignored its timeout (stuck in C code): the registry kills its task."""
    async def secret_values(self, names: list[str]) -> dict[str, str]:
        """The environment variables of the named secrets, for a call's process (over Ray
        only: never served by the REST server)."""


# An operation as callers pass it: ``RegistryApi.status`` and its kin.
Operation = Callable[Concatenate[RegistryApi, P], Awaitable[R]]


def operation_name(operation: Callable[..., Any]) -> str:
    """The name a transport sends: only operations of :class:`RegistryApi` have one."""
    name = getattr(operation, "__name__", "")
    if getattr(RegistryApi, name, None) is not operation:
        raise TypeError(f"{operation!r} is not an operation of RegistryApi")
    return str(name)
