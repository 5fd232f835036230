"""Live Prometheus metrics: what a scrape of the driver's endpoint says while a run goes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from orchestration.cli import main
from orchestration.config import RunConfig
from orchestration.fleet import Fleet, HostSlot
from orchestration.live_metrics import LiveMetrics
from orchestration.run import _live_metrics
from orchestration.store import RunStore, read_records

FACTS = {"first_name": {"type": "name", "value": "John", "state_key": "first_name"},
         "last_name": {"type": "name", "value": "Smith", "state_key": "last_name"},
         "amount": {"type": "money", "value": "250", "state_key": "amount"}}


def ev(kind: str, t_ms: float, **detail) -> dict:
    return {"kind": kind, "t_ms": t_ms, **detail}


def talked(call_id: str, *, pacing_ms: float = 3.5, lag_ms: float = 1.25) -> dict:
    """A record as a host returns it, ungraded: the agent answers 650 ms after the caller's
    turn, stops 320 ms into a barge-in, and reports the amount wrong (205)."""
    return {
        "call_id": call_id, "persona": "cooperative-john", "seed": 1, "scenario": "card-dispute",
        "status": "completed", "failure_reason": None, "facts": FACTS,
        "agent_state": {"entities": {"last_name": "Smith", "amount": "205"}},
        "turns": [
            {"speaker": "agent", "text": "Hello, what is your name?", "start_ms": 0,
             "end_ms": 1500},
            {"speaker": "caller", "text": "John Smith, about two hundred fifty dollars.",
             "start_ms": 2000, "end_ms": 2800},
            {"speaker": "agent", "text": "Thanks. Let me check that charge for you now.",
             "start_ms": 3450, "end_ms": 5320},
            {"speaker": "caller", "text": "Sorry, one more thing.", "start_ms": 5000,
             "end_ms": 5600, "mode": "barge_in"},
        ],
        "events": [
            ev("agent_speech_start", 0), ev("agent_speech_end", 1500),
            ev("caller_speech_start", 2000, mode="turn"), ev("caller_speech_end", 2800),
            ev("caller_turn_end", 2800), ev("agent_speech_start", 3450),
            ev("caller_speech_start", 5000, mode="barge_in"), ev("agent_speech_end", 5320),
            ev("caller_speech_end", 5600),
        ],
        "metrics": {}, "understanding": {}, "task": {},
        "generator": {"pacing_late_ms_p99": pacing_ms, "loop_lag_ms_p99": lag_ms,
                      "host_pid": 4242},
    }


def graded(call_id: str, latencies=(), stops=(), correct=None, **extra) -> dict:
    """A record as it reaches LiveMetrics.observe: already graded."""
    return {"call_id": call_id, "status": "completed", "failure_reason": None,
            "metrics": {"response_latency_ms": list(latencies), "barge_in_stop_ms": list(stops),
                        "talk_over": 0, "dead_air": 0},
            "understanding": {"correct": correct or {}, "not_observed": []},
            "task": {}, "generator": {}, **extra}


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """Every sample of the endpoint: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def live():
    with LiveMetrics() as metrics:
        yield metrics, metrics.serve(0)


def test_finished_calls_are_counted_by_status_and_reason(live):
    metrics, port = live
    for i in range(3):
        metrics.observe(graded(f"ok{i}"))
    metrics.observe({"call_id": "f1", "status": "failed", "failure_reason": "ice_timeout"})
    metrics.observe({"call_id": "f2", "status": "failed", "failure_reason": "ice_timeout"})
    metrics.observe({"call_id": "f3", "status": "failed", "failure_reason": "caller_host_lost"})
    s = scrape(port)
    finished = "callfleet_calls_finished_total"
    assert value(s, finished, status="completed", reason="none") == 3
    assert value(s, finished, status="failed", reason="ice_timeout") == 2
    assert value(s, finished, status="failed", reason="caller_host_lost") == 1


