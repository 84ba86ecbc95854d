"""Counters the registry keeps for ``/metrics``: outcomes and attempt durations per function.

Plain data in the registry (no Prometheus objects cross the actor boundary); the REST
server renders a snapshot in Prometheus' format.
"""

from __future__ import annotations

import bisect
import dataclasses

from rayfn.protocol.records import MetricsSnapshot

# Seconds; attempt durations from submission to Ray until the outcome is known.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
                              60, 300, 1800)


@dataclasses.dataclass
class Histogram:
    counts: list[int] = dataclasses.field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds


class Metrics:
    def __init__(self) -> None:
        self._outcomes: dict[tuple[str, str, str], int] = {}
        self._durations: dict[tuple[str, str], Histogram] = {}
        self._accepted: dict[tuple[str, str], int] = {}

    def accepted(self, app: str, function: str, count: int) -> None:
        key = (app, function)
        self._accepted[key] = self._accepted.get(key, 0) + count

    def outcome(self, app: str, function: str, state: str) -> None:
        key = (app, function, state)
        self._outcomes[key] = self._outcomes.get(key, 0) + 1

    def attempt_duration(self, app: str, function: str, seconds: float) -> None:
        self._durations.setdefault((app, function), Histogram()).observe(seconds)

    def snapshot(self) -> MetricsSnapshot:
        return MetricsSnapshot(
            outcomes=dict(self._outcomes),
            durations={k: (list(h.counts), h.total) for k, h in self._durations.items()},
            accepted=dict(self._accepted),
        )
