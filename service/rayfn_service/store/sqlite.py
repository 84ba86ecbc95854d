"""The Store on SQLite in WAL mode: one writer connection, one reader connection.

Writes run inside ``transaction()``; the registry's group commit wraps many of them in
one transaction so concurrent spawns share one fsync.

Rows are read by column name: each SELECT list is made from the parameter names of the
function (or record class) that builds the row's record, so no column can feed the wrong
field, and reading costs what indexing did (no mapping is built per row).
"""

from __future__ import annotations

import inspect
import json
import operator
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rayfn.exception import ConflictError, StoreError
from rayfn.protocol.payload import ErrorInfo
from rayfn.protocol.records import CallQuery
from rayfn.states import CallState
from rayfn_service.store.base import (
    AppRecord,
    CallRecord,
    Claim,
    FunctionRecord,
    NewCall,
    Store,
    chunks,
)
from rayfn_service.store.sqlite_links import EXPIRED_CALLS, CallLinks
from rayfn_service.store.sqlite_objects import KvObjects
from rayfn_service.store.sqlite_schedules import Schedules
from rayfn_service.store.sqlite_schema import SCHEMA
from rayfn_service.store.sqlite_secrets import Secrets

_ACTIVE = (CallState.QUEUED.value, CallState.RUNNING.value, CallState.RETRYING.value)
_FINISHED = tuple(s.value for s in CallState if s.is_terminal())
_STATE_OF = {s.value: s for s in CallState}  # a dict lookup is cheaper than CallState(...)
# An attempt's output is added to the call's log; None adds nothing (two parameters).
_ADD_LOGS = "logs = CASE WHEN ? IS NULL THEN logs ELSE COALESCE(logs, '') || ? END"
_by_id = operator.attrgetter("id")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _select_list(
    build: Callable[..., object], *, table: str = "", leave_out: Collection[str] = ()
) -> str:
    """The SELECT list whose rows ``build(*row)`` takes: its parameters' names, in order.

    ``leave_out`` names its last parameters, which have defaults: those columns are not
    read at all (not even as NULL: SQLite sorts every column selected)."""
    params = list(inspect.signature(build).parameters.values())
    kept, left = params[: len(params) - len(leave_out)], params[len(params) - len(leave_out) :]
    if {p.name for p in left} != set(leave_out) or any(p.default is p.empty for p in left):
        raise ValueError(f"{sorted(leave_out)} are not the last, defaulted, parameters")
    prefix = f"{table}." if table else ""
    return ", ".join(prefix + p.name for p in kept)


def _call_record(
    id: str,
    app: str,
    function: str,
    version: int,
    state: str,
    attempts: int,
    created_at: float,
    started_at: float | None,
    finished_at: float | None,
    expires_at: float | None,
    expired: int,
    error_type: str | None,
    error_message: str | None,
    # the payload, in the order reads leave it out (see _select_list)
    error_traceback: str | None = None,
    result: bytes | None = None,
    error_blob: bytes | None = None,
    result_json: str | None = None,
) -> CallRecord:
    """A call from one row of ``calls``: the parameters are the columns read."""
    error = None
    if error_type is not None:
        error = ErrorInfo(
            type_name=error_type,
            message=error_message or "",
            traceback=error_traceback or "",
            exception=error_blob,
        )
    return CallRecord(
        id=id,
        app=app,
        function=function,
        version=version,
        state=_STATE_OF[state],
        attempts=attempts,
        created_at=created_at,
        started_at=started_at,
        finished_at=finished_at,
        expires_at=expires_at,
        expired=bool(expired),
        result=result,
        error=error,
        result_json=result_json,
    )


# A call with all of its payload: what a result needs.
_CALL_COLUMNS = _select_list(_call_record)
# What a status shows of the payload: the traceback, never the result's bytes (which may
# be large and are read only for the result itself).
_STATUS_COLUMNS = _select_list(_call_record, leave_out=("result", "error_blob", "result_json"))
# A call without its payload (listings).
_SUMMARY_COLUMNS = _select_list(
    _call_record, leave_out=("error_traceback", "result", "error_blob", "result_json")
)
_CLAIM_COLUMNS = _select_list(Claim)
_FUNCTION_COLUMNS = _select_list(FunctionRecord, table="f")


