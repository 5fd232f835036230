"""Compare a run with a baseline run: per metric, the change and its bootstrap 95 % interval,
judged against the allowed change; overall, per scenario and per persona.

Verdict (on the interval of the change, in the allowance's unit, signed so that + is worse):
  regression    the whole interval is worse than the allowed change     (low  > allowed)
  improvement   the whole interval is better by more than the allowance (high < -allowed)
  inconclusive  the interval straddles the allowed change               (low <= allowed < high)
  ok            otherwise: the whole interval is within the allowed change
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.compare.allowance import Allowance, allowance_for
from evaluation.compare.bootstrap import resample
from evaluation.compare.metrics import Metric, metrics_for, parts
from evaluation.summary import summarize

Record = dict[str, Any]
COMPARE_FILE = "compare.json"
CONFIDENCE = 0.95
VERDICTS = ("regression", "inconclusive", "improvement", "ok")
SLICE_FIELDS = ("scenario", "persona")
RULE = ("The change of each metric (new minus baseline, or relative to the baseline for a % "
        "allowance) has a 95% percentile-bootstrap interval from resampling each run's calls "
        "with replacement. Signed so that + is worse: regression when the whole interval is "
        "beyond the allowed change; improvement when the whole interval is better than the "
        "baseline by more than the allowance; inconclusive when the interval straddles the "
        "allowed change; ok when it lies within it.")
_DIGITS = {"%": 1, "points": 1, "ms": 1, "per call": 3}
_SHORT = {"%": "%", "points": " pt", "ms": " ms", "per call": ""}


def verdict(low: float, high: float, allowed: float, higher_is_better: bool) -> str:
    """The verdict for an interval [low, high] of a change, allowed >= 0 in the same unit."""
    worse_lo, worse_hi = (-high, -low) if higher_is_better else (low, high)
    if worse_lo > allowed:
        return "regression"
    if worse_hi < -allowed:
        return "improvement"
    if worse_lo <= allowed < worse_hi:
        return "inconclusive"
    return "ok"


def _change(base: Any, new: Any, allowance: Allowance) -> Any:
    """new vs base in the allowance's unit: % of the baseline, points (rates), or absolute."""
    if allowance.relative:
        with np.errstate(divide="ignore", invalid="ignore"):
            return (np.divide(new, base) - 1.0) * 100.0
    scale = 100.0 if allowance.unit == "points" else 1.0
    return (np.subtract(new, base)) * scale


def fmt_value(value: float | None, unit: str) -> str:
    """A metric's value as a person reads it: rates in %, latencies in ms."""
    if value is None:
        return "-"
    if unit == "rate":
        return f"{value * 100:.1f}%"
    if unit == "ms":
        return f"{value:.0f} ms"
    return f"{value:.3g}"


def fmt_change(value: float | None, unit: str) -> str:
    """A change in an allowance's unit, signed: +51.4%, -3.2 pt, +120.0 ms, +0.100 (per call)."""
    if value is None:
        return "-"
    digits = _DIGITS.get(unit, 3)
    return f"{value:+.{digits}f}{_SHORT.get(unit, ' ' + unit)}"


def _row(metric: Metric, scope: str, name: str | None, base: tuple, new: tuple,
         allowance: Allowance, dist: np.ndarray) -> dict[str, Any]:
    (b, bn), (v, vn) = base, new
    valid = dist[np.isfinite(dist)]
    digits = _DIGITS.get(allowance.unit, 3)
    change = round(float(_change(b, v, allowance)), digits)
    low, high = (round(float(x), digits) for x in np.percentile(
        valid, [(1 - CONFIDENCE) / 2 * 100, (1 + CONFIDENCE) / 2 * 100]))
    judged = verdict(low, high, allowance.value, metric.higher_is_better)
    where = "overall" if name is None else f"{scope} {name}"
    text = (f"{metric.name} ({where}): {fmt_value(b, metric.unit)} -> "
            f"{fmt_value(v, metric.unit)}, change {fmt_change(change, allowance.unit)} "
            f"(95% CI {fmt_change(low, allowance.unit)} to {fmt_change(high, allowance.unit)})"
            f", allowed {allowance.text}: {judged}")
    return {"scope": scope, "slice": name, "metric": metric.name, "label": metric.label,
            "unit": metric.unit, "better": "higher" if metric.higher_is_better else "lower",
            "baseline": b, "baseline_n": bn, "new": v, "new_n": vn,
            "change_abs": None if b is None or v is None else round(v - b, 4),
            "change": change, "ci": [low, high], "change_unit": allowance.unit,
            "allowed": allowance.to_dict(), "verdict": judged, "resamples": int(valid.size),
            "text": text}


def _skip(scope: str, name: str | None, metric: str | None, reason: str) -> dict[str, Any]:
    return {"scope": scope, "slice": name, "metric": metric, "reason": reason}


