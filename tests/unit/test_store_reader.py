"""Reading calls for statuses and polls: a status never carries the result's bytes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rayfn.exception import StoreError
from rayfn.protocol.payload import ErrorInfo
from rayfn.states import CallState
from rayfn_service.store import CallRecord, open_reader
from rayfn_service.store.reader import StoreReader
from rayfn_service.store.sqlite import SqliteStore

from .test_store import claim, deploy, finish, spawn


def test_status_reads_leave_the_result_out_but_keep_the_traceback(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "rayfn.db")
    reader = StoreReader(tmp_path / "rayfn.db")
    try:
        deploy(store, "app")
        ok, bad = spawn(store, 2)
        claim(store, 2)
        finish(store, ok, CallState.SUCCEEDED, result=b"r" * 100_000, result_json='"big"')
        finish(store, bad, CallState.FAILED, error=ErrorInfo(
            type_name="ValueError", message="no", traceback="Traceback ...", exception=b"e"))
        for record in (store.get_call(ok, status_only=True),
                       reader.finished_call(ok, status_only=True)):
            assert record is not None and record.state is CallState.SUCCEEDED
            assert record.result is None and record.result_json is None
        for record in (store.get_call(bad, status_only=True),
                       reader.finished_call(bad, status_only=True)):
            assert record is not None and record.error is not None
            assert record.error.traceback == "Traceback ..." and record.error.exception is None
        whole = reader.finished_call(ok)
        assert whole is not None and whole.result == b"r" * 100_000
        assert reader.result_bytes(ok) == 100_000
        assert reader.result_bytes(bad) == 0
    finally:
        reader.close()
        store.close()


def test_a_missing_store_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot read the store"):
        open_reader(tmp_path / "missing.db")


@pytest.mark.parametrize("content", [b"not a database " * 1000, b""])
def test_a_corrupt_store_is_a_store_error(tmp_path: Path, content: bytes) -> None:
    """Garbage, or an empty file (no tables): not sqlite3.Error, which the server does not
    know."""
    path = tmp_path / "rayfn.db"
    path.write_bytes(content)
    reader = open_reader(path)  # SQLite reads nothing until asked
    try:
        with pytest.raises(StoreError, match="cannot read the store"):
            reader.finished_call("c")
        with pytest.raises(StoreError, match="cannot read the store"):
            reader.result_bytes("c")
    finally:
        reader.close()


def test_reopen_reads_on_its_own_connection_from_another_thread(tmp_path: Path) -> None:
    # "#" and "?" end the path in a URI unless escaped.
    path = tmp_path / "odd #dir?" / "rayfn.db"
    store = SqliteStore(path)
    reader = open_reader(path)
    try:
        deploy(store, "app")
        (call_id,) = spawn(store, 1)
        claim(store, 1)
        finish(store, call_id, CallState.SUCCEEDED, result=b"r")

        def read_elsewhere() -> CallRecord | None:
            other = reader.reopen()
            try:
                return other.finished_call(call_id)
            finally:
                other.close()

        record = asyncio.run(asyncio.to_thread(read_elsewhere))
        assert record is not None and record.result == b"r"
        assert reader.finished_call(call_id) == record  # closing the other left this open
    finally:
        reader.close()
        store.close()