class SqliteStore(CallLinks, KvObjects, Schedules, Secrets):
    """Durable state in one SQLite file (WAL, ``synchronous=FULL``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            # Every call's arguments, results and code: the owner's alone, whatever the
            # umask of the cluster the registry runs on (SQLite gives -wal and -shm the
            # file's mode).
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._write = _connect(self.path)
            self._write.executescript(SCHEMA)
            self._migrate()
            self._read = _connect(self.path)
        except (sqlite3.Error, OSError) as exc:
            why = "" if os.access(self.path.parent, os.W_OK) else " (its directory is read-only)"
            raise StoreError(f"cannot open the store at {self.path}{why}: {exc}") from exc
        self._lock = threading.RLock()
        self._durable = True  # the connection starts with synchronous=FULL

    def _migrate(self) -> None:
        """Add columns that stores made by earlier versions lack."""
        columns = {
            name for (name,) in self._write.execute("SELECT name FROM pragma_table_info('calls')")
        }
        if "result_json" not in columns:
            self._write.execute("ALTER TABLE calls ADD COLUMN result_json TEXT")
        if "logs" not in columns:
            self._write.execute("ALTER TABLE calls ADD COLUMN logs TEXT")

    def close(self) -> None:
        self._write.close()
        self._read.close()

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[None]:
        """One write transaction; a failed commit raises StoreError and keeps nothing.

        ``durable`` commits are fsynced; others survive process crashes, not power loss.
        """
        with self._lock:
            try:
                if durable != self._durable:
                    self._write.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                    self._durable = durable
                self._write.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"the store refused a write: {exc}") from exc
            try:
                yield
                self._write.execute("COMMIT")
            except BaseException as exc:
                if self._write.in_transaction:
                    self._write.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"the store refused a write: {exc}") from exc
                raise

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Part of a transaction that can fail alone (one op of a group commit); a write
        SQLite refuses in it raises StoreError."""
        self._write.execute("SAVEPOINT op")
        try:
            yield
        except BaseException as exc:
            self._write.execute("ROLLBACK TO op")
            self._write.execute("RELEASE op")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"the store refused a write: {exc}") from exc
            raise
        self._write.execute("RELEASE op")

    # ---- deployments -------------------------------------------------------------

    def next_version(self, app: str) -> int:
        (latest,) = self._write.execute(
            "SELECT COALESCE(MAX(version), 0) FROM functions WHERE app = ?", (app,)
        ).fetchone()
        return int(latest) + 1

    def deploy(
        self, app: str, functions: Sequence[FunctionRecord], *, ephemeral: bool, now: float
    ) -> int:
        version = functions[0].version if functions else self.next_version(app)
        self._write.executemany(
            "INSERT INTO functions (app, version, name, options, code, runtime_env) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(app, f.version, f.name, f.options, f.code, f.runtime_env) for f in functions],
        )
        self._write.execute(
            "INSERT INTO apps (name, version, state, ephemeral, updated_at) "
            "VALUES (?, ?, 'deployed', ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "version = excluded.version, state = 'deployed', ephemeral = excluded.ephemeral, "
            "updated_at = excluded.updated_at",
            (app, version, int(ephemeral), now),
        )
        return version

    def stop_app(self, app: str, now: float) -> bool:
        cur = self._write.execute(
            "UPDATE apps SET state = 'stopped', updated_at = ? WHERE name = ? "
            "AND state = 'deployed'",
            (now, app),
        )
        return cur.rowcount > 0

    def _app_records(self, where: str, params: Sequence[Any]) -> list[AppRecord]:
        rows = self._read.execute(
            "SELECT a.name, a.version, a.state, a.ephemeral, a.updated_at, "
            "group_concat(f.name, char(0)) FROM apps a LEFT JOIN functions f "
            "ON f.app = a.name AND f.version = a.version "
            + where
            + " GROUP BY a.name ORDER BY a.name",
            params,
        ).fetchall()
        return [
            AppRecord(
                name=name,
                version=version,
                state=state,
                ephemeral=bool(ephemeral),
                updated_at=updated_at,
                functions=tuple(sorted(functions.split("\0"))) if functions else (),
            )
            for name, version, state, ephemeral, updated_at, functions in rows
        ]

    def get_app(self, app: str) -> AppRecord | None:
        records = self._app_records("WHERE a.name = ?", (app,))
        return records[0] if records else None

    def list_apps(self, include_stopped: bool = False) -> list[AppRecord]:
        if include_stopped:
            return self._app_records("", ())
        return self._app_records("WHERE a.state = 'deployed'", ())

    def get_function(
        self, app: str, name: str, version: int | None = None
    ) -> FunctionRecord | None:
        if version is None:
            row = self._read.execute(
                f"SELECT {_FUNCTION_COLUMNS} "
                "FROM functions f JOIN apps a ON a.name = f.app AND a.version = f.version "
                "WHERE a.name = ? AND f.name = ? AND a.state = 'deployed'",
                (app, name),
            ).fetchone()
        else:
            row = self._read.execute(
                f"SELECT {_FUNCTION_COLUMNS} FROM functions f "
                "WHERE f.app = ? AND f.name = ? AND f.version = ?",
                (app, name, version),
            ).fetchone()
        return FunctionRecord(*row) if row else None

    def live_functions(self) -> list[FunctionRecord]:
        rows = self._read.execute(
            f"SELECT {_FUNCTION_COLUMNS} "
            "FROM functions f JOIN apps a ON a.name = f.app AND a.version = f.version "
            "WHERE a.state = 'deployed'"
        ).fetchall()
        return [FunctionRecord(*row) for row in rows]

    # ---- calls -------------------------------------------------------------------

    def remember_idempotent(
        self, key: str, request_hash: str, call_ids: Sequence[str]
    ) -> list[str]:
        """The calls a request with this Idempotency-Key made: ``call_ids`` if the key is
        new, the earlier ones if it was seen with the same request; ConflictError if it
        was seen with a different request."""
        row = self._write.execute(
            "SELECT request_hash, call_ids FROM idempotency WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            self._write.execute(
                "INSERT INTO idempotency (key, request_hash, call_ids, created_at) "
                "VALUES (?, ?, ?, ?)",
                (key, request_hash, json.dumps(list(call_ids)), time.time()),
            )
            return list(call_ids)
        seen_hash, seen_ids = row
        if seen_hash != request_hash:
            raise ConflictError(
                f"Idempotency-Key {key!r} was already used for a different request"
            )
        return list(json.loads(seen_ids))

    def insert_calls(self, calls: Sequence[NewCall]) -> None:
        # OR IGNORE: a client that retries a spawn after a registry restart resends the
        # same IDs, and acceptance stays exactly-once.
        self._write.executemany(
            "INSERT OR IGNORE INTO calls (id, app, function, version, state, created_at, args) "
            "VALUES (?, ?, ?, ?, 'queued', ?, ?)",
            [(c.id, c.app, c.function, c.version, c.created_at, c.args) for c in calls],
        )

    def claim_queued(self, app: str, function: str, limit: int, now: float) -> list[Claim]:
        rows = self._write.execute(
            "UPDATE calls SET state = 'running', attempts = attempts + 1, "
            "started_at = COALESCE(started_at, ?) WHERE id IN (SELECT id FROM calls "
            "WHERE app = ? AND function = ? AND state = 'queued' ORDER BY id LIMIT ?) "
            f"RETURNING {_CLAIM_COLUMNS}",
            (now, app, function, limit),
        ).fetchall()
        claims = [Claim(*row) for row in rows]
        claims.sort(key=_by_id)  # RETURNING promises no order
        return claims

    def mark_retrying(self, call_id: str, logs: str | None = None) -> bool:
        cur = self._write.execute(
            f"UPDATE calls SET state = 'retrying', {_ADD_LOGS} WHERE id = ? AND state = 'running'",
            (logs, logs, call_id),
        )
        return cur.rowcount > 0

    def start_retry(self, call_id: str, now: float) -> Claim | None:
        row = self._write.execute(
            "UPDATE calls SET state = 'running', attempts = attempts + 1 "
            "WHERE id = ? AND state = 'retrying' "
            f"RETURNING {_CLAIM_COLUMNS}",
            (call_id,),
        ).fetchone()
        return Claim(*row) if row else None

    def requeue(self, call_ids: Sequence[str]) -> None:
        """Put running calls back in the queue without counting their attempt: their Ray
        task was stopped for another call it carried, or never submitted."""
        self._write.executemany(
            "UPDATE calls SET state = 'queued', attempts = attempts - 1 "
            "WHERE id = ? AND state = 'running'",
            [(call_id,) for call_id in call_ids],
        )

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
    ) -> bool:
        cur = self._write.execute(
            "UPDATE calls SET state = ?, finished_at = ?, expires_at = ?, args = NULL, "
            "result = ?, result_json = ?, error_type = ?, error_message = ?, "
            f"error_traceback = ?, error_blob = ?, {_ADD_LOGS} "
            "WHERE id = ? AND state IN (?, ?, ?)",
            (
                state.value,
                now,
                expires_at,
                result,
                result_json,
                error.type_name if error else None,
                error.message if error else None,
                error.traceback if error else None,
                error.exception if error else None,
                logs,
                logs,
                call_id,
                *_ACTIVE,
            ),
        )
        return cur.rowcount > 0

    def finish_succeeded(
        self,
        results: Sequence[tuple[str, bytes, str | None, str | None]],
        *,
        now: float,
        expires_at: float,
    ) -> None:
        """Store many successful outcomes (ID, pickled result, JSON form, output of the
        attempt) in one statement.

        Calls that are no longer active (cancelled meanwhile) keep their outcome."""
        self._write.executemany(
            "UPDATE calls SET state = 'succeeded', finished_at = ?, expires_at = ?, "
            "args = NULL, result = ?, result_json = ?, error_type = NULL, error_message = NULL, "
            f"error_traceback = NULL, error_blob = NULL, {_ADD_LOGS} "
            "WHERE id = ? AND state IN (?, ?, ?)",
            [(now, expires_at, result, as_json, logs, logs, call_id, *_ACTIVE)
             for call_id, result, as_json, logs in results],
        )

    def get_logs(self, call_id: str) -> tuple[CallState, str] | None:
        """A call's state and what its attempts printed; None for an unknown ID."""
        row = self._read.execute(
            "SELECT state, logs FROM calls WHERE id = ?", (call_id,)
        ).fetchone()
        if row is None:
            return None
        state, logs = row
        return _STATE_OF[state], logs or ""

    def cancel(self, call_id: str, now: float, expires_at: float) -> CallState | None:
        """Cancel an unfinished call; return its state before, or None if it had ended."""
        row = self._write.execute("SELECT state FROM calls WHERE id = ?", (call_id,)).fetchone()
        if row is None:
            return None
        (state,) = row
        if state not in _ACTIVE:
            return None
        self.finish(call_id, CallState.CANCELLED, now=now, expires_at=expires_at)
        return _STATE_OF[state]

    def cancel_app_calls(
        self, app: str, now: float, expires_at: float
    ) -> tuple[int, list[str]]:
        """Cancel the app's unfinished calls; return how many, and the IDs of those that
        had started (the queue itself may hold a million: those IDs are not listed)."""
        started = [
            call_id
            for (call_id,) in self._write.execute(
                "SELECT id FROM calls WHERE app = ? AND state IN (?, ?)",
                (app, CallState.RUNNING.value, CallState.RETRYING.value),
            )
        ]
        cur = self._write.execute(
            "UPDATE calls SET state = 'cancelled', finished_at = ?, expires_at = ?, args = NULL "
            "WHERE app = ? AND state IN (?, ?, ?)",
            (now, expires_at, app, *_ACTIVE),
        )
        return cur.rowcount, started

    def get_call(
        self, call_id: str, with_payload: bool = True, status_only: bool = False
    ) -> CallRecord | None:
        """The call; ``status_only`` leaves out the result and the pickled error."""
        columns = (
            _STATUS_COLUMNS if status_only else _CALL_COLUMNS if with_payload else _SUMMARY_COLUMNS
        )
        row = self._read.execute(f"SELECT {columns} FROM calls WHERE id = ?",
                                 (call_id,)).fetchone()
        return _call_record(*row) if row else None

    def get_calls(self, call_ids: Sequence[str], finished_only: bool = False) -> list[CallRecord]:
        """The known calls among ``call_ids``; with ``finished_only`` just those that have
        ended, so polling many pending calls builds no records for them."""
        records: list[CallRecord] = []
        finished = f" AND state IN ({','.join('?' * len(_FINISHED))})" if finished_only else ""
        for part in chunks(call_ids, 500):
            marks = ",".join("?" * len(part))
            rows = self._read.execute(
                f"SELECT {_CALL_COLUMNS} FROM calls WHERE id IN ({marks})" + finished,
                (*part, *(_FINISHED if finished_only else ())),
            ).fetchall()
            records.extend(_call_record(*row) for row in rows)
        return records

    def call_states(self, call_ids: Sequence[str]) -> dict[str, CallState]:
        """The state of each known call among ``call_ids`` (an index lookup each)."""
        states: dict[str, CallState] = {}
        for part in chunks(list(dict.fromkeys(call_ids)), 500):
            marks = ",".join("?" * len(part))
            rows = self._read.execute(
                f"SELECT id, state FROM calls WHERE id IN ({marks})", tuple(part)
            ).fetchall()
            states.update((call_id, _STATE_OF[state]) for call_id, state in rows)
        return states

    def recover(self) -> int:
        """Put calls that were running or waiting to retry back in the queue."""
        cur = self._write.execute(
            "UPDATE calls SET state = 'queued' WHERE state IN ('running', 'retrying')"
        )
        return cur.rowcount

    def queued_functions(self) -> list[tuple[str, str]]:
        rows = self._read.execute(
            "SELECT DISTINCT app, function FROM calls WHERE state = 'queued'"
        ).fetchall()
        return [(app, function) for app, function in rows]

    def queue_depths(self) -> dict[tuple[str, str], dict[str, int]]:
        rows = self._read.execute(
            "SELECT app, function, state, COUNT(*) FROM calls WHERE state IN (?, ?, ?) "
            "GROUP BY app, function, state",
            _ACTIVE,
        ).fetchall()
        depths: dict[tuple[str, str], dict[str, int]] = {}
        for app, function, state, count in rows:
            depths.setdefault((app, function), {})[state] = count
        return depths

    def sweep_expired(
        self, now: float, limit: int = 10_000, *, idempotency_retention: float | None = None
    ) -> int:
        """Delete result bytes past retention, keeping the row as a tombstone, and the
        Idempotency-Keys recorded more than ``idempotency_retention`` seconds ago (None
        keeps them). Returns how many rows changed, at most ``limit`` of each kind."""
        ids = [(row[0],) for row in self._write.execute(EXPIRED_CALLS, (now, limit))]
        self._sweep_links(ids)
        cur = self._write.executemany(
            "UPDATE calls SET expired = 1, result = NULL, result_json = NULL, error_blob = NULL, "
            "error_traceback = NULL, args = NULL, logs = NULL WHERE id = ?",
            ids,
        )
        swept = cur.rowcount
        if idempotency_retention is not None:
            swept += self._write.execute(
                "DELETE FROM idempotency WHERE key IN (SELECT key FROM idempotency "
                "WHERE created_at <= ? LIMIT ?)",
                (now - idempotency_retention, limit),
            ).rowcount
        return swept

    def list_calls(self, query: CallQuery) -> list[CallRecord]:
        """The calls ``query`` asks for, newest first, without their payload."""
        clauses: list[str] = []
        params: list[Any] = []
        for condition, value in (
            ("app = ?", query.app),
            ("function = ?", query.function),
            ("state = ?", query.state.value if query.state else None),
            ("id < ?", query.before),
        ):
            if value is not None:
                clauses.append(condition)
                params.append(value)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self._read.execute(
            f"SELECT {_SUMMARY_COLUMNS} FROM calls {where} ORDER BY id DESC LIMIT ?",
            (*params, query.limit),
        ).fetchall()
        return [_call_record(*row) for row in rows]


if TYPE_CHECKING:
    # SqliteStore implements every method of Store: a drift between them is a type error.
    _conforms: type[Store] = SqliteStore
