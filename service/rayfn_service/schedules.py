"""Schedules fired by the registry from the store (``rayfn.Period``, ``rayfn.Cron``).

A deploy gives each scheduled function a row in the store (a redeploy with the same
schedule keeps its next time; a changed one starts anew from the deploy); stopping the
app, or a redeploy without the schedule, removes it. The registry's loop fires the rows
that are due: each fire is the call a ``spawn()`` with no arguments makes, so status,
logs and retries are those of any call, and it is committed in one transaction with the
move of the row to its next time, so a scheduled time fires once whenever the registry
dies.

Times missed while the registry was down: the latest ``catch_up`` of them fire, each
once, when it is back; older ones are skipped, logged, and counted in the row.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import time
from collections.abc import Callable, Sequence

from rayfn.exception import InvalidError
from rayfn.options import FunctionOptions
from rayfn.protocol.ids import new_call_id
from rayfn.protocol.payload import dumps_args
from rayfn.schedule import Period, Schedule, schedule_from_json
from rayfn.schemas import ScheduleInfo
from rayfn_service.admission import check_spawnable
from rayfn_service.store import FunctionRecord, NewCall, ScheduleRecord, Store
from rayfn_service.store.group_commit import GroupCommit

__all__ = ["Plan", "Scheduler", "check_scheduled", "info_of", "plan", "sync_on_deploy"]

logger = logging.getLogger(__name__)

# Rows looked at per pass of the loop; more that are due wait for the next pass.
DUE_PER_PASS = 1000
# Missed times of a Cron counted one by one at most; past that the rest are skipped too.
MAX_COUNTED = 100_000


def _spec_of(record: FunctionRecord) -> str | None:
    schedule = json.loads(record.options).get("schedule")
    return schedule if isinstance(schedule, str) else None


def check_scheduled(records: Sequence[FunctionRecord]) -> None:
    """InvalidError for a schedule on what a no-argument spawn cannot call."""
    for record in records:
        spec = _spec_of(record)
        if spec is None:
            continue
        schedule_from_json(spec)
        options = FunctionOptions.from_dict(json.loads(record.options))
        where = f"{record.app}.{record.name}"
        if options.cls is not None:
            raise InvalidError(f"{where}: schedule= is for functions, not classes")
        check_spawnable(options, where, record.name, generator=False)


def sync_on_deploy(store: Store, app: str, records: Sequence[FunctionRecord],
                   now: float) -> None:
    """In the deploy's transaction: the app's schedule rows become its new version's."""
    kept = {r.function: r for r in store.app_schedules(app)}
    rows: list[ScheduleRecord] = []
    for record in records:
        spec = _spec_of(record)
        if spec is None:
            continue
        old = kept.get(record.name)
        if old is not None and old.spec == spec:
            rows.append(ScheduleRecord(app, record.name, record.version, spec, old.next_fire,
                                       old.last_fire, old.skipped))
        else:
            first = schedule_from_json(spec).next_after(now)
            rows.append(ScheduleRecord(app, record.name, record.version, spec, first, None, 0))
    store.set_schedules(app, rows)


class Plan:
    """What a due row fires now: the times to fire, how many are skipped, the next."""

    def __init__(self, fire: list[float], skipped: int, next_fire: float) -> None:
        self.fire = fire
        self.skipped = skipped
        self.next_fire = next_fire


def plan(schedule: Schedule, next_fire: float, now: float, catch_up: int) -> Plan:
    """The times from ``next_fire`` up to ``now``: the latest ``catch_up`` fire, the
    others are skipped; ``next_fire`` of the plan is the first time after ``now``."""
    if next_fire > now:
        return Plan([], 0, next_fire)
    if isinstance(schedule, Period):
        due = math.floor((now - next_fire) / schedule.seconds) + 1
        fired = min(due, catch_up)
        times = [next_fire + i * schedule.seconds for i in range(due - fired, due)]
        return Plan(times, due - fired, next_fire + due * schedule.seconds)
    latest: collections.deque[float] = collections.deque(maxlen=catch_up)
    count = 0
    t = next_fire
    while t <= now:
        count += 1
        if count > MAX_COUNTED:  # down for very long: skip the rest up to now
            latest.clear()
            return Plan([], count - 1, schedule.next_after(now))
        latest.append(t)
        t = schedule.next_after(t)
    return Plan(list(latest), count - len(latest), t)


def info_of(record: ScheduleRecord) -> ScheduleInfo:
    return ScheduleInfo(function=record.function,
                        schedule=schedule_from_json(record.spec).describe(),
                        next_fire=record.next_fire, last_fire=record.last_fire,
                        skipped=record.skipped)


class Scheduler:
    """The registry's loop that fires due schedules."""

    def __init__(self, store: Store, commit: GroupCommit, *, poll_seconds: float,
                 catch_up: int, fired: Callable[[str, str, int], None]) -> None:
        self._store = store
        self._commit = commit
        self._poll_seconds = poll_seconds
        self._catch_up = catch_up
        self._fired = fired  # (app, function, calls): queue them for dispatch

    async def run_forever(self) -> None:
        while True:
            try:
                await self.fire_due(time.time())
            except Exception:
                logger.exception("firing schedules failed; will try again")
            await asyncio.sleep(self._poll_seconds)

    async def fire_due(self, now: float) -> int:
        """Fire every schedule due at ``now``; how many calls were queued."""
        queued = 0
        for due in self._store.due_schedules(now, DUE_PER_PASS):
            queued += await self._fire(due, now)
        return queued

    async def _fire(self, due: ScheduleRecord, now: float) -> int:
        where = f"{due.app}.{due.function}"
        try:
            schedule = schedule_from_json(due.spec)
        except InvalidError as exc:  # written by hand or by another version: say so once
            logger.error("schedule of %s cannot be read (%s); it is removed", where, exc)
            await self._commit.run(lambda: self._drop_one(due))
            return 0
        todo = plan(schedule, due.next_fire, now, self._catch_up)
        args = dumps_args((), {})
        fires = [(slot, NewCall(new_call_id(), due.app, due.function, due.version, args, now))
                 for slot in todo.fire]
        done = await self._commit.run(
            lambda: self._store.fire_schedule(due, todo.next_fire, fires, todo.skipped))
        if not done:
            return 0  # redeployed or stopped meanwhile: the next pass sees the new row
        if todo.skipped:
            logger.warning("schedule of %s: %d missed times skipped (the registry was "
                           "down), the latest %d fired", where, todo.skipped, len(fires))
        if fires:
            self._fired(due.app, due.function, len(fires))
        return len(fires)

    def _drop_one(self, due: ScheduleRecord) -> None:
        rest = [r for r in self._store.app_schedules(due.app) if r.function != due.function]
        self._store.set_schedules(due.app, rest)
