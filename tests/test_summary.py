"""Run aggregates: counts add up, percentiles and n are right, empty means None, never NaN."""

import json

import numpy as np

from callers.record import CallRecord
from evaluation.summary import summarize


def rec(call_id, *, status="completed", reason=None, latencies=(), concurrency=1, **kw):
    metrics = {
        "response_latency_ms": list(latencies),
        "barge_in_stop_ms": kw.pop("stops", []),
        "barge_in_not_stopped": kw.pop("not_stopped", 0),
        "talk_over": kw.pop("talk_over", 0),
        "false_yield": kw.pop("false_yield", 0),
        "premature_cutoff": kw.pop("premature_cutoff", 0),
        "dead_air": kw.pop("dead_air", 0),
        "backchannels": kw.pop("backchannels", 0),
    }
    return CallRecord(
        call_id=call_id, persona="p", seed=1, status=status, failure_reason=reason,
        concurrency_at_start=concurrency, metrics=metrics, **kw,
    ).to_dict()


def test_call_counts_add_up_with_planned_and_failure_reasons():
    records = [
        rec("a"), rec("b"),
        rec("c", status="failed", reason="connect_timeout"),
        rec("d", status="failed", reason="connect_timeout"),
        rec("e", status="failed", reason="agent_hung_up"),
    ]
    calls = summarize(records, run_id="r", target="t", planned=8, partial=True)["calls"]
    assert calls == {
        "planned": 8, "started": 5, "completed": 2, "failed": 3, "not_started": 3,
        "failure_reasons": {"agent_hung_up": 1, "connect_timeout": 2},
    }
    assert calls["completed"] + calls["failed"] + calls["not_started"] == calls["planned"]


def test_planned_defaults_to_started():
    calls = summarize([rec("a")], run_id="r", target="t")["calls"]
    assert calls["planned"] == 1 and calls["not_started"] == 0


def test_header_fields_and_gates_start_empty():
    s = summarize([rec("a")], run_id="run-1", target="http://127.0.0.1:1/offer", partial=True)
    assert s["run_id"] == "run-1"
    assert s["target"] == "http://127.0.0.1:1/offer"
    assert s["partial"] is True
    assert s["gates"] == []


def test_latency_percentiles_pool_all_calls_and_count_n():
    records = [rec("a", latencies=[100, 200, 300]), rec("b", latencies=[400, 500]),
               rec("c", status="failed", reason="x", latencies=[1000])]
    lat = summarize(records, run_id="r", target="t")["latency_ms"]
    pooled = [100, 200, 300, 400, 500, 1000]
    assert lat["n"] == 6
    assert lat["p50"] == 350.0
    assert lat["p95"] == round(float(np.percentile(pooled, 95)), 1)
    assert lat["p99"] == round(float(np.percentile(pooled, 99)), 1)
    assert lat["mean"] == 416.7


def test_everything_is_none_not_nan_when_there_is_nothing_to_aggregate():
    s = summarize([], run_id="r", target="t", planned=3)
    assert s["latency_ms"] == {"p50": None, "p95": None, "p99": None, "mean": None, "n": 0}
    assert s["barge_in_stop_ms"] == {"p50": None, "p95": None, "n": 0, "not_stopped": 0}
    assert s["understanding"]["all_correct_rate"] is None
    assert s["turn_taking"]["talk_over_per_call"] is None
    assert s["turn_taking"]["false_yield_rate"] is None
    assert s["network"]["rtt_ms"] is None
    assert s["by_concurrency"] == []
    assert s["generator"] == {"pacing_late_ms_p99": None, "loop_lag_ms_p99": None,
                              "saturated": False}
    assert s["calls"]["not_started"] == 3
    json.dumps(s, allow_nan=False)  # strict JSON: would raise on NaN


def test_barge_in_stop_percentiles_and_not_stopped_total():
    records = [rec("a", stops=[200, 400], not_stopped=1), rec("b", stops=[600], not_stopped=2)]
    b = summarize(records, run_id="r", target="t")["barge_in_stop_ms"]
    assert b == {"p50": 400.0, "p95": 580.0, "n": 3, "not_stopped": 3}


def test_understanding_rates_by_entity_over_scored_calls_only():
    records = [
        rec("a", understanding={"correct": {"name": True, "dob": True}}),
        rec("b", understanding={"correct": {"name": False, "dob": True}}),
        rec("c", understanding={"correct": {"name": True}}),
        rec("d"),  # never scored: not in any denominator
    ]
    u = summarize(records, run_id="r", target="t")["understanding"]
    assert u["by_entity"] == {"dob": {"rate": 1.0, "n": 2}, "name": {"rate": 0.6667, "n": 3}}
    assert u["all_correct_rate"] == 0.6667


def test_turn_taking_per_call_averages_and_false_yield_rate():
    records = [
        rec("a", talk_over=2, false_yield=1, backchannels=3, dead_air=1),
        rec("b", talk_over=0, false_yield=0, backchannels=1, premature_cutoff=1),
        rec("c", status="failed", reason="x"),
    ]
    records[2]["metrics"] = {}  # failed before any audio
    t = summarize(records, run_id="r", target="t")["turn_taking"]
    assert t["talk_over_per_call"] == 1.0
    assert t["premature_cutoff_per_call"] == 0.5
    assert t["dead_air_per_call"] == 0.5
    assert t["false_yield_rate"] == 0.25


def test_network_means_skip_missing_and_non_finite_values():
    records = [
        rec("a", network={"jitter_ms": 2.0, "packet_loss_pct": 0.0, "rtt_ms": 10.0}),
        rec("b", network={"jitter_ms": 4.0, "packet_loss_pct": 1.0, "rtt_ms": float("nan")}),
        rec("c"),
    ]
    n = summarize(records, run_id="r", target="t")["network"]
    assert n["jitter_ms"] == 3.0
    assert n["packet_loss_pct"] == 0.5
    assert n["rtt_ms"] == 10.0


def test_by_concurrency_groups_calls_with_p95_and_completion_rate():
    records = [
        rec("a", concurrency=1, latencies=[100]),
        rec("b", concurrency=1, latencies=[300]),
        rec("c", concurrency=4, latencies=[500, 900]),
        rec("d", concurrency=4, status="failed", reason="x"),
    ]
    rows = summarize(records, run_id="r", target="t")["by_concurrency"]
    assert rows == [
        {"concurrency": 1, "calls": 2, "latency_p95_ms": 290.0, "completion_rate": 1.0},
        {"concurrency": 4, "calls": 2, "latency_p95_ms": 880.0, "completion_rate": 0.5},
    ]


def test_generator_takes_the_worst_call_and_flags_saturation_above_20ms():
    ok = [rec("a", generator={"pacing_late_ms_p99": 5.0}),
          rec("b", generator={"pacing_late_ms_p99": 20.0})]
    g = summarize(ok, run_id="r", target="t")["generator"]
    assert g["pacing_late_ms_p99"] == 20.0 and g["saturated"] is False
    late = ok + [rec("c", generator={"pacing_late_ms_p99": 35.5})]
    g = summarize(late, run_id="r", target="t")["generator"]
    assert g["pacing_late_ms_p99"] == 35.5 and g["saturated"] is True
