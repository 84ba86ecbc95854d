"""How the CLI shows scheduled functions: when each runs next."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from rayfn.schemas import ScheduleInfo

__all__ = ["next_runs"]


def next_runs(schedules: Sequence[ScheduleInfo]) -> str:
    """``function at <local time>`` for each scheduled function, with the times skipped
    while the registry was down, if any; empty for an app without schedules."""
    parts = []
    for s in schedules:
        at = datetime.datetime.fromtimestamp(s.next_fire).astimezone().isoformat(
            timespec="seconds")
        skipped = f" ({s.skipped} skipped)" if s.skipped else ""
        parts.append(f"{s.function} at {at}{skipped}")
    return ", ".join(parts)
