"""Bad input, everywhere: every file and flag is checked at the edge, and bad input is one line
naming the file and field (exit 2), never a traceback, a hang, silent acceptance, a whole
multi-megabyte value or a secret echoed back."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callers.errors import ConfigError
from callers.persona import PERSONAS_DIR, load_persona
from callers.safe_yaml import MAX_VALUES, load_yaml
from callers.scenario import SCENARIOS_DIR, load_scenario
from orchestration.cli import main
from orchestration.config import load_run_config
from orchestration.ray_address import check_address, parse_address

SECRET = "sk-live-canary-0042-secret"
BASE = {"personas": {"cooperative-john": 1},
        "load": {"total_calls": 2, "max_concurrency": 1, "calls_per_second": 1}}
MAX_LINE = 400  # what an error line may cost, whatever the input
FUZZ = settings(max_examples=150, deadline=2000, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def write_config(tmp_path: Path, filename: str = "run.yaml", **sections) -> Path:
    path = tmp_path / filename
    path.write_text(json.dumps({**BASE, **sections}))  # JSON is YAML
    return path


def config_error(path: Path, load=load_run_config) -> str:
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message and len(message) <= MAX_LINE, message[:500]
    return message


def cli_error(argv: list[str], capsys) -> str:
    """Runs the CLI; it must exit 2 with exactly one line on stderr and no traceback."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    captured = capsys.readouterr()
    assert code == 2, captured
    assert "Traceback" not in captured.err + captured.out
    lines = [line for line in captured.err.splitlines() if line.strip()
             and not line.startswith("usage:") and not line.startswith("  ")]
    assert len(lines) == 1, captured.err
    assert len(lines[0]) <= MAX_LINE + 40
    return lines[0]


# --- files that are not UTF-8 text, or not readable ----------------------------------------

NOT_UTF8 = {
    "binary": bytes(range(256)) * 8,
    "latin-1": "id: caf\xe9\ndisplay_name: Zo\xeb\n".encode("latin-1"),
    "utf-16": "id: cafe\ndisplay_name: Zoe\n".encode("utf-16"),
    "nul-bytes": b"id: a\x00b\n",
}


@pytest.mark.parametrize("kind", list(NOT_UTF8))
@pytest.mark.parametrize("load", [load_run_config, load_persona, load_scenario],
                         ids=["run-config", "persona", "scenario"])
def test_a_file_that_is_not_utf8_text_is_one_line_naming_the_file(tmp_path, kind, load):
    path = tmp_path / "bad.yaml"
    path.write_bytes(NOT_UTF8[kind])
    message = config_error(path, load)
    assert message.startswith(f"{path}: ")
    assert "UTF-8" in message or "binary" in message


def test_persona_validate_on_a_latin1_file_exits_2_naming_it(tmp_path, capsys):
    path = tmp_path / "old.yaml"
    path.write_bytes(NOT_UTF8["latin-1"])
    try:
        code = main(["personas", "validate", str(path)])
    finally:
        err = capsys.readouterr().err
    assert code == 2 and err.strip() == (f"{path}: persona file is not UTF-8 text (byte 0xe9 at "
                                         "line 1; save it as UTF-8)")


@pytest.mark.parametrize("load", [load_run_config, load_persona, load_scenario])
def test_a_directory_or_missing_file_is_one_line(tmp_path, load):
    assert "cannot read" in config_error(tmp_path, load)  # a directory: EISDIR
    assert "No such file" in config_error(tmp_path / "absent.yaml", load)


# --- YAML alias bombs, recursion, duplicate keys --------------------------------------------

def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("load", [load_run_config, load_persona, load_scenario])
def test_an_alias_bomb_is_refused_quickly_without_echoing_it(tmp_path, load):
    path = tmp_path / "bomb.yaml"
    path.write_text(billion_laughs())  # 9**9 strings once expanded
    began = time.monotonic()
    message = config_error(path, load)
    assert time.monotonic() - began < 2
    assert "alias" in message and "lol" not in message


def test_a_self_referring_alias_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("personas: &p [*p]\n")
    assert "refers to the value that contains it" in config_error(path)


