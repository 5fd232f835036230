"""What a person sees in the terminal at the end of a run: the summary table and warnings."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from evaluation.summary import generator_warnings

console = Console(highlight=False)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def print_summary(summary: dict[str, Any], run_dir: str) -> None:
    calls, lat = summary["calls"], summary["latency_ms"]
    table = Table(title=f"run {summary['run_id']}  ->  {summary['target']}")
    for column in ("calls", "completed", "failed", "not started", "latency p50 / p95 / p99 ms",
                   "understood (all facts)"):
        table.add_column(column, justify="right")
    understanding = summary["understanding"]
    rate = understanding.get("all_correct_rate")
    observed = ""
    if understanding.get("facts_expected"):
        observed = (f"  ({understanding.get('facts_observed', 0)} of "
                    f"{understanding['facts_expected']} facts observed)")
    table.add_row(
        str(calls["planned"]), str(calls["completed"]), str(calls["failed"]),
        str(calls["not_started"]),
        f"{_ms(lat['p50'])} / {_ms(lat['p95'])} / {_ms(lat['p99'])}  (n={lat['n']})",
        ("-" if rate is None else f"{rate:.0%}") + observed,
    )
    console.print(table)
    for reason, n in (calls.get("failure_reasons") or {}).items():
        console.print(f"  failed: {reason} x{n}")
    if summary.get("partial"):
        console.print("[yellow]partial run: not every planned call finished[/yellow]")
    for warning in generator_warnings(summary):
        console.print(f"[yellow]warning: {escape(warning)}[/yellow]")
    attribution = understanding.get("network_attribution") or {}
    if (attribution.get("lossy") or {}).get("calls"):  # said only when some call was lossy
        line = f"  understanding vs network: {escape(str(attribution.get('verdict')))}"
        console.print(f"[yellow]{line}[/yellow]" if attribution.get("attributed") else line)
    tts = (summary.get("generator") or {}).get("tts_cache") or {}
    if tts.get("hit_rate") is not None:
        console.print(f"  caller speech from the TTS cache: {tts['hit_rate']:.0%} "
                      f"({tts['hits']} of {tts['hits'] + tts['misses']} phrases)")
    console.print(f"results: {run_dir}/ (calls.jsonl, summary.json, audio/)")
