"""Live progress of a run in the terminal (rich): counts, concurrency, phase, p95, health.

The line reads a running tally (`RunTally`), updated once per record as it is stored, so a
refresh costs the same at 10 calls or 100,000: it never re-reads the records.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Iterable
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from orchestration.fleet import Fleet


class QuantileSketch:
    """A log-bucket quantile sketch (as DDSketch): every value within `relative_accuracy` of
    itself is counted in one bucket, so any quantile comes back within that relative error,
    in memory that grows with log(max/min), not with the count.

    Bucket i holds the values in (gamma^(i-1), gamma^i], gamma = (1 + a) / (1 - a); it
    answers 2 gamma^i / (gamma + 1), at most a (relative) from any value in it. Negative
    values are bucketed by magnitude; values within `min_value` of zero count as zero."""

    def __init__(self, relative_accuracy: float = 0.01, min_value: float = 1e-9) -> None:
        if not 0 < relative_accuracy < 1:
            raise ValueError("relative_accuracy must be in (0, 1)")
        self.gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        self._log_gamma = math.log(self.gamma)
        self.min_value = min_value
        self._positive: dict[int, int] = {}
        self._negative: dict[int, int] = {}
        self._zero = 0
        self.count = 0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: float) -> None:
        value = float(value)
        if not math.isfinite(value):
            return  # a NaN or inf is not a latency
        if value > self.min_value:
            key = math.ceil(math.log(value) / self._log_gamma)
            self._positive[key] = self._positive.get(key, 0) + 1
        elif value < -self.min_value:
            key = math.ceil(math.log(-value) / self._log_gamma)
            self._negative[key] = self._negative.get(key, 0) + 1
        else:
            self._zero += 1
        self.count += 1
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    def update(self, values: Iterable[float]) -> None:
        for value in values:
            self.add(value)

    def _value(self, key: int) -> float:
        return 2 * self.gamma ** key / (self.gamma + 1)

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0..1), None when empty; rank q (count - 1) as numpy's default."""
        if self.count == 0:
            return None
        if not 0 <= q <= 1:
            raise ValueError("q must be in [0, 1]")
        rank = q * (self.count - 1)
        seen = 0
        estimate = 0.0
        for key in sorted(self._negative, reverse=True):  # most negative first
            seen += self._negative[key]
            if seen > rank:
                estimate = -self._value(key)
                break
        else:
            seen += self._zero
            if seen > rank:
                estimate = 0.0
            else:
                for key in sorted(self._positive):
                    seen += self._positive[key]
                    if seen > rank:
                        estimate = self._value(key)
                        break
                else:
                    estimate = self.max
        return min(max(estimate, self.min), self.max)  # never outside what was seen

    @property
    def buckets(self) -> int:
        return len(self._positive) + len(self._negative) + (1 if self._zero else 0)


class RunTally:
    """Running counts of a run's stored records: completed, failed, the worst caller pacing
    p99, and a sketch of every response latency. Fed once per record (Fleet.observers)."""

    def __init__(self) -> None:
        self.completed = 0
        self.failed = 0
        self.worst_pacing_p99: float | None = None
        self.latency_ms = QuantileSketch(relative_accuracy=0.01)

    def __call__(self, record: dict[str, Any]) -> None:
        self.observe(record)

    def observe(self, record: dict[str, Any]) -> None:
        if record.get("status") == "completed":
            self.completed += 1
        else:
            self.failed += 1
        self.latency_ms.update((record.get("metrics") or {}).get("response_latency_ms") or ())
        pacing = (record.get("generator") or {}).get("pacing_late_ms_p99")
        if pacing is not None and (self.worst_pacing_p99 is None
                                   or pacing > self.worst_pacing_p99):
            self.worst_pacing_p99 = float(pacing)

    @property
    def landed(self) -> int:
        return self.completed + self.failed


def tally_for(fleet: Fleet) -> RunTally:
    """The fleet's tally, attached on first use: it counts the records stored from then on
    (live_progress attaches it before the run places its first call)."""
    for observer in fleet.observers:
        if isinstance(observer, RunTally):
            return observer
    tally = RunTally()
    fleet.observers.append(tally)
    return tally


def progress_line(fleet: Fleet) -> Text:
    s = fleet.stats
    tally = tally_for(fleet)
    p95_ms = tally.latency_ms.quantile(0.95)
    p95 = "-" if p95_ms is None else f"{p95_ms:.0f} ms"
    worst = tally.worst_pacing_p99
    health = "-" if worst is None else (f"[red]{worst:.0f} ms LATE[/red]" if worst > 20
                                        else f"{worst:.1f} ms")
    return Text.from_markup(
        f"phase [bold]{s.phase or '-'}[/bold]  started {s.started}/{s.planned}  "
        f"active {s.active} (target {s.target})  completed {tally.completed}  "
        f"failed {tally.failed}  p95 latency {p95}  pacing p99 {health}  "
        f"hosts replaced {fleet.pool.replaced}"
    )


@contextlib.asynccontextmanager
async def live_progress(fleet: Fleet, console: Console) -> AsyncIterator[None]:
    """Refresh the progress line twice a second while the block runs."""
    tally_for(fleet)  # counting from the first record on
    with Live(progress_line(fleet), console=console, refresh_per_second=4, transient=False) as live:

        async def refresh() -> None:
            while True:
                await asyncio.sleep(0.5)
                live.update(progress_line(fleet))

        task = asyncio.create_task(refresh(), name="progress")
        try:
            yield
        finally:
            task.cancel()
            live.update(progress_line(fleet))
