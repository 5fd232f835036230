"""Orchestration scale check: null calls (no media) through the real scheduler, Ray hosts and
result path. Writes benchmarks/results/null_call_scale.json.

    .venv/bin/python benchmarks/null_call_scale.py [configs/null_scale.yaml]
"""

from __future__ import annotations

import asyncio
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from orchestration.config import load_run_config
from orchestration.fleet import Fleet, start_ray
from orchestration.store import RunStore, read_records
from results_file import write_result


def main() -> None:
    config_path = Path(sys.argv[1] if len(sys.argv) > 1 else "configs/null_scale.yaml")
    config = load_run_config(config_path)
    start_ray()
    with tempfile.TemporaryDirectory() as tmp, RunStore(Path(tmp)) as store:
        fleet = Fleet(config, config.target.to_target(), store)
        cpu0, wall0 = _cpu_s(), time.monotonic()
        asyncio.run(fleet.run())
        wall, cpu = time.monotonic() - wall0, _cpu_s() - cpu0
        on_disk, warnings = read_records(store.calls_path)
    ids = Counter(r["call_id"] for r in on_disk)
    statuses = Counter(r["status"] for r in on_disk)
    slip = fleet.stats.start_slip_ms
    starts = fleet.stats.start_times
    result = {
        "config": str(config_path),
        "planned": config.load.total_calls,
        "records_on_disk": len(on_disk),
        "duplicates": sum(n - 1 for n in ids.values() if n > 1),
        "statuses": dict(statuses),
        "bad_lines": len(warnings),
        "max_concurrent": fleet.stats.max_active,
        "target_concurrency": config.load.max_concurrency,
        "start_rate_per_s": round((len(starts) - 1) / (starts[-1] - starts[0]), 2),
        "target_rate_per_s": config.load.calls_per_second,
        "start_slip_ms_p50": round(float(np.percentile(slip, 50)), 2),
        "start_slip_ms_p99": round(float(np.percentile(slip, 99)), 2),
        "start_slip_ms_max": round(float(max(slip)), 2),
        "wall_s": round(wall, 1),
        "driver_cpu_s": round(cpu, 2),
        "driver_cpu_pct_of_one_core": round(100 * cpu / wall, 1),
        "hosts": len(fleet.pool.hosts),
    }
    write_result("null_call_scale", result)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