def test_latency_histogram_buckets_hold_each_turn_in_seconds(live):
    metrics, port = live
    metrics.observe(graded("a", latencies=[250.0, 900.0]))
    metrics.observe(graded("b", latencies=[3500.0]))
    metrics.observe({"call_id": "c", "status": "failed", "failure_reason": "no_agent_audio"})
    s = scrape(port)
    bucket = "callfleet_response_latency_seconds_bucket"
    assert value(s, bucket, le="0.2") == 0
    assert value(s, bucket, le="0.3") == 1
    assert value(s, bucket, le="1.0") == 2
    assert value(s, bucket, le="3.0") == 2
    assert value(s, bucket, le="4.0") == 3
    assert value(s, bucket, le="+Inf") == 3
    assert value(s, "callfleet_response_latency_seconds_count") == 3
    assert value(s, "callfleet_response_latency_seconds_sum") == pytest.approx(4.65)


def test_barge_in_stops_and_understanding_per_fact(live):
    metrics, port = live
    metrics.observe(graded("a", stops=[320.0, 1800.0], correct={"amount": False, "name": True},
                           task={"success": False}))
    metrics.observe(graded("b", correct={"amount": True, "name": True}, task={"success": True}))
    s = scrape(port)
    bucket = "callfleet_barge_in_stop_seconds_bucket"
    assert value(s, bucket, le="0.3") == 0
    assert value(s, bucket, le="0.4") == 1
    assert value(s, bucket, le="2.0") == 2
    assert value(s, "callfleet_understanding_total", fact="amount", correct="false") == 1
    assert value(s, "callfleet_understanding_total", fact="amount", correct="true") == 1
    assert value(s, "callfleet_understanding_total", fact="name", correct="true") == 2
    assert value(s, "callfleet_understanding_total", fact="name", correct="false") is None
    assert value(s, "callfleet_task_total", success="true") == 1


def test_generator_health_is_reported_per_host_and_saturated_calls_counted(live):
    metrics, port = live
    metrics.observe(graded("a", generator={"pacing_late_ms_p99": 4.0, "loop_lag_ms_p99": 2.0}),
                    "host-0")
    metrics.observe(graded("b", generator={"pacing_late_ms_p99": 35.0, "loop_lag_ms_p99": 60.0}),
                    "host-1")
    metrics.observe(graded("c", generator={"pacing_late_ms_p99": 12.0, "host_pid": 77}))
    s = scrape(port)
    pacing = "callfleet_generator_pacing_late_p99_seconds"
    assert value(s, pacing, host="host-0") == pytest.approx(0.004)
    assert value(s, pacing, host="host-1") == pytest.approx(0.035)
    assert value(s, pacing, host="pid-77") == pytest.approx(0.012)  # not placed by a pool
    lag = "callfleet_generator_loop_lag_p99_seconds"
    assert value(s, lag, host="host-1") == pytest.approx(0.06)
    assert value(s, "callfleet_generator_saturated_calls_total", host="host-1") == 1
    assert value(s, "callfleet_generator_saturated_calls_total", host="host-0") is None


def test_active_calls_rise_and_fall_per_host(live):
    metrics, port = live
    metrics.call_started("host-0")
    metrics.call_started("host-0")
    metrics.call_started("host-1")
    metrics.call_ended("host-0")
    s = scrape(port)
    assert value(s, "callfleet_calls_started_total") == 3
    assert value(s, "callfleet_active_calls", host="host-0") == 1
    assert value(s, "callfleet_active_calls", host="host-1") == 1


def test_two_runs_in_one_process_keep_separate_counts_and_close_stops_serving():
    with LiveMetrics() as first, LiveMetrics() as second:
        first_port, second_port = first.serve(0), second.serve(0)
        first.call_started("host-0")
        assert value(scrape(first_port), "callfleet_calls_started_total") == 1
        assert value(scrape(second_port), "callfleet_calls_started_total") == 0
    with pytest.raises(urllib.error.URLError):
        scrape(first_port)


def _config(**fleet) -> dict:
    return {"target": {"url": "http://127.0.0.1:9/never-dialled"},
            "personas": {"cooperative-john": 1, "hesitant-maria": 1},
            "load": {"total_calls": 4, "max_concurrency": 2, "calls_per_second": 100},
            "fleet": {"hosts": 2, **fleet}}


