"""`callfleet run` (and demo): start what the config needs, drive the fleet, write the run dir."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

from orchestration.config import RunConfig
from orchestration.console import console, print_summary
from orchestration.fleet import Fleet, start_ray
from orchestration.local_agent import reference_agent
from orchestration.progress import live_progress
from evaluation.gates import DEFAULT_GATES, DefaultGates, Gates, parse_gates
from evaluation.summary import summarize
from orchestration.reporting import exit_code, finish_run, print_gates
from orchestration.store import RunStore, new_run_id

EXIT_ABORTED = 3


def run_config(config: RunConfig, out: Path, *, address: str | None = None,
               where: str = "gates", gates: Gates | None = None) -> int:
    """Place the configured calls; returns the process exit code. gates: instead of the
    config's (the demo's relaxed defaults)."""
    gates = gates or parse_gates(config.gates, where=where)  # bad gates fail before any call
    with contextlib.ExitStack() as stack:
        if config.target.url == "reference":
            console.print("starting the reference agent on 127.0.0.1...")
            base = stack.enter_context(reference_agent(*config.target.reference_agent_args))
            target = config.target.to_target(base)
        else:
            target = config.target.to_target()
        target.token()  # a missing token env var is a config error before any call
        run_id = new_run_id()
        store = stack.enter_context(RunStore(out / run_id))
        # Written first so that a run killed outright still says what was planned and partial.
        store.write_summary(summarize([], run_id=run_id, target=target.url,
                                      planned=config.load.total_calls, partial=True))
        console.print("starting Ray and the caller hosts (loading models)...")
        start_ray(address)
        fleet = Fleet(config, target, store)
        began = time.monotonic()
        # An embedded agent shares this machine: leave it a core, or both sides starve.
        spare = 1 if config.target.url == "reference" else 0
        aborted = asyncio.run(_drive(fleet, spare))
        records = list(fleet.records.values())
        partial = aborted or len(records) < config.load.total_calls
        summary = finish_run(store, records, run_id=run_id, target=target.url,
                             planned=config.load.total_calls, partial=partial, gates=gates)
    console.print(f"{len(records)} calls finished in {time.monotonic() - began:.0f} s")
    print_summary(summary, str(out / run_id))
    print_gates(summary)
    return EXIT_ABORTED if aborted else exit_code(summary)


async def _drive(fleet: Fleet, spare_cores: int) -> bool:
    """Run the fleet; the first Ctrl-C stops new calls and lets in-flight ones finish."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, fleet.stop.set)
    loop.add_signal_handler(signal.SIGTERM, fleet.stop.set)
    async with live_progress(fleet, console):
        await fleet.run(spare_cores=spare_cores)
    return fleet.stop.is_set()


def demo_config(calls: int, concurrency: int, seed: int, transport: str = "webrtc") -> RunConfig:
    """What `callfleet demo` runs: every shipped scenario against the reference agent's flow
    for it, called by the shipped personas in turn (over transport)."""
    from callers.persona import list_personas
    from callers.scenario import list_scenarios

    return RunConfig.model_validate({
        "name": "demo", "seed": seed,
        "target": {"url": "reference", "transport": transport},
        "personas": {p.id: 1.0 for p in list_personas()},
        "scenarios": {s.id: 1.0 for s in list_scenarios()},
        "load": {"total_calls": calls, "max_concurrency": min(concurrency, calls),
                 "calls_per_second": 2.0},
    })


# The default gates, with room on latency: here the agent shares the callers' 2 cores.
DEMO_GATES = DefaultGates.model_validate(
    {**DEFAULT_GATES.model_dump(exclude_none=True), "latency_p95_ms": {"max": 4000}})
