"""Whole runs through the CLI against a lean reference agent (no Whisper on either side).

Three real runs at once (Ray, caller hosts, real WebSocket media, Piper, VAD): two against the
same clean agent and one against the agent with a planted --response-delay-ms 300. The second
run serves live metrics, scraped while it goes. Then `callfleet compare`: the clean pair shows no
regression, the slow run is flagged on latency with its interval printed.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e

CALLS = 4
RUN_TIMEOUT_S = 240


# Three lines, then the caller hangs up: two response latencies per call, a short call.
SCRIPT = {"id": "short-card-dispute", "goal": "Start a card dispute, then hang up.",
          "flow": "card_dispute",
          "script": [{"say": "I want to dispute a charge on my card.", "after_agent_ms": 600},
                     {"say": "John.", "after_agent_ms": 600},
                     {"say": "Smith. Sorry, I have to go. Goodbye.", "after_agent_ms": 600}]}


def _config(path: Path, *agent_args: str) -> Path:
    scenario = path.parent / "short-card-dispute.yaml"
    scenario.write_text(yaml.safe_dump(SCRIPT))
    path.write_text(yaml.safe_dump({
        "name": path.stem, "seed": 3,
        "target": {"url": "reference", "transport": "pcm-ws",
                   "reference_agent_args": ["--lean", *agent_args]},
        "personas": {"cooperative-john": 1, "fast-talker-emily": 1},
        "scenarios": {str(scenario): 1},
        "speech": {"stt": "none"},
        "load": {"total_calls": CALLS, "max_concurrency": CALLS, "calls_per_second": 1.0},
        "fleet": {"hosts": 1, "max_call_s": 120.0},
    }))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str, timeout_s: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestration.cli", *args], text=True,
                          capture_output=True, timeout=timeout_s)


def _scrape(port: int) -> dict[str, float]:
    """Every sample of the endpoint as {name{labels}: value}; {} when it is not up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def _total(samples: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in samples.items() if k.split("{")[0] == prefix)


def _run_dir(out: Path) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The three runs at once (lean calls cost little CPU, and the agents answer on their own
    schedule); the clean one's live endpoint is scraped every half second while it goes."""
    root = tmp_path_factory.mktemp("lean-runs")
    port = _free_port()
    procs, outs = {}, {}
    for name in ("baseline", "clean", "slow"):
        config = _config(root / f"{name}.yaml",
                         *(("--response-delay-ms", "300") if name == "slow" else ()))
        outs[name] = root / name
        watched = ("--metrics-port", str(port)) if name == "clean" else ()
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "orchestration.cli", "run", str(config), "--out",
             str(outs[name]), *watched], text=True, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
    scrapes = []
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while any(p.poll() is None for p in procs.values()) and time.monotonic() < deadline:
        if procs["clean"].poll() is None:
            scrapes.append(_scrape(port))
        time.sleep(0.5)
    dirs, outputs = {}, {"scrapes": [s for s in scrapes if s]}
    for name, proc in procs.items():
        proc.kill() if proc.poll() is None else None
        result = outputs[name] = subprocess.CompletedProcess(proc.args, proc.wait(),
                                                             proc.stdout.read(), "")
        assert result.returncode in (0, 1), (name, result.stdout[-3000:])
        dirs[name] = _run_dir(outs[name])
    return dirs, outputs


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "calls.jsonl").read_text().splitlines()]


def test_lean_runs_complete_every_call_without_transcribing(runs):
    dirs, _ = runs
    for name, run_dir in dirs.items():
        records = _records(run_dir)
        assert len(records) == CALLS and len({r["call_id"] for r in records}) == CALLS, name
        assert all(r["status"] == "completed" for r in records), [
            (r["call_id"], r["failure_reason"]) for r in records]
        for record in records:
            assert not [s for s in record.get("stages", []) if s["stage"] == "stt"]
            assert len(record["metrics"]["response_latency_ms"]) >= 2, record["call_id"]


def test_live_endpoint_moves_while_the_run_goes(runs):
    _, outputs = runs
    scrapes = outputs["scrapes"]
    assert len(scrapes) >= 10, len(scrapes)
    started = [_total(s, "callfleet_calls_started_total") for s in scrapes]
    finished = [_total(s, "callfleet_calls_finished_total") for s in scrapes]
    latencies = [_total(s, "callfleet_response_latency_seconds_count") for s in scrapes]
    assert started == sorted(started) and finished == sorted(finished)
    # Counters moved while the endpoint was up: every call seen started, calls seen finishing
    # part-way (the endpoint closes as the run ends, so the last calls may finish unseen).
    assert started[-1] == CALLS and finished[0] == 0 and 0 < finished[-1] <= CALLS, finished
    assert any(0 < f < CALLS for f in finished), finished
    # The latency histogram filled as calls ended: empty, then 2 turns per finished call.
    assert latencies[0] == 0 and latencies[-1] >= 2 * (finished[-1] - 1) and latencies[-1] > 0, (
        latencies, finished)
    assert latencies == sorted(latencies)
    assert max(_total(s, "callfleet_active_calls") for s in scrapes) >= 1


def _overall(compared: dict, metric: str) -> dict:
    (row,) = [r for r in compared["rows"] if r["slice"] is None and r["metric"] == metric]
    return row


def test_same_clean_agent_twice_is_no_regression(runs):
    dirs, _ = runs
    result = _cli("compare", str(dirs["baseline"]), str(dirs["clean"]), timeout_s=120)
    assert result.returncode == 0, result.stdout[-3000:]
    compared = json.loads((dirs["clean"] / "compare.json").read_text())
    assert compared["regressions"] == 0, [r["text"] for r in compared["rows"]
                                          if r["verdict"] == "regression"]
    latency = _overall(compared, "latency_p50_ms")
    assert latency["verdict"] == "ok" and abs(latency["change_abs"]) < 60, latency["text"]
    assert "no regression" in result.stdout


def test_planted_300_ms_is_flagged_on_latency_with_its_interval(runs):
    dirs, _ = runs
    result = _cli("compare", str(dirs["baseline"]), str(dirs["slow"]), timeout_s=120)
    assert result.returncode == 1, result.stdout[-3000:]
    compared = json.loads((dirs["slow"] / "compare.json").read_text())
    latency = _overall(compared, "latency_p50_ms")
    assert latency["verdict"] == "regression", latency["text"]
    assert 240 <= latency["change_abs"] <= 360, latency["text"]  # the planted 300 ms
    low, high = latency["ci"]
    assert low > latency["allowed"]["value"] and low <= latency["change"] <= high, latency
    assert "REGRESSION" in result.stdout and "95% CI" in result.stdout, result.stdout[-3000:]
