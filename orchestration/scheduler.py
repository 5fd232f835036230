"""Place calls exactly as the load profile says: concurrency per step, a new-call rate, a total.

Pure asyncio: `place(spec)` is whatever runs a call (Ray hosts in production, anything in
tests) and must return a record dict without raising.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from orchestration.profile import Step, step_at


@dataclass
class SchedulerStats:
    """What the scheduler did, for progress display and the orchestration benchmark."""

    planned: int = 0
    started: int = 0
    finished: int = 0
    active: int = 0
    max_active: int = 0
    target: int = 0
    phase: str = ""
    start_slip_ms: list[float] = field(default_factory=list)
    start_times: list[float] = field(default_factory=list)  # seconds since the run began


class _Slots:
    """When the next call may start: under the step's concurrency and at most `rate` per second."""

    def __init__(self, steps: list[Step], max_concurrency: int, rate: float, stats) -> None:
        self.steps, self.max_concurrency, self.interval = steps, max_concurrency, 1.0 / rate
        self.stats = stats
        self.t0 = time.monotonic()
        self.next_slot = self.t0  # the earliest moment the rate allows the next start
        self.freed_at = self.t0  # when a running call last ended
        self.freed = asyncio.Event()

    async def wait(self, running: Callable[[], int], stop: asyncio.Event) -> tuple[Step, float] | None:
        """Wait for a start slot; returns the step in force and when the start was due."""
        capacity_bound = False
        while not stop.is_set():
            now = time.monotonic()
            step = step_at(self.steps, now - self.t0)
            if step is None:
                return None
            self.stats.phase = step.phase
            self.stats.target = min(step.concurrency, self.max_concurrency)
            has_room = running() < self.stats.target
            if has_room and now >= self.next_slot:
                due = max(self.next_slot, self.freed_at) if capacity_bound else self.next_slot
                return step, due
            capacity_bound = capacity_bound or not has_room
            self.freed.clear()
            wait = self.next_slot - now if has_room else step.end_s - (now - self.t0)
            try:  # wake on a freed slot, the rate slot, a step change, or at least every second
                await asyncio.wait_for(self.freed.wait(), timeout=max(0.0, min(wait, 1.0)))
            except TimeoutError:
                pass
        return None

    def started(self, now: float) -> None:
        self.next_slot = max(self.next_slot, now - self.interval) + self.interval  # no bursts

    def release(self) -> None:
        self.freed_at = time.monotonic()
        self.freed.set()


async def run_schedule(
    specs: list[dict[str, Any]],
    steps: list[Step],
    *,
    max_concurrency: int,
    calls_per_second: float,
    place: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
    on_record: Callable[[dict[str, Any]], None],
    stats: SchedulerStats | None = None,
    stop: asyncio.Event | None = None,
) -> SchedulerStats:
    """Start calls until the plan or the profile runs out (or stop is set); await them all."""
    stats = stats or SchedulerStats()
    stats.planned = len(specs)
    stop = stop or asyncio.Event()
    running: set[asyncio.Task] = set()
    slots = _Slots(steps, max_concurrency, calls_per_second, stats)

    def finished(task: asyncio.Task) -> None:
        running.discard(task)
        stats.active, stats.finished = len(running), stats.finished + 1
        slots.release()
        on_record(task.result())

    for spec in specs:
        slot = await slots.wait(lambda: len(running), stop)
        if slot is None:
            break  # the profile is over (or the run was stopped): the rest are not_started
        step, due = slot
        now = time.monotonic()
        slots.started(now)
        stats.start_slip_ms.append(max(0.0, (now - due) * 1000))
        stats.start_times.append(now - slots.t0)
        spec = {**spec, "phase": step.phase, "concurrency_at_start": len(running) + 1}
        task = asyncio.create_task(place(spec), name=f"call-{spec['call_id']}")
        running.add(task)
        task.add_done_callback(finished)
        stats.started += 1
        stats.active = len(running)
        stats.max_active = max(stats.max_active, stats.active)
    if running:
        await asyncio.gather(*list(running), return_exceptions=True)
    await asyncio.sleep(0)  # let the last done-callbacks run
    return stats
