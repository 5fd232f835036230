"""Baseline comparison: verdicts from bootstrap intervals over calls, reproducible, per scenario
and persona, and in every output (terminal, compare.json, report.html, junit.xml, exit code)."""

import contextlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

from callers.errors import ConfigError
from callers.record import CallRecord
from evaluation.compare import compare_runs, parse_allowance, verdict
from evaluation.compare.bootstrap import pooled_percentile
from orchestration.cli import main
from orchestration.reporting import compare_for_config, exit_code, finish_run, load_run
from orchestration.store import RunStore

LENIENT_GATES = {"latency_p95_ms": {"max": 100_000}}


def rec(i, latencies, *, scenario="card-dispute", persona="cooperative-john",
        status="completed", correct=None, success=True, stops=(), not_stopped=0, dead_air=0):
    correct = {"amount": i % 7 != 0, "last_name": True} if correct is None else correct
    return CallRecord(
        call_id=f"call-{i:04d}", persona=persona, scenario=scenario, seed=i, status=status,
        failure_reason=None if status == "completed" else "no_agent_audio",
        metrics={"response_latency_ms": [float(x) for x in latencies],
                 "barge_in_stop_ms": [float(x) for x in stops],
                 "barge_in_not_stopped": not_stopped, "talk_over": 0, "false_yield": 0,
                 "premature_cutoff": 0, "dead_air": dead_air, "backchannels": 0},
        understanding={"expected": {k: "x" for k in correct}, "understood": {},
                       "correct": correct, "source": "agent-state"},
        task={"success": success, "checks": {}},
    ).to_dict()


def latencies(rng, n=6, scale=1.0):
    return scale * rng.lognormal(6.8, 0.35, n)  # ~900 ms, a realistic spread


def run_of(seed=1, calls=40, scale=1.0, **kw):
    rng = np.random.default_rng(seed)
    return [rec(i, latencies(rng, scale=scale), stops=rng.uniform(200, 600, 2), **kw)
            for i in range(calls)]


def shifted(records, factor):
    out = json.loads(json.dumps(records))
    for r in out:
        r["metrics"]["response_latency_ms"] = [v * factor for v in
                                               r["metrics"]["response_latency_ms"]]
    return out


def write_run(path: Path, records, run_id=None) -> Path:
    """A run directory as `callfleet run` leaves it: calls.jsonl, summary.json, report, junit."""
    with RunStore(path) as store:
        for r in records:
            store.append(r)
        finish_run(store, records, run_id=run_id or path.name, target="t",
                   planned=len(records), partial=False, gates=LENIENT_GATES)
    return path


def rows(result, metric, scope="overall", name=None):
    found = [r for r in result["rows"]
             if r["metric"] == metric and r["scope"] == scope and r["slice"] == name]
    assert len(found) == 1, (metric, scope, name, [r["metric"] for r in result["rows"]])
    return found[0]


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --- the verdict ---------------------------------------------------------------------------


@pytest.mark.parametrize(("low", "high", "higher_is_better", "expected"), [
    (12.0, 40.0, False, "regression"),     # latency: the whole interval above +10 %
    (-3.0, 25.0, False, "inconclusive"),   # straddles +10 %
    (-8.0, 9.0, False, "ok"),              # within +10 %
    (-40.0, -12.0, False, "improvement"),  # better by more than the allowance
    (-9.0, -6.0, True, "regression"),      # completion: the whole interval below -5 points
    (-7.0, 1.0, True, "inconclusive"),
    (0.0, 0.0, True, "ok"),                # identical, no spread
    (6.0, 9.0, True, "improvement"),
])
def test_verdict_is_decided_by_where_the_whole_interval_lies(low, high, higher_is_better,
                                                             expected):
    allowed = 10.0 if not higher_is_better else 5.0
    assert verdict(low, high, allowed, higher_is_better) == expected


