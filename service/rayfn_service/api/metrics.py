"""``/metrics``: the registry's counters in Prometheus' text format."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from rayfn.protocol.records import MetricsSnapshot
from rayfn.schemas import FunctionStats
from rayfn_service.metrics import BUCKETS


class _Snapshot:
    def __init__(self, snapshot: MetricsSnapshot, stats: list[FunctionStats]) -> None:
        self._snapshot = snapshot
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        labels = ["app", "function"]
        gauges = {
            "queued": GaugeMetricFamily("rayfn_calls_queued", "Calls waiting in the store",
                                        labels=labels),
            "running": GaugeMetricFamily("rayfn_calls_running", "Calls with an attempt in Ray",
                                         labels=labels),
            "retrying": GaugeMetricFamily("rayfn_calls_retrying",
                                          "Calls waiting out a retry delay", labels=labels),
        }
        for s in self._stats:
            for name, gauge in gauges.items():
                gauge.add_metric([s.app, s.function], getattr(s, name))
        yield from gauges.values()
        accepted = CounterMetricFamily("rayfn_calls_accepted", "Calls accepted",
                                       labels=labels)
        for (app, function), count in self._snapshot.accepted.items():
            accepted.add_metric([app, function], count)
        yield accepted
        outcomes = CounterMetricFamily("rayfn_calls_finished", "Calls finished, by state",
                                       labels=[*labels, "state"])
        for (app, function, state), count in self._snapshot.outcomes.items():
            outcomes.add_metric([app, function, state], count)
        yield outcomes
        durations = HistogramMetricFamily(
            "rayfn_attempt_duration_seconds", "Attempt time from submission to Ray to outcome",
            labels=labels,
        )
        for (app, function), (counts, total) in self._snapshot.durations.items():
            cumulative, buckets = 0, []
            for bound, count in zip((*map(str, BUCKETS), "+Inf"), counts, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            durations.add_metric([app, function], buckets, total)
        yield durations


def render(data: tuple[MetricsSnapshot, list[FunctionStats]]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    collector: Any = _Snapshot(*data)
    registry.register(collector)
    return bytes(generate_latest(registry))
