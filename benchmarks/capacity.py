"""Capacity: full callers (WebRTC + VAD + STT + TTS + scripted brain) on ONE CallerHost against
the reference agent on the same machine. For each concurrency level, the generator's pacing
lateness p99, and the host's CPU and memory per caller. Writes benchmarks/results/capacity.json.

    .venv/bin/python benchmarks/capacity.py [LEVEL ...]      (default levels: 2 4 6 8)
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import ray

from orchestration.config import RunConfig
from orchestration.fleet import Fleet, start_ray
from orchestration.local_agent import reference_agent
from orchestration.store import RunStore
from results_file import write_result

PERSONAS = {"cooperative-john": 1, "hesitant-maria": 1, "corrector-david": 1}


async def measure(level: int, base_url: str, run_dir: Path) -> dict:
    config = RunConfig.model_validate({
        "target": {"url": "reference"}, "personas": PERSONAS,
        "load": {"total_calls": level, "max_concurrency": level, "calls_per_second": 4},
        "fleet": {"hosts": 1},
    })
    with RunStore(run_dir) as store:
        fleet = Fleet(config, config.target.to_target(base_url), store)
        task = asyncio.create_task(fleet.run())
        while not fleet.pool.hosts:
            await asyncio.sleep(0.1)
        host = fleet.pool.hosts[0].actor
        await host.ready.remote()
        before, wall0, rss = await host.usage.remote(), time.monotonic(), []
        last, last_t = before, wall0
        while not task.done():  # sample CPU and memory while the calls run
            try:
                last, last_t = await host.usage.remote(), time.monotonic()
            except ray.exceptions.RayError:
                break  # the run ended and the host was shut down
            rss.append(last["rss_mb"])
            await asyncio.sleep(1.0)
        records = await task
    wall = time.monotonic() - wall0
    busy_cores = (last["cpu_s"] - before["cpu_s"]) / max(1e-9, last_t - wall0)
    pacing = [r["generator"].get("pacing_late_ms_p99") or 0.0 for r in records]
    lag = [r["generator"].get("loop_lag_ms_p99") or 0.0 for r in records]
    return {
        "concurrent_callers": level,
        "completed": sum(r["status"] == "completed" for r in records),
        "pacing_late_ms_p99_worst_call": round(max(pacing), 2),
        "loop_lag_ms_p99_worst_call": round(max(lag), 2),
        "latency_ms_p50": _pct([v for r in records for v in
                               (r.get("metrics") or {}).get("response_latency_ms", [])], 50),
        "host_rss_mb_idle": round(before["rss_mb"], 1),
        "host_rss_mb_peak": round(max(rss, default=before["rss_mb"]), 1),
        "wall_s": round(wall, 1),
        "host_cpu_cores_busy": round(busy_cores, 3),
        "cpu_pct_of_core_per_caller": round(100 * busy_cores / level, 1),
        "rss_mb_per_caller": round((max(rss, default=before["rss_mb"]) - before["rss_mb"])
                                   / level, 1),
    }


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


async def run_levels(levels: list[int], base_url: str) -> list[dict]:
    results = []
    for level in levels:
        with tempfile.TemporaryDirectory() as tmp:
            result = await measure(level, base_url, Path(tmp))
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


def main() -> None:
    levels = [int(a) for a in sys.argv[1:]] or [2, 4, 6, 8]
    start_ray()
    with reference_agent() as base_url:
        results = asyncio.run(run_levels(levels, base_url))
    ray.shutdown()
    sustained = [r["concurrent_callers"] for r in results
                 if r["pacing_late_ms_p99_worst_call"] <= 20 and r["completed"] == r[
                     "concurrent_callers"]]
    out = {
        "levels": results,
        "callers_per_core_sustained": max(sustained, default=0),
        "note": "one CallerHost (one core); the reference agent runs on the other core",
    }
    write_result("capacity", out)


if __name__ == "__main__":
    main()