def _compare_slice(scope: str, name: str | None, base: list[Record], new: list[Record],
                   allow: Mapping[str, Allowance], resamples: int, seed: int
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    metrics = metrics_for(base, new)
    sums = [summarize(records, run_id="", target="") for records in (base, new)]
    points = {m.name: (m.point(sums[0]), m.point(sums[1])) for m in metrics}
    rows, skipped, judged = [], [], []
    for m in metrics:
        (b, _), (v, _) = points[m.name]
        allowance = allowance_for(m.name, allow)
        if b is None and v is None:
            if scope == "overall":  # in a slice this is just the slice's mix: not news
                skipped.append(_skip(scope, name, m.name, "no data in either run"))
        elif b is None or v is None:
            side = "baseline" if b is None else "new"
            skipped.append(_skip(scope, name, m.name, f"no data in the {side} run"))
        elif allowance.relative and b == 0:
            skipped.append(_skip(scope, name, m.name, f"baseline is 0, so a relative allowance "
                                 f"({allowance.text}) cannot apply; give an absolute one"))
        else:
            judged.append(m)
    key = f"{scope}:{name}" if name is not None else scope
    stats = [resample(judged, {m.name: parts(m, records) for m in judged}, len(records),
                      resamples, seed, f"{side}|{key}")
             for side, records in (("baseline", base), ("new", new))]
    for m in judged:
        allowance = allowance_for(m.name, allow)
        dist = _change(stats[0][m.name], stats[1][m.name], allowance)
        if not np.isfinite(dist).any():
            skipped.append(_skip(scope, name, m.name, "no resample had data on both sides"))
            continue
        rows.append(_row(m, scope, name, *points[m.name], allowance, dist))
    return rows, skipped


def _groups(records: list[Record], field: str) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        groups[str(r.get(field) or "unknown")].append(r)  # as summary's by_<field>
    return groups


def compare_runs(baseline: list[Record], new: list[Record], *,
                 allow: Mapping[str, Allowance] | None = None, resamples: int = 2000,
                 seed: int = 1, baseline_info: Mapping[str, Any] | None = None,
                 new_info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """compare.json's content: a row per compared metric (overall, then per scenario and per
    persona present in both runs), what could not be compared and why, and the verdicts."""
    allow = allow or {}
    rows, skipped = _compare_slice("overall", None, baseline, new, allow, resamples, seed)
    for field in SLICE_FIELDS:
        base_groups, new_groups = _groups(baseline, field), _groups(new, field)
        names = sorted({*base_groups, *new_groups})
        if len(names) == 1 and names[0] in base_groups and names[0] in new_groups:
            continue  # one and the same slice in both runs: it is the overall comparison
        for name in names:
            if name not in new_groups or name not in base_groups:
                side = "baseline" if name in base_groups else "new"
                skipped.append(_skip(field, name, None, f"only in the {side} run"))
                continue
            more, less = _compare_slice(field, name, base_groups[name], new_groups[name],
                                        allow, resamples, seed)
            rows += more
            skipped += less
    counts = Counter(r["verdict"] for r in rows)
    return {
        "baseline": {**(baseline_info or {}), "calls": len(baseline)},
        "new": {**(new_info or {}), "calls": len(new)},
        "method": {"interval": "percentile bootstrap over calls", "confidence": CONFIDENCE,
                   "resamples": resamples, "seed": seed},
        "rule": RULE,
        "verdicts": {v: counts.get(v, 0) for v in VERDICTS},
        "regressions": counts.get("regression", 0),
        "passed": counts.get("regression", 0) == 0,
        "rows": rows,
        "not_compared": skipped,
    }


def regressions(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [r for r in result.get("rows") or () if r.get("verdict") == "regression"]


def regression_brief(result: Mapping[str, Any]) -> dict[str, Any]:
    """What summary.json keeps of a comparison (the rows are in compare.json)."""
    return {"file": COMPARE_FILE, "baseline": (result.get("baseline") or {}).get("run_dir"),
            "baseline_run_id": (result.get("baseline") or {}).get("run_id"),
            "verdicts": result.get("verdicts"), "regressions": len(regressions(result)),
            "passed": not regressions(result)}


def write_compare(run_dir: Path, result: Mapping[str, Any]) -> Path:
    """Write run_dir/compare.json atomically (strict JSON)."""
    path = Path(run_dir) / COMPARE_FILE
    tmp = path.with_name(f".{COMPARE_FILE}.tmp")
    tmp.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_compare(run_dir: Path | None) -> dict[str, Any] | None:
    """run_dir/compare.json, or None when there is none (or it is unreadable)."""
    if run_dir is None:
        return None
    try:
        data = json.loads((Path(run_dir) / COMPARE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("rows"), list) else None


