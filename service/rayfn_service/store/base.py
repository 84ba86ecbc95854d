"""The Store protocol: what the registry needs from durable state, and its records; the
Reader protocol: what the REST server reads of finished calls from another process.

Every backend implements both; nothing outside ``store/`` names a backend."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar

from rayfn.protocol.objects import ObjectInfo
from rayfn.protocol.payload import ErrorInfo
from rayfn.protocol.records import CallQuery
from rayfn.protocol.secrets import SecretInfo
from rayfn.states import CallState


@dataclasses.dataclass(frozen=True)
class FunctionRecord:
    app: str
    version: int
    name: str
    options: str  # FunctionOptions as JSON
    code: bytes  # the cloudpickled user function
    runtime_env: str  # JSON


@dataclasses.dataclass(frozen=True)
class AppRecord:
    name: str
    version: int
    state: str  # "deployed" or "stopped"
    ephemeral: bool
    updated_at: float
    functions: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class CallRecord:
    id: str
    app: str
    function: str
    version: int
    state: CallState
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    expires_at: float | None
    expired: bool
    result: bytes | None = None
    error: ErrorInfo | None = None
    result_json: str | None = None


@dataclasses.dataclass(frozen=True)
class Claim:
    """A queued call taken by the dispatcher for its next attempt."""

    id: str
    app: str
    function: str
    version: int
    attempts: int  # including the attempt being started
    args: bytes


@dataclasses.dataclass(frozen=True)
class NewCall:
    id: str
    app: str
    function: str
    version: int
    args: bytes
    created_at: float


@dataclasses.dataclass(frozen=True)
class ScheduleRecord:
    """A deployed function's schedule and the next time it fires (Unix seconds)."""

    app: str
    function: str
    version: int  # the deployed version its calls run
    spec: str  # the schedule's canonical JSON (rayfn.schedule)
    next_fire: float
    last_fire: float | None  # the latest time fired
    skipped: int  # times missed while the registry was down and not fired (see schedules)


