"""The live progress line reads a running tally: counts and a latency sketch, fed once per
stored record (no Ray: records are handed to Fleet._record directly)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestration.config import RunConfig
from orchestration.fleet import Fleet
from orchestration.progress import QuantileSketch, RunTally, progress_line, tally_for
from orchestration.store import RunStore, read_records


def _distributions() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(12)
    return {
        "lognormal": rng.lognormal(mean=7.0, sigma=0.5, size=20_000),  # latencies, ms
        "exponential": rng.exponential(scale=800.0, size=5_000),
        "uniform": rng.uniform(200.0, 3_000.0, size=10_000),
        "bimodal": np.concatenate([rng.normal(600, 50, 7_000), rng.normal(2_500, 300, 3_000)]),
        "with negatives": rng.normal(100.0, 400.0, size=10_000),  # overlaps: < 0 ms
    }


@pytest.mark.parametrize("name", list(_distributions()))
@pytest.mark.parametrize("q", [0.5, 0.95, 0.99])
def test_sketch_quantile_is_within_two_percent_of_numpy(name, q):
    values = _distributions()[name]
    sketch = QuantileSketch(relative_accuracy=0.01)
    sketch.update(values)
    exact = float(np.percentile(values, q * 100))
    assert sketch.count == len(values)
    assert sketch.quantile(q) == pytest.approx(exact, rel=0.02)


def test_sketch_of_few_values_answers_a_value_it_saw_within_one_percent():
    # With 37 values numpy interpolates between neighbours far apart in the tail; the sketch
    # answers the value at rank floor(q (n - 1)), as numpy's method="lower", within 1 %.
    values = np.random.default_rng(5).lognormal(mean=6.0, sigma=1.0, size=37)
    sketch = QuantileSketch(relative_accuracy=0.01)
    sketch.update(values)
    for q in (0.5, 0.95, 0.99):
        exact = float(np.percentile(values, q * 100, method="lower"))
        assert sketch.quantile(q) == pytest.approx(exact, rel=0.01)


def test_sketch_stays_small_and_within_what_it_saw():
    values = np.random.default_rng(3).lognormal(7.0, 1.0, 100_000)
    sketch = QuantileSketch(relative_accuracy=0.01)
    sketch.update(values)
    assert sketch.buckets < 600  # log-many buckets, not one per value
    assert sketch.quantile(0.0) == pytest.approx(values.min(), rel=0.01)
    assert sketch.quantile(1.0) == values.max()


def test_empty_sketch_gives_none_and_ignores_non_finite():
    sketch = QuantileSketch()
    assert sketch.quantile(0.95) is None
    sketch.update([float("nan"), float("inf")])
    assert sketch.quantile(0.95) is None and sketch.count == 0
    sketch.add(0.0)
    assert sketch.quantile(0.95) == 0.0


def test_tally_counts_and_worst_pacing():
    tally = RunTally()
    assert tally.latency_ms.quantile(0.95) is None and tally.worst_pacing_p99 is None
    tally({"status": "completed", "metrics": {"response_latency_ms": [900, 1100]},
           "generator": {"pacing_late_ms_p99": 3.5}})
    tally({"status": "failed", "metrics": {}, "generator": {"pacing_late_ms_p99": 12.0}})
    tally({"status": "completed", "metrics": None, "generator": None})
    assert (tally.completed, tally.failed, tally.landed) == (2, 1, 3)
    assert tally.worst_pacing_p99 == 12.0
    assert tally.latency_ms.count == 2


def _fleet(tmp_path: Path) -> tuple[Fleet, RunStore]:
    config = RunConfig.model_validate({
        "target": {"url": "http://127.0.0.1:9/never-dialled"},
        "personas": {"cooperative-john": 1},
        "load": {"total_calls": 10, "max_concurrency": 2, "calls_per_second": 10},
        "fleet": {"null_call_s": 1.0, "hosts": 1},
    })
    store = RunStore(tmp_path)
    return Fleet(config, config.target.to_target(), store), store


def _record(call_id: str, status: str = "completed", latencies=(), pacing=None) -> dict:
    # No events: Fleet._record stores it as it is (nothing to grade), metrics included.
    return {"call_id": call_id, "persona": "cooperative-john", "seed": 1, "status": status,
            "failure_reason": None if status == "completed" else "call_timeout",
            "metrics": {"response_latency_ms": list(latencies)},
            "generator": {"pacing_late_ms_p99": pacing}}


def test_records_landing_through_the_fleet_are_counted_once(tmp_path):
    fleet, store = _fleet(tmp_path)
    tally = tally_for(fleet)
    assert tally_for(fleet) is tally and len(fleet.observers) == 1  # one tally per fleet
    with store:
        fleet._record(_record("c1", latencies=[1000, 1200], pacing=2.0))
        fleet._record(_record("c2", status="failed"))
        assert (tally.completed, tally.failed) == (1, 1)
        fleet._record(_record("c1", latencies=[9000], pacing=99.0))  # delivered twice
        fleet._record(_record("c2", status="completed"))
    assert (tally.completed, tally.failed) == (1, 1)
    assert tally.latency_ms.count == 2 and tally.worst_pacing_p99 == 2.0
    on_disk, _ = read_records(store.calls_path)
    assert [r["call_id"] for r in on_disk] == ["c1", "c2"]


def test_a_failing_observer_costs_no_record(tmp_path):
    fleet, store = _fleet(tmp_path)

    def broken(record):
        raise RuntimeError("display bug")

    fleet.observers.append(broken)
    tally = tally_for(fleet)
    with store:
        fleet._record(_record("c1"))
    assert tally.completed == 1
    assert len(read_records(store.calls_path)[0]) == 1


def test_progress_line_shows_the_tally(tmp_path):
    fleet, store = _fleet(tmp_path)
    assert "completed 0  failed 0  p95 latency -  pacing p99 -" in progress_line(fleet).plain
    fleet.stats.planned, fleet.stats.started, fleet.stats.active = 10, 4, 1
    with store:
        for i in range(20):  # p95 of 1..20 s, in ms: numpy 19,050
            fleet._record(_record(f"c{i}", latencies=[1000.0 * (i + 1)], pacing=1.5))
        fleet._record(_record("c99", status="failed", pacing=35.0))
    line = progress_line(fleet)
    assert "started 4/10" in line.plain and "active 1" in line.plain
    assert "completed 20  failed 1" in line.plain
    p95 = int(line.plain.split("p95 latency ")[1].split(" ms")[0])
    assert p95 == pytest.approx(19_050, rel=0.02)
    assert "pacing p99 35 ms LATE" in line.plain


def test_progress_line_does_not_read_the_records(tmp_path):
    fleet, store = _fleet(tmp_path)
    tally_for(fleet)
    with store:
        fleet._record(_record("c1", latencies=[800.0]))
    fleet.records = _Unreadable()  # a refresh that listed the records would raise here
    assert "completed 1" in progress_line(fleet).plain


class _Unreadable(dict):
    def values(self):
        raise AssertionError("progress_line re-read the records")

    def __iter__(self):
        raise AssertionError("progress_line re-read the records")
