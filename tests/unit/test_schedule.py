"""Period and Cron (checks, next times, DST), and their rows in a real SQLite store: a fire
and the move to the next time are one transaction, and a restarted registry catches up
as docs/schedules.md says."""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from rayfn import Cron, Period
from rayfn.exception import InvalidError
from rayfn.options import FunctionOptions
from rayfn.protocol.ids import new_call_id
from rayfn.protocol.payload import dumps_args
from rayfn.protocol.records import CallQuery
from rayfn.schedule import Schedule, schedule_from_json
from rayfn_service import schedules
from rayfn_service.store.base import FunctionRecord, NewCall
from rayfn_service.store.group_commit import GroupCommit
from rayfn_service.store.sqlite import SqliteStore
from rayfn_service.store.sqlite_schedules import scheduled_log_line

T0 = 1_700_000_000.0
NY = ZoneInfo("America/New_York")


def at(tz: ZoneInfo, *fields: int) -> float:
    return datetime.datetime(*fields, tzinfo=tz).timestamp()  # type: ignore[misc]


def local(t: float, tz: ZoneInfo) -> str:
    return datetime.datetime.fromtimestamp(t, tz).isoformat()


def times(schedule: Schedule, start: float, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = schedule.next_after(start)
        out.append(start)
    return out


# ---- Period -----------------------------------------------------------------------


def test_period_adds_its_parts_and_round_trips() -> None:
    p = Period(days=1, hours=2, minutes=3, seconds=4.5)
    assert p.seconds == 86400 + 7200 + 180 + 4.5
    assert schedule_from_json(p.to_json()) == p
    assert p.next_after(T0) == T0 + p.seconds


@pytest.mark.parametrize("kwargs", [
    {}, {"seconds": 0}, {"seconds": 0.5}, {"seconds": -5, "minutes": 1},
    {"seconds": True}, {"seconds": float("nan")}, {"seconds": float("inf")},
    {"seconds": "60"}, {"days": 367}, {"days": 366, "seconds": 1},
])
def test_period_refuses(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidError, match="Period"):
        Period(**kwargs)


def test_period_bounds_are_inclusive() -> None:
    assert Period(seconds=1).seconds == 1
    assert Period(days=366).seconds == 366 * 86400


# ---- Cron -------------------------------------------------------------------------


@pytest.mark.parametrize("expression", ["61 * * * *", "* * *", "every minute", "",
                                        "* * * * * * * *", "*/0 * * * *"])
def test_bad_cron_expression_is_named(expression: str) -> None:
    with pytest.raises(InvalidError, match="cron expression") as info:
        Cron(expression)
    assert repr(expression) in str(info.value)


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "../../etc/passwd", "/etc/localtime"])
def test_unknown_timezone(zone: str) -> None:
    with pytest.raises(InvalidError, match="timezone"):
        Cron("* * * * *", zone)


def test_cron_refuses_non_strings() -> None:
    with pytest.raises(InvalidError):
        Cron(5)  # type: ignore[arg-type]
    with pytest.raises(InvalidError):
        Cron("* * * * *", timezone=3)  # type: ignore[arg-type]


def test_cron_next_after_in_utc_and_round_trip() -> None:
    cron = Cron("*/5 * * * *")
    assert schedule_from_json(cron.to_json()) == cron
    start = at(ZoneInfo("UTC"), 2024, 1, 1, 12, 3, 7)
    assert times(cron, start, 3) == [at(ZoneInfo("UTC"), 2024, 1, 1, 12, m) for m in (5, 10, 15)]
    # strictly after: a time on the schedule gives the next one
    assert cron.next_after(at(ZoneInfo("UTC"), 2024, 1, 1, 12, 5)) == \
        at(ZoneInfo("UTC"), 2024, 1, 1, 12, 10)


def test_cron_with_seconds() -> None:
    every = Cron("* * * * * */2")  # croniter: seconds are the sixth field
    assert times(every, 1000.5, 3) == [1002.0, 1004.0, 1006.0]


