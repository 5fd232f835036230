"""Orchestration scale check: null calls (no media) through the real scheduler, Ray hosts and
result path, with the live progress line refreshed twice a second as a run does. Writes
benchmarks/results/null_call_scale.json (configs/null_scale.yaml) or, for another config,
null_call_scale_<its suffix>.json (configs/null_scale_10k.yaml: null_call_scale_10k.json).

    .venv/bin/python benchmarks/null_call_scale.py [configs/null_scale.yaml] [--notes TEXT]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from orchestration.config import load_run_config
from orchestration.fleet import Fleet, plan_specs, start_ray
from orchestration.progress import progress_line, tally_for
from orchestration.store import RunStore, read_records
from results_file import write_result

DEFAULT_CONFIG = "configs/null_scale.yaml"
REFRESH_S = 0.5  # as live_progress


def results_name(config_path: Path) -> str:
    """null_call_scale for configs/null_scale.yaml; null_call_scale_10k for null_scale_10k."""
    stem = config_path.stem
    suffix = stem.removeprefix("null_scale").lstrip("_-") if stem.startswith("null_scale") \
        else stem
    return f"null_call_scale_{suffix}" if suffix else "null_call_scale"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=DEFAULT_CONFIG)
    parser.add_argument("--notes", default=None, help="written to the result's notes field")
    args = parser.parse_args()
    config_path = Path(args.config)
    config = load_run_config(config_path)
    start_ray()
    rss_before_mb = _rss_mb()
    with tempfile.TemporaryDirectory() as tmp, RunStore(Path(tmp)) as store:
        fleet = Fleet(config, config.target.to_target(), store)
        tally = tally_for(fleet)
        refresh_ms: list[float] = []
        cpu0, wall0 = _cpu_s(), time.monotonic()
        asyncio.run(_run_with_progress(fleet, refresh_ms))
        wall, cpu = time.monotonic() - wall0, _cpu_s() - cpu0
        on_disk, warnings = read_records(store.calls_path)
    ids = Counter(r["call_id"] for r in on_disk)
    planned = {spec["call_id"] for spec in plan_specs(config, fleet.target)}
    statuses = Counter(r["status"] for r in on_disk)
    slip = fleet.stats.start_slip_ms
    starts = fleet.stats.start_times
    result = {
        "config": str(config_path),
        "planned": config.load.total_calls,
        "records_on_disk": len(on_disk),
        "missing": len(planned - set(ids)),
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
        "driver_rss_mb_before_run": round(rss_before_mb, 1),
        # ru_maxrss: the driver process's peak resident set (Ray's own processes not counted)
        "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "progress_tally": {"completed": tally.completed, "failed": tally.failed},
        "progress_refreshes": len(refresh_ms),
        "progress_line_ms_p50": round(float(np.percentile(refresh_ms, 50)), 3)
        if refresh_ms else None,
        "progress_line_ms_max": round(max(refresh_ms), 3) if refresh_ms else None,
        "hosts": len(fleet.pool.hosts),
    }
    if args.notes:
        result["notes"] = args.notes
    write_result(results_name(config_path), result)
    ok = (len(on_disk) == config.load.total_calls and result["duplicates"] == 0
          and result["missing"] == 0)
    sys.exit(0 if ok else 1)


async def _run_with_progress(fleet: Fleet, refresh_ms: list[float]) -> None:
    """fleet.run(), with progress_line built (not printed) every REFRESH_S, timed."""

    async def refresh() -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            t = time.perf_counter()
            progress_line(fleet)
            refresh_ms.append((time.perf_counter() - t) * 1000)

    task = asyncio.create_task(refresh(), name="progress")
    try:
        await fleet.run()
    finally:
        task.cancel()


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


if __name__ == "__main__":
    main()
