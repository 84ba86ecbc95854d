"""What the SQLite store keeps beside each call: the values a generator call yields, and
the calls a call spawned. Both are deleted with the call's result at expiry."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

__all__ = ["CallLinks", "EXPIRED_CALLS"]

# The calls the expiry sweep takes next (its own query, with ``now`` and a limit).
EXPIRED_CALLS = "SELECT id FROM calls WHERE expired = 0 AND expires_at <= ? LIMIT ?"


class CallLinks:
    """Mixed into ``SqliteStore``: it provides the two connections."""

    _read: sqlite3.Connection
    _write: sqlite3.Connection

    def add_values(self, call_id: str, start: int, values: Sequence[bytes]) -> int:
        """Keep values ``start``, ``start + 1``, ... of a generator call. An index kept
        already keeps its first value (a retried attempt yields from 0 again); returns
        how many values the call has stored."""
        self._write.executemany(
            "INSERT OR IGNORE INTO call_values (call_id, idx, value) VALUES (?, ?, ?)",
            [(call_id, start + i, value) for i, value in enumerate(values)],
        )
        row = self._write.execute(
            "SELECT COUNT(*) FROM call_values WHERE call_id = ?", (call_id,)).fetchone()
        return int(row[0])

    def get_values(self, call_id: str, start: int, limit: int, max_bytes: int) -> list[bytes]:
        """Values ``start``, ``start + 1``, ... up to the first one not kept yet (values
        of one call may be stored out of order), at most ``limit`` and (past the first)
        ``max_bytes`` in all."""
        rows = self._read.execute(
            "SELECT idx, value FROM call_values WHERE call_id = ? AND idx >= ? "
            "ORDER BY idx LIMIT ?",
            (call_id, start, limit),
        )
        values: list[bytes] = []
        size = 0
        for idx, value in rows:
            if idx != start + len(values) or (values and size + len(value) > max_bytes):
                break
            values.append(value)
            size += len(value)
        return values

    def add_children(self, parent_id: str, child_ids: Sequence[str]) -> None:
        self._write.executemany(
            "INSERT OR IGNORE INTO call_children (parent_id, child_id) VALUES (?, ?)",
            [(parent_id, child) for child in child_ids],
        )

    def get_children(self, parent_id: str, limit: int) -> list[str]:
        rows = self._read.execute(
            "SELECT child_id FROM call_children WHERE parent_id = ? ORDER BY child_id LIMIT ?",
            (parent_id, limit),
        ).fetchall()
        return [row[0] for row in rows]

    def get_parent(self, child_id: str) -> str | None:
        row = self._read.execute(
            "SELECT parent_id FROM call_children WHERE child_id = ? LIMIT 1", (child_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def _sweep_links(self, call_ids: Sequence[tuple[str]]) -> None:
        """As the sweep marks calls expired: drop their values and children."""
        for table, column in (("call_values", "call_id"), ("call_children", "parent_id")):
            self._write.executemany(f"DELETE FROM {table} WHERE {column} = ?", call_ids)
