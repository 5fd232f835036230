"""Run aggregates (summary.json per DESIGN.md's output contract) from CallRecord dicts."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

import numpy as np

SATURATED_PACING_MS = 20.0  # generator p99 lateness above which its own latency numbers lie


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile rounded to 0.1, or None when there are no values."""
    if not values:
        return None
    return round(float(np.percentile(values, q, method="linear")), 1)


def mean(values: list[float], ndigits: int = 1) -> float | None:
    """Rounded mean, or None when there are no values."""
    return round(sum(values) / len(values), ndigits) if values else None


def _rate(num: float, den: float) -> float | None:
    return round(num / den, 4) if den else None


def _number(value: Any) -> float | None:
    """A finite number or None: NaN/inf from a broken stat must not poison the aggregate."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _numbers(values: Any) -> list[float]:
    return [v for v in (_number(x) for x in values or []) if v is not None]


def _metric(record: dict[str, Any], name: str) -> Any:
    return (record.get("metrics") or {}).get(name)


def _latencies(records: list[dict[str, Any]]) -> list[float]:
    return [v for r in records for v in _numbers(_metric(r, "response_latency_ms"))]


def _calls(records: list[dict[str, Any]], planned: int | None) -> dict[str, Any]:
    started = len(records)
    completed = sum(1 for r in records if r.get("status") == "completed")
    planned = started if planned is None else planned
    reasons = Counter(
        r.get("failure_reason") or "unknown" for r in records if r.get("status") != "completed"
    )
    return {
        "planned": planned,
        "started": started,
        "completed": completed,
        "failed": started - completed,
        "not_started": max(planned - started, 0),
        "failure_reasons": dict(sorted(reasons.items())),
    }


def _latency(records: list[dict[str, Any]]) -> dict[str, Any]:
    values = _latencies(records)
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "mean": mean(values),
        "n": len(values),
    }


def _barge_in(records: list[dict[str, Any]]) -> dict[str, Any]:
    values = [v for r in records for v in _numbers(_metric(r, "barge_in_stop_ms"))]
    not_stopped = sum(int(_metric(r, "barge_in_not_stopped") or 0) for r in records)
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "n": len(values),
        "not_stopped": not_stopped,
    }


def _understanding(records: list[dict[str, Any]]) -> dict[str, Any]:
    corrects = ((r.get("understanding") or {}).get("correct") for r in records)
    scored = [c for c in corrects if c]  # a call that never got scored says nothing
    by_entity: dict[str, list[bool]] = defaultdict(list)
    for correct in scored:
        for name, ok in correct.items():
            by_entity[name].append(bool(ok))
    return {
        "by_entity": {
            name: {"rate": _rate(sum(oks), len(oks)), "n": len(oks)}
            for name, oks in sorted(by_entity.items())
        },
        "all_correct_rate": _rate(sum(all(c.values()) for c in scored), len(scored)),
        "n": len(scored),
    }


def _turn_taking(records: list[dict[str, Any]]) -> dict[str, Any]:
    # Calls that failed before any audio have no metrics; averaging them in would flatter the agent.
    measured = [r for r in records if r.get("metrics")]

    def total(name: str) -> int:
        return sum(int(_metric(r, name) or 0) for r in measured)

    n = len(measured)
    return {
        "talk_over_per_call": _rate(total("talk_over"), n),
        "false_yield_rate": _rate(total("false_yield"), total("backchannels")),
        "premature_cutoff_per_call": _rate(total("premature_cutoff"), n),
        "dead_air_per_call": _rate(total("dead_air"), n),
        "false_yields": total("false_yield"),
        "backchannels": total("backchannels"),
        "calls_measured": n,
    }


def _network(records: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("jitter_ms", "packet_loss_pct", "rtt_ms"):
        values = _numbers((r.get("network") or {}).get(key) for r in records)
        out[key] = mean(values, 2)
    out["n"] = sum(1 for r in records if r.get("network"))
    return out


def _by_concurrency(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[int(r.get("concurrency_at_start") or 0)].append(r)
    return [
        {
            "concurrency": level,
            "calls": len(group),
            "latency_p95_ms": percentile(_latencies(group), 95),
            "completion_rate": _rate(
                sum(1 for r in group if r.get("status") == "completed"), len(group)
            ),
        }
        for level, group in sorted(groups.items())
    ]


def _generator(records: list[dict[str, Any]]) -> dict[str, Any]:
    def worst(key: str) -> float | None:
        values = _numbers((r.get("generator") or {}).get(key) for r in records)
        return round(max(values), 1) if values else None

    pacing = worst("pacing_late_ms_p99")
    return {
        "pacing_late_ms_p99": pacing,
        "loop_lag_ms_p99": worst("loop_lag_ms_p99"),
        "saturated": pacing is not None and pacing > SATURATED_PACING_MS,
    }


def summarize(
    records: list[dict[str, Any]],
    *,
    run_id: str,
    target: str,
    planned: int | None = None,
    partial: bool = False,
) -> dict[str, Any]:
    """Build summary.json's dict from CallRecord dicts; gates are filled in later."""
    return {
        "run_id": run_id,
        "target": target,
        "partial": bool(partial),
        "calls": _calls(records, planned),
        "latency_ms": _latency(records),
        "barge_in_stop_ms": _barge_in(records),
        "understanding": _understanding(records),
        "turn_taking": _turn_taking(records),
        "network": _network(records),
        "by_concurrency": _by_concurrency(records),
        "gates": [],
        "generator": _generator(records),
    }
