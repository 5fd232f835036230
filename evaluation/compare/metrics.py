"""The metrics a comparison covers, each split into per-call parts so calls can be resampled.

A metric is either a ratio of per-call sums (completion: completed / placed; a fact: understood
/ observed; dead air: events / measured calls) or a percentile of values pooled over calls
(response latency, barge-in stop). The point estimate of a metric is read from summarize()'s
output with the gate readers, so it is exactly what summary.json says; the per-call parts
reproduce it and let the bootstrap resample calls with their turns kept together.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from evaluation.gates import METRICS as GATE_METRICS
from evaluation.summary import _metric, _numbers

Record = dict[str, Any]
# Per call: (numerator, denominator) for a ratio; the values for a pooled percentile.
RatioPart = Callable[[Record], tuple[float, float]]
ValuesPart = Callable[[Record], list[float]]

FACT_PREFIX = "understanding."
ALL_FACTS = "understanding_rate"  # an allowance for every fact, as in gates
_FACT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class Metric:
    """One compared metric. unit: "rate" (0..1), "ms" or "per_call"."""

    name: str
    label: str
    unit: str
    higher_is_better: bool
    ratio: RatioPart | None = None
    values: ValuesPart | None = None
    q: float = 50.0  # percentile, for pooled values

    def point(self, summary: dict[str, Any]) -> tuple[float | None, int | None]:
        """(value, n) as summary.json has it; value None when there is no data."""
        if self.name.startswith(FACT_PREFIX):
            block = ((summary.get("understanding") or {}).get("by_entity") or {}).get(
                self.name[len(FACT_PREFIX):]) or {}
            n = block.get("n") or 0
            rate = block.get("rate")
            return (float(rate) if n and rate is not None else None), n
        return GATE_METRICS[self.name][0](summary)


def _completed(r: Record) -> tuple[float, float]:
    return float(r.get("status") == "completed"), 1.0


def _task(r: Record) -> tuple[float, float]:
    task = r.get("task")
    if task and "success" in task:
        return float(bool(task["success"])), 1.0
    return 0.0, 0.0


def _all_correct(r: Record) -> tuple[float, float]:
    u = r.get("understanding")
    correct = u.get("correct") if u else None
    if correct:  # at least one fact observed
        return float(all(correct.values())), 1.0
    return 0.0, 0.0


def _fact(name: str) -> RatioPart:
    def part(r: Record) -> tuple[float, float]:
        u = r.get("understanding")
        correct = (u.get("correct") or {}) if u and "correct" in u else {}
        if name in correct:
            return float(bool(correct[name])), 1.0
        return 0.0, 0.0

    return part


def _per_measured_call(event: str) -> RatioPart:
    def part(r: Record) -> tuple[float, float]:
        if not r.get("metrics"):  # failed before any audio: not measured (as in summary)
            return 0.0, 0.0
        return float(int(_metric(r, event) or 0)), 1.0

    return part


def _not_stopped(r: Record) -> tuple[float, float]:
    not_stopped = int(_metric(r, "barge_in_not_stopped") or 0)
    return float(not_stopped), float(len(_numbers(_metric(r, "barge_in_stop_ms"))) + not_stopped)


def _false_yield(r: Record) -> tuple[float, float]:
    return float(int(_metric(r, "false_yield") or 0)), float(int(_metric(r, "backchannels") or 0))


def _pooled(field: str) -> ValuesPart:
    return lambda r: _numbers(_metric(r, field))


METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("completion_rate", "completion", "rate", True, ratio=_completed),
    Metric("task_success_rate", "task success", "rate", True, ratio=_task),
    Metric("understanding_all_correct_rate", "understood (all facts)", "rate", True,
           ratio=_all_correct),
    Metric("latency_p50_ms", "response latency p50", "ms", False,
           values=_pooled("response_latency_ms"), q=50.0),
    Metric("latency_p95_ms", "response latency p95", "ms", False,
           values=_pooled("response_latency_ms"), q=95.0),
    Metric("barge_in_stop_p95_ms", "barge-in stop p95", "ms", False,
           values=_pooled("barge_in_stop_ms"), q=95.0),
    Metric("barge_in_not_stopped_rate", "barge-in not stopped", "rate", False,
           ratio=_not_stopped),
    Metric("dead_air_per_call", "dead air per call", "per_call", False,
           ratio=_per_measured_call("dead_air")),
    Metric("talk_over_per_call", "talk-over per call", "per_call", False,
           ratio=_per_measured_call("talk_over")),
    Metric("premature_cutoff_per_call", "premature cut-off per call", "per_call", False,
           ratio=_per_measured_call("premature_cutoff")),
    Metric("false_yield_rate", "false yield per backchannel", "rate", False, ratio=_false_yield),
]}


def fact_metric(fact: str) -> Metric:
    """Understanding of one fact: understood / observed, over the calls that observed it."""
    return Metric(FACT_PREFIX + fact, f"understood {fact}", "rate", True, ratio=_fact(fact))


def known_metric(name: str) -> bool:
    if name in METRICS or name == ALL_FACTS:
        return True
    return name.startswith(FACT_PREFIX) and bool(_FACT_NAME.match(name[len(FACT_PREFIX):]))


def known_names() -> list[str]:
    return [*METRICS, ALL_FACTS, FACT_PREFIX + "<fact>"]


def facts_of(records: list[Record]) -> set[str]:
    """Every fact graded in these calls (observed at least once, as summary's by_entity)."""
    return {name for r in records for name in ((r.get("understanding") or {}).get("correct")
                                               or {})}


def metrics_for(*runs: list[Record]) -> list[Metric]:
    """The fixed metrics, then one per fact graded in any of the runs, sorted."""
    facts = sorted(set().union(*(facts_of(r) for r in runs)))
    standard = list(METRICS.values())
    return standard[:3] + [fact_metric(f) for f in facts] + standard[3:]


@dataclass
class Parts:
    """One metric's per-call parts over one set of calls, ready for resampling."""

    num: np.ndarray | None = None  # ratio: per call
    den: np.ndarray | None = None
    values: np.ndarray | None = None  # percentile: every value, sorted
    owner: np.ndarray | None = None  # index of the call each sorted value came from


def parts(metric: Metric, records: list[Record]) -> Parts:
    if metric.ratio is not None:
        pairs = np.array([metric.ratio(r) for r in records], dtype=float).reshape(-1, 2)
        return Parts(num=pairs[:, 0], den=pairs[:, 1])
    assert metric.values is not None
    lists = [metric.values(r) for r in records]
    values = np.fromiter((v for vs in lists for v in vs), dtype=float)
    owner = np.repeat(np.arange(len(lists)), [len(vs) for vs in lists])
    order = np.argsort(values, kind="stable")
    return Parts(values=values[order], owner=owner[order])
