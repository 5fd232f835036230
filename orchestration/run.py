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
from orchestration.guards import check_before_start, check_hosts
from orchestration.live_metrics import LiveMetrics
from orchestration.otlp_metrics import otlp_metrics_settings, shown_url
from orchestration.local_agent import reference_agent
from orchestration.progress import live_progress
from evaluation.gates import DEFAULT_GATES, DefaultGates, Gates, parse_gates
from evaluation.summary import summarize
from orchestration.reporting import (
    compare_for_config, exit_code, finish_run, load_run, print_compare, print_gates)
from orchestration.store import RunStore, new_run_id

EXIT_ABORTED = 3


def run_config(config: RunConfig, out: Path, *, address: str | None = None,
               where: str = "gates", gates: Gates | None = None,
               metrics_port: int | None = None, metrics_host: str = "127.0.0.1") -> int:
    """Place the configured calls; returns the process exit code. gates: instead of the
    config's (the demo's relaxed defaults). metrics_port (else the config's
    fleet.metrics_port): serve live Prometheus metrics there while the run goes."""
    gates = gates or parse_gates(config.gates, where=where)  # bad gates fail before any call
    regression = config.regression
    baseline = load_run(Path(regression.baseline)) if regression else None  # likewise
    check_before_start(config, out)  # disk for the recordings, file descriptors: exit 2
    compared = None
    with contextlib.ExitStack() as stack:
        live = _live_metrics(stack, config, metrics_port, metrics_host)  # a busy port: exit 2
        embedded = config.target.url == "reference"
        if not embedded:
            target = config.target.to_target()
            target.token()  # a missing token env var is a config error before anything starts
        console.print("starting Ray...")
        start_ray(address)
        check_hosts(config)  # more hosts than CPUs: exit 2 before any model loads
        if embedded:
            console.print("starting the reference agent on 127.0.0.1...")
            base = stack.enter_context(reference_agent(*config.target.reference_agent_args))
            target = config.target.to_target(base)
            target.token()
        run_id = new_run_id()
        store = stack.enter_context(RunStore(out / run_id))
        # Written first so that a run killed outright still says what was planned and partial.
        store.write_summary(summarize([], run_id=run_id, target=target.url,
                                      planned=config.load.total_calls, partial=True))
        console.print("starting the caller hosts (loading models)...")
        fleet = Fleet(config, target, store, live=live)
        began = time.monotonic()
        # An embedded agent shares this machine: leave it a core, or both sides starve.
        spare = 1 if config.target.url == "reference" else 0
        aborted = asyncio.run(_drive(fleet, spare))
        records = list(fleet.records.values())
        partial = aborted or len(records) < config.load.total_calls
        if regression is not None and baseline is not None:  # compare.json, read by finish_run
            compared = compare_for_config(store.run_dir, run_id, records, regression, baseline)
        summary = finish_run(store, records, run_id=run_id, target=target.url,
                             planned=config.load.total_calls, partial=partial, gates=gates,
                             speech_service=fleet.speech_stats)
    console.print(f"{len(records)} calls finished in {time.monotonic() - began:.0f} s")
    print_summary(summary, str(out / run_id))
    print_gates(summary)
    if compared is not None:
        print_compare(compared)
    return EXIT_ABORTED if aborted else exit_code(summary)


def _live_metrics(stack: contextlib.ExitStack, config: RunConfig, port: int | None,
                  host: str) -> LiveMetrics | None:
    """Live metrics for the length of the stack: served if a port is asked for, pushed over
    OTLP if a collector is configured (orchestration/otlp_metrics.py); else None."""
    where = "--metrics-port"
    if port is None:
        port, where = config.fleet.metrics_port, "fleet.metrics_port"
    otlp = otlp_metrics_settings(config.tracing)  # a bad OTEL_* URL: exit 2
    if port is None and otlp is None:
        return None
    live = stack.enter_context(LiveMetrics(otlp=otlp))
    if port is not None:
        bound = live.serve(port, host, where=where)
        shown = f"[{host}]" if ":" in host else host  # an IPv6 address
        console.print(f"live metrics: http://{shown}:{bound}/metrics")
    if otlp is not None:
        console.print(f"live metrics: OTLP to {shown_url(otlp.endpoint)} every "
                      f"{otlp.interval_s:g} s")
    return live


async def _drive(fleet: Fleet, spare_cores: int) -> bool:
    """Run the fleet; the first Ctrl-C stops new calls and lets in-flight ones finish."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, fleet.stop.set)
    loop.add_signal_handler(signal.SIGTERM, fleet.stop.set)
    async with live_progress(fleet, console):
        await fleet.run(spare_cores=spare_cores)
    return fleet.stop.is_set()


def demo_scenarios() -> list[str]:
    """The shipped scenarios the demo calls: not the fixed scripts (scripted-card-dispute, for
    load runs), which would repeat a flow the demo already calls, deciding nothing."""
    from callers.scenario import list_scenarios

    return [s.id for s in list_scenarios() if not s.script]


def demo_config(calls: int, concurrency: int, seed: int, transport: str = "webrtc") -> RunConfig:
    """What `callfleet demo` runs: every shipped scenario (but scripts) against the reference
    agent's flow for it, called by the shipped personas in turn (over transport)."""
    from callers.persona import list_personas

    return RunConfig.model_validate({
        "name": "demo", "seed": seed,
        "target": {"url": "reference", "transport": transport},
        "personas": {p.id: 1.0 for p in list_personas()},
        "scenarios": dict.fromkeys(demo_scenarios(), 1.0),
        "load": {"total_calls": calls, "max_concurrency": min(concurrency, calls),
                 "calls_per_second": 2.0},
    })


# The default gates, with room on latency: here the agent shares the callers' 2 cores.
DEMO_GATES = DefaultGates.model_validate(
    {**DEFAULT_GATES.model_dump(exclude_none=True), "latency_p95_ms": {"max": 4000}})
