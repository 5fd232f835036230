"""Quality gates: pass/fail on bounds, no data fails, unknown metrics fail at parse time."""

import pytest

from callers.errors import ConfigError
from callers.record import CallRecord
from evaluation.gates import (
    DEFAULT_GATES,
    Gates,
    apply_gates,
    evaluate_gates,
    gates_passed,
    parse_gates,
)
from evaluation.summary import summarize


def rec(call_id, *, status="completed", latencies=(1000, 1200), correct=None, stops=(),
        not_stopped=0, pacing=5.0, reason=None):
    return CallRecord(
        call_id=call_id, persona="p", seed=1, status=status, failure_reason=reason,
        metrics={"response_latency_ms": list(latencies), "barge_in_stop_ms": list(stops),
                 "barge_in_not_stopped": not_stopped, "talk_over": 0, "false_yield": 0,
                 "premature_cutoff": 0, "dead_air": 0, "backchannels": 0},
        understanding={"correct": correct if correct is not None
                       else {"first_name": True, "amount": True}},
        generator={"pacing_late_ms_p99": pacing},
    ).to_dict()


def by_name(results):
    return {g["name"]: g for g in results}


def summary_of(records, planned=None):
    return summarize(records, run_id="r", target="t", planned=planned)


def test_max_and_min_bounds_pass_and_fail():
    s = summary_of([rec(f"c{i}", latencies=[1000 + i * 100]) for i in range(10)])
    results = by_name(evaluate_gates(s, {"latency_p95_ms": {"max": 1900},
                                         "latency_p99_ms": {"max": 1880},
                                         "completion_rate": {"min": 0.95}}))
    assert (s["latency_ms"]["p95"], s["latency_ms"]["p99"]) == (1855.0, 1891.0)
    assert results["latency_p95_ms"]["value"] == 1855.0
    assert results["latency_p95_ms"]["passed"] is True
    assert results["latency_p95_ms"]["reason"] == "1855 <= max 1900"
    assert results["latency_p99_ms"]["value"] == 1891.0
    assert results["latency_p99_ms"]["passed"] is False
    assert results["latency_p99_ms"]["reason"] == "1891 > max 1880"
    assert results["completion_rate"] == {
        "name": "completion_rate", "op": "min", "threshold": 0.95, "value": 1.0, "n": 10,
        "passed": True, "reason": "1 >= min 0.95"}


def test_threshold_is_inclusive():
    s = summary_of([rec("a", latencies=[1500])])
    (g,) = evaluate_gates(s, {"latency_p95_ms": {"max": 1500}})
    assert g["value"] == 1500.0 and g["passed"] is True
    (g,) = evaluate_gates(s, {"latency_p95_ms": {"min": 1500}})
    assert g["passed"] is True


def test_completion_is_over_calls_placed_and_says_so():
    s = summary_of([rec("a"), rec("b"), rec("c", status="failed", reason="ice_timeout")],
                   planned=4)
    (g,) = evaluate_gates(s, {"completion_rate": {"min": 0.5}})
    assert g["value"] == 0.6667 and g["n"] == 3 and g["passed"] is True
    assert s["completion"]["not_placed"] == 1 and s["calls"]["not_started"] == 1


def test_understanding_rate_expands_to_one_result_per_entity():
    records = [rec(f"c{i}", correct={"first_name": True, "amount": i != 0}) for i in range(5)]
    results = evaluate_gates(summary_of(records), {"understanding_rate": {"min": 0.9}})
    assert [(g["name"], g["value"], g["passed"]) for g in results] == [
        ("understanding.amount", 0.8, False), ("understanding.first_name", 1.0, True)]
    (one,) = evaluate_gates(summary_of(records), {"understanding.amount": {"min": 0.8}})
    assert one["passed"] is True and one["n"] == 5


def test_barge_in_gates_and_not_stopped_rate():
    records = [rec("a", stops=[300, 500]), rec("b", stops=[700], not_stopped=1)]
    results = by_name(evaluate_gates(summary_of(records), {
        "barge_in_stop_p95_ms": {"max": 800}, "barge_in_not_stopped_rate": {"max": 0.05}}))
    assert results["barge_in_stop_p95_ms"]["passed"] is True
    assert results["barge_in_not_stopped_rate"]["value"] == 0.25  # 1 of 4 barge-ins
    assert results["barge_in_not_stopped_rate"]["n"] == 4
    assert results["barge_in_not_stopped_rate"]["passed"] is False