def test_pooled_percentile_equals_numpy_on_the_resampled_calls():
    rng = np.random.default_rng(3)
    owner = rng.integers(0, 12, 80)
    values = rng.normal(800, 200, 80)
    order = np.argsort(values)
    counts = rng.integers(0, 3, (20, 12))
    got = pooled_percentile(values[order], owner[order], counts, 95)
    expected = [np.percentile(np.repeat(values, counts[i][owner]), 95) if counts[i][owner].sum()
                else np.nan for i in range(20)]
    np.testing.assert_allclose(got, expected)


# --- whole comparisons ---------------------------------------------------------------------


def test_identical_runs_have_no_regression_and_exit_0(tmp_path, capsys):
    records = run_of(seed=1)
    base = write_run(tmp_path / "base", records)
    new = write_run(tmp_path / "new", records)
    assert main(["compare", str(base), str(new)]) == 0
    result = json.loads((new / "compare.json").read_text())
    assert result["regressions"] == 0 and result["passed"] is True
    p95 = rows(result, "latency_p95_ms")
    assert p95["change"] == 0.0 and p95["ci"][0] <= 0.0 <= p95["ci"][1]
    assert "no regression" in capsys.readouterr().out


def test_latency_up_50_percent_on_every_call_is_a_regression_beyond_the_allowance(
        tmp_path, capsys):
    records = run_of(seed=2)
    base = write_run(tmp_path / "base", records)
    new = write_run(tmp_path / "new", shifted(records, 1.5))
    assert main(["compare", str(base), str(new)]) == 1
    result = json.loads((new / "compare.json").read_text())
    for metric in ("latency_p50_ms", "latency_p95_ms"):
        row = rows(result, metric)
        assert row["verdict"] == "regression"
        assert row["change"] == pytest.approx(50.0, abs=0.2)
        assert row["allowed"] == {"text": "+10%", "relative": True, "value": 10.0, "unit": "%"}
        assert row["ci"][0] > 10.0  # the whole interval is beyond +10 %
    # Nothing else moved: completion and understanding are not called regressions.
    assert {r["metric"] for r in result["rows"] if r["verdict"] == "regression"} == {
        "latency_p50_ms", "latency_p95_ms"}
    out = capsys.readouterr().out
    low, high = rows(result, "latency_p95_ms")["ci"]
    assert "REGRESSION" in out and f"+{low:.1f}%" in out and f"+{high:.1f}%" in out


def test_a_small_noisy_shift_is_inconclusive_not_a_regression():
    base = run_of(seed=4)
    new = run_of(seed=5, scale=1.10)  # other calls, 10 % slower: right at the allowance
    result = compare_runs(base, new)
    for metric in ("latency_p50_ms", "latency_p95_ms"):
        row = rows(result, metric)
        assert row["verdict"] == "inconclusive", row["text"]
        assert row["ci"][0] <= 10.0 < row["ci"][1]
    assert result["regressions"] == 0


def test_the_bootstrap_is_seeded_so_verdicts_and_intervals_repeat():
    base, new = run_of(seed=4), run_of(seed=5, scale=1.10)
    first, second = compare_runs(base, new, seed=7), compare_runs(base, new, seed=7)
    assert first["rows"] == second["rows"]
    other = compare_runs(base, new, seed=8)
    assert rows(other, "latency_p95_ms")["ci"] != rows(first, "latency_p95_ms")["ci"]
    assert first["method"] == {"interval": "percentile bootstrap over calls",
                               "confidence": 0.95, "resamples": 2000, "seed": 7}


