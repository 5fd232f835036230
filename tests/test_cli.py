"""The `callfleet` command line: exit codes, one-line user errors, personas and report."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from callers.persona import PERSONAS_DIR
from callers.record import CallRecord
from orchestration.cli import main

CALLFLEET = Path(sys.executable).with_name("callfleet")
SHIPPED = sorted(p.stem for p in PERSONAS_DIR.glob("*.yaml"))


def good_persona() -> dict:
    return yaml.safe_load((PERSONAS_DIR / "cooperative-john.yaml").read_text())


def write_yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


# --- personas ------------------------------------------------------------------------------


def test_personas_list_prints_every_shipped_persona_and_exits_0(capsys):
    assert len(SHIPPED) >= 3
    assert main(["personas", "list"]) == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert listed == SHIPPED
    assert "John Smith" in out


def test_scenarios_list_and_validate_work_like_the_persona_commands(tmp_path, capsys):
    assert main(["scenarios", "list"]) == 0
    out = capsys.readouterr().out
    assert "card-dispute" in out and "amount (money)" in out
    good = write_yaml(tmp_path / "s.yaml", {
        "id": "my-booking", "goal": "Book a table",
        "facts": {"party_size": {"type": "number", "value": 4}}})
    assert main(["scenarios", "validate", str(good)]) == 0
    assert ": ok (my-booking)" in capsys.readouterr().out


@pytest.mark.parametrize(("facts", "success", "field", "expected"), [
    ({"when": {"type": "datetime", "value": "x"}}, {}, "facts.when.type", "unknown fact type"),
    ({"day": {"type": "date", "value": "next tuesday"}}, {}, "facts.day", "expected a date"),
    ({"seats": {"type": "number", "value": 2}}, {"read_back": ["table"]}, "success.read_back",
     "unknown fact 'table'"),
    ({"zone": {"type": "choice", "value": "patio"}}, {}, "facts.zone", "a choice needs options"),
], ids=["unknown-type", "value-does-not-parse", "unknown-fact-in-success", "choice-no-options"])
def test_bad_scenario_file_exits_2_with_one_line_naming_file_and_field(
        tmp_path, capsys, facts, success, field, expected):
    path = write_yaml(tmp_path / "bad.yaml", {"id": "bad", "goal": "g", "facts": facts,
                                              "success": success})
    assert main(["scenarios", "validate", str(path)]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith(f"{path}: {field}")
    assert expected in lines[0]


def test_personas_validate_good_file_exits_0_and_says_ok(tmp_path, capsys):
    path = write_yaml(tmp_path / "mine.yaml", good_persona() | {"id": "my-caller"})
    assert main(["personas", "validate", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == f"{path}: ok (my-caller)"
    assert captured.err == ""


def test_personas_validate_accepts_every_shipped_file(capsys):
    files = [str(p) for p in sorted(PERSONAS_DIR.glob("*.yaml"))]
    assert main(["personas", "validate", *files]) == 0
    assert capsys.readouterr().out.count(": ok (") == len(files)


@pytest.mark.parametrize(
    ("change", "field", "expected"),
    [
        (lambda d: d | {"colour": "red"}, "colour", "unknown field"),
        (lambda d: d | {"environment": {"noise": "white", "snr_db": 99}},
         "environment.snr_db", "between -10 and 60"),
        (lambda d: {k: v for k, v in d.items() if k != "display_name"},
         "display_name", "field required"),
        (lambda d: d | {"voice": {"speaking_rate": "fast"}}, "voice.speaking_rate",
         "expected a number"),
    ],
    ids=["unknown-field", "snr-out-of-range", "missing-field", "wrong-type"],
)
def test_personas_validate_bad_file_exits_2_with_one_line_naming_file_and_field(
    tmp_path, capsys, change, field, expected
):
    path = write_yaml(tmp_path / "bad.yaml", change(good_persona()))
    assert main(["personas", "validate", str(path)]) == 2
    captured = capsys.readouterr()
    lines = error_lines(captured.err)
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"{path}: {field}: ")
    assert expected in lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_personas_validate_missing_file_exits_2_with_one_line(tmp_path, capsys):
    path = tmp_path / "nowhere.yaml"
    assert main(["personas", "validate", str(path)]) == 2
    captured = capsys.readouterr()
    lines = error_lines(captured.err)
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}: ")
    assert "cannot read" in lines[0]
    assert "Traceback" not in captured.err


def test_personas_validate_invalid_yaml_names_the_line(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("id: x\nfacts: [unclosed\n")
    assert main(["personas", "validate", str(path)]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith(f"{path}: invalid YAML at line ")


def test_personas_validate_reports_each_bad_file_and_still_checks_the_good_one(tmp_path, capsys):
    good = write_yaml(tmp_path / "good.yaml", good_persona())
    bad1 = write_yaml(tmp_path / "bad1.yaml", good_persona() | {"snr": 3})
    bad2 = tmp_path / "missing.yaml"
    assert main(["personas", "validate", str(bad1), str(good), str(bad2)]) == 2
    captured = capsys.readouterr()
    assert f"{good}: ok" in captured.out
    lines = error_lines(captured.err)
    assert [line.split(":")[0] for line in lines] == [str(bad1), str(bad2)]


# --- report --------------------------------------------------------------------------------


def test_report_on_missing_directory_exits_2_with_one_line(tmp_path, capsys):
    run_dir = tmp_path / "no-such-run"
    assert main(["report", str(run_dir)]) == 2
    captured = capsys.readouterr()
    lines = error_lines(captured.err)
    assert len(lines) == 1
    assert lines[0].startswith("callfleet: error: ") and str(run_dir) in lines[0]
    assert "Traceback" not in captured.err
    assert not run_dir.exists()  # reporting on a typo must not create a run directory


def record(call_id: str, status: str, latencies: list[float], correct: dict[str, bool],
           reason: str | None = None) -> dict:
    data = CallRecord(
        call_id=call_id, persona="cooperative-john", seed=1, target="http://127.0.0.1:9/offer",
        status=status, failure_reason=reason, started_at=1_700_000_000.0, duration_s=30.0,
    ).to_dict()
    data["metrics"] = {"response_latency_ms": latencies, "barge_in_stop_ms": [],
                       "talk_over": 0, "false_yield": 0, "premature_cutoff": 0, "dead_air": 0}
    data["understanding"] = {"expected": {k: "x" for k in correct}, "understood": {},
                             "correct": correct, "source": "agent-state"}
    return data


def test_report_rebuilds_summary_and_warns_about_a_truncated_line(tmp_path, capsys):
    run_dir = tmp_path / "run-1"
    run_dir.mkdir()
    ok = record("c1", "completed", [400.0, 600.0], {"amount": True, "last_name": True})
    failed = record("c2", "failed", [], {"amount": False}, reason="no_agent_audio")
    truncated = json.dumps(record("c3", "completed", [500.0], {"amount": True}))[:60]
    (run_dir / "calls.jsonl").write_text(
        json.dumps(ok) + "\n" + json.dumps(failed) + "\n" + truncated
    )

    assert main(["report", str(run_dir)]) == 1  # default gates fail on these two records (no barge-ins, 50% completion)
    captured = capsys.readouterr()

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["calls"]["started"] == 2
    assert summary["calls"]["completed"] == 1
    assert summary["calls"]["failed"] == 1
    assert summary["calls"]["failure_reasons"] == {"no_agent_audio": 1}
    assert summary["latency_ms"]["n"] == 2
    assert summary["run_id"] == "run-1"
    warnings = [line for line in error_lines(captured.err) if "warning" in line]
    assert len(warnings) == 1
    assert "calls.jsonl:3" in warnings[0]
    assert "Traceback" not in captured.err
    # The original calls.jsonl is left exactly as it was.
    assert (run_dir / "calls.jsonl").read_text().endswith(truncated)


def test_report_keeps_planned_calls_from_the_previous_summary(tmp_path, capsys):
    run_dir = tmp_path / "run-2"
    run_dir.mkdir()
    (run_dir / "calls.jsonl").write_text(json.dumps(record("c1", "completed", [300.0], {})) + "\n")
    (run_dir / "summary.json").write_text(json.dumps(
        {"run_id": "r-orig", "target": "http://127.0.0.1:9/offer", "calls": {"planned": 5}}))
    main(["report", str(run_dir)])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["run_id"] == "r-orig"
    assert summary["calls"]["planned"] == 5
    assert summary["calls"]["not_started"] == 4
    assert summary["partial"] is True
    # Completion is over the one call placed; the four never placed are shown as such.
    assert summary["completion"] == {"rate": 1.0, "task_rate": 0.0, "n": 1, "not_placed": 4}


# --- usage errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["demo", "--calls", "0"], ["demo", "--concurrency", "-1"], ["demo", "--calls", "two"],
     ["frobnicate"], []],
)
def test_usage_errors_exit_2_from_argparse(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: callfleet")
    assert "Traceback" not in err


def test_demo_calls_0_error_says_what_was_expected(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--calls", "0"])
    assert "--calls: expected a whole number above 0, got '0'" in capsys.readouterr().err


def test_installed_console_script_gives_one_line_and_exit_2_for_a_user_error(tmp_path):
    assert CALLFLEET.exists(), "the callfleet console script is installed in the venv"
    result = subprocess.run([str(CALLFLEET), "report", str(tmp_path / "missing")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert len(error_lines(result.stderr)) == 1
    assert "Traceback" not in result.stderr
    listed = subprocess.run([str(CALLFLEET), "personas", "list"],
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()] == SHIPPED


# --- demo --llm-* ------------------------------------------------------------------------------

LLM_KEY_ENV = "CALLFLEET_TEST_CLI_KEY"


@pytest.fixture
def captured_run(monkeypatch):
    """Stands in for run_config: the demo's config is captured, nothing is started."""
    import orchestration.run

    configs = []
    monkeypatch.setattr(orchestration.run, "run_config",
                        lambda config, out, **_: configs.append(config) or 0)
    return configs


