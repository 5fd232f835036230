"""Quality gates: thresholds on summary.json metrics that decide a run's exit code in CI.

A run config's `gates:` mapping names a metric and a bound, e.g.

    gates:
      latency_p95_ms: {max: 1500}
      completion_rate: {min: 0.95}
      understanding_rate: {min: 0.9}        # every graded entity, one result each
      understanding.amount: {min: 0.95}     # one entity
      generator_saturated: {max: 0}

Rules (issue 5): a gate on a metric with no data FAILS (value None, reason "no data"); a gate
on an unknown metric is a ConfigError when the gates are parsed, before any call is placed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, model_validator

from callers.errors import ConfigError

Summary = dict[str, Any]
# A metric reads (value, n) from a summary; value None means there is no data to judge.
Reader = Callable[[Summary], tuple[float | None, int | None]]


def _get(summary: Summary, *path: str) -> Any:
    node: Any = summary
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _value(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, int | float) else None


def _field(*path: str, n: tuple[str, ...] | None = None) -> Reader:
    def read(summary: Summary) -> tuple[float | None, int | None]:
        count = _get(summary, *n) if n else None
        value = _value(_get(summary, *path))
        if count == 0:  # a rate or percentile over nothing is not a passing zero
            value = None
        return value, count if isinstance(count, int) else None

    return read


def _completion_rate(summary: Summary) -> tuple[float | None, int | None]:
    block = summary.get("completion") or {}
    if "rate" in block:
        return _value(block.get("rate")), block.get("n")
    calls = summary.get("calls") or {}  # an older summary.json without the completion block
    planned = calls.get("planned") or 0
    return (round(calls.get("completed", 0) / planned, 4) if planned else None), planned


def _failure_rate(summary: Summary) -> tuple[float | None, int | None]:
    calls = summary.get("calls") or {}
    started = calls.get("started") or 0
    return (round(calls.get("failed", 0) / started, 4) if started else None), started


def _not_stopped_rate(summary: Summary) -> tuple[float | None, int | None]:
    block = summary.get("barge_in_stop_ms") or {}
    not_stopped = int(block.get("not_stopped") or 0)
    attempts = int(block.get("n") or 0) + not_stopped  # every judged barge-in
    return (round(not_stopped / attempts, 4) if attempts else None), attempts


def _saturated(summary: Summary) -> tuple[float | None, int | None]:
    generator = summary.get("generator") or {}
    if generator.get("pacing_late_ms_p99") is None:  # no pacing measured: health unknown
        return None, 0
    return (1.0 if generator.get("saturated") else 0.0), None


def _entity(name: str) -> Reader:
    block = ("understanding", "by_entity", name)
    return _field(*block, "rate", n=(*block, "n"))


_CALLS_MEASURED = ("turn_taking", "calls_measured")

METRICS: dict[str, tuple[Reader, str]] = {
    "latency_p50_ms": (_field("latency_ms", "p50", n=("latency_ms", "n")), "response latency p50"),
    "latency_p95_ms": (_field("latency_ms", "p95", n=("latency_ms", "n")), "response latency p95"),
    "latency_p99_ms": (_field("latency_ms", "p99", n=("latency_ms", "n")), "response latency p99"),
    "latency_mean_ms": (_field("latency_ms", "mean", n=("latency_ms", "n")), "mean latency"),
    "completion_rate": (_completion_rate, "completed calls / calls placed"),
    "task_completion_rate": (
        _field("completion", "task_rate", n=("completion", "n")),
        "completed with every observed fact understood / calls placed",
    ),
    "failure_rate": (_failure_rate, "failed calls / started calls"),
    "task_success_rate": (
        _field("task", "success_rate", n=("task", "n")),
        "calls meeting their scenario's success criteria / calls that had a conversation"),
    "understanding_facts_rate": (
        _field("understanding", "facts_rate", n=("understanding", "facts_observed")),
        "observed facts understood, every fact of every call pooled",
    ),
    "understanding_all_correct_rate": (
        _field("understanding", "all_correct_rate", n=("understanding", "n")),
        "scored calls with every fact understood",
    ),
    "barge_in_stop_p50_ms": (
        _field("barge_in_stop_ms", "p50", n=("barge_in_stop_ms", "n")), "barge-in stop p50"),
    "barge_in_stop_p95_ms": (
        _field("barge_in_stop_ms", "p95", n=("barge_in_stop_ms", "n")), "barge-in stop p95"),
    "barge_in_not_stopped_rate": (_not_stopped_rate, "barge-ins the agent talked through"),
    "talk_over_per_call": (
        _field("turn_taking", "talk_over_per_call", n=_CALLS_MEASURED), "talk-overs per call"),
    "false_yield_rate": (
        _field("turn_taking", "false_yield_rate", n=("turn_taking", "backchannels")),
        "false yields per caller backchannel",
    ),
    "premature_cutoff_per_call": (
        _field("turn_taking", "premature_cutoff_per_call", n=_CALLS_MEASURED),
        "premature cut-offs per call",
    ),
    "dead_air_per_call": (
        _field("turn_taking", "dead_air_per_call", n=_CALLS_MEASURED), "dead air per call"),
    "jitter_ms": (_field("network", "jitter_ms", n=("network", "n")), "mean network jitter"),
    "packet_loss_pct": (
        _field("network", "packet_loss_pct", n=("network", "n")), "mean packet loss"),
    "rtt_ms": (_field("network", "rtt_ms", n=("network", "n")), "mean round-trip time"),
    "audio_mos_p5": (
        _field("audio_quality", "ovrl", "p5", n=("audio_quality", "ovrl", "n")),
        "DNSMOS OVRL of the agent's speech, 5th percentile of calls (1-5)"),
    "generator_saturated": (_saturated, "1 when the callers themselves were overloaded"),
    "generator_pacing_late_ms_p99": (
        _field("generator", "pacing_late_ms_p99"), "worst caller pacing lateness p99"),
    "generator_loop_lag_ms_p99": (
        _field("generator", "loop_lag_ms_p99"), "worst caller event-loop lag p99"),
    "generator_reply_late_rate": (
        _field("generator", "reply_late_rate", n=("generator", "replies")),
        "caller replies not ready at their planned time"),
    "brain_fallback_rate": (
        _field("brain", "fallback_rate", n=("brain", "replies")),
        "caller turns the scripted policy answered for a failed LLM"),
}
ALL_ENTITIES = "understanding_rate"  # expands to one gate per graded entity
ENTITY_PREFIX = "understanding."
_ENTITY_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def known_metric(name: str) -> bool:
    if name in METRICS or name == ALL_ENTITIES:
        return True
    return name.startswith(ENTITY_PREFIX) and bool(_ENTITY_NAME.match(name[len(ENTITY_PREFIX):]))


def _unknown(name: str) -> str:
    known = ", ".join([*METRICS, ALL_ENTITIES, ENTITY_PREFIX + "<entity>"])
    return f"unknown gate metric {name!r} (known: {known})"


Number = Annotated[float, Field(strict=False, allow_inf_nan=False)]


class Bound(BaseModel):
    """One gate's bound: the metric must be <= max and/or >= min."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: Number | None = None
    max: Number | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_booleans(cls, data: Any) -> Any:
        # YAML `max: true` must not slip through as 1.0.
        if isinstance(data, Mapping):
            for key, value in data.items():
                if isinstance(value, bool):
                    raise ValueError(f"{key}: expected a number, got {value!r}")
        return data

    @model_validator(mode="after")
    def _one_bound(self) -> Bound:
        if self.min is None and self.max is None:
            raise ValueError("expected {min: N} and/or {max: N}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self


class Gates(RootModel[dict[str, Bound]]):
    """The `gates:` mapping of a run config: metric name -> bound. Unknown metrics are errors."""

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_names(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for name in data:
                if not isinstance(name, str) or not known_metric(name):
                    raise ValueError(_unknown(str(name)))
        return data


class DefaultGates(Gates):
    """Gates that judge only what the run measured (the defaults, and the demo's variant of
    them): a run whose callers never barge in has no barge-in gate, and a fact observed fewer
    than MIN_FACT_OBSERVATIONS times has no gate of its own (one miss in 3 is 67 %, which says
    little; the pooled understanding_facts_rate judges it with the rest). Gates a user
    configures are plain Gates, and fail on no data."""


# A default per-fact gate needs this many observations: at 10, one miss still passes 0.9.
MIN_FACT_OBSERVATIONS = 10


DEFAULT_GATES = DefaultGates.model_validate({
    # The reference agent answers in ~2 s on a 2-core machine; 3 s p95 leaves room for load.
    "latency_p95_ms": {"max": 3000},
    "completion_rate": {"min": 0.9},
    "understanding_facts_rate": {"min": 0.9},
    "understanding_rate": {"min": 0.9},
    "barge_in_not_stopped_rate": {"max": 0.2},
    "generator_saturated": {"max": 0},
})


def parse_gates(data: Any, where: str = "gates") -> Gates:
    """Validate a `gates:` mapping; None means DEFAULT_GATES. Problems are one-line ConfigErrors."""
    if data is None:
        return DEFAULT_GATES
    if isinstance(data, Gates):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of metric: {{min|max: N}}, "
                          f"got {type(data).__name__}")
    for name in data:  # checked here too so the message names the gate, not pydantic's loc
        if not isinstance(name, str) or not known_metric(name):
            raise ConfigError(f"{where}: {_unknown(str(name))}")
    try:
        return Gates.model_validate(dict(data))
    except ValidationError as e:
        errors = e.errors(include_url=False)
        first = errors[0]
        loc = ".".join(str(p) for p in first["loc"] if p != "__root__")
        msg = str(first.get("ctx", {}).get("error") or first["msg"])
        msg = msg.removeprefix("Value error, ")
        kind = first["type"]
        if kind == "extra_forbidden":
            msg = "unknown field, expected min or max"
        elif kind in ("dict_type", "model_type", "model_attributes_type"):
            msg = f"expected {{min: N}} and/or {{max: N}}, got {first['input']!r}"
        elif kind.startswith("float") or kind == "finite_number":
            msg = f"expected a finite number, got {first['input']!r}"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"{where}.{loc}: {msg}{more}" if loc else f"{where}: {msg}{more}") \
            from None