def test_aliases_within_the_bound_still_work(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("defaults: &d {calls_per_second: 1}\nlist: [*d, *d, *d]\n"
                    "merged: {<<: *d, calls_per_second: 2}\n")
    data = load_yaml(path, "test")
    assert data["list"] == [{"calls_per_second": 1}] * 3
    assert data["merged"] == {"calls_per_second": 2}  # a merge key may be overridden
    assert MAX_VALUES >= 10_000


def test_deeply_nested_yaml_is_one_line(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("personas: " + "[" * 5000 + "]" * 5000 + "\n")
    config_error(path)


def test_a_duplicate_key_is_refused_naming_the_key_and_line(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("personas: {cooperative-john: 1}\n"
                    "load: {total_calls: 2, max_concurrency: 1, calls_per_second: 1}\n"
                    "seed: 3\n"
                    "load: {total_calls: 900, max_concurrency: 1, calls_per_second: 1}\n")
    assert config_error(path) == (f"{path}: duplicate key 'load' at line 4 (first at line 2): "
                                  "each key may appear once in a mapping")


def test_a_duplicate_key_in_a_persona_is_refused(tmp_path):
    data = (PERSONAS_DIR / "cooperative-john.yaml").read_text()
    path = tmp_path / "p.yaml"
    path.write_text(data + "\ndisplay_name: Someone Else\n")
    assert "duplicate key 'display_name'" in config_error(path, load_persona)


def test_shipped_files_have_no_duplicate_keys():
    for folder, load in ((PERSONAS_DIR, load_persona), (SCENARIOS_DIR, load_scenario)):
        for path in folder.glob("*.yaml"):
            load(path)
    for path in (Path(__file__).parents[1] / "configs").glob("*.yaml"):
        load_yaml(path, "run config")


# --- target URLs -----------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "transport", "expected"), [
    ("127.0.0.1:9/offer", "webrtc", "webrtc expects a http:// or https:// URL"),
    ("ftp://127.0.0.1/offer", "webrtc", "webrtc expects a http:// or https:// URL"),
    ("http://127.0.0.1:0/offer", "webrtc", "port must be a number from 1 to 65535, got '0'"),
    ("http://127.0.0.1:70000/offer", "webrtc", "port must be a number from 1 to 65535"),
    ("http://127.0.0.1:abc/offer", "webrtc", "got 'abc'"),
    ("http:///offer", "webrtc", "no host"),
    ("http://", "webrtc", "no host"),
    ("", "webrtc", "url is empty"),
    ("   ", "webrtc", "url is empty"),
    ("ws://127.0.0.1:70000/pcm", "pcm-ws", "port must be a number from 1 to 65535"),
    ("wss:///twilio", "twilio-ws", "no host"),
    ("http://127.0.0.1:9/pcm", "pcm-ws", "pcm-ws expects a ws:// or wss:// URL"),
    ("sip:agent@127.0.0.1:70000", "sip", "expected a sip:user@host[:port] URI"),
])
def test_a_bad_target_url_is_one_line_naming_the_field(tmp_path, url, transport, expected):
    path = write_config(tmp_path, target={"url": url, "transport": transport})
    message = config_error(path)
    assert message.startswith(f"{path}: target: ") and expected in message, message


def test_a_good_target_url_with_a_port_is_accepted(tmp_path):
    path = write_config(tmp_path, target={"url": "https://agent.example:8443/offer"})
    assert load_run_config(path).target.url == "https://agent.example:8443/offer"


# --- numbers that pass but mean nothing ---------------------------------------------------

LOAD = BASE["load"]


@pytest.mark.parametrize(("sections", "field", "expected"), [
    ({"load": {**LOAD, "total_calls": True}}, "load.total_calls", "expected a whole number"),
    ({"load": {**LOAD, "total_calls": "5"}}, "load.total_calls", "expected a whole number"),
    ({"load": {**LOAD, "total_calls": 2.5}}, "load.total_calls", "expected a whole number"),
    ({"load": {**LOAD, "total_calls": 10**12}}, "load.total_calls", "less than or equal to"),
    ({"load": {**LOAD, "max_concurrency": True}}, "load.max_concurrency", "whole number"),
    ({"fleet": {"hosts": 10**6}}, "fleet.hosts", "less than or equal to 10000"),
    ({"fleet": {"hosts": True}}, "fleet.hosts", "expected a whole number"),
    ({"seed": -5}, "seed", "greater than or equal to 0"),
    ({"seed": True}, "seed", "expected a whole number"),
    ({"personas": {"cooperative-john": True}}, "personas.cooperative-john", "a number"),
    ({"load": {**LOAD, "phases": [{"kind": "ramp", "start": 1, "steps": True, "hold_s": 1}]}},
     "load.phases.0.steps", "expected a whole number"),
    ({"load": {**LOAD, "phases": [{"kind": "spike", "base": 1, "multiplier": 1e9,
                                   "base_s": 1, "spike_s": 1, "recover_s": 1}]}},
     "load.phases.0.multiplier", "less than or equal to 1000"),
])
def test_numbers_that_would_mean_nothing_are_refused(tmp_path, sections, field, expected):
    message = config_error(write_config(tmp_path, **sections))
    assert f": {field}: " in message and expected in message, message


@pytest.mark.parametrize(("text", "field"), [
    ("personas: {cooperative-john: .nan}", "personas.cooperative-john"),
    ("personas: {cooperative-john: .inf}", "personas.cooperative-john"),
    ("personas: {cooperative-john: 1}\nfleet: {max_call_s: .inf}", "fleet.max_call_s"),
    ("personas: {cooperative-john: 1}\nfleet: {null_call_s: .nan}", "fleet.null_call_s"),
])
def test_nan_and_inf_weights_and_durations_are_refused(tmp_path, text, field):
    path = tmp_path / "run.yaml"
    path.write_text(text + "\nload: {total_calls: 2, max_concurrency: 1, "
                    "calls_per_second: 1, phases: [{kind: soak, concurrency: 1, "
                    "duration_s: 60}]}\n")
    message = config_error(path)
    assert f": {field}: expected a finite number" in message, message
    phases = tmp_path / "phases.yaml"
    phases.write_text("personas: {cooperative-john: 1}\nload: {total_calls: 2, "
                      "max_concurrency: 1, calls_per_second: 1, phases: [{kind: baseline, "
                      "concurrency: 1, duration_s: .inf}]}\n")
    assert "load.phases.0.duration_s: expected a finite number" in config_error(phases)


def test_persona_numbers_refuse_true_nan_and_inf(tmp_path):
    base = yaml.safe_load((PERSONAS_DIR / "cooperative-john.yaml").read_text())
    for change, field in [({"voice": {"variant": True}}, "voice.variant"),
                          ({"temperament": {"patience": float("nan")}}, "temperament.patience"),
                          ({"environment": {"snr_db": float("inf")}}, "environment.snr_db")]:
        path = tmp_path / "p.yaml"
        path.write_text(yaml.safe_dump({**base, **change}))
        assert f": {field}: " in config_error(path, load_persona)


# --- secrets pasted where a variable's name belongs -----------------------------------------

@pytest.mark.parametrize("field", ["token_env", "auth_username_env", "auth_password_env"])
def test_a_secret_pasted_into_an_env_field_is_refused_and_never_echoed(tmp_path, field):
    target = ({"url": "sip:agent@127.0.0.1:5060", "transport": "sip",
               "auth_username_env": "SIP_USER", "auth_password_env": "SIP_PASS"}
              if field != "token_env" else {"url": "http://127.0.0.1:9/offer"})
    target[field] = SECRET
    message = config_error(write_config(tmp_path, target=target))
    assert f"target.{field}: expected the NAME of an environment variable" in message
    assert SECRET not in message and "canary" not in message


def test_an_overlong_env_name_is_refused(tmp_path):
    message = config_error(write_config(tmp_path, target={"url": "http://127.0.0.1:9/offer",
                                                          "token_env": "A" * 500}))
    assert "expected the NAME" in message and "AAAAAAAA" not in message


def test_a_secret_in_the_llm_flags_is_never_echoed(tmp_path, capsys):
    line = cli_error(["demo", "--llm-base-url", "http://127.0.0.1:8000/v1", "--llm-model", "m",
                      "--llm-api-key-env", SECRET, "--out", str(tmp_path)], capsys)
    assert "api_key_env" in line and SECRET not in line


# --- multi-megabyte values -----------------------------------------------------------------

@pytest.mark.parametrize("sections", [
    {"target": {"url": "http://" + "h" * 1_500_000}},
    {"target": {"url": "x" * 1_500_000}},
    {"name": "n" * 1_500_000},
    {"load": {**LOAD, "total_calls": "9" * 1_000_000}},
    {"personas": {"cooperative-john": "w" * 1_000_000}},
    {"target": {"url": "http://127.0.0.1:9/offer", "headers": {"X": "v"}}},  # not for webrtc
])
def test_a_huge_value_is_never_echoed_whole(tmp_path, sections):
    message = config_error(write_config(tmp_path, **sections))
    assert message.startswith(str(tmp_path))


def test_a_file_over_the_size_limit_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("name: " + "x" * 3_000_000 + "\n")
    assert "larger than" in config_error(path)


def test_a_huge_persona_value_is_bounded(tmp_path):
    base = yaml.safe_load((PERSONAS_DIR / "cooperative-john.yaml").read_text())
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({**base, "environment": {"noise": "z" * 1_000_000}}))
    assert "environment.noise" in config_error(path, load_persona)


