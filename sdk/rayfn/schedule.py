"""Schedules: ``Period`` and ``Cron``, fired by the registry from the store.

Both are checked when they are made (at decoration), so a bad schedule fails where it
is written, not at deploy. ``next_after(t)`` gives the first scheduled time after ``t``
(Unix seconds): the registry asks it for the slot after the one it just fired, so a
schedule keeps its times however late a fire was.
"""

from __future__ import annotations

import datetime
import json
import math
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from rayfn.exception import InvalidError

__all__ = ["Cron", "Period", "Schedule", "schedule_from_json"]

MIN_PERIOD_SECONDS = 1.0
MAX_PERIOD_SECONDS = 366 * 86400.0


class Schedule:
    """A deployed function's schedule, stored as canonical JSON in its options."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def next_after(self, t: float) -> float:
        """The first scheduled time strictly after ``t`` (Unix seconds)."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        return self.describe()


def _amount(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise InvalidError(f"Period({name}=...) must be a finite number >= 0, not {value!r}")
    return float(value)


class Period(Schedule):
    """Run every ``days + hours + minutes + seconds``, the first time one period after the
    deploy. Times are fixed from then on: a late fire does not move the next one."""

    def __init__(self, *, days: float = 0, hours: float = 0, minutes: float = 0,
                 seconds: float = 0) -> None:
        total = (_amount("days", days) * 86400 + _amount("hours", hours) * 3600
                 + _amount("minutes", minutes) * 60 + _amount("seconds", seconds))
        if not MIN_PERIOD_SECONDS <= total <= MAX_PERIOD_SECONDS:
            raise InvalidError(f"a Period must be between {MIN_PERIOD_SECONDS:g} second and "
                               f"366 days, not {total:g} seconds")
        self.seconds = total

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "period", "seconds": self.seconds}

    def next_after(self, t: float) -> float:
        return t + self.seconds

    def describe(self) -> str:
        return f"Period(seconds={self.seconds:g})"


class Cron(Schedule):
    """Run at the times a cron expression matches, read in ``timezone`` (an IANA name,
    UTC by default). Five fields (minute hour day month weekday), or six with seconds
    last. On the day clocks go back, a time with a fixed hour runs once, not twice; a
    time skipped when clocks go forward runs right after the jump."""

    def __init__(self, cron_string: str, timezone: str = "UTC") -> None:
        if not isinstance(cron_string, str) or not cron_string.strip():
            raise InvalidError(f"Cron needs a cron expression such as '*/5 * * * *', not "
                               f"{cron_string!r:.80}")
        try:
            parsed = croniter(cron_string)
        except (CroniterError, ValueError, TypeError, KeyError) as exc:
            raise InvalidError(f"bad cron expression {cron_string!r:.80}: {exc}") from None
        if not isinstance(timezone, str):
            raise InvalidError(f"Cron timezone must be a name such as 'Europe/Berlin', not "
                               f"{timezone!r:.80}")
        try:
            self._zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise InvalidError(f"unknown timezone {timezone!r:.80} (an IANA name such as "
                               "'UTC' or 'America/New_York')") from None
        self.cron_string = cron_string
        self.timezone = timezone
        # cron runs a job with a fixed hour once in the hour repeated when clocks go back
        self._once_in_repeated_hour = parsed.expanded[1] != ["*"]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "cron", "cron": self.cron_string, "timezone": self.timezone}

    def next_after(self, t: float) -> float:
        start = datetime.datetime.fromtimestamp(t, self._zone)
        matches = croniter(self.cron_string, start)
        while True:
            candidate = float(matches.get_next(float))
            local = datetime.datetime.fromtimestamp(candidate, self._zone)
            if not (self._once_in_repeated_hour and local.fold == 1):
                return candidate

    def describe(self) -> str:
        return f"Cron({self.cron_string!r}, timezone={self.timezone!r})"


def schedule_from_json(text: str) -> Schedule:
    """The schedule stored as ``text`` (its ``to_json``), checked again."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        raise InvalidError(f"a schedule must be JSON, not {text!r:.80}") from None
    if not isinstance(data, dict):
        raise InvalidError("a schedule must be a JSON object")
    if data.get("kind") == "period" and set(data) == {"kind", "seconds"}:
        return Period(seconds=data["seconds"])
    if data.get("kind") == "cron" and set(data) == {"kind", "cron", "timezone"}:
        return Cron(data["cron"], data["timezone"])
    raise InvalidError(f"unknown schedule {data!r:.80}")