def test_generator_saturation_gate():
    ok = evaluate_gates(summary_of([rec("a", pacing=5)]), {"generator_saturated": {"max": 0}})
    late = evaluate_gates(summary_of([rec("a", pacing=35)]), {"generator_saturated": {"max": 0}})
    assert (ok[0]["value"], ok[0]["passed"]) == (0.0, True)
    assert (late[0]["value"], late[0]["passed"]) == (1.0, False)


@pytest.mark.parametrize("gates", [
    {"latency_p95_ms": {"max": 1e9}},
    {"latency_p99_ms": {"max": 1e9}},
    {"completion_rate": {"min": 0}},
    {"understanding_rate": {"min": 0}},
    {"understanding.amount": {"min": 0}},
    {"barge_in_stop_p95_ms": {"max": 1e9}},
    {"barge_in_not_stopped_rate": {"max": 1}},
    {"generator_saturated": {"max": 1}},
    {"false_yield_rate": {"max": 1}},
    {"rtt_ms": {"max": 1e9}},
])
def test_a_gate_with_no_data_fails_even_with_a_lenient_bound(gates):
    (g,) = evaluate_gates(summary_of([]), gates)
    assert g["value"] is None and g["passed"] is False and g["reason"] == "no data"


def test_no_barge_ins_means_no_data_not_a_zero_rate():
    (g,) = evaluate_gates(summary_of([rec("a")]), {"barge_in_not_stopped_rate": {"max": 0.2}})
    assert g["value"] is None and g["passed"] is False and g["reason"] == "no data"


def test_entity_never_graded_fails_as_no_data():
    (g,) = evaluate_gates(summary_of([rec("a")]), {"understanding.last_name": {"min": 0.5}})
    assert g["value"] is None and g["passed"] is False


def test_unknown_metric_is_a_one_line_config_error_at_parse_time():
    with pytest.raises(ConfigError) as e:
        parse_gates({"latency_p95_ms": {"max": 1}, "latency_p96_ms": {"max": 1}},
                    where="configs/x.yaml: gates")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("configs/x.yaml: gates: unknown gate metric 'latency_p96_ms'")
    assert "latency_p95_ms" in message  # lists what is known


def test_unknown_metric_fails_evaluate_before_any_summary_is_read():
    with pytest.raises(ConfigError, match="unknown gate metric 'p95'"):
        evaluate_gates({}, {"p95": {"max": 1}})


@pytest.mark.parametrize("bad, expected", [
    ({"latency_p95_ms": {"maximum": 1}}, "gates.latency_p95_ms.maximum: unknown field"),
    ({"latency_p95_ms": {}}, "gates.latency_p95_ms: expected {min: N} and/or {max: N}"),
    ({"latency_p95_ms": 1500}, "gates.latency_p95_ms: expected {min: N} and/or {max: N}"),
    ({"latency_p95_ms": {"max": "fast"}}, "gates.latency_p95_ms.max: expected a finite number"),
    ({"latency_p95_ms": {"max": True}}, "gates.latency_p95_ms: max: expected a number"),
    ({"completion_rate": {"min": 0.9, "max": 0.5}}, "gates.completion_rate: min 0.9 is above"),
    (["latency_p95_ms"], "gates: expected a mapping"),
    ({"understanding.": {"min": 1}}, "gates: unknown gate metric 'understanding.'"),
])
def test_bad_gate_configs_are_one_line_config_errors(bad, expected):
    with pytest.raises(ConfigError) as e:
        parse_gates(bad)
    assert str(e.value).startswith(expected)
    assert "\n" not in str(e.value)


def test_pydantic_model_forbids_extra_fields_and_unknown_names():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Gates.model_validate({"latency_p95_ms": {"max": 1, "warn": 2}})
    with pytest.raises(ValidationError, match="unknown gate metric"):
        Gates.model_validate({"nope": {"max": 1}})