# --- the command line ---------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["agent", "--port", "70000"], ["agent", "--port", "-1"], ["agent", "--port", "http"],
    ["agent", "--sip-port", "99999"], ["demo", "--seed", "-1"], ["demo", "--seed", "9" * 30],
    ["compare", "a", "b", "--seed", "-3"], ["demo", "--calls", "1" * 100_000],
])
def test_bad_flags_are_refused_by_argparse_before_anything_loads(argv, capsys, monkeypatch):
    import reference_agent.main

    def must_not_run(*_):
        raise AssertionError("the agent started")

    monkeypatch.setattr(reference_agent.main, "run_agent", must_not_run)
    line = cli_error(argv, capsys)
    assert "error: argument" in line


@pytest.mark.parametrize("command", ["run", "demo"])
def test_out_naming_an_existing_file_is_one_line(tmp_path, capsys, command):
    out = tmp_path / "runs"
    out.write_text("not a directory")
    config = write_config(tmp_path)
    argv = ["run", str(config)] if command == "run" else ["demo"]
    line = cli_error([*argv, "--out", str(out)], capsys)
    assert "--out" in line and "is a file, expected a directory" in line


@pytest.mark.parametrize(("argv", "expected"), [
    (["demo", "--calls", str(10**12)], "--calls 1000000000000: expected at most 1,000,000"),
    (["demo", "--concurrency", str(10**7)], "--concurrency 10000000: expected at most 100,000"),
])
def test_absurd_demo_counts_are_one_line(argv, expected, capsys, tmp_path):
    assert cli_error([*argv, "--out", str(tmp_path)], capsys) == f"callfleet: error: {expected}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nobody listens there


