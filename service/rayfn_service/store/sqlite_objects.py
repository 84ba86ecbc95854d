"""Dicts and Queues in the SQLite store: named objects, a Dict's entries, a Queue's
partitions and items. Keys and values are bytes the SDK pickled; nothing here unpickles.

The registry is the only writer, and each write runs in one transaction, so taking items
from a queue (``queue_take``, a DELETE ... RETURNING of the oldest) hands each item to
exactly one consumer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from rayfn.protocol.objects import ObjectInfo

__all__ = ["KvObjects"]

_TABLES_OF_KIND = {"dict": ("dict_entries", "dict"),
                   "queue": ("queue_items", "queue")}


class KvObjects:
    """Mixed into ``SqliteStore``: it provides the two connections."""

    _read: sqlite3.Connection
    _write: sqlite3.Connection

    # ---- objects -----------------------------------------------------------------

    def create_object(self, kind: str, name: str, *, ephemeral: bool, now: float
                      ) -> ObjectInfo:
        """The object, made if missing (a made one keeps how it was made)."""
        self._write.execute(
            "INSERT OR IGNORE INTO kv_objects (kind, name, created_at, updated_at, ephemeral) "
            "VALUES (?, ?, ?, ?, ?)", (kind, name, now, now, int(ephemeral)))
        found = self._object(self._write, kind, name)
        assert found is not None
        return found

    def get_object(self, kind: str, name: str) -> ObjectInfo | None:
        return self._object(self._read, kind, name)

    def object_exists(self, kind: str, name: str) -> bool:
        """As seen by the writer: for checks inside a write."""
        return self._object(self._write, kind, name) is not None

    @staticmethod
    def _object(conn: sqlite3.Connection, kind: str, name: str) -> ObjectInfo | None:
        row = conn.execute(
            "SELECT created_at, ephemeral FROM kv_objects WHERE kind = ? AND name = ?",
            (kind, name)).fetchone()
        return ObjectInfo(kind, name, row[0], bool(row[1])) if row else None

    def delete_object(self, kind: str, name: str) -> bool:
        """Delete the object and everything in it; False if there was none."""
        table, column = _TABLES_OF_KIND[kind]
        self._write.execute(f"DELETE FROM {table} WHERE {column} = ?", (name,))
        if kind == "queue":
            self._write.execute("DELETE FROM queue_partitions WHERE queue = ?", (name,))
        cur = self._write.execute("DELETE FROM kv_objects WHERE kind = ? AND name = ?",
                                  (kind, name))
        return cur.rowcount > 0

    def _touch_object(self, kind: str, name: str, now: float) -> None:
        self._write.execute("UPDATE kv_objects SET updated_at = ? WHERE kind = ? AND name = ?",
                            (now, kind, name))

    # ---- dicts -------------------------------------------------------------------

    def dict_get(self, name: str, key: bytes) -> tuple[bytes, float] | None:
        """The entry's value and when it was last used."""
        row = self._read.execute(
            "SELECT value, updated_at FROM dict_entries WHERE dict = ? AND key = ?",
            (name, key)).fetchone()
        return (row[0], row[1]) if row else None

    def dict_contains(self, name: str, key: bytes) -> bool:
        row = self._read.execute("SELECT 1 FROM dict_entries WHERE dict = ? AND key = ?",
                                 (name, key)).fetchone()
        return row is not None

    def dict_touch(self, name: str, key: bytes, now: float) -> None:
        """A read counts as use: the entry's idle time starts again."""
        self._write.execute("UPDATE dict_entries SET updated_at = ? WHERE dict = ? AND key = ?",
                            (now, name, key))

    def dict_put(self, name: str, items: Sequence[tuple[bytes, bytes]], *,
                 skip_if_exists: bool, now: float) -> int:
        """Set the entries; with ``skip_if_exists`` keys already present keep their value.
        Returns how many entries were written."""
        verb = "INSERT OR IGNORE" if skip_if_exists else "INSERT OR REPLACE"
        before = self._write.total_changes
        self._write.executemany(
            f"{verb} INTO dict_entries (dict, key, value, updated_at) VALUES (?, ?, ?, ?)",
            [(name, key, value, now) for key, value in items])
        written = self._write.total_changes - before
        self._touch_object("dict", name, now)
        return written

    def dict_pop(self, name: str, key: bytes) -> bytes | None:
        row = self._write.execute(
            "DELETE FROM dict_entries WHERE dict = ? AND key = ? RETURNING value",
            (name, key)).fetchone()
        return bytes(row[0]) if row else None

    def dict_len(self, name: str) -> int:
        (count,) = self._read.execute("SELECT COUNT(*) FROM dict_entries WHERE dict = ?",
                                      (name,)).fetchone()
        return int(count)

    def dict_page(self, name: str, after: bytes | None, limit: int, max_bytes: int
                  ) -> list[tuple[bytes, bytes]]:
        """Entries in key order after key ``after`` (None: from the first), at most
        ``limit`` and (past the first) ``max_bytes`` of keys and values."""
        rows = self._read.execute(
            "SELECT key, value FROM dict_entries WHERE dict = ? AND key > ? "
            "ORDER BY key LIMIT ?", (name, b"" if after is None else after, limit))
        page: list[tuple[bytes, bytes]] = []
        size = 0
        for key, value in rows:
            size += len(key) + len(value)
            if page and size > max_bytes:
                break
            page.append((bytes(key), bytes(value)))
        return page

    def dict_clear(self, name: str) -> int:
        return self._write.execute("DELETE FROM dict_entries WHERE dict = ?", (name,)).rowcount

    # ---- queues ------------------------------------------------------------------

    def queue_put(self, name: str, partition: str, values: Sequence[bytes], *, now: float,
                  ttl: float, max_items: int, max_partitions: int) -> bool:
        """Append the values to the partition and make it expire ``ttl`` after now;
        False (nothing put) when that would pass ``max_items`` in the partition or make
        more than ``max_partitions``."""
        row = self._write.execute(
            "SELECT next_seq, expires_at FROM queue_partitions WHERE queue = ? AND partition = ?",
            (name, partition)).fetchone()
        if row is None or row[1] <= now:  # new, or expired and not swept yet
            if row is not None:
                self._drop_partition(name, partition)
            (count,) = self._write.execute(
                "SELECT COUNT(*) FROM queue_partitions WHERE queue = ?", (name,)).fetchone()
            if count >= max_partitions or len(values) > max_items:
                return False
            next_seq = 0
        else:
            next_seq = int(row[0])
            if self._partition_len(self._write, name, partition) + len(values) > max_items:
                return False
        self._write.executemany(
            "INSERT INTO queue_items (queue, partition, seq, value, put_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [(name, partition, next_seq + i, value, now) for i, value in enumerate(values)])
        self._write.execute(
            "INSERT INTO queue_partitions (queue, partition, next_seq, expires_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (queue, partition) DO UPDATE SET "
            "next_seq = excluded.next_seq, expires_at = excluded.expires_at",
            (name, partition, next_seq + len(values), now + ttl))
        self._touch_object("queue", name, now)
        return True

    def queue_take(self, name: str, partition: str, limit: int, now: float,
                   max_bytes: int) -> list[bytes]:
        """Remove and return the partition's ``limit`` oldest items, oldest first, and
        (past the first) at most ``max_bytes`` of them."""
        if not self._partition_live(self._write, name, partition, now):
            return []
        sizes = self._write.execute(
            "SELECT seq, length(value) FROM queue_items WHERE queue = ? AND partition = ? "
            "ORDER BY seq LIMIT ?", (name, partition, limit)).fetchall()
        if not sizes:
            return []
        last, total = sizes[0][0], 0
        for seq, size in sizes:
            total += size
            if seq != sizes[0][0] and total > max_bytes:
                break
            last = seq
        # The oldest items are the lowest seqs: none lies between the first and ``last``.
        rows = self._write.execute(
            "DELETE FROM queue_items WHERE queue = ? AND partition = ? AND seq BETWEEN ? AND ? "
            "RETURNING seq, value", (name, partition, sizes[0][0], last)).fetchall()
        rows.sort()  # RETURNING promises no order
        return [bytes(value) for _, value in rows]

    def queue_len(self, name: str, partition: str | None, now: float) -> int:
        """Items in the partition; with None, in every live partition."""
        if partition is not None:
            if not self._partition_live(self._read, name, partition, now):
                return 0
            return self._partition_len(self._read, name, partition)
        (count,) = self._read.execute(
            "SELECT COUNT(*) FROM queue_items i JOIN queue_partitions p "
            "ON p.queue = i.queue AND p.partition = i.partition "
            "WHERE i.queue = ? AND p.expires_at > ?", (name, now)).fetchone()
        return int(count)

    def queue_page(self, name: str, partition: str, after: int, limit: int, max_bytes: int,
                   now: float) -> list[tuple[int, bytes]]:
        """Items (seq, value) of the partition with seq > ``after``, left in place."""
        if not self._partition_live(self._read, name, partition, now):
            return []
        rows = self._read.execute(
            "SELECT seq, value FROM queue_items WHERE queue = ? AND partition = ? AND seq > ? "
            "ORDER BY seq LIMIT ?", (name, partition, after, limit))
        page: list[tuple[int, bytes]] = []
        size = 0
        for seq, value in rows:
            size += len(value)
            if page and size > max_bytes:
                break
            page.append((int(seq), bytes(value)))
        return page

    def queue_clear(self, name: str, partition: str | None) -> int:
        """Empty the partition (None: every partition)."""
        if partition is not None:
            return self._drop_partition(name, partition)
        self._write.execute("DELETE FROM queue_partitions WHERE queue = ?", (name,))
        return self._write.execute("DELETE FROM queue_items WHERE queue = ?", (name,)).rowcount

    def _drop_partition(self, name: str, partition: str) -> int:
        self._write.execute("DELETE FROM queue_partitions WHERE queue = ? AND partition = ?",
                            (name, partition))
        return self._write.execute(
            "DELETE FROM queue_items WHERE queue = ? AND partition = ?",
            (name, partition)).rowcount

    @staticmethod
    def _partition_len(conn: sqlite3.Connection, name: str, partition: str) -> int:
        (count,) = conn.execute(
            "SELECT COUNT(*) FROM queue_items WHERE queue = ? AND partition = ?",
            (name, partition)).fetchone()
        return int(count)

    @staticmethod
    def _partition_live(conn: sqlite3.Connection, name: str, partition: str, now: float
                        ) -> bool:
        row = conn.execute(
            "SELECT 1 FROM queue_partitions WHERE queue = ? AND partition = ? "
            "AND expires_at > ?", (name, partition, now)).fetchone()
        return row is not None

    # ---- expiry ------------------------------------------------------------------

    def sweep_objects(self, now: float, *, dict_idle: float, ephemeral_idle: float,
                      limit: int = 10_000) -> int:
        """Delete Dict entries unused for ``dict_idle`` seconds, Queue partitions past
        their TTL (with their items), and ephemeral objects nothing wrote to for
        ``ephemeral_idle`` seconds (their block never ended: the process died). Returns
        how many rows went, at most ``limit`` of each kind."""
        swept = self._write.execute(
            "DELETE FROM dict_entries WHERE (dict, key) IN (SELECT dict, key FROM "
            "dict_entries WHERE updated_at <= ? LIMIT ?)",
            (now - dict_idle, limit)).rowcount
        expired = self._write.execute(
            "SELECT queue, partition FROM queue_partitions WHERE expires_at <= ? LIMIT ?",
            (now, limit)).fetchall()
        for name, partition in expired:
            swept += 1 + self._drop_partition(name, partition)
        idle = self._write.execute(
            "SELECT kind, name FROM kv_objects WHERE ephemeral = 1 AND updated_at <= ? "
            "LIMIT ?", (now - ephemeral_idle, limit)).fetchall()
        for kind, name in idle:
            self.delete_object(kind, name)
            swept += 1
        return swept
