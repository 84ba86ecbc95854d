"""Every field of every record is read from its own column: each field gets a value no
other field has, and every way of reading the record must give it back in its place."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

from rayfn.protocol.ids import new_call_ids
from rayfn.protocol.payload import ErrorInfo
from rayfn.protocol.records import CallQuery
from rayfn.states import CallState
from rayfn_service.store import (
    AppRecord,
    CallRecord,
    Claim,
    FunctionRecord,
    NewCall,
    Store,
    open_reader,
    open_store,
)
from rayfn_service.store.sqlite import SqliteStore

T0 = 1_700_000_000.0
CREATED, CLAIMED, FINISHED, EXPIRES = T0 + 0.25, T0 + 1.5, T0 + 3.75, T0 + 100.5
ERROR = ErrorInfo(
    type_name="KeyError", message="the message", traceback="the traceback", exception=b"blob"
)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "rayfn.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    store = open_store(db_path)
    try:
        yield store
    finally:
        store.close()


def deploy_app(store: Store) -> FunctionRecord:
    record = FunctionRecord("the-app", 7, "the-function", '{"options": 1}', b"code", '{"env": 2}')
    with store.transaction():
        store.deploy("the-app", [record], ephemeral=True, now=T0 + 0.5)
    return record


def run_twice_then_fail(store: Store) -> str:
    """A call with a value of its own in every column: claimed, retried, failed with a
    result, an error and output."""
    (call_id,) = new_call_ids(1)
    with store.transaction():
        store.insert_calls([NewCall(call_id, "the-app", "the-function", 7, b"args", CREATED)])
        store.claim_queued("the-app", "the-function", 1, CLAIMED)
        store.mark_retrying(call_id, "first attempt\n")
        store.start_retry(call_id, T0 + 2.5)
        store.finish(call_id, CallState.FAILED, now=FINISHED, expires_at=EXPIRES,
                     result=b"result bytes", result_json='"result json"', error=ERROR,
                     logs="second attempt\n")
    return call_id


def whole(call_id: str) -> CallRecord:
    return CallRecord(
        id=call_id,
        app="the-app",
        function="the-function",
        version=7,
        state=CallState.FAILED,
        attempts=2,
        created_at=CREATED,
        started_at=CLAIMED,
        finished_at=FINISHED,
        expires_at=EXPIRES,
        expired=False,
        result=b"result bytes",
        error=ERROR,
        result_json='"result json"',
    )


def status(call_id: str) -> CallRecord:
    """What a status read keeps of the payload: the traceback."""
    return dataclasses.replace(
        whole(call_id), result=None, result_json=None,
        error=dataclasses.replace(ERROR, exception=None),
    )


def summary(call_id: str) -> CallRecord:
    """What a listing keeps: no payload at all."""
    return dataclasses.replace(
        status(call_id), error=dataclasses.replace(ERROR, traceback="", exception=None)
    )


def test_every_read_of_a_call_puts_each_column_in_its_field(store: Store, db_path: Path) -> None:
    deploy_app(store)
    call_id = run_twice_then_fail(store)

    assert store.get_call(call_id) == whole(call_id)
    assert store.get_call(call_id, status_only=True) == status(call_id)
    assert store.get_call(call_id, with_payload=False) == summary(call_id)
    assert store.get_calls([call_id]) == [whole(call_id)]
    assert store.get_calls([call_id], finished_only=True) == [whole(call_id)]
    assert store.list_calls(CallQuery(app="the-app")) == [summary(call_id)]
    assert store.get_logs(call_id) == (CallState.FAILED, "first attempt\nsecond attempt\n")
    assert store.call_states([call_id]) == {call_id: CallState.FAILED}
    reader = open_reader(db_path)
    try:
        assert reader.finished_call(call_id) == whole(call_id)
        assert reader.finished_call(call_id, status_only=True) == status(call_id)
        assert reader.result_bytes(call_id) == len(b"result bytes")
    finally:
        reader.close()


def test_an_expired_call_keeps_its_columns_in_place(store: Store) -> None:
    deploy_app(store)
    call_id = run_twice_then_fail(store)
    with store.transaction():
        assert store.sweep_expired(EXPIRES) == 1
    expected = dataclasses.replace(summary(call_id), expired=True)
    assert store.get_call(call_id) == expected
    assert store.list_calls(CallQuery()) == [expected]


def test_claims_put_each_column_in_its_field(store: Store) -> None:
    first, second = new_call_ids(2)
    with store.transaction():
        store.insert_calls([NewCall(i, "the-app", "the-function", 7, b"args-" + i.encode(),
                                    CREATED) for i in (second, first)])
        claims = store.claim_queued("the-app", "the-function", 2, CLAIMED)
        store.mark_retrying(first)
        retry = store.start_retry(first, T0 + 2.5)
    assert claims == [
        Claim(i, "the-app", "the-function", 7, 1, b"args-" + i.encode()) for i in (first, second)
    ]
    assert retry == Claim(first, "the-app", "the-function", 7, 2, b"args-" + first.encode())


def test_deployments_put_each_column_in_its_field(store: Store) -> None:
    record = deploy_app(store)
    assert store.get_function("the-app", "the-function") == record
    assert store.get_function("the-app", "the-function", 7) == record
    assert store.live_functions() == [record]
    app = AppRecord("the-app", 7, "deployed", True, T0 + 0.5, ("the-function",))
    assert store.get_app("the-app") == app
    assert store.list_apps() == [app]


def test_store_declares_every_public_method_of_sqlite_store() -> None:
    """Callers get a Store: a method SqliteStore alone has would tie them to SQLite (mypy
    checks the other direction, see ``_conforms`` in sqlite.py)."""

    def public_methods(cls: type) -> set[str]:
        return {n for n, v in inspect.getmembers(cls, callable) if not n.startswith("_")}

    assert public_methods(SqliteStore) == public_methods(Store)
