"""What the SQLite store keeps of schedules: one row per scheduled function of a deployed
app, with the next time it fires.

A fire is a compare-and-set on ``next_fire`` together with the insert of its calls, in
the caller's transaction: whatever moment the registry dies at, a scheduled time has
either both its call and the advanced ``next_fire`` or neither, so it fires once."""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rayfn_service.store.base import NewCall, ScheduleRecord

__all__ = ["Schedules", "scheduled_log_line"]

_COLUMNS = "app, function, version, spec, next_fire, last_fire, skipped"


def scheduled_log_line(slot: float) -> str:
    """The first line of a scheduled call's logs: the time it was scheduled for."""
    iso = datetime.datetime.fromtimestamp(slot, tz=datetime.timezone.utc).isoformat()
    return f"[rayfn] scheduled run for {iso} (slot {slot!r})\n"


class Schedules:
    """Mixed into ``SqliteStore``: it provides the two connections and ``insert_calls``."""

    _read: sqlite3.Connection
    _write: sqlite3.Connection

    if TYPE_CHECKING:
        def insert_calls(self, calls: Sequence[NewCall]) -> None: ...

    def app_schedules(self, app: str) -> list[ScheduleRecord]:
        """The app's schedules as this transaction sees them (for a deploy)."""
        rows = self._write.execute(
            f"SELECT {_COLUMNS} FROM schedules WHERE app = ?", (app,)).fetchall()
        return [ScheduleRecord(*row) for row in rows]

    def set_schedules(self, app: str, records: Sequence[ScheduleRecord]) -> None:
        """Make ``records`` the app's schedules: others of the app are removed."""
        self.drop_schedules(app)
        self._write.executemany(
            f"INSERT INTO schedules ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(r.app, r.function, r.version, r.spec, r.next_fire, r.last_fire, r.skipped)
             for r in records if r.app == app],
        )

    def drop_schedules(self, app: str) -> None:
        self._write.execute("DELETE FROM schedules WHERE app = ?", (app,))

    def list_schedules(self, app: str | None = None) -> list[ScheduleRecord]:
        where, params = ("WHERE app = ?", (app,)) if app is not None else ("", ())
        rows = self._read.execute(
            f"SELECT {_COLUMNS} FROM schedules {where} ORDER BY app, function", params
        ).fetchall()
        return [ScheduleRecord(*row) for row in rows]

    def due_schedules(self, now: float, limit: int) -> list[ScheduleRecord]:
        rows = self._read.execute(
            f"SELECT {_COLUMNS} FROM schedules WHERE next_fire <= ? ORDER BY next_fire LIMIT ?",
            (now, limit),
        ).fetchall()
        return [ScheduleRecord(*row) for row in rows]

    def fire_schedule(
        self, due: ScheduleRecord, next_fire: float, fires: Sequence[tuple[float, NewCall]],
        skipped: int,
    ) -> bool:
        """Queue ``fires`` (each scheduled time and its call) and move the schedule on to
        ``next_fire``, if it is still as ``due`` read it (same version, spec and next
        time); False, writing nothing, if a deploy, a stop or another fire changed it."""
        cur = self._write.execute(
            "UPDATE schedules SET next_fire = ?, last_fire = COALESCE(?, last_fire), "
            "skipped = skipped + ? WHERE app = ? AND function = ? AND version = ? "
            "AND spec = ? AND next_fire = ?",
            (next_fire, fires[-1][0] if fires else None, skipped, due.app, due.function,
             due.version, due.spec, due.next_fire),
        )
        if cur.rowcount != 1:
            return False
        self.insert_calls([call for _, call in fires])
        self._write.executemany(
            "UPDATE calls SET logs = ? WHERE id = ? AND logs IS NULL",
            [(scheduled_log_line(slot), call.id) for slot, call in fires],
        )
        return True