def test_fleet_counts_placed_calls_and_graded_records(live, tmp_path, monkeypatch):
    """The Fleet's own path (scheduler, placing, grading, storing) with two fake hosts: active
    calls while they run, then each record counted after it was graded and stored."""
    metrics, port = live
    config = RunConfig.model_validate(_config())
    release = asyncio.Event()

    async def place(spec: dict) -> dict:
        await release.wait()
        if spec["call_id"].startswith("c00003"):
            return {"call_id": spec["call_id"], "persona": spec["persona"], "seed": 1,
                    "status": "failed", "failure_reason": "ice_timeout", "events": []}
        return talked(spec["call_id"], pacing_ms=25.0 if spec["call_id"].startswith("c00000")
                      else 3.5)

    fake = SimpleNamespace(place=SimpleNamespace(remote=place))
    monkeypatch.setattr("orchestration.fleet.ray.available_resources", lambda: {"CPU": 2})

    async def go() -> tuple[dict, dict]:
        with RunStore(tmp_path / "run") as store:
            fleet = Fleet(config, config.target.to_target(), store, live=metrics)

            async def start(count: int) -> None:
                fleet.pool.hosts = [HostSlot(fake) for _ in range(count)]

            fleet.pool.start = start
            fleet.pool.shutdown = lambda: None
            task = asyncio.create_task(fleet.run())
            while fleet.stats.active < 2:
                await asyncio.sleep(0.01)
            during = await asyncio.to_thread(scrape, port)
            release.set()
            await asyncio.wait_for(task, 10)
            return during, await asyncio.to_thread(scrape, port)

    during, after = asyncio.run(go())
    assert value(during, "callfleet_active_calls", host="host-0") == 1
    assert value(during, "callfleet_active_calls", host="host-1") == 1
    assert value(during, "callfleet_calls_planned") == 4
    assert value(during, "callfleet_target_concurrency") == 2
    assert value(during, "callfleet_calls_finished_total", status="completed",
                 reason="none") is None

    records, _ = read_records(tmp_path / "run" / "calls.jsonl")
    assert len(records) == 4
    assert value(after, "callfleet_calls_started_total") == 4
    assert value(after, "callfleet_active_calls", host="host-0") == 0
    assert value(after, "callfleet_active_calls", host="host-1") == 0
    assert value(after, "callfleet_calls_finished_total", status="completed", reason="none") == 3
    assert value(after, "callfleet_calls_finished_total", status="failed",
                 reason="ice_timeout") == 1
    # Observed after grading: the figures come from score_call, not from the host.
    assert value(after, "callfleet_response_latency_seconds_count") == 3
    assert value(after, "callfleet_response_latency_seconds_bucket", le="0.6") == 0
    assert value(after, "callfleet_response_latency_seconds_bucket", le="0.8") == 3
    assert value(after, "callfleet_barge_in_stop_seconds_sum") == pytest.approx(0.96)
    assert value(after, "callfleet_understanding_total", fact="amount", correct="false") == 3
    assert value(after, "callfleet_understanding_total", fact="last_name", correct="true") == 3
    assert value(after, "callfleet_understanding_not_observed_total", fact="first_name") == 3
    saturated = sum(v for (name, _), v in after.items()
                    if name == "callfleet_generator_saturated_calls_total")
    assert saturated == 1


@contextlib.contextmanager
def busy_port():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


def _write_config(path: Path, **fleet) -> Path:
    path.write_text(yaml.safe_dump(_config(**fleet)))
    return path


def test_busy_metrics_port_is_one_line_error_exit_2_before_any_call(tmp_path, capsys):
    config = _write_config(tmp_path / "run.yaml")
    out = tmp_path / "runs"
    with busy_port() as port:
        code = main(["run", str(config), "--out", str(out), "--metrics-port", str(port)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2
    assert len(err) == 1 and "Traceback" not in err[0]
    assert f"--metrics-port {port}: cannot listen on 127.0.0.1:{port}" in err[0]
    assert "in use" in err[0]
    assert not out.exists()  # no run directory: nothing was started


def test_busy_port_from_the_run_config_names_the_config_field(tmp_path, capsys):
    out = tmp_path / "runs"
    with busy_port() as port:
        config = _write_config(tmp_path / "run.yaml", metrics_port=port)
        code = main(["run", str(config), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and f"fleet.metrics_port {port}: cannot listen" in err
    assert not out.exists()


def test_metrics_are_off_unless_asked():
    config = RunConfig.model_validate(_config())
    with contextlib.ExitStack() as stack:
        assert _live_metrics(stack, config, None, "127.0.0.1") is None


def test_metrics_port_flag_rejects_a_number_that_is_not_a_port(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "x.yaml", "--metrics-port", "70000"])
    assert exit_info.value.code == 2
    assert "port number" in capsys.readouterr().err