def test_demo_llm_flags_put_an_llm_brain_section_in_the_demo_config(monkeypatch, captured_run):
    monkeypatch.setenv(LLM_KEY_ENV, "sk-canary-cli")
    assert main(["demo", "--llm-base-url", "http://127.0.0.1:8000/v1", "--llm-model", "qwen",
                 "--llm-api-key-env", LLM_KEY_ENV]) == 0
    brain = captured_run[0].brain
    assert (brain.kind, brain.base_url, brain.model) == ("llm", "http://127.0.0.1:8000/v1",
                                                          "qwen")
    assert brain.api_key_env == LLM_KEY_ENV and brain.timeout_s == 8.0
    assert "sk-canary-cli" not in captured_run[0].model_dump_json()


def test_demo_without_llm_flags_keeps_the_scripted_brain(captured_run):
    assert main(["demo"]) == 0
    assert captured_run[0].brain.kind == "scripted"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--llm-model", "qwen"], "--llm-base-url is required with --llm-model"),
        (["--llm-base-url", "http://127.0.0.1:8000/v1"],
         "--llm-model is required with --llm-base-url"),
        (["--llm-base-url", "127.0.0.1:8000", "--llm-model", "qwen"],
         "--llm-* flags: base_url: must be an http:// or https:// URL"),
        (["--llm-base-url", "http://127.0.0.1:8000/v1", "--llm-model", "qwen",
          "--llm-api-key-env", "CALLFLEET_TEST_UNSET_KEY"],
         "environment variable CALLFLEET_TEST_UNSET_KEY (the API key for "
         "http://127.0.0.1:8000/v1) is not set"),
    ],
)
def test_demo_llm_flag_errors_exit_2_with_one_line_before_anything_starts(
        flags, expected, monkeypatch, captured_run, capsys):
    monkeypatch.delenv("CALLFLEET_TEST_UNSET_KEY", raising=False)
    assert main(["demo", *flags]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and expected in lines[0], lines
    assert captured_run == []
