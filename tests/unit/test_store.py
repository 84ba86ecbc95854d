"""SqliteStore on a real SQLite file, and GroupCommit on top of it."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rayfn.exception import StoreError
from rayfn.protocol.ids import new_call_ids
from rayfn.protocol.payload import ErrorInfo
from rayfn.protocol.records import CallQuery
from rayfn.states import CallState
from rayfn_service.store.base import FunctionRecord, NewCall
from rayfn_service.store.group_commit import GroupCommit
from rayfn_service.store.sqlite import SCHEMA, SqliteStore

T0 = 1_700_000_000.0


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "rayfn.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(db_path)
    try:
        yield store
    finally:
        store.close()


def deploy(store: SqliteStore, app: str, names: tuple[str, ...] = ("f",), **kw: Any) -> int:
    """Deploy ``names`` as the next version of ``app``; return the version."""
    with store.transaction():
        version = store.next_version(app)
        records = [
            FunctionRecord(app, version, name, f'{{"v": {version}}}', b"code-%d" % version, "{}")
            for name in names
        ]
        return store.deploy(app, records, ephemeral=kw.get("ephemeral", False), now=T0)


def spawn(
    store: SqliteStore, n: int, app: str = "app", function: str = "f", version: int = 1
) -> list[str]:
    """Insert ``n`` queued calls; return their IDs, oldest first."""
    ids = new_call_ids(n)
    with store.transaction():
        store.insert_calls(
            [NewCall(i, app, function, version, b"args-" + i.encode(), T0) for i in ids]
        )
    return ids


def claim(store: SqliteStore, limit: int, app: str = "app", function: str = "f") -> list[str]:
    with store.transaction():
        return [c.id for c in store.claim_queued(app, function, limit, T0 + 1)]


def finish(store: SqliteStore, call_id: str, state: CallState, **kw: Any) -> bool:
    with store.transaction():
        return store.finish(call_id, state, now=T0 + 2, expires_at=T0 + 100, **kw)


def state_of(store: SqliteStore, call_id: str) -> CallState:
    record = store.get_call(call_id)
    assert record is not None
    return record.state


# ---- deployments -------------------------------------------------------------------


def test_deploy_creates_increasing_versions(store: SqliteStore) -> None:
    assert deploy(store, "app", ("f", "g")) == 1
    assert deploy(store, "app", ("f",)) == 2
    assert deploy(store, "other") == 1
    app = store.get_app("app")
    assert app is not None
    assert (app.version, app.state, app.functions) == (2, "deployed", ("f",))


def test_get_function_current_and_by_version(store: SqliteStore) -> None:
    deploy(store, "app", ("f", "g"))
    deploy(store, "app", ("f",))
    current = store.get_function("app", "f")
    assert current is not None and current.version == 2 and current.code == b"code-2"
    old = store.get_function("app", "f", version=1)
    assert old is not None and old.code == b"code-1"
    assert store.get_function("app", "g") is None  # not in the current version
    assert store.get_function("app", "g", version=1) is not None
    assert store.get_function("app", "f", version=3) is None
    assert store.get_function("nope", "f") is None


def test_stop_app_hides_it_but_keeps_its_versions(store: SqliteStore) -> None:
    deploy(store, "app")
    deploy(store, "keep")
    with store.transaction():
        assert store.stop_app("app", T0 + 5) is True
        assert store.stop_app("app", T0 + 6) is False  # already stopped
        assert store.stop_app("unknown", T0 + 6) is False
    assert store.get_function("app", "f") is None
    assert store.get_function("app", "f", version=1) is not None  # accepted calls finish
    assert [a.name for a in store.list_apps()] == ["keep"]
    assert [a.name for a in store.list_apps(include_stopped=True)] == ["app", "keep"]
    assert {f.app for f in store.live_functions()} == {"keep"}
    app = store.get_app("app")
    assert app is not None and app.state == "stopped" and app.updated_at == T0 + 5


def test_redeploy_after_stop_makes_the_app_live_again(store: SqliteStore) -> None:
    deploy(store, "app")
    with store.transaction():
        store.stop_app("app", T0)
    assert deploy(store, "app") == 2
    current = store.get_function("app", "f")
    assert current is not None and current.version == 2


def test_failed_transaction_keeps_nothing(store: SqliteStore) -> None:
    with pytest.raises(ValueError), store.transaction():
        store.insert_calls([NewCall(new_call_ids(1)[0], "app", "f", 1, b"", T0)])
        raise ValueError("abort")
    assert store.list_calls(CallQuery()) == []


def test_sqlite_error_in_transaction_is_a_store_error(store: SqliteStore) -> None:
    deploy(store, "app")
    duplicate = FunctionRecord("app", 1, "f", "{}", b"", "{}")  # (app, version, name) exists
    with pytest.raises(StoreError, match="refused"), store.transaction():
        store.deploy("app", [duplicate], ephemeral=False, now=T0)
    app = store.get_app("app")
    assert app is not None and app.version == 1


# ---- calls -------------------------------------------------------------------------


def test_insert_calls_is_idempotent(store: SqliteStore) -> None:
    ids = spawn(store, 3)
    with store.transaction():
        store.insert_calls([NewCall(ids[0], "app", "other", 9, b"different", T0 + 50)])
    calls = store.list_calls(CallQuery())
    assert sorted(c.id for c in calls) == ids
    first = store.get_call(ids[0])
    assert first is not None
    assert (first.function, first.version, first.created_at) == ("f", 1, T0)
    assert first.state is CallState.QUEUED and first.attempts == 0


def test_claim_queued_takes_the_oldest_first(store: SqliteStore) -> None:
    ids = spawn(store, 5)
    with store.transaction():
        claims = store.claim_queued("app", "f", 2, T0 + 1)
    assert [c.id for c in claims] == ids[:2]
    assert all(c.attempts == 1 and c.version == 1 for c in claims)
    assert claims[0].args == b"args-" + ids[0].encode()
    assert [state_of(store, i) for i in ids] == [CallState.RUNNING] * 2 + [CallState.QUEUED] * 3
    record = store.get_call(ids[0])
    assert record is not None and record.started_at == T0 + 1
    assert claim(store, 10) == ids[2:]
    assert claim(store, 10) == []


def test_claim_queued_respects_app_and_function(store: SqliteStore) -> None:
    f_ids = spawn(store, 2, function="f")
    g_ids = spawn(store, 2, function="g")
    other = spawn(store, 1, app="other", function="f")
    assert claim(store, 10, function="g") == g_ids
    assert claim(store, 10, app="other") == other
    assert claim(store, 10) == f_ids


def test_finish_only_from_active_states(store: SqliteStore) -> None:
    done, cancelled, queued = spawn(store, 3)
    claim(store, 1)
    assert finish(store, done, CallState.SUCCEEDED, result=b"42") is True
    assert finish(store, done, CallState.FAILED) is False  # already finished
    with store.transaction():
        assert store.cancel(cancelled, T0, T0 + 100) is CallState.QUEUED
    assert finish(store, cancelled, CallState.SUCCEEDED, result=b"late") is False
    assert finish(store, "fc-unknown", CallState.SUCCEEDED) is False
    assert finish(store, queued, CallState.FAILED) is True  # e.g. its function cannot load

    record = store.get_call(done)
    assert record is not None
    assert (record.state, record.result, record.finished_at) == (CallState.SUCCEEDED, b"42", T0 + 2)
    late = store.get_call(cancelled)
    assert late is not None and late.state is CallState.CANCELLED and late.result is None


def test_finish_succeeded_stores_many_outcomes_in_one_write(store: SqliteStore) -> None:
    first, second, cancelled = spawn(store, 3)
    claim(store, 3)
    with store.transaction():
        store.cancel(cancelled, T0, T0 + 100)
    with store.transaction():
        store.finish_succeeded([(first, b"1", "1", None), (second, b"2", None, None),
                                (cancelled, b"late", None, None),
                                ("fc-unknown", b"x", None, None)],
                               now=T0 + 5, expires_at=T0 + 50)
    one, two, late = (store.get_call(i) for i in (first, second, cancelled))
    assert one is not None and two is not None and late is not None
    assert (one.state, one.result, one.result_json, one.finished_at, one.expires_at) == (
        CallState.SUCCEEDED, b"1", "1", T0 + 5, T0 + 50)
    assert (two.state, two.result, two.result_json) == (CallState.SUCCEEDED, b"2", None)
    assert one.error is None
    assert late.state is CallState.CANCELLED and late.result is None  # cancel wins


def test_requeue_puts_running_calls_back_without_counting_the_attempt(
    store: SqliteStore,
) -> None:
    first, second, cancelled = spawn(store, 3)
    claim(store, 3)
    with store.transaction():
        store.cancel(cancelled, T0, T0 + 100)
        store.requeue([first, second, cancelled])
    assert [state_of(store, i) for i in (first, second, cancelled)] == [
        CallState.QUEUED, CallState.QUEUED, CallState.CANCELLED]  # a cancel stays
    record = store.get_call(first)
    assert record is not None and record.attempts == 0
    with store.transaction():
        again = store.claim_queued("app", "f", 10, T0 + 3)
    assert [(c.id, c.attempts, c.args) for c in again] == [
        (first, 1, b"args-" + first.encode()), (second, 1, b"args-" + second.encode())]


def test_finish_stores_the_error(store: SqliteStore) -> None:
    (call_id,) = spawn(store, 1)
    error = ErrorInfo("builtins.ValueError", "bad", "Traceback ...", b"pickled")
    finish(store, call_id, CallState.FAILED, error=error)
    record = store.get_call(call_id)
    assert record is not None and record.error == error
    light = store.get_call(call_id, with_payload=False)
    assert light is not None and light.error is not None
    assert (light.error.type_name, light.error.message) == ("builtins.ValueError", "bad")
    assert light.error.exception is None and light.result is None


def test_cancel_returns_the_previous_state(store: SqliteStore) -> None:
    running, retrying, queued, done = spawn(store, 4)
    assert claim(store, 2) == [running, retrying]
    with store.transaction():
        store.mark_retrying(retrying)
    finish(store, done, CallState.SUCCEEDED, result=b"1")
    with store.transaction():
        assert store.cancel(queued, T0, T0 + 100) is CallState.QUEUED
        assert store.cancel(running, T0, T0 + 100) is CallState.RUNNING
        assert store.cancel(retrying, T0, T0 + 100) is CallState.RETRYING
        assert store.cancel(queued, T0, T0 + 100) is None  # cancelled already
        assert store.cancel(done, T0, T0 + 100) is None
        assert store.cancel("fc-unknown", T0, T0 + 100) is None
    assert [state_of(store, i) for i in (queued, running, retrying, done)] == [
        CallState.CANCELLED,
        CallState.CANCELLED,
        CallState.CANCELLED,
        CallState.SUCCEEDED,
    ]


def test_cancel_app_calls_cancels_only_unfinished_calls_of_that_app(store: SqliteStore) -> None:
    running, queued, done = spawn(store, 3)
    other = spawn(store, 1, app="other")
    assert claim(store, 1) == [running]
    finish(store, done, CallState.SUCCEEDED)
    with store.transaction():
        cancelled, started = store.cancel_app_calls("app", T0, T0 + 100)
    assert cancelled == 2
    assert started == [running]  # only calls handed to Ray are listed
    assert state_of(store, queued) is CallState.CANCELLED
    assert state_of(store, running) is CallState.CANCELLED
    assert state_of(store, done) is CallState.SUCCEEDED
    assert state_of(store, other[0]) is CallState.QUEUED


def test_retry_cycle(store: SqliteStore) -> None:
    (call_id,) = spawn(store, 1)
    with store.transaction():
        assert store.mark_retrying(call_id) is False  # only a running call can retry
    claim(store, 1)
    with store.transaction():
        assert store.mark_retrying(call_id) is True
        assert store.mark_retrying(call_id) is False
    assert state_of(store, call_id) is CallState.RETRYING
    with store.transaction():
        retry = store.start_retry(call_id, T0 + 3)
        assert store.start_retry(call_id, T0 + 3) is None  # running again, not retrying
    assert retry is not None and retry.attempts == 2 and retry.id == call_id
    record = store.get_call(call_id)
    assert record is not None
    assert (record.state, record.attempts, record.started_at) == (CallState.RUNNING, 2, T0 + 1)


def test_recover_requeues_running_and_retrying(store: SqliteStore) -> None:
    running, retrying, queued, done = spawn(store, 4)
    claim(store, 2)
    with store.transaction():
        store.mark_retrying(retrying)
    finish(store, done, CallState.SUCCEEDED)  # finished straight from the queue
    with store.transaction():
        assert store.recover() == 2
    states = [state_of(store, i) for i in (running, retrying, queued, done)]
    assert states == [CallState.QUEUED] * 3 + [CallState.SUCCEEDED]
    assert store.queued_functions() == [("app", "f")]
    # the next claim counts another attempt for the recovered calls
    with store.transaction():
        attempts = {c.id: c.attempts for c in store.claim_queued("app", "f", 10, T0)}
    assert attempts == {running: 2, retrying: 2, queued: 1}


def test_sweep_expired_clears_payload_and_keeps_the_row(store: SqliteStore) -> None:
    old, fresh, active = spawn(store, 3)
    error = ErrorInfo("builtins.KeyError", "k", "tb", b"blob")
    with store.transaction():
        store.finish(old, CallState.FAILED, now=T0, expires_at=T0 + 10, error=error)
        store.finish(fresh, CallState.SUCCEEDED, now=T0, expires_at=T0 + 1000, result=b"r")
        assert store.sweep_expired(T0 + 10) == 1
        assert store.sweep_expired(T0 + 10) == 0  # already a tombstone
    swept = store.get_call(old)
    assert swept is not None
    assert swept.expired and swept.state is CallState.FAILED
    assert swept.result is None and swept.error is not None
    assert swept.error.exception is None and swept.error.traceback == ""
    assert swept.error.message == "k"
    kept = store.get_call(fresh)
    assert kept is not None and not kept.expired and kept.result == b"r"
    assert state_of(store, active) is CallState.QUEUED


def test_each_attempt_adds_its_output_to_the_log_until_it_expires(store: SqliteStore) -> None:
    retried, succeeded, quiet = spawn(store, 3)
    claim(store, 3)
    with store.transaction():
        store.mark_retrying(retried, "first\n")
        store.start_retry(retried, T0 + 2)
        store.finish(retried, CallState.FAILED, now=T0 + 3, expires_at=T0 + 10,
                     error=ErrorInfo("builtins.KeyError", "k", "", b""),
                     logs="--- attempt 2 ---\nsecond\n")
        store.finish_succeeded([(succeeded, b"r", None, "done\n"), (quiet, b"r", None, None)],
                               now=T0 + 3, expires_at=T0 + 1000)
        store.cancel(retried, T0 + 4, T0 + 10)  # ended already: its log stays
    assert store.get_logs(retried) == (CallState.FAILED,
                                       "first\n--- attempt 2 ---\nsecond\n")
    assert store.get_logs(succeeded) == (CallState.SUCCEEDED, "done\n")
    assert store.get_logs(quiet) == (CallState.SUCCEEDED, "")
    assert store.get_logs("fc-00000000000000000000000000") is None
    with store.transaction():
        assert store.sweep_expired(T0 + 10) == 1
    assert store.get_logs(retried) == (CallState.FAILED, "")


def test_a_store_made_before_logs_gains_the_column(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as old:
        old.executescript(SCHEMA.replace(",\n    logs TEXT", ""))
    assert "logs" not in {r[1] for r in sqlite3.connect(db_path).execute(
        "PRAGMA table_info(calls)")}
    store = SqliteStore(db_path)
    try:
        (call_id,) = spawn(store, 1)
        assert store.get_logs(call_id) == (CallState.QUEUED, "")
    finally:
        store.close()


def test_sweep_expired_respects_its_limit(store: SqliteStore) -> None:
    ids = spawn(store, 5)
    with store.transaction():
        for call_id in ids:
            store.finish(call_id, CallState.SUCCEEDED, now=T0, expires_at=T0, result=b"x")
        assert store.sweep_expired(T0 + 1, limit=3) == 3
        assert store.sweep_expired(T0 + 1, limit=3) == 2


def test_idempotency_keys_are_swept_after_retention_with_results(
    store: SqliteStore,
) -> None:
    (call_id,) = spawn(store, 1)
    with store.transaction():
        store.finish(call_id, CallState.SUCCEEDED, now=T0, expires_at=T0, result=b"x")
        recorded = time.time()
        for n in range(3):
            store.remember_idempotent(f"key-{n}", "hash", [f"fc-{n}"])
        # Without a retention the keys stay (as stores did before keys were swept).
        assert store.sweep_expired(recorded + 100) == 1
        assert store.remember_idempotent("key-0", "hash", ["fc-new"]) == ["fc-0"]
        # Within retention a retried submit still finds its calls.
        assert store.sweep_expired(recorded - 1, idempotency_retention=60) == 0
        assert store.remember_idempotent("key-0", "hash", ["fc-new"]) == ["fc-0"]
        # Past it they go in batches of ``limit``, counted with the results, until none.
        later = time.time() + 61
        assert store.sweep_expired(later, limit=2, idempotency_retention=60) == 2
        assert store.sweep_expired(later, limit=2, idempotency_retention=60) == 1
        assert store.sweep_expired(later, limit=2, idempotency_retention=60) == 0
        # A swept key is new again.
        assert store.remember_idempotent("key-0", "other", ["fc-new"]) == ["fc-new"]


def test_queue_depths_count_active_calls_by_state(store: SqliteStore) -> None:
    ids = spawn(store, 4)
    g_ids = spawn(store, 1, function="g")
    claim(store, 2)
    with store.transaction():
        store.mark_retrying(ids[1])
    finish(store, g_ids[0], CallState.SUCCEEDED)
    assert store.queue_depths() == {("app", "f"): {"queued": 2, "running": 1, "retrying": 1}}


def test_list_calls_filters_newest_first(store: SqliteStore) -> None:
    f_ids = spawn(store, 3, function="f")
    g_ids = spawn(store, 2, function="g")
    other = spawn(store, 1, app="other")
    finish(store, f_ids[1], CallState.SUCCEEDED)

    assert [c.id for c in store.list_calls(CallQuery())] == (f_ids + g_ids + other)[::-1]
    assert [c.id for c in store.list_calls(CallQuery(app="app", function="g"))] == g_ids[::-1]
    assert [c.id for c in store.list_calls(CallQuery(app="other"))] == other
    done = store.list_calls(CallQuery(state=CallState.SUCCEEDED))
    assert [c.id for c in done] == [f_ids[1]]
    assert done[0].result is None  # listings carry no payload
    assert store.list_calls(CallQuery(app="nope")) == []


def test_list_calls_paginates_with_before(store: SqliteStore) -> None:
    ids = spawn(store, 7)
    pages: list[list[str]] = []
    before: str | None = None
    for _ in range(10):  # bounded: a cursor that does not advance must fail, not hang
        page = [c.id for c in store.list_calls(CallQuery(app="app", limit=3, before=before))]
        if not page:
            break
        pages.append(page)
        before = page[-1]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == ids[::-1]


def test_get_calls_returns_the_known_ones(store: SqliteStore) -> None:
    ids = spawn(store, 3)
    records = store.get_calls([ids[2], "fc-unknown", ids[0]])
    assert sorted(r.id for r in records) == sorted([ids[0], ids[2]])
    assert store.get_calls([]) == []


def test_store_survives_reopen(db_path: Path) -> None:
    first = SqliteStore(db_path)
    deploy(first, "app")
    ids = spawn(first, 2)
    finish(first, ids[0], CallState.SUCCEEDED, result=b"kept")
    first.close()

    second = SqliteStore(db_path)
    try:
        function = second.get_function("app", "f")
        assert function is not None and function.code == b"code-1"
        done = second.get_call(ids[0])
        assert done is not None and done.result == b"kept"
        assert state_of(second, ids[1]) is CallState.QUEUED
        assert deploy(second, "app") == 2
    finally:
        second.close()


def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "a-directory").mkdir()
    with pytest.raises(StoreError, match="cannot open"):
        SqliteStore(tmp_path / "a-directory")


# ---- group commit ------------------------------------------------------------------


@pytest.fixture
def commit(store: SqliteStore) -> Iterator[GroupCommit]:
    group = GroupCommit(store)
    try:
        yield group
    finally:
        group.close()


def committed_ids(path: Path) -> set[str]:
    """Call IDs visible to a brand-new connection: what really committed."""
    conn = sqlite3.connect(path)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM calls")}
    finally:
        conn.close()


def insert_op(store: SqliteStore, call_id: str) -> Callable[[], str]:
    def op() -> str:
        store.insert_calls([NewCall(call_id, "app", "f", 1, b"", T0)])
        return call_id

    return op


def test_group_commit_runs_concurrent_ops(
    store: SqliteStore, commit: GroupCommit, db_path: Path
) -> None:
    ids = new_call_ids(200)

    async def main() -> list[str]:
        return await asyncio.gather(*(commit.run(insert_op(store, i)) for i in ids))

    assert asyncio.run(main()) == ids
    assert committed_ids(db_path) == set(ids)


def test_group_commit_batches_ops_into_one_transaction(
    store: SqliteStore, commit: GroupCommit
) -> None:
    gate = threading.Event()
    threads: set[int] = set()

    def blocker() -> None:
        gate.wait(5)

    def op() -> bool:
        threads.add(threading.get_ident())
        return store._write.in_transaction

    async def main() -> list[bool]:
        first = asyncio.ensure_future(commit.run(blocker))
        await asyncio.sleep(0.05)  # the writer is now busy with `blocker`
        rest = [asyncio.ensure_future(commit.run(op)) for _ in range(50)]
        gate.set()
        await first
        return list(await asyncio.gather(*rest))

    assert asyncio.run(main()) == [True] * 50
    assert len(threads) == 1 and threading.get_ident() not in threads


def test_failing_op_fails_alone(store: SqliteStore, commit: GroupCommit, db_path: Path) -> None:
    ids = new_call_ids(20)
    bad = ids[7]

    def failing() -> None:
        store.insert_calls([NewCall(bad, "app", "f", 1, b"", T0)])  # undone by its savepoint
        raise ValueError("op failed")

    async def main() -> list[Any]:
        ops = [failing if i == bad else insert_op(store, i) for i in ids]
        return await asyncio.gather(*(commit.run(op) for op in ops), return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[7], ValueError) and str(results[7]) == "op failed"
    assert [r for k, r in enumerate(results) if k != 7] == [i for i in ids if i != bad]
    assert committed_ids(db_path) == set(ids) - {bad}


def test_sqlite_error_in_an_op_is_a_store_error(store: SqliteStore, commit: GroupCommit) -> None:
    def broken() -> None:
        store._write.execute("INSERT INTO no_such_table VALUES (1)")

    async def main() -> None:
        await commit.run(broken)

    with pytest.raises(StoreError, match="no_such_table"):
        asyncio.run(main())


def test_read_only_store_fails_ops_with_store_error(
    store: SqliteStore, commit: GroupCommit, db_path: Path
) -> None:
    # chmod does not stop root, so make the write connection itself read-only.
    store._write.execute("PRAGMA query_only=ON")
    ids = new_call_ids(5)

    async def main() -> list[Any]:
        ops = (commit.run(insert_op(store, i)) for i in ids)
        return await asyncio.gather(*ops, return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, StoreError) for r in results), results
    assert committed_ids(db_path) == set()

    store._write.execute("PRAGMA query_only=OFF")  # the writer thread survived
    assert asyncio.run(commit.run(insert_op(store, ids[0]))) == ids[0]


def test_cancelled_caller_does_not_stop_the_writer(
    store: SqliteStore, commit: GroupCommit, db_path: Path
) -> None:
    gate, busy = threading.Event(), threading.Event()
    abandoned, later = new_call_ids(2)

    def hold() -> bool:
        busy.set()
        return gate.wait(5)

    async def main() -> str:
        first = asyncio.ensure_future(commit.run(hold))
        # Only once the writer is inside the first op does the next one wait in the queue.
        while not busy.is_set():
            await asyncio.sleep(0.01)
        gave_up = asyncio.ensure_future(commit.run(insert_op(store, abandoned)))
        await asyncio.sleep(0)
        gave_up.cancel()
        # Once the caller has ended, its op is marked cancelled for the writer; only then
        # may the writer go on to it.
        with contextlib.suppress(asyncio.CancelledError):
            await gave_up
        gate.set()
        await first
        return await asyncio.wait_for(commit.run(insert_op(store, later)), 5)

    assert asyncio.run(main()) == later
    assert committed_ids(db_path) == {later}


def test_only_durable_batches_are_fsynced(store: SqliteStore, commit: GroupCommit) -> None:
    def synchronous() -> int:
        return int(store._write.execute("PRAGMA synchronous").fetchone()[0])

    async def main() -> tuple[int, int, list[int]]:
        fast = await commit.run(synchronous, durable=False)
        safe = await commit.run(synchronous)
        # one durable op makes its whole batch durable
        mixed = await asyncio.gather(
            commit.run(synchronous, durable=False), commit.run(synchronous, durable=True)
        )
        return fast, safe, list(mixed)

    fast, safe, mixed = asyncio.run(main())
    full, normal = 2, 1  # SQLite's values for FULL and NORMAL
    assert (fast, safe) == (normal, full)
    assert set(mixed) <= {normal, full} and full in mixed


def test_generator_values_are_read_in_order_without_gaps(store: SqliteStore) -> None:
    assert store.add_values("fc-x", 1, [b"one"]) == 1  # index 0 not kept yet
    assert store.get_values("fc-x", 0, 10, 1000) == []  # a reader waits for index 0
    assert store.add_values("fc-x", 0, [b"zero"]) == 2
    assert store.add_values("fc-x", 0, [b"again"]) == 2  # a retry's values are not kept twice
    assert store.get_values("fc-x", 0, 10, 1000) == [b"zero", b"one"]
    assert store.get_values("fc-x", 1, 10, 1000) == [b"one"]
    assert store.get_values("fc-x", 0, 10, 5) == [b"zero"]  # past the first, within bytes
    store.add_children("fc-parent", ["fc-b", "fc-a", "fc-a"])
    assert store.get_children("fc-parent", 10) == ["fc-a", "fc-b"]
