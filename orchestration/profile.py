"""Load profiles as a timeline of steps: how many concurrent calls to hold, and when."""

from __future__ import annotations

import math
from dataclasses import dataclass

from orchestration.config import Baseline, LoadConfig, Ramp, Soak, Spike


@dataclass(frozen=True)
class Step:
    phase: str  # e.g. "baseline", "ramp-x4", "spike-peak"
    start_s: float
    end_s: float
    concurrency: int


def build_steps(load: LoadConfig) -> list[Step]:
    """The profile's steps, capped at max_concurrency; no phases = hold the maximum until done."""
    if not load.phases:
        return [Step("constant", 0.0, math.inf, load.max_concurrency)]
    steps: list[Step] = []
    t = 0.0
    for phase in load.phases:
        for name, concurrency, seconds in _expand(phase):
            steps.append(Step(name, t, t + seconds, min(load.max_concurrency, concurrency)))
            t += seconds
    return steps


def _expand(phase) -> list[tuple[str, int, float]]:
    if isinstance(phase, Baseline):
        return [("baseline", phase.concurrency, phase.duration_s)]
    if isinstance(phase, Soak):
        return [("soak", phase.concurrency, phase.duration_s)]
    if isinstance(phase, Ramp):
        return [(f"ramp-x{2**i}", phase.start * 2**i, phase.hold_s) for i in range(phase.steps)]
    if isinstance(phase, Spike):
        peak = max(phase.base + 1, round(phase.base * phase.multiplier))
        return [("spike-base", phase.base, phase.base_s), ("spike-peak", peak, phase.spike_s),
                ("spike-recover", phase.base, phase.recover_s)]
    raise TypeError(f"unknown phase {phase!r}")


def step_at(steps: list[Step], t: float) -> Step | None:
    """The step in force at t seconds into the run, or None once the profile is over."""
    for step in steps:
        if step.start_s <= t < step.end_s:
            return step
    return None
