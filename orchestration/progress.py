"""Live progress of a run in the terminal (rich): counts, concurrency, phase, p95, health."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.text import Text

from orchestration.fleet import Fleet


def progress_line(fleet: Fleet) -> Text:
    s = fleet.stats
    records = list(fleet.records.values())
    completed = sum(1 for r in records if r.get("status") == "completed")
    latencies = [v for r in records for v in (r.get("metrics") or {}).get("response_latency_ms", [])]
    p95 = f"{np.percentile(latencies, 95):.0f} ms" if latencies else "-"
    pacing = [(r.get("generator") or {}).get("pacing_late_ms_p99") for r in records]
    worst = max((p for p in pacing if p is not None), default=None)
    health = "-" if worst is None else (f"[red]{worst:.0f} ms LATE[/red]" if worst > 20
                                        else f"{worst:.1f} ms")
    return Text.from_markup(
        f"phase [bold]{s.phase or '-'}[/bold]  started {s.started}/{s.planned}  "
        f"active {s.active} (target {s.target})  completed {completed}  "
        f"failed {len(records) - completed}  p95 latency {p95}  pacing p99 {health}  "
        f"hosts replaced {fleet.pool.replaced}"
    )


@contextlib.asynccontextmanager
async def live_progress(fleet: Fleet, console: Console) -> AsyncIterator[None]:
    """Refresh the progress line twice a second while the block runs."""
    with Live(progress_line(fleet), console=console, refresh_per_second=4, transient=False) as live:

        async def refresh() -> None:
            while True:
                await asyncio.sleep(0.5)
                live.update(progress_line(fleet))

        task = asyncio.create_task(refresh(), name="progress")
        try:
            yield
        finally:
            task.cancel()
            live.update(progress_line(fleet))
