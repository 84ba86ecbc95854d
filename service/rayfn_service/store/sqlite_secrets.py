"""Secrets in the SQLite store: a name and its environment variables as a JSON object.

The values are kept as given (the store file is the owner's alone, mode 0600); only
``secret_values`` reads them back, for a call's process.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping

from rayfn.protocol.secrets import SecretInfo

__all__ = ["Secrets"]


class Secrets:
    """Mixed into ``SqliteStore``: it provides the two connections."""

    _read: sqlite3.Connection
    _write: sqlite3.Connection

    def secret_exists(self, name: str) -> bool:
        """As seen by the writer: for checks inside a write."""
        return self._write.execute(
            "SELECT 1 FROM secrets WHERE name = ?", (name,)).fetchone() is not None

    def put_secret(self, name: str, values: Mapping[str, str], *, overwrite: bool,
                   now: float) -> bool:
        """Store the secret; False (and nothing written) if it exists and not ``overwrite``."""
        value_json = json.dumps(dict(values))
        if overwrite:
            self._write.execute(
                "INSERT INTO secrets (name, value_json, created_at, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "value_json = excluded.value_json, updated_at = excluded.updated_at",
                (name, value_json, now, now))
            return True
        cur = self._write.execute(
            "INSERT OR IGNORE INTO secrets (name, value_json, created_at, updated_at) "
            "VALUES (?, ?, ?, ?)", (name, value_json, now, now))
        return cur.rowcount > 0

    def delete_secret(self, name: str) -> bool:
        cur = self._write.execute("DELETE FROM secrets WHERE name = ?", (name,))
        return cur.rowcount > 0

    def list_secrets(self) -> list[SecretInfo]:
        rows = self._read.execute(
            "SELECT name, created_at, updated_at, value_json FROM secrets ORDER BY name")
        return [SecretInfo(name, created, updated, tuple(json.loads(value_json)))
                for name, created, updated, value_json in rows]

    def missing_secrets(self, names: list[str]) -> list[str]:
        """Those of ``names`` not stored (as seen by the writer), in order."""
        return [n for n in names if not self.secret_exists(n)]

    def secret_values(self, name: str) -> dict[str, str] | None:
        row = self._read.execute(
            "SELECT value_json FROM secrets WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        values: dict[str, str] = json.loads(row[0])
        return values