def test_cron_reads_times_in_its_timezone() -> None:
    nine = Cron("0 9 * * *", timezone="America/New_York")
    (t,) = times(nine, at(NY, 2024, 7, 1, 10), 1)
    assert local(t, NY) == "2024-07-02T09:00:00-04:00"
    (t,) = times(nine, at(NY, 2024, 12, 1, 10), 1)
    assert local(t, NY) == "2024-12-02T09:00:00-05:00"


def test_fixed_time_runs_once_when_clocks_go_back() -> None:
    # 2024-11-03: 01:00-02:00 happens twice in New York
    daily = Cron("30 1 * * *", timezone="America/New_York")
    got = [local(t, NY) for t in times(daily, at(NY, 2024, 11, 2, 12), 3)]
    assert got == ["2024-11-03T01:30:00-04:00",
                   "2024-11-04T01:30:00-05:00", "2024-11-05T01:30:00-05:00"]


def test_every_half_hour_keeps_real_time_when_clocks_go_back() -> None:
    half = Cron("*/30 * * * *", timezone="America/New_York")
    got = times(half, at(NY, 2024, 11, 3, 0, 45), 4)
    assert [b - a for a, b in zip(got, got[1:], strict=False)] == [1800.0] * 3
    assert [local(t, NY) for t in got] == [
        "2024-11-03T01:00:00-04:00", "2024-11-03T01:30:00-04:00",
        "2024-11-03T01:00:00-05:00", "2024-11-03T01:30:00-05:00"]


def test_time_skipped_when_clocks_go_forward_runs_after_the_jump() -> None:
    # 2024-03-10: 02:00-03:00 does not exist in New York
    daily = Cron("30 2 * * *", timezone="America/New_York")
    got = [local(t, NY) for t in times(daily, at(NY, 2024, 3, 9, 12), 2)]
    assert got == ["2024-03-10T03:00:00-04:00", "2024-03-11T02:30:00-04:00"]


def test_stored_schedules_are_checked_again() -> None:
    for text in ["nope", "[]", '{"kind": "period", "seconds": 0}',
                 '{"kind": "cron", "cron": "bad", "timezone": "UTC"}',
                 '{"kind": "period", "seconds": 5, "extra": 1}', '{"kind": "weekly"}']:
        with pytest.raises(InvalidError):
            schedule_from_json(text)


def test_options_keep_the_canonical_form() -> None:
    options = FunctionOptions.build(schedule=Period(minutes=1).to_json())
    assert options.schedule == '{"kind":"period","seconds":60.0}'
    with pytest.raises(InvalidError):
        FunctionOptions.build(schedule='{"kind":"period","seconds":-1}')


# ---- plans: which missed times fire -----------------------------------------------


def test_plan_of_a_period() -> None:
    p = Period(seconds=10)
    assert schedules.plan(p, T0, T0 - 1, 3).fire == []
    one = schedules.plan(p, T0, T0 + 4, 3)
    assert (one.fire, one.skipped, one.next_fire) == ([T0], 0, T0 + 10)
    # down for 95 s: times T0 .. T0+90 are due; the latest 3 fire, 7 are skipped
    late = schedules.plan(p, T0, T0 + 95, 3)
    assert late.fire == [T0 + 70, T0 + 80, T0 + 90]
    assert (late.skipped, late.next_fire) == (7, T0 + 100)


def test_plan_of_a_cron_matches_its_times() -> None:
    cron = Cron("* * * * * */10")  # every 10 s
    start = cron.next_after(T0)
    late = schedules.plan(cron, start, start + 95, 3)
    assert late.fire == [start + 70, start + 80, start + 90]
    assert (late.skipped, late.next_fire) == (7, start + 100)


# ---- the store: rows, fires, restarts ---------------------------------------------


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "rayfn.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(db_path)
    try:
        yield store
    finally:
        store.close()


