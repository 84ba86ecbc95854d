"""Reading calls for statuses and polls: a status never carries the result's bytes."""

from __future__ import annotations

from pathlib import Path

from rayfn._payload import ErrorInfo
from rayfn.states import CallState
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
