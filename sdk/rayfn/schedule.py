"""Schedules: ``Period`` and ``Cron``, fired by the registry from the store."""

from __future__ import annotations

import json
from typing import Any

from rayfn.exception import InvalidError

__all__ = ["Cron", "Period", "Schedule"]


class Schedule:
    """A deployed function's schedule, stored as canonical JSON in its options."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))


class Period(Schedule):
    def __init__(self, *, days: float = 0, hours: float = 0, minutes: float = 0,
                 seconds: float = 0) -> None:
        self.seconds = days * 86400 + hours * 3600 + minutes * 60 + seconds
        if not self.seconds > 0:
            raise InvalidError("a Period must be longer than 0 seconds")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "period", "seconds": self.seconds}


class Cron(Schedule):
    def __init__(self, cron_string: str, timezone: str = "UTC") -> None:
        self.cron_string = cron_string
        self.timezone = timezone

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "cron", "cron": self.cron_string, "timezone": self.timezone}


def schedule_from_json(text: str) -> Schedule:
    """The schedule stored as ``text`` (its ``to_json``), checked again."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        raise InvalidError(f"a schedule must be JSON, not {text!r:.80}") from None
    if not isinstance(data, dict):
        raise InvalidError("a schedule must be a JSON object")
    if data.get("kind") == "period":
        return Period(seconds=data.get("seconds", 0))
    if data.get("kind") == "cron":
        return Cron(data.get("cron", ""), data.get("timezone", "UTC"))
    raise InvalidError(f"unknown schedule {data!r:.80}")
