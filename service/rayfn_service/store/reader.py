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
from typing import TYPE_CHECKING

from rayfn.exception import StoreError
from rayfn.states import CallState
from rayfn_service.store.base import CallRecord, Reader
from rayfn_service.store.sqlite import _CALL_COLUMNS, _STATUS_COLUMNS, _call_record

_TERMINAL_STATES = tuple(s.value for s in CallState if s.is_terminal())
_MARKS = ", ".join("?" * len(_TERMINAL_STATES))


class StoreReader:
    """A Reader of one SQLite file, opened read-only; SQLite's errors raise StoreError."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        # A URI built by pathlib: a path holding "?" or "#" still names the file.
        uri = f"{self.path.absolute().as_uri()}?mode=ro"
        try:
            self._conn = sqlite3.connect(
                uri, uri=True, isolation_level=None, check_same_thread=False, timeout=5
            )
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc

    def finished_call(self, call_id: str, status_only: bool = False) -> CallRecord | None:
        """The call if it has finished; None if it has not or is unknown here.
        ``status_only`` leaves out the result and the pickled error."""
        columns = _STATUS_COLUMNS if status_only else _CALL_COLUMNS
        try:
            row = self._conn.execute(
                f"SELECT {columns} FROM calls WHERE id = ? AND state IN ({_MARKS})",
                (call_id, *_TERMINAL_STATES),
            ).fetchone()
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc
        return _call_record(*row) if row else None

    def result_bytes(self, call_id: str) -> int:
        """Size of a call's pickled result, a measure of its JSON form too (SQLite reads
        a blob's length from its header, not its bytes)."""
        try:
            row = self._conn.execute(
                "SELECT COALESCE(length(result), 0) FROM calls WHERE id = ?", (call_id,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc
        if row is None:
            return 0
        (size,) = row
        return int(size)

    def reopen(self) -> StoreReader:
        """A reader with its own connection, for another thread."""
        return StoreReader(self.path)

    def close(self) -> None:
        self._conn.close()

    def _failed(self, exc: sqlite3.Error) -> StoreError:
        return StoreError(f"cannot read the store at {self.path}: {exc}")


if TYPE_CHECKING:
    # StoreReader implements every method of Reader: a drift between them is a type error.
    _conforms: type[Reader] = StoreReader