def records(app: str, version: int, specs: dict[str, Schedule | None]) -> list[FunctionRecord]:
    return [FunctionRecord(app, version, name, json.dumps(FunctionOptions.build(
        schedule=spec.to_json() if spec else None).to_dict()), b"code", "{}")
        for name, spec in specs.items()]


def deploy(store: SqliteStore, app: str, specs: dict[str, Schedule | None], now: float) -> int:
    with store.transaction():
        version = store.next_version(app)
        rows = records(app, version, specs)
        schedules.check_scheduled(rows)
        store.deploy(app, rows, ephemeral=False, now=now)
        schedules.sync_on_deploy(store, app, rows, now)
        return version


def test_deploys_keep_change_and_remove_rows(store: SqliteStore) -> None:
    two, five = Period(seconds=2), Period(seconds=5)
    deploy(store, "a", {"tick": two, "plain": None}, T0)
    (row,) = store.list_schedules()
    assert (row.function, row.version, row.next_fire, row.skipped) == ("tick", 1, T0 + 2, 0)
    deploy(store, "a", {"tick": two, "plain": None}, T0 + 1)  # same spec: same time
    (row,) = store.list_schedules("a")
    assert (row.version, row.next_fire) == (2, T0 + 2)
    deploy(store, "a", {"tick": five}, T0 + 1.5)  # changed: anew from this deploy
    (row,) = store.list_schedules("a")
    assert (row.version, row.next_fire) == (3, T0 + 6.5)
    deploy(store, "a", {"tick": None}, T0 + 2)
    assert store.list_schedules() == []
    deploy(store, "a", {"tick": five}, T0 + 3)
    with store.transaction():
        store.stop_app("a", T0 + 4)
        store.drop_schedules("a")
    assert store.list_schedules() == []


def test_schedules_of_what_cannot_be_spawned_are_refused() -> None:
    options = FunctionOptions.build(schedule=Period(seconds=5).to_json(), generator=True)
    record = FunctionRecord("a", 1, "gen", json.dumps(options.to_dict()), b"code", "{}")
    with pytest.raises(InvalidError, match="generator"):
        schedules.check_scheduled([record])


def scheduled_calls(store: SqliteStore, app: str = "a") -> list[tuple[str, float]]:
    """Each scheduled call's ID and the time it was scheduled for (from its logs)."""
    found = []
    for call in store.list_calls(CallQuery(app=app, limit=1000)):
        found_logs = store.get_logs(call.id)
        assert found_logs is not None
        first = found_logs[1].splitlines()[0]
        found.append((call.id, float(first.rsplit("slot ", 1)[1].rstrip(")"))))
    return sorted(found, key=lambda c: c[1])


def fire(store: SqliteStore, now: float, catch_up: int = 3) -> list[tuple[str, str, int]]:
    fired: list[tuple[str, str, int]] = []

    async def main() -> None:
        commit = GroupCommit(store)
        try:
            scheduler = schedules.Scheduler(store, commit, poll_seconds=1, catch_up=catch_up,
                                            fired=lambda *a: fired.append(a))
            await scheduler.fire_due(now)
        finally:
            commit.close()

    asyncio.run(main())
    return fired


def test_a_fire_is_a_queued_call_and_fires_once(store: SqliteStore) -> None:
    deploy(store, "a", {"tick": Period(seconds=2)}, T0)
    assert fire(store, T0 + 1.9) == []
    assert fire(store, T0 + 2.1) == [("a", "tick", 1)]
    assert fire(store, T0 + 2.2) == []  # the same time is not fired again
    ((call_id, slot),) = scheduled_calls(store)
    assert slot == T0 + 2
    call = store.get_call(call_id)
    assert call is not None and call.state.value == "queued" and call.version == 1
    (claim,) = store.claim_queued("a", "tick", 10, T0 + 3)
    assert claim.args == dumps_args((), {})  # what spawn() with no arguments sends
    (row,) = store.list_schedules()
    assert (row.next_fire, row.last_fire, row.skipped) == (T0 + 4, T0 + 2, 0)