@pytest.mark.parametrize(("address", "expected"), [
    ("nonsense", "expected HOST:PORT"),
    ("http://127.0.0.1:6379", "unknown scheme 'http'"),
    ("127.0.0.1:70000", "expected HOST:PORT"),
    ("127.0.0.1:", "expected HOST:PORT"),
    (":6379", "expected HOST:PORT"),
    ("", "empty address"),
    ("127.0.0.1:6379/x", "expected HOST:PORT"),
])
def test_a_malformed_ray_address_is_refused_before_anything_starts(
        tmp_path, capsys, address, expected):
    line = cli_error(["run", str(write_config(tmp_path)), "--address", address,
                      "--out", str(tmp_path / "runs")], capsys)
    assert line.startswith("callfleet: error: --address") and expected in line
    assert not (tmp_path / "runs").exists()


def test_an_unreachable_ray_address_fails_fast_with_one_line(tmp_path, capsys):
    port = free_port()
    began = time.monotonic()
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        line = cli_error(["run", str(write_config(tmp_path)), "--address", address,
                          "--out", str(tmp_path / "runs")], capsys)
        assert f"no Ray cluster answers at 127.0.0.1:{port}" in line
    assert time.monotonic() - began < 10
    assert not (tmp_path / "runs").exists()


def test_a_bad_ray_address_env_var_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1")
    line = cli_error(["run", str(write_config(tmp_path)), "--out", str(tmp_path / "r")], capsys)
    assert line.startswith("callfleet: error: RAY_ADDRESS '10.0.0.1': expected HOST:PORT")


def test_ray_address_forms_that_are_accepted():
    assert parse_address("auto", "--address") is None
    assert parse_address("10.0.0.5:6379", "--address") == ("10.0.0.5", 6379)
    assert parse_address("ray://head:10001", "--address") == ("head", 10001)
    assert parse_address("[::1]:6379", "--address") == ("::1", 6379)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        check_address(f"127.0.0.1:{listener.getsockname()[1]}", "--address")  # no error


# --- calls.jsonl --------------------------------------------------------------------------

