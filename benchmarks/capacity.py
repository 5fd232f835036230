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
from pathlib import Path

import numpy as np
import ray

from orchestration.config import RunConfig
from orchestration.fleet import start_ray
from orchestration.local_agent import reference_agent
from one_host import run_on_one_host
from results_file import write_result

PERSONAS = {"cooperative-john": 1, "hesitant-maria": 1, "corrector-david": 1}


async def measure(level: int, base_url: str, run_dir: Path) -> dict:
    config = RunConfig.model_validate({
        "target": {"url": "reference"}, "personas": PERSONAS,
        "load": {"total_calls": level, "max_concurrency": level, "calls_per_second": 4},
        "fleet": {"hosts": 1},
    })
    run = await run_on_one_host(config, base_url, run_dir)
    records, busy_cores = run["records"], run["busy_cores"]
    idle, peak = run["rss_mb_idle"], run["rss_mb_peak"]
    pacing = [r["generator"].get("pacing_late_ms_p99") or 0.0 for r in records]
    lag = [r["generator"].get("loop_lag_ms_p99") or 0.0 for r in records]
    return {
        "concurrent_callers": level,
        "completed": sum(r["status"] == "completed" for r in records),
        "pacing_late_ms_p99_worst_call": round(max(pacing), 2),
        "loop_lag_ms_p99_worst_call": round(max(lag), 2),
        "latency_ms_p50": _pct([v for r in records for v in
                               (r.get("metrics") or {}).get("response_latency_ms", [])], 50),
        "host_rss_mb_idle": round(idle, 1),
        "host_rss_mb_peak": round(peak, 1),
        "wall_s": round(run["wall_s"], 1),
        "host_cpu_cores_busy": round(busy_cores, 3),
        "cpu_pct_of_core_per_caller": round(100 * busy_cores / level, 1),
        "rss_mb_per_caller": round((peak - idle) / level, 1),
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