def _fmt(x: float | None) -> str:
    return "none" if x is None else f"{x:g}"


def _judge(name: str, op: str, threshold: float, value: float | None, n: int | None
           ) -> dict[str, Any]:
    sign = "<=" if op == "max" else ">="
    if value is None:
        passed, reason = False, "no data"
    else:
        passed = value <= threshold if op == "max" else value >= threshold
        shown = sign if passed else (">" if op == "max" else "<")
        reason = f"{_fmt(value)} {shown} {op} {_fmt(threshold)}"
    return {"name": name, "op": op, "threshold": threshold, "value": value, "n": n,
            "passed": passed, "reason": reason}


def _checks(name: str, summary: Summary) -> list[tuple[str, Reader]]:
    """The (result name, reader) pairs one configured gate expands to."""
    if name == ALL_ENTITIES:
        # Facts no call ever observed are listed in the summary, not judged: unobserved is not
        # wrong. A gate naming one (understanding.<fact>) still fails on no data.
        by_entity = _get(summary, "understanding", "by_entity") or {}
        entities = sorted(e for e, block in by_entity.items() if (block or {}).get("n"))
        if not entities:  # nothing was graded: one result that fails as "no data"
            return [(name, lambda s: (None, 0))]
        return [(ENTITY_PREFIX + e, _entity(e)) for e in entities]
    if name.startswith(ENTITY_PREFIX):
        return [(name, _entity(name[len(ENTITY_PREFIX):]))]
    return [(name, METRICS[name][0])]