def call(call_id: str, status: str = "completed", **fields) -> dict:
    return {"call_id": call_id, "persona": "cooperative-john", "seed": 1, "status": status,
            "failure_reason": None if status == "completed" else "no_agent_audio",
            "started_at": 1_700_000_000.0, "duration_s": 30.0, "concurrency_at_start": 1,
            "turns": [{"speaker": "agent", "text": "Hello", "start_ms": 0, "end_ms": 900}],
            "events": [{"kind": "agent_speech_start", "t_ms": 0.0}],
            "metrics": {"response_latency_ms": [400.0], "barge_in_stop_ms": [],
                        "talk_over": 0, "false_yield": 0, "premature_cutoff": 0, "dead_air": 0},
            "understanding": {"expected": {"amount": "5"}, "understood": {"amount": "5"},
                              "correct": {"amount": True}, "source": "agent-state"},
            "network": {"jitter_ms": 2.0, "packet_loss_pct": 0.0, "rtt_ms": 1.0},
            "generator": {"loop_lag_ms_p99": 1.0, "pacing_late_ms_p99": 1.0}} | fields


def report(tmp_path: Path, lines: list[str], capsys) -> tuple[int, dict, list[str]]:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    (run_dir / "calls.jsonl").write_text("\n".join(lines) + "\n")
    code = main(["report", str(run_dir)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    summary = json.loads((run_dir / "summary.json").read_text())
    warnings = [x for x in captured.err.splitlines() if x.startswith("callfleet: warning:")]
    return code, summary, warnings


@pytest.mark.parametrize(("field", "value"), [
    ("status", "done"), ("status", 1), ("call_id", 7), ("call_id", ""), ("seed", "one"),
    ("duration_s", "30 s"), ("turns", "hello"), ("turns", [{"speaker": 1}]),
    ("events", [{"kind": "x", "t_ms": "soon"}]), ("metrics", [1, 2]),
    ("metrics", {"response_latency_ms": "fast"}), ("metrics", {"talk_over": True}),
    ("understanding", {"correct": {"amount": "yes"}}), ("network", {"rtt_ms": "1 ms"}),
    ("concurrency_at_start", -1), ("generator", "fine"),
])
def test_report_names_a_record_with_a_wrong_type_and_keeps_the_good_ones(
        tmp_path, capsys, field, value):
    lines = [json.dumps(call("c1")), json.dumps(call("c2") | {field: value}),
             json.dumps(call("c3", "failed"))]
    code, summary, warnings = report(tmp_path, lines, capsys)
    assert code in (0, 1)
    assert summary["calls"]["started"] == 2 and summary["calls"]["completed"] == 1
    assert len(warnings) == 1 and "calls.jsonl:2: not a call record: " in warnings[0]
    assert warnings[0].split("not a call record: ")[1].startswith(field)


def test_report_names_duplicate_records_and_counts_each_call_once(tmp_path, capsys):
    lines = [json.dumps(call("c1")), json.dumps(call("c2", "failed")), json.dumps(call("c1")),
             json.dumps(call("c2", "completed"))]
    code, summary, warnings = report(tmp_path, lines, capsys)
    assert summary["calls"]["started"] == 2 and summary["calls"]["failed"] == 1
    assert [w.split(": ")[2] for w in warnings] == ["calls.jsonl:3", "calls.jsonl:4"]
    assert "duplicate of line 1 (call_id 'c1')" in warnings[0]
    assert "duplicate of line 2" in warnings[1]


def test_report_names_the_first_ten_bad_lines_then_counts_the_rest(tmp_path, capsys):
    lines = [json.dumps(call("good"))] + ["{broken"] * 25 + [json.dumps(call("good-2"))]
    code, summary, warnings = report(tmp_path, lines, capsys)
    assert summary["calls"]["started"] == 2
    assert len(warnings) == 11
    assert [w.split(": ")[2] for w in warnings[:10]] == [f"calls.jsonl:{n}"
                                                             for n in range(2, 12)]
    assert "15 more bad or duplicate lines (skipped); 2 good records kept" in warnings[10]


def test_report_on_a_calls_file_that_is_a_directory_or_binary(tmp_path, capsys):
    run_dir = tmp_path / "run"
    (run_dir / "calls.jsonl").mkdir(parents=True)
    assert "calls.jsonl: not found" in cli_error(["report", str(run_dir)], capsys)
    other = tmp_path / "other"
    other.mkdir()
    (other / "calls.jsonl").write_bytes(bytes(range(256)) * 10 + b"\n"
                                        + json.dumps(call("c1")).encode() + b"\n")
    main(["report", str(other)])
    err = capsys.readouterr().err
    assert "Traceback" not in err and "calls.jsonl:1: " in err
    assert json.loads((other / "summary.json").read_text())["calls"]["started"] == 1


# --- properties: whatever the input, one bounded line or a valid result ---------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=60),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=12)


def _config_variants() -> st.SearchStrategy[dict]:
    """A valid config with one field somewhere replaced by an arbitrary value."""
    template = {**BASE, "seed": 1, "name": "x",
                "target": {"url": "http://127.0.0.1:9/offer", "token_env": "T"},
                "fleet": {"hosts": 1, "max_call_s": 60},
                "load": {**LOAD, "phases": [{"kind": "soak", "concurrency": 1,
                                             "duration_s": 5}]}}
    paths = [("seed",), ("name",), ("personas",), ("scenarios",), ("mix",), ("brain",),
             ("gates",), ("target", "url"), ("target", "token_env"), ("target", "transport"),
             ("target", "headers"), ("fleet", "hosts"), ("fleet", "max_call_s"),
             ("load", "total_calls"), ("load", "calls_per_second"), ("load", "phases"),
             ("evaluation",), ("regression",), ("target", "agent_state")]

    def put(path_value):
        (path, value) = path_value
        data = json.loads(json.dumps(template))
        node = data
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        return data

    return st.tuples(st.sampled_from(paths), json_values).map(put)


def _check_bounded(path: Path, load) -> None:
    try:
        load(path)
    except ConfigError as e:
        message = str(e)
        assert "\n" not in message and len(message) <= MAX_LINE, message[:500]


@FUZZ
@given(data=_config_variants())
def test_property_any_config_value_loads_or_is_one_bounded_line(tmp_path, data):
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    _check_bounded(path, load_run_config)


@FUZZ
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_property_any_bytes_as_a_data_file_load_or_are_one_bounded_line(tmp_path, raw):
    for load in (load_run_config, load_persona, load_scenario):
        path = tmp_path / "fuzz.yaml"
        path.write_bytes(raw)
        _check_bounded(path, load)


def _data_file_variants(source: Path) -> st.SearchStrategy[dict]:
    base = yaml.safe_load(source.read_text())
    keys = sorted(base)

    def put(pair):
        key, value = pair
        return {**base, key: value}

    return st.tuples(st.sampled_from(keys + ["extra"]), json_values).map(put)


@FUZZ
@given(data=_data_file_variants(PERSONAS_DIR / "cooperative-john.yaml"))
def test_property_any_persona_field_value_loads_or_is_one_bounded_line(tmp_path, data):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    _check_bounded(path, load_persona)


@FUZZ
@given(data=_data_file_variants(SCENARIOS_DIR / "card-dispute.yaml"))
def test_property_any_scenario_field_value_loads_or_is_one_bounded_line(tmp_path, data):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    _check_bounded(path, load_scenario)


RECORD_FIELDS = sorted(call("x"))


@settings(max_examples=100, deadline=5000, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(field=st.sampled_from(RECORD_FIELDS + ["phase", "task", "facts_given"]),
       value=json_values, sub=st.booleans())
def test_property_report_survives_any_field_value_and_keeps_the_good_records(
        tmp_path, capsys, field, value, sub):
    bad = call("c2")
    if sub and isinstance(bad.get(field), dict) and bad[field]:
        inner = sorted(bad[field])[0]
        bad[field] = {**bad[field], inner: value}
    else:
        bad[field] = value
    lines = [json.dumps(call("c1")), json.dumps(bad, allow_nan=True)]
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    (run_dir / "calls.jsonl").write_text("\n".join(lines) + "\n")
    (run_dir / "summary.json").unlink(missing_ok=True)
    code = main(["report", str(run_dir)])
    captured = capsys.readouterr()
    assert code in (0, 1, 2) and "Traceback" not in captured.err
    summary = json.loads((run_dir / "summary.json").read_text())
    warnings = [x for x in captured.err.splitlines() if "warning:" in x]
    assert summary["calls"]["started"] == 2 - len(warnings)  # the good record is always kept
    assert all(len(w) <= MAX_LINE for w in warnings)