def test_point_estimates_are_summary_json_s_figures(tmp_path):
    base_records = run_of(seed=6, scenario="a") + run_of(seed=7, calls=20, scenario="b")
    base_records += [rec(900, [], status="failed", correct={})]
    new_records = shifted(base_records, 1.2)
    base = write_run(tmp_path / "base", base_records)
    write_run(tmp_path / "new", new_records)
    summary = json.loads((base / "summary.json").read_text())
    result = compare_runs(base_records, new_records)
    assert rows(result, "latency_p50_ms")["baseline"] == summary["latency_ms"]["p50"]
    assert rows(result, "latency_p95_ms")["baseline"] == summary["latency_ms"]["p95"]
    assert rows(result, "completion_rate")["baseline"] == summary["completion"]["rate"]
    assert rows(result, "task_success_rate")["baseline"] == summary["task"]["success_rate"]
    assert rows(result, "understanding.amount")["baseline"] == \
        summary["understanding"]["by_entity"]["amount"]["rate"]
    assert rows(result, "understanding_all_correct_rate")["baseline"] == \
        summary["understanding"]["all_correct_rate"]
    assert rows(result, "barge_in_stop_p95_ms")["baseline"] == summary["barge_in_stop_ms"]["p95"]
    assert rows(result, "dead_air_per_call")["baseline"] == \
        summary["turn_taking"]["dead_air_per_call"]
    by_a = summary["by_scenario"]["a"]
    assert rows(result, "latency_p95_ms", "scenario", "a")["baseline"] == by_a["latency_ms"]["p95"]
    assert rows(result, "completion_rate", "scenario", "a")["baseline"] == \
        by_a["completion_rate"]


def test_different_mixes_are_compared_per_scenario_and_persona_and_gaps_are_listed():
    base = (run_of(seed=1, calls=30, scenario="card-dispute", persona="john")
            + run_of(seed=2, calls=30, scenario="booking", persona="maria"))
    new = (run_of(seed=3, calls=30, scenario="card-dispute", persona="john")
           + run_of(seed=4, calls=30, scenario="refund", persona="john"))
    for r in new:  # the new agent's callers never barged in
        r["metrics"]["barge_in_stop_ms"] = []
    result = compare_runs(base, new)
    assert rows(result, "latency_p95_ms", "scenario", "card-dispute")["baseline_n"] == 180
    assert rows(result, "completion_rate", "persona", "john")["new_n"] == 60
    skipped = {(s["scope"], s["slice"], s["metric"]): s["reason"] for s in result["not_compared"]}
    assert skipped[("scenario", "booking", None)] == "only in the baseline run"
    assert skipped[("scenario", "refund", None)] == "only in the new run"
    assert skipped[("persona", "maria", None)] == "only in the baseline run"
    assert skipped[("overall", None, "barge_in_stop_p95_ms")] == "no data in the new run"
    assert skipped[("scenario", "card-dispute", "barge_in_stop_p95_ms")] == \
        "no data in the new run"
    assert not [r for r in result["rows"] if r["metric"] == "barge_in_stop_p95_ms"]


def test_one_scenario_in_both_runs_is_not_compared_twice():
    result = compare_runs(run_of(seed=1), run_of(seed=2))
    assert {r["scope"] for r in result["rows"]} == {"overall"}


def test_compare_json_shape(tmp_path):
    base = write_run(tmp_path / "base", run_of(seed=1), run_id="r-base")
    new = write_run(tmp_path / "new", run_of(seed=2), run_id="r-new")
    main(["compare", str(base), str(new), "--allow", "latency_p95_ms=+20%",
          "--allow", "understanding_rate=-10 points"])
    result = json.loads((new / "compare.json").read_text())
    assert set(result) == {"baseline", "new", "method", "rule", "verdicts", "regressions",
                           "passed", "rows", "not_compared"}
    assert result["baseline"] == {"run_dir": str(base), "run_id": "r-base", "calls": 40}
    assert result["new"]["run_id"] == "r-new"
    assert set(result["verdicts"]) == {"regression", "inconclusive", "improvement", "ok"}
    assert sum(result["verdicts"].values()) == len(result["rows"])
    row = rows(result, "latency_p95_ms")
    assert set(row) == {"scope", "slice", "metric", "label", "unit", "better", "baseline",
                        "baseline_n", "new", "new_n", "change_abs", "change", "ci",
                        "change_unit", "allowed", "verdict", "resamples", "text"}
    assert row["allowed"]["text"] == "+20%" and row["resamples"] == 2000
    assert rows(result, "understanding.amount")["allowed"]["value"] == 10.0
    assert rows(result, "completion_rate")["allowed"]["text"] == "-5 points"  # the default
    summary = json.loads((new / "summary.json").read_text())
    assert summary["regression"]["file"] == "compare.json"
    assert summary["regression"]["passed"] == result["passed"]