def test_fire_and_advance_are_one_transaction(store: SqliteStore, db_path: Path) -> None:
    deploy(store, "a", {"tick": Period(seconds=2)}, T0)
    (due,) = store.due_schedules(T0 + 2, 10)
    call = NewCall(new_call_id(), "a", "tick", 1, dumps_args((), {}), T0 + 2)
    # the registry dies after both writes, before the commit: neither is kept
    with pytest.raises(RuntimeError), store.transaction():
        assert store.fire_schedule(due, T0 + 4, [(T0 + 2, call)], 0)
        raise RuntimeError("killed")
    reopened = SqliteStore(db_path)
    try:
        assert reopened.get_call(call.id) is None
        (row,) = reopened.list_schedules()
        assert row.next_fire == T0 + 2 and row.last_fire is None
    finally:
        reopened.close()
    # committed: both are there for any later reader
    with store.transaction():
        assert store.fire_schedule(due, T0 + 4, [(T0 + 2, call)], 0)
    reopened = SqliteStore(db_path)
    try:
        assert reopened.get_call(call.id) is not None
        assert reopened.list_schedules()[0].next_fire == T0 + 4
    finally:
        reopened.close()
    # a second fire from the same (now stale) row writes nothing
    again = NewCall(new_call_id(), "a", "tick", 1, dumps_args((), {}), T0 + 2)
    with store.transaction():
        assert not store.fire_schedule(due, T0 + 4, [(T0 + 2, again)], 0)
    assert store.get_call(again.id) is None


def test_a_fire_read_before_a_redeploy_or_a_stop_writes_nothing(store: SqliteStore) -> None:
    deploy(store, "a", {"tick": Period(seconds=2)}, T0)
    (due,) = store.due_schedules(T0 + 2, 10)
    deploy(store, "a", {"tick": Period(seconds=2)}, T0 + 1)  # a new version meanwhile
    call = NewCall(new_call_id(), "a", "tick", 1, b"", T0 + 2)
    with store.transaction():
        assert not store.fire_schedule(due, T0 + 4, [(T0 + 2, call)], 0)
    assert fire(store, T0 + 2.5) == [("a", "tick", 1)]
    assert store.list_calls(CallQuery(app="a", limit=10))[0].version == 2
    with store.transaction():
        store.drop_schedules("a")
    assert fire(store, T0 + 10) == []


def test_restart_after_downtime_catches_up_the_latest_times(db_path: Path) -> None:
    first = SqliteStore(db_path)
    deploy(first, "a", {"tick": Period(seconds=2)}, T0)
    fire(first, T0 + 2.1)
    first.close()  # the registry is down from T0 + 2.1 to T0 + 15.5
    second = SqliteStore(db_path)
    try:
        assert fire(second, T0 + 15.5) == [("a", "tick", 3)]
        slots = [slot for _, slot in scheduled_calls(second)]
        # T0+4 .. T0+14 were due: the latest 3 fired, the 3 before them skipped
        assert slots == [T0 + 2, T0 + 10, T0 + 12, T0 + 14]
        (row,) = second.list_schedules()
        assert (row.next_fire, row.last_fire, row.skipped) == (T0 + 16, T0 + 14, 3)
        assert fire(second, T0 + 15.9) == []
    finally:
        second.close()


def test_log_line_names_the_slot() -> None:
    line = scheduled_log_line(T0 + 0.25)
    assert line.endswith(f"(slot {T0 + 0.25!r})\n") and "2023-11-14T22:13:20.25" in line


def test_cli_shows_the_next_run() -> None:
    from rayfn.cli.schedules import next_runs
    from rayfn.schemas import ScheduleInfo

    assert next_runs([]) == ""
    shown = next_runs([ScheduleInfo(function="tick", schedule="Period(seconds=2)",
                                    next_fire=T0, skipped=2)])
    assert shown.startswith("tick at 2023-11-1") and shown.endswith("(2 skipped)")
