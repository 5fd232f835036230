"""Run a fleet whose calls go to ONE CallerHost and sample that host's CPU and memory."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import ray

from orchestration.config import RunConfig
from orchestration.fleet import Fleet
from orchestration.store import RunStore


async def run_on_one_host(config: RunConfig, base_url: str, run_dir: Path) -> dict:
    """The records, and the host's usage: busy cores over the run, idle and peak RSS (MB)."""
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
    return {"records": records, "wall_s": time.monotonic() - wall0,
            "busy_cores": (last["cpu_s"] - before["cpu_s"]) / max(1e-9, last_t - wall0),
            "rss_mb_idle": before["rss_mb"], "rss_mb_peak": max(rss, default=before["rss_mb"])}
