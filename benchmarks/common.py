"""What every scenario shares: a row of the table, timing and percentiles."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Row:
    scenario: str
    metric: str
    rayfn: float
    baseline: float | None  # raw Ray, or the bare FastAPI route; None: nothing to compare
    unit: str
    higher_is_better: bool = True

    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0 or self.rayfn == 0:
            return None
        if self.higher_is_better:
            return self.rayfn / self.baseline
        return self.baseline / self.rayfn


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sample_ms(fn: Callable[[], Any], samples: int) -> list[float]:
    out = []
    for _ in range(samples):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out
