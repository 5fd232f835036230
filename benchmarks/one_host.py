"""Run a fleet whose calls go to ONE CallerHost and sample that host's CPU and memory."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import defaultdict
from pathlib import Path

import ray

from orchestration.config import RunConfig
from orchestration.fleet import Fleet
from orchestration.store import RunStore


def thread_group(name: str) -> str:
    """A pool's threads under one name: asyncio_3 -> asyncio, stt-batch_0 -> stt-batch."""
    return re.sub(r"[_-]?\d+( \(.*\))?$", "", name) or name


def pin_process(pid: int, cores: set[int]) -> int:
    """Pin every thread of process pid (on this machine) to these cores; threads it starts
    later inherit it. Returns how many threads were not pinned there yet."""
    moved = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            if os.sched_getaffinity(int(tid)) != cores:
                os.sched_setaffinity(int(tid), cores)
                moved += 1
        except ProcessLookupError:
            pass  # the thread ended meanwhile
    return moved


async def run_on_one_host(config: RunConfig, base_url: str, run_dir: Path,
                          pin_cores: set[int] | None = None) -> dict:
    """The records, and the host's usage: busy cores over the run, idle and peak RSS (MB), and
    its CPU seconds by thread group (thread_group; what each group does: capacity.THREAD_WORK);
    a thread's CPU counts from one sample (1 s) to the next, so a thread that ended loses at
    most its last second.

    pin_cores: pin the host's process (a Ray worker on this machine) to these CPU cores once
    its models are loaded; each sample pins again any thread that escaped (counted)."""
    with RunStore(run_dir) as store:
        fleet = Fleet(config, config.target.to_target(base_url), store)
        task = asyncio.create_task(fleet.run())
        while not fleet.pool.hosts:
            await asyncio.sleep(0.1)
        host = fleet.pool.hosts[0].actor
        pid = (await host.ready.remote())["pid"]
        if pin_cores is not None:
            pin_process(pid, pin_cores)
        strays = 0
        before, wall0, rss = await host.usage.remote(), time.monotonic(), []
        last, last_t = before, wall0
        seen = await host.thread_cpu.remote()  # native id: (name, CPU s) at the last sample
        by_group: dict[str, float] = defaultdict(float)
        while not task.done():  # sample CPU and memory while the calls run
            try:
                last, last_t = await host.usage.remote(), time.monotonic()
                threads = await host.thread_cpu.remote()
            except ray.exceptions.RayError:
                break  # the run ended and the host was shut down
            for tid, (name, cpu_s) in threads.items():
                by_group[thread_group(name)] += cpu_s - seen.get(tid, (name, 0.0))[1]
            seen = threads
            rss.append(last["rss_mb"])
            if pin_cores is not None:
                try:
                    strays += pin_process(pid, pin_cores)
                except FileNotFoundError:
                    pass  # the host process is gone
            await asyncio.sleep(1.0)
        records = await task
    result = {"records": records, "wall_s": time.monotonic() - wall0,
              "busy_cores": (last["cpu_s"] - before["cpu_s"]) / max(1e-9, last_t - wall0),
              "rss_mb_idle": before["rss_mb"], "rss_mb_peak": max(rss, default=before["rss_mb"]),
              "host_pid": pid, "cpu_s_by_thread": dict(by_group)}
    if pin_cores is not None:
        result["host_cores"] = sorted(pin_cores)
        result["host_threads_repinned"] = strays  # threads found off pin_cores after the pin
    return result