class Store(Protocol):
    """Durable state. Writes happen inside ``transaction()``; reads see committed data.

    A write the backend refuses raises StoreError, at the latest when its transaction or
    savepoint ends."""

    def transaction(self, durable: bool = True) -> AbstractContextManager[None]: ...
    def savepoint(self) -> AbstractContextManager[None]:
        """Part of a transaction that can fail alone (one op of a group commit)."""
        ...
    def close(self) -> None: ...

    # deployments
    def deploy(
        self, app: str, functions: Sequence[FunctionRecord], *, ephemeral: bool, now: float
    ) -> int: ...
    def next_version(self, app: str) -> int: ...
    def stop_app(self, app: str, now: float) -> bool: ...
    def get_app(self, app: str) -> AppRecord | None: ...
    def list_apps(self, include_stopped: bool = False) -> list[AppRecord]: ...
    def get_function(
        self, app: str, name: str, version: int | None = None
    ) -> FunctionRecord | None: ...
    def live_functions(self) -> list[FunctionRecord]: ...

    # calls
    def remember_idempotent(
        self, key: str, request_hash: str, call_ids: Sequence[str]
    ) -> list[str]: ...
    def insert_calls(self, calls: Sequence[NewCall]) -> None: ...
    def claim_queued(self, app: str, function: str, limit: int, now: float) -> list[Claim]: ...
    def start_retry(self, call_id: str, now: float) -> Claim | None: ...
    def mark_retrying(self, call_id: str, logs: str | None = None) -> bool: ...
    def requeue(self, call_ids: Sequence[str]) -> None: ...
    def finish(
        self,
        call_id: str,
        state: CallState,
        *,
        now: float,
        expires_at: float,
        result: bytes | None = None,
        result_json: str | None = None,
        error: ErrorInfo | None = None,
        logs: str | None = None,
    ) -> bool: ...
    def finish_succeeded(
        self,
        results: Sequence[tuple[str, bytes, str | None, str | None]],
        *,
        now: float,
        expires_at: float,
    ) -> None: ...
    def get_logs(self, call_id: str) -> tuple[CallState, str] | None: ...
    def cancel(self, call_id: str, now: float, expires_at: float) -> CallState | None: ...
    def cancel_app_calls(
        self, app: str, now: float, expires_at: float
    ) -> tuple[int, list[str]]: ...
    def get_call(
        self, call_id: str, with_payload: bool = True, status_only: bool = False
    ) -> CallRecord | None: ...
    def get_calls(
        self, call_ids: Sequence[str], finished_only: bool = False
    ) -> list[CallRecord]: ...
    def call_states(self, call_ids: Sequence[str]) -> dict[str, CallState]: ...
    def recover(self) -> int: ...
    def queued_functions(self) -> list[tuple[str, str]]: ...
    def queue_depths(self) -> dict[tuple[str, str], dict[str, int]]: ...
    def sweep_expired(
        self, now: float, limit: int = 10_000, *, idempotency_retention: float | None = None
    ) -> int: ...
    def list_calls(self, query: CallQuery) -> list[CallRecord]: ...
    def add_values(self, call_id: str, start: int, values: Sequence[bytes]) -> int: ...
    def get_values(
        self, call_id: str, start: int, limit: int, max_bytes: int
    ) -> list[bytes]: ...
    def add_children(self, parent_id: str, child_ids: Sequence[str]) -> None: ...
    def get_children(self, parent_id: str, limit: int) -> list[str]: ...
    def get_parent(self, child_id: str) -> str | None: ...

    # dicts and queues (sqlite_objects.py)
    def create_object(self, kind: str, name: str, *, ephemeral: bool, now: float
                      ) -> ObjectInfo: ...
    def get_object(self, kind: str, name: str) -> ObjectInfo | None: ...
    def object_exists(self, kind: str, name: str) -> bool: ...
    def delete_object(self, kind: str, name: str) -> bool: ...
    def dict_get(self, name: str, key: bytes) -> tuple[bytes, float] | None: ...
    def dict_contains(self, name: str, key: bytes) -> bool: ...
    def dict_touch(self, name: str, key: bytes, now: float) -> None: ...
    def dict_put(self, name: str, items: Sequence[tuple[bytes, bytes]], *,
                 skip_if_exists: bool, now: float) -> int: ...
    def dict_pop(self, name: str, key: bytes) -> bytes | None: ...
    def dict_len(self, name: str) -> int: ...
    def dict_page(self, name: str, after: bytes | None, limit: int, max_bytes: int
                  ) -> list[tuple[bytes, bytes]]: ...
    def dict_clear(self, name: str) -> int: ...
    def queue_put(self, name: str, partition: str, values: Sequence[bytes], *, now: float,
                  ttl: float, max_items: int, max_partitions: int) -> bool: ...
    def queue_take(self, name: str, partition: str, limit: int, now: float,
                   max_bytes: int) -> list[bytes]: ...
    def queue_len(self, name: str, partition: str | None, now: float) -> int: ...
    def queue_page(self, name: str, partition: str, after: int, limit: int, max_bytes: int,
                   now: float) -> list[tuple[int, bytes]]: ...
    def queue_clear(self, name: str, partition: str | None) -> int: ...
    def sweep_objects(self, now: float, *, dict_idle: float, ephemeral_idle: float,
                      limit: int = 10_000) -> int: ...
    # schedules (store/sqlite_schedules.py)
    def app_schedules(self, app: str) -> list[ScheduleRecord]: ...
    def set_schedules(self, app: str, records: Sequence[ScheduleRecord]) -> None: ...
    def drop_schedules(self, app: str) -> None: ...
    def list_schedules(self, app: str | None = None) -> list[ScheduleRecord]: ...
    def due_schedules(self, now: float, limit: int) -> list[ScheduleRecord]: ...
    def fire_schedule(
        self, due: ScheduleRecord, next_fire: float, fires: Sequence[tuple[float, NewCall]],
        skipped: int,
    ) -> bool: ...
    # secrets (store/sqlite_secrets.py)
    def secret_exists(self, name: str) -> bool: ...
    def put_secret(self, name: str, values: Mapping[str, str], *, overwrite: bool,
                   now: float) -> bool: ...
    def delete_secret(self, name: str) -> bool: ...
    def list_secrets(self) -> list[SecretInfo]: ...
    def missing_secrets(self, names: list[str]) -> list[str]: ...
    def secret_values(self, name: str) -> dict[str, str] | None: ...


class Reader(Protocol):
    """Read-only access to finished calls, for processes other than the registry.

    Every failure, at opening or at any read, raises StoreError. A reader is used by one
    thread at a time: another thread ``reopen()``s its own."""

    def finished_call(self, call_id: str, status_only: bool = False) -> CallRecord | None:
        """The call if it has finished; None if it has not or is unknown here.
        ``status_only`` leaves out the result and the pickled error."""
        ...
    def result_bytes(self, call_id: str) -> int:
        """Size of a call's pickled result (0 if none), read without reading the result."""
        ...
    def reopen(self) -> Reader:
        """Another reader of the same store, with its own connection."""
        ...
    def close(self) -> None: ...


T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
