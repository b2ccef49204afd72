"""Percentiles and CPU accounting shared by the scenarios."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile (no interpolation), or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil(n * pct / 100)
    return ordered[int(rank) - 1]


def latency_summary(seconds: list[float], prefix: str = "") -> dict:
    """p50/p99/max in milliseconds."""
    ms = [value * 1000 for value in seconds]
    return {
        f"{prefix}p50_ms": _round(percentile(ms, 50)),
        f"{prefix}p99_ms": _round(percentile(ms, 99)),
        f"{prefix}max_ms": _round(max(ms) if ms else None),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@dataclass
class CpuMeter:
    """This process's CPU use over an interval, as a share of one core: shows the client was not the bottleneck.

    The client's own garbage collector is off meanwhile: a full collection of a harness holding thousands of
    sockets takes tens of milliseconds, which would show up as server latency.
    """

    wall: float = 0.0
    cpu: float = 0.0

    def __enter__(self) -> CpuMeter:
        gc.collect()
        gc.disable()
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_exc) -> None:
        self.wall = time.perf_counter() - self._wall0
        self.cpu = time.process_time() - self._cpu0
        gc.enable()

    @property
    def percent(self) -> float:
        return round(100 * self.cpu / self.wall, 1) if self.wall else 0.0
