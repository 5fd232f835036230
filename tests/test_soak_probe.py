"""CallerHost.resources: what benchmarks/soak.py samples between calls (no real calls here)."""

from __future__ import annotations

import asyncio
import os


async def test_resources_counts_what_a_host_holds(tmp_path):
    from orchestration.host import CallerHostImpl

    host = CallerHostImpl(str(tmp_path), null_call_s=0.01)
    try:
        await host.ready()
        before = await host.resources()
        assert {"cpu_s", "rss_mb", "active", "fds", "tasks", "threads", "native_threads",
                "gc_objects"} <= before.keys()
        assert before["fds"] > 0 and before["tasks"] >= 2  # this test's task, the lag probe
        assert before["threads"] >= 1 and before["native_threads"] >= before["threads"]

        fd = os.open(tmp_path, os.O_RDONLY)  # one more fd, one more task: both seen
        sleeper = asyncio.create_task(asyncio.sleep(10))
        try:
            held = await host.resources()
        finally:
            os.close(fd)
            sleeper.cancel()
        assert held["fds"] == before["fds"] + 1 and held["tasks"] == before["tasks"] + 1

        for i in range(3):  # calls that end cleanly leave nothing behind
            await host.place({"call_id": f"c{i}", "persona": "cooperative-john", "seed": i})
        await asyncio.sleep(0)
        after = await host.resources()
        assert (after["fds"], after["tasks"], after["threads"]) == (
            before["fds"], before["tasks"], before["threads"])
    finally:
        host.lag._task.cancel()
