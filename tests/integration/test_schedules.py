"""Schedules on a real Ray: a Period keeps firing once per time across a registry killed
by Ray, a redeploy without the schedule stops it, and ``with app.run():`` fires only
while the block lasts (a Period, and a Cron with seconds)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import ray

import rayfn
from rayfn._client import get_client
from rayfn.protocol.operations import RegistryApi
from rayfn.protocol.records import CallQuery
from rayfn.schemas import CallStatus, ScheduleInfo
from rayfn_service.names import REGISTRY_ACTOR

from .waiting import wait_until

pytestmark = pytest.mark.timeout(600)


def calls_of(app: str, function: str) -> list[CallStatus]:
    return list(get_client().call(RegistryApi.list_calls,
                                  CallQuery(app=app, function=function, limit=1000)))


def slot_of(call_id: str) -> float:
    """The time a scheduled call was fired for: the first line of its logs."""
    first = get_client().call(RegistryApi.logs, call_id).logs.splitlines()[0]
    assert first.startswith("[rayfn] scheduled run for "), first
    return float(first.rsplit("slot ", 1)[1].rstrip(")"))


def schedule_of(app: str, function: str) -> ScheduleInfo | None:
    info = get_client().call(RegistryApi.function_info, app, function)
    return info.schedule


def _deploy_without_schedule(name: str) -> None:
    plain = rayfn.App(name)

    @plain.function()
    def tick() -> float:
        return 0.0

    plain.deploy()


def test_period_fires_once_per_time_across_a_registry_kill(
    isolated_registry: Callable[..., Any], unique_app: str
) -> None:
    settings = isolated_registry(schedule_poll_seconds=0.2)
    app = rayfn.App(unique_app)

    @app.function(schedule=rayfn.Period(seconds=2))
    def tick() -> float:
        import time

        return time.time()

    app.deploy()
    first = schedule_of(unique_app, "tick")
    assert first is not None and first.schedule == "Period(seconds=2)"
    anchor = first.next_fire - 2  # the deploy
    listed = get_client().call(RegistryApi.list_apps)
    assert [s.function for a in listed if a.name == unique_app for s in a.schedules] == ["tick"]

    wait_until(lambda: len(calls_of(unique_app, "tick")) >= 2, timeout=120,
               what="two scheduled runs")
    ray.kill(ray.get_actor(REGISTRY_ACTOR, namespace=settings.namespace), no_restart=False)

    def fired_six() -> bool:  # the restarted registry goes on (the client waits for it)
        info = schedule_of(unique_app, "tick")
        return info is not None and info.last_fire is not None \
            and info.last_fire >= anchor + 12
    wait_until(fired_six, timeout=180, what="the schedule's sixth time")
    info = schedule_of(unique_app, "tick")
    assert info is not None and info.last_fire is not None

    # Stop it: a redeploy without the schedule (a new version) removes the row.
    _deploy_without_schedule(unique_app)
    assert schedule_of(unique_app, "tick") is None
    calls = calls_of(unique_app, "tick")
    slots = sorted(slot_of(c.call_id) for c in calls)
    # Every time from the deploy to the latest fired is either fired once or skipped
    # (counted), and none twice, whatever moment the registry died at.
    assert len(set(slots)) == len(slots), slots
    steps = [(s - anchor) / 2 for s in slots]
    assert all(abs(k - round(k)) < 1e-6 for k in steps), steps
    latest = round((slots[-1] - anchor) / 2)
    assert slots[-1] >= info.last_fire
    skipped = info.skipped
    assert len(slots) + skipped == latest, (steps, skipped)
    assert sorted(round(k) for k in steps)[:2] == [1, 2]  # the two before the kill
    for call in calls:  # each is a normal call that ran
        assert isinstance(rayfn.FunctionCall.from_id(call.call_id).get(timeout=120), float)
    assert {c.version for c in calls} == {1}
    time.sleep(5)  # more than two periods: a removed schedule fires no more
    assert len(calls_of(unique_app, "tick")) == len(calls)


def test_app_run_fires_while_the_block_lasts(unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function(schedule=rayfn.Period(seconds=1))
    def every_second() -> str:
        return "period"

    @app.function(schedule=rayfn.Cron("* * * * * */2"))  # seconds: the sixth field
    def every_other_second() -> str:
        return "cron"

    with app.run():
        running = every_second.app_name
        assert running != unique_app
        wait_until(lambda: len(calls_of(running, "every_second")) >= 2
                   and len(calls_of(running, "every_other_second")) >= 2,
                   timeout=120, what="scheduled runs of the ephemeral app")
        assert rayfn.FunctionCall.from_id(
            calls_of(running, "every_other_second")[-1].call_id).get(timeout=120) == "cron"
    # stopped with the block: its schedules are gone and fire no more
    assert all(a.name != running for a in get_client().call(RegistryApi.list_apps))
    cron_slots = [slot_of(c.call_id) for c in calls_of(running, "every_other_second")]
    assert all(s % 2 == 0 for s in cron_slots), cron_slots
    after = {f: len(calls_of(running, f)) for f in ("every_second", "every_other_second")}
    time.sleep(4)
    assert {f: len(calls_of(running, f)) for f in after} == after


def test_schedule_is_shown_over_ray_and_rest(transport: str, unique_app: str) -> None:
    app = rayfn.App(unique_app)

    @app.function(schedule=rayfn.Cron("0 9 * * *", timezone="Europe/Berlin"))
    def daily() -> None:
        pass

    @app.function()
    def plain() -> None:
        pass

    app.deploy()
    try:
        info = schedule_of(unique_app, "daily")
        assert info is not None and info.function == "daily"
        assert info.schedule == "Cron('0 9 * * *', timezone='Europe/Berlin')"
        assert info.next_fire == rayfn.Cron("0 9 * * *", "Europe/Berlin").next_after(
            info.next_fire - 86400)  # a 09:00 in Berlin
        assert info.last_fire is None and info.skipped == 0
        assert schedule_of(unique_app, "plain") is None
        (listed,) = [a for a in get_client().call(RegistryApi.list_apps)
                     if a.name == unique_app]
        assert listed.schedules == [info]
    finally:
        app.stop()