def test_junit_has_a_testcase_per_compared_metric_and_fails_regressions(tmp_path):
    records = run_of(seed=2)
    base = write_run(tmp_path / "base", records)
    new = write_run(tmp_path / "new", shifted(records, 1.5))
    assert main(["compare", str(base), str(new)]) == 1
    result = json.loads((new / "compare.json").read_text())
    suite = ET.parse(new / "junit.xml").getroot().find("testsuite")
    cases = [c for c in suite.findall("testcase") if c.get("classname") == "compare"]
    assert len(cases) == len(result["rows"])
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {"latency_p50_ms allowed +10%", "latency_p95_ms allowed +10%"}
    assert int(suite.get("failures")) >= 2


def test_report_html_has_the_compare_section_with_values_escaped(tmp_path):
    evil = "<script>alert(1)</script>"
    plain = [{**r, "call_id": f"{r['call_id']}-plain"}  # a call_id is counted once per run
             for r in run_of(seed=2, calls=10, scenario="plain")]
    base_records = run_of(seed=1, scenario=evil) + plain
    new_records = shifted(base_records, 1.5)
    base = write_run(tmp_path / "base", base_records)
    new = write_run(tmp_path / "new", new_records)
    main(["compare", str(base), str(new)])
    page = (new / "report.html").read_text()
    assert 'id="compare"' in page and "Compared with the baseline" in page
    assert evil not in page
    assert "scenario &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "regression(s)" in page and "latency_p95_ms" in page
    section = page.split('<section id="compare-section">')[1].split("</section>")[0]
    assert "src=" not in section and "http" not in section  # inline, nothing fetched
    # `callfleet report` rebuilds keep the comparison: it is read from compare.json.
    (new / "report.html").unlink()
    assert main(["report", str(new)]) == 1  # the gates pass; the regression decides
    assert "Compared with the baseline" in (new / "report.html").read_text()


# --- a run config's regression: section ----------------------------------------------------


def test_a_run_with_a_regression_exits_1_even_when_every_gate_passes(tmp_path):
    from orchestration.config import RunConfig

    records = run_of(seed=2)
    base = write_run(tmp_path / "base", records)
    config = RunConfig.model_validate({
        "personas": {"cooperative-john": 1}, "load": {"total_calls": 40, "max_concurrency": 1,
                                                      "calls_per_second": 1},
        "regression": {"baseline": str(base), "allow": {"latency_p95_ms": "+10%"}}})
    with RunStore(tmp_path / "new") as store:
        compare_for_config(store.run_dir, "r-new", shifted(records, 1.5), config.regression,
                           load_run(base))
        summary = finish_run(store, shifted(records, 1.5), run_id="r-new", target="t",
                             planned=40, partial=False, gates=LENIENT_GATES)
    assert all(g["passed"] for g in summary["gates"])
    assert summary["regression"]["regressions"] == 2
    assert exit_code(summary) == 1


