"""Read-only access to the store for other processes on the registry's node.

The REST server answers polls of finished calls from here instead of asking the
registry: a finished call's row never changes again (only its expiry, which is computed
from ``expires_at`` on reading), so reading it straight from SQLite is as correct as
asking the registry and costs no actor round trip. Calls that have not finished still go
to the registry, which alone knows when they change.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from rayfn.states import CallState
from rayfn_service.store.base import CallRecord
from rayfn_service.store.sqlite import (
    _CALL_COLUMNS,
    _PAYLOAD_COLUMNS,
    _STATUS_COLUMNS,
    _call_record,
)

_TERMINAL_STATES = tuple(s.value for s in CallState if s.is_terminal())
_MARKS = ", ".join("?" * len(_TERMINAL_STATES))


class StoreReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False,
            timeout=5,
        )

    def finished_call(self, call_id: str, status_only: bool = False) -> CallRecord | None:
        """The call if it has finished; None if it has not or is unknown here.
        ``status_only`` leaves out the result and the pickled error."""
        payload = _STATUS_COLUMNS if status_only else _PAYLOAD_COLUMNS
        row = self._conn.execute(
            f"SELECT {_CALL_COLUMNS}{payload} FROM calls WHERE id = ? AND state IN ({_MARKS})",
            (call_id, *_TERMINAL_STATES),
        ).fetchone()
        return _call_record(row, True) if row else None

    def result_bytes(self, call_id: str) -> int:
        """Size of a call's pickled result, a measure of its JSON form too (SQLite reads
        a blob's length from its header, not its bytes)."""
        row = self._conn.execute(
            "SELECT COALESCE(length(result), 0) FROM calls WHERE id = ?", (call_id,)).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._conn.close()
