"""`callfleet demo`: the whole product on a fresh machine: reference agent on loopback, N calls."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from callers.persona import list_personas
from callers.transport import Target
from orchestration.console import console, print_call, print_summary
from orchestration.local_agent import reference_agent
from orchestration.reporting import finish_run
from orchestration.runner import load_caller_models, plan_calls, run_planned
from orchestration.store import RunStore, new_run_id


def run_demo(*, calls: int, concurrency: int, out: Path, seed: int) -> int:
    personas = list_personas()
    plan = plan_calls(personas, calls, seed)
    run_id = new_run_id()
    run_dir = out / run_id
    console.print(f"starting the reference agent on 127.0.0.1 and loading models...")
    with reference_agent() as base_url:
        target = Target(f"{base_url}/offer", signaling="json-offer")
        console.print(f"calling {target.url}: {calls} calls, up to {concurrency} at once "
                      f"(personas: {', '.join(p.id for p in personas[:calls])})")
        store = RunStore(run_dir)
        records: list[dict] = []
        began = time.monotonic()
        try:
            records = asyncio.run(_place(plan, target, store, concurrency, records))
        finally:
            summary = finish_run(store, records, run_id=run_id, target=target.url,
                                 planned=len(plan), partial=len(records) < len(plan))
            store.close()
    console.print(f"{len(records)} calls in {time.monotonic() - began:.0f} s")
    print_summary(summary, str(run_dir))
    return 0


async def _place(plan, target, store, concurrency, records: list[dict]) -> list[dict]:
    models = await load_caller_models()

    def done(record: dict) -> None:
        records.append(record)
        print_call(record, len(records), len(plan))

    await run_planned(plan, target, store, models, concurrency=concurrency, on_done=done)
    return records