def _observed(summary: Summary, result: dict[str, Any]) -> dict[str, Any]:
    """An understanding gate says over how many of the expected facts it was judged."""
    if result["name"].startswith(ENTITY_PREFIX):
        block = _get(summary, "understanding", "by_entity", result["name"][len(ENTITY_PREFIX):])
        expected = (block or {}).get("expected")
        if expected is not None:
            result["expected"] = expected
            result["reason"] += f" (observed {result['n'] or 0} of {expected})"
    return result


def evaluate_gates(summary: Summary, gates: Gates | Mapping[str, Any] | None = None
                   ) -> list[dict[str, Any]]:
    """One result per gate bound: {name, op, threshold, value, n, passed, reason}.

    None means DEFAULT_GATES, which judge only what the run measured (a run whose callers never
    barge in has no barge-in gate); a gate the user configured fails on no data.
    `understanding_rate` yields one result per graded entity (named understanding.<entity>)."""
    return _evaluate(summary, gates)[0]


def _evaluate(summary: Summary, gates: Gates | Mapping[str, Any] | None
              ) -> tuple[list[dict[str, Any]], list[str]]:
    """The results, and the default gates left out because the run did not measure them."""
    gates = parse_gates(gates)
    measured_only = isinstance(gates, DefaultGates)
    results, unmeasured = [], []
    for gate, bound in gates.root.items():
        for name, read in _checks(gate, summary):
            value, n = read(summary)
            if value is None and measured_only:
                unmeasured.append(name)
                continue
            if (measured_only and gate == ALL_ENTITIES and name != gate
                    and (n or 0) < MIN_FACT_OBSERVATIONS):
                unmeasured.append(f"{name} (observed {n or 0} times, fewer than "
                                  f"{MIN_FACT_OBSERVATIONS})")
                continue
            for op in ("min", "max"):
                threshold = getattr(bound, op)
                if threshold is not None:
                    results.append(_observed(summary, _judge(name, op, threshold, value, n)))
    return results, unmeasured


def apply_gates(summary: Summary, gates: Gates | Mapping[str, Any] | None = None) -> Summary:
    """Fill summary["gates"], summary["gates_passed"] and, for the default gates, the names
    of those this run did not measure (summary["gates_not_measured"]); returns the summary."""
    summary["gates"], unmeasured = _evaluate(summary, gates)
    summary["gates_not_measured"] = unmeasured
    summary["gates_passed"] = gates_passed(summary)
    return summary


def gates_passed(summary: Summary) -> bool:
    """True when every evaluated gate passed (vacuously true with no gates)."""
    return all(bool(g.get("passed")) for g in summary.get("gates") or [])