def test_none_means_default_gates_and_empty_means_no_gates():
    assert parse_gates(None) is DEFAULT_GATES
    assert parse_gates({}).root == {}
    assert evaluate_gates(summary_of([rec("a")]), {}) == []


def test_default_gates_pass_a_clean_run_and_fail_a_slow_one():
    clean = [rec(f"c{i}", latencies=[1800, 2100, 2400], stops=[400]) for i in range(20)]
    s = apply_gates(summary_of(clean))
    assert gates_passed(s), [g for g in s["gates"] if not g["passed"]]
    assert {g["name"] for g in s["gates"]} == {
        "latency_p95_ms", "completion_rate", "understanding_facts_rate",
        "understanding.first_name", "understanding.amount", "barge_in_not_stopped_rate",
        "generator_saturated"}
    slow = [rec(f"c{i}", latencies=[4300, 4600], stops=[400]) for i in range(20)]
    s = apply_gates(summary_of(slow))
    assert not gates_passed(s)
    assert [g["name"] for g in s["gates"] if not g["passed"]] == ["latency_p95_ms"]


def test_apply_gates_fills_the_summary():
    s = apply_gates(summary_of([rec("a")]), {"latency_p95_ms": {"max": 100}})
    assert s["gates"][0]["passed"] is False and s["gates_passed"] is False
    assert gates_passed({"gates": []}) is True


def test_understanding_gates_judge_observed_facts_only_and_say_how_many():
    summary = {"understanding": {"by_entity": {
        "first_name": {"rate": None, "n": 0, "not_observed": 4, "expected": 4},
        "last_name": {"rate": 0.75, "n": 4, "not_observed": 0, "expected": 4},
        "amount": {"rate": 1.0, "n": 3, "not_observed": 1, "expected": 4}}}}
    results = evaluate_gates(summary, {"understanding_rate": {"min": 0.7}})
    assert [r["name"] for r in results] == ["understanding.amount", "understanding.last_name"]
    assert all(r["passed"] for r in results)
    assert results[0]["reason"] == "1 >= min 0.7 (observed 3 of 4)"
    # Named explicitly, a fact never observed has no data: it fails, and says why.
    (named,) = evaluate_gates(summary, {"understanding.first_name": {"min": 0.7}})
    assert not named["passed"] and named["reason"] == "no data (observed 0 of 4)"


def test_default_gates_judge_only_what_the_run_measured_and_name_the_rest():
    from evaluation.gates import apply_gates

    summary = summary_of([rec("a", latencies=[900.0], correct={})])  # no barge-in, no facts
    apply_gates(summary, None)
    names = {g["name"] for g in summary["gates"]}
    assert "latency_p95_ms" in names and "barge_in_not_stopped_rate" not in names
    assert "barge_in_not_stopped_rate" in summary["gates_not_measured"]
    assert "understanding_rate" in summary["gates_not_measured"]
    # Configured by the user, the same gate fails on no data.
    apply_gates(summary, {"barge_in_not_stopped_rate": {"max": 0.2}})
    assert [(g["name"], g["passed"]) for g in summary["gates"]] == [
        ("barge_in_not_stopped_rate", False)]


def test_default_per_fact_gates_need_ten_observations_and_the_pooled_rate_judges_the_rest():
    summary = {"understanding": {
        "facts_rate": 49 / 51, "facts_observed": 51, "by_entity": {
            "name": {"rate": 5 / 6, "n": 6, "not_observed": 0, "expected": 6},
            "phone": {"rate": 2 / 3, "n": 3, "not_observed": 0, "expected": 3},
            "date": {"rate": 0.8, "n": 10, "not_observed": 0, "expected": 10}}}}
    s = apply_gates(dict(summary))
    judged = {g["name"]: g["passed"] for g in s["gates"]}
    assert judged == {"understanding_facts_rate": True, "understanding.date": False}
    assert "understanding.phone (observed 3 times, fewer than 10)" in s["gates_not_measured"]
    # A user's own gate judges whatever was observed.
    (phone,) = evaluate_gates(summary, {"understanding.phone": {"min": 0.9}})
    assert not phone["passed"] and phone["n"] == 3