def test_run_config_compares_after_the_run_and_its_exit_code_counts_the_regression(
        tmp_path, monkeypatch, capsys):
    """The wiring of orchestration/run.py, with a fake fleet instead of Ray and calls."""
    import orchestration.run as run_module
    from orchestration.config import RunConfig

    records = run_of(seed=2)
    base = write_run(tmp_path / "base", records)

    class FakeFleet:
        speech_stats = None  # no Ray Serve speech in this run

        def __init__(self, config, target, store, live=None):
            self.records = {r["call_id"]: r for r in shifted(records, 1.5)}

    @contextlib.asynccontextmanager
    async def no_progress(fleet, console):
        yield

    async def drive(fleet, spare):
        return False

    monkeypatch.setattr(run_module, "Fleet", FakeFleet)
    monkeypatch.setattr(run_module, "start_ray", lambda address: None)
    monkeypatch.setattr(run_module, "_drive", drive)
    monkeypatch.setattr(run_module, "reference_agent",
                        lambda *a: contextlib.nullcontext("http://127.0.0.1:9"))
    config = RunConfig.model_validate({
        "personas": {"cooperative-john": 1}, "gates": LENIENT_GATES,
        "load": {"total_calls": 40, "max_concurrency": 1, "calls_per_second": 1},
        "regression": {"baseline": str(base), "resamples": 500}})
    assert run_module.run_config(config, tmp_path / "runs") == 1
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "compare.json").read_text())["method"]["resamples"] == 500
    assert json.loads((run_dir / "summary.json").read_text())["regression"]["regressions"] == 2
    assert "REGRESSION" in capsys.readouterr().out


def test_regression_section_is_validated_with_the_config(tmp_path):
    from orchestration.config import load_run_config

    base = write_run(tmp_path / "base", run_of(seed=1, calls=5))

    def config(section):
        path = tmp_path / "run.yaml"
        path.write_text(yaml.safe_dump({
            "personas": {"cooperative-john": 1},
            "load": {"total_calls": 2, "max_concurrency": 1, "calls_per_second": 1},
            "regression": section}))
        return path

    good = load_run_config(config({"baseline": str(base), "allow": {
        "latency_p95_ms": "+10%", "completion_rate": "-5 points",
        "understanding.amount": "-5 points", "dead_air_per_call": 0.1}}))
    assert good.regression.allowances()["completion_rate"].value == 5.0
    with pytest.raises(ConfigError) as bad:
        load_run_config(config({"baseline": str(base), "allow": {"latency_p95_ms": "+10 parsecs"}}))
    assert "regression.allow" in str(bad.value) and "latency_p95_ms '+10 parsecs'" in str(bad.value)
    with pytest.raises(ConfigError, match="completion_rate gets worse going down"):
        load_run_config(config({"baseline": str(base), "allow": {"completion_rate": "+5 points"}}))
    with pytest.raises(ConfigError, match="no such run directory"):
        load_run_config(config({"baseline": str(tmp_path / "nope")}))


# --- bad input -----------------------------------------------------------------------------


def test_bad_inputs_exit_2_with_one_line_and_no_traceback(tmp_path, capsys):
    good = write_run(tmp_path / "good", run_of(seed=1, calls=5))
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = write_run(tmp_path / "broken", run_of(seed=1, calls=5))
    (broken / "summary.json").write_text("{not json")
    cases = [
        (["compare", str(tmp_path / "missing"), str(good)], "not a callfleet run directory"),
        (["compare", str(good), str(empty)], "summary.json: not found"),
        (["compare", str(good), str(broken)], "summary.json: not valid JSON"),
        (["compare", str(good), str(good), "--allow", "latency_p95_ms=+10 parsecs"],
         "latency_p95_ms '+10 parsecs'"),
        (["compare", str(good), str(good), "--allow", "latency_p95=+10%"], "unknown metric"),
        (["compare", str(good), str(good), "--allow", "latency_p95_ms"], "METRIC=CHANGE"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        line = one_line(capsys.readouterr().err)
        assert line.startswith("callfleet: error: ") and expected in line, line


def test_allowances_parse_in_the_documented_forms():
    assert parse_allowance("latency_p95_ms", "+10%").relative
    assert parse_allowance("latency_p50_ms", "150 ms").value == 150.0
    assert parse_allowance("completion_rate", "-5 pts").unit == "points"
    assert parse_allowance("dead_air_per_call", 0.2).unit == "per call"
    for metric, text in [("completion_rate", "5"), ("latency_p95_ms", "+5 points"),
                         ("latency_p95_ms", "-10%"), ("completion_rate", True)]:
        with pytest.raises(ValueError, match=metric):
            parse_allowance(metric, text)
