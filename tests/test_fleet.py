"""The fleet on a local Ray (num_cpus=2) with null calls: same scheduler, hosts and result path."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import ray

from orchestration.config import RunConfig
from orchestration.fleet import Fleet
from orchestration.store import RunStore, read_records

PERSONAS = {"cooperative-john": 1, "hesitant-maria": 1}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _config(total: int, concurrency: int, rate: float, null_s: float) -> RunConfig:
    return RunConfig.model_validate({
        "target": {"url": "http://127.0.0.1:9/never-dialled"},
        "personas": PERSONAS,
        "load": {"total_calls": total, "max_concurrency": concurrency, "calls_per_second": rate},
        "fleet": {"null_call_s": null_s, "hosts": 2},
    })


def _run(config: RunConfig, run_dir: Path, during=None) -> tuple[Fleet, list[dict]]:
    async def go() -> Fleet:
        with RunStore(run_dir) as store:
            fleet = Fleet(config, config.target.to_target(), store)
            task = asyncio.create_task(fleet.run())
            if during is not None:
                await during(fleet)
            await asyncio.wait_for(task, 120)
            return fleet

    fleet = asyncio.run(go())
    records, warnings = read_records(run_dir / "calls.jsonl")
    assert warnings == []
    return fleet, records


def test_scheduler_holds_max_concurrency_exactly(local_ray, tmp_path):
    fleet, records = _run(_config(total=30, concurrency=6, rate=50, null_s=1.0), tmp_path)
    assert fleet.stats.max_active == 6
    assert max(r["concurrency_at_start"] for r in records) == 6
    assert len(records) == 30 and all(r["status"] == "completed" for r in records)


def test_scheduler_holds_the_new_call_rate_within_ten_percent(local_ray, tmp_path):
    fleet, records = _run(_config(total=31, concurrency=10, rate=10, null_s=0.3), tmp_path)
    starts = fleet.stats.start_times
    rate = (len(starts) - 1) / (starts[-1] - starts[0])
    assert rate == pytest.approx(10, rel=0.10)
    assert len(records) == 31


def test_killing_a_host_midrun_accounts_for_every_call_exactly_once(local_ray, tmp_path):
    async def kill_after_first_results(fleet: Fleet) -> None:
        while len(fleet.records) < 4:
            await asyncio.sleep(0.05)
        fleet.pool.kill_one()

    fleet, records = _run(_config(total=24, concurrency=8, rate=20, null_s=1.5), tmp_path,
                          during=kill_after_first_results)
    ids = Counter(r["call_id"] for r in records)
    assert len(ids) == 24 and max(ids.values()) == 1  # none lost, none twice
    statuses = Counter((r["status"], r["failure_reason"]) for r in records)
    assert statuses[("failed", "caller_host_lost")] >= 1
    assert sum(statuses.values()) == 24
    assert fleet.pool.replaced == 1
    # the run went on after the loss: calls after it completed on the replacement host
    assert statuses[("completed", None)] >= 24 - 8


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"colour": "blue"}, "colour: unknown field"),
        ({"load": {"total_calls": 5, "max_concurrency": 2, "calls_per_second": -1}},
         "load.calls_per_second"),
        ({"load": {"total_calls": 5, "max_concurrency": 9, "calls_per_second": 1}},
         "max_concurrency (9) is above total_calls (5)"),
        ({"personas": {"nobody-here": 1}}, "personas.nobody-here"),
        ({"gates": {"latency_p42_ms": {"max": 1}}}, "latency_p42_ms"),
    ],
)
def test_malformed_run_config_exits_2_with_one_line_before_any_call(tmp_path, change, expected):
    config = {"target": {"url": "http://127.0.0.1:9/x"}, "personas": PERSONAS,
              "load": {"total_calls": 5, "max_concurrency": 2, "calls_per_second": 1}, **change}
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    result = subprocess.run([sys.executable, "-m", "orchestration.cli", "run", str(path),
                             "--out", str(tmp_path / "runs")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and str(path) in lines[0]
    assert not (tmp_path / "runs").exists()  # nothing was started
