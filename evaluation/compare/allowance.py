"""How much a metric may get worse before it is a regression: parsed from `regression.allow`.

A change is written with a sign, a number and a unit:

    latency_p95_ms: "+10%"          # relative: at most 10 % above the baseline
    latency_p50_ms: "+150 ms"       # absolute, in the metric's own unit
    completion_rate: "-5 points"    # rates: percentage points (5 points = 0.05)
    dead_air_per_call: "+0.1"       # per-call counts: a plain number, per call

The sign is optional; when given it must point in the metric's bad direction (latency up,
completion down), so a typo cannot silently turn an allowance into a demand.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from evaluation.compare.metrics import (
    ALL_FACTS, FACT_PREFIX, METRICS, Metric, fact_metric, known_metric, known_names)

_CHANGE = re.compile(
    r"^\s*(?P<sign>[+-])?\s*(?P<num>\d+(?:\.\d+)?|\.\d+)\s*"
    r"(?P<unit>%|points?|pts?|ms|per[ _]call)?\s*$", re.IGNORECASE)
_UNIT_WORDS = {"%": "%", "point": "points", "points": "points", "pt": "points", "pts": "points",
               "ms": "ms", "per call": "per call", "per_call": "per call", None: None}
# What each kind of metric accepts, and the example shown when it is given something else.
_ACCEPTS = {"rate": ("%", "points"), "ms": ("%", "ms"), "per_call": ("%", "per call", None)}
_EXAMPLE = {"rate": "'{s}5 points' or '{s}10%'", "ms": "'{s}150 ms' or '{s}10%'",
            "per_call": "'{s}0.1' (per call) or '{s}10%'"}


@dataclass(frozen=True)
class Allowance:
    """An allowed change: `relative` (fraction of the baseline) or absolute in `unit`
    (points for rates, ms, per call); `value` is its size, never negative."""

    text: str
    relative: bool
    value: float
    unit: str  # "%", "points", "ms" or "per call"

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "relative": self.relative, "value": self.value,
                "unit": self.unit}


def parse_allowance(name: str, given: Any) -> Allowance:
    """Parse one allowed change for metric `name`; ValueError says the field, value and the
    forms expected."""
    metric = metric_for(name)
    sign_bad = "-" if metric.higher_is_better else "+"
    expected = f"expected a change like {_EXAMPLE[metric.unit].format(s=sign_bad)}"
    if isinstance(given, bool) or not isinstance(given, str | int | float):
        raise ValueError(f"{name} {given!r}: {expected}")
    text = str(given)
    match = _CHANGE.match(text)
    if not match:
        raise ValueError(f"{name} {text!r}: {expected}")
    unit = _UNIT_WORDS[(match["unit"] or "").lower() or None]
    if unit not in _ACCEPTS[metric.unit]:
        raise ValueError(f"{name} {text!r}: {expected}")
    if match["sign"] and match["sign"] != sign_bad and float(match["num"]) != 0:
        worse = "down" if metric.higher_is_better else "up"
        raise ValueError(f"{name} {text!r}: {name} gets worse going {worse}, so the allowed "
                         f"change is written {sign_bad}{match['num']}"
                         f"{'' if unit in (None, '%') else ' '}{unit or ''}")
    return Allowance(text=text.strip(), relative=unit == "%", value=float(match["num"]),
                     unit=unit or "per call")


def metric_for(name: str) -> Metric:
    """The metric an allowance key names (understanding_rate: any fact)."""
    if name == ALL_FACTS:
        return fact_metric("*")
    if name.startswith(FACT_PREFIX) and known_metric(name):
        return fact_metric(name[len(FACT_PREFIX):])
    if name in METRICS:
        return METRICS[name]
    raise ValueError(f"unknown metric {name!r} (known: {', '.join(known_names())})")


DEFAULT_ALLOW: dict[str, Allowance] = {
    name: parse_allowance(name, text) for name, text in {
        "completion_rate": "-5 points",
        "task_success_rate": "-5 points",
        "understanding_all_correct_rate": "-5 points",
        ALL_FACTS: "-5 points",
        "latency_p50_ms": "+10%",
        "latency_p95_ms": "+10%",
        "barge_in_stop_p95_ms": "+10%",
        "barge_in_not_stopped_rate": "+5 points",
        "false_yield_rate": "+5 points",
        "dead_air_per_call": "+0.1",
        "talk_over_per_call": "+0.1",
        "premature_cutoff_per_call": "+0.1",
    }.items()}


def parse_allow(data: Mapping[str, Any] | None, where: str = "allow") -> dict[str, Allowance]:
    """A mapping of metric -> allowed change, validated; ValueError names `where`.field."""
    out: dict[str, Allowance] = {}
    for name, given in (data or {}).items():
        try:
            out[str(name)] = parse_allowance(str(name), given)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    return out


def allowance_for(name: str, allow: Mapping[str, Allowance]) -> Allowance:
    """The allowance that applies to a metric: its own, else understanding_rate for a fact,
    else the default."""
    if name in allow:
        return allow[name]
    if name.startswith(FACT_PREFIX):
        return allow.get(ALL_FACTS) or DEFAULT_ALLOW[ALL_FACTS]
    return DEFAULT_ALLOW[name]


class RegressionConfig(BaseModel):
    """A run config's `regression:` section: the baseline run directory to compare with after
    the run, the allowed change per metric (defaults: DEFAULT_ALLOW), and the bootstrap's size
    and seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    baseline: str = Field(min_length=1)
    allow: dict[str, str | float] = Field(default_factory=dict)
    resamples: int = Field(2000, ge=200, le=100_000)
    seed: int = 1

    @field_validator("allow", mode="before")
    @classmethod
    def _allowances_parse(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for name, given in data.items():
                parse_allowance(str(name), given)  # ValueError names the metric and value
        return data

    @model_validator(mode="after")
    def _baseline_is_a_run(self) -> RegressionConfig:
        path = Path(self.baseline)
        if not path.is_dir():
            raise ValueError(f"baseline {self.baseline}: no such run directory")
        return self

    def allowances(self) -> dict[str, Allowance]:
        return parse_allow(self.allow)
