"""What a person sees in the terminal: one line per finished call and a run summary table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(highlight=False)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def print_call(record: dict[str, Any], done: int, planned: int) -> None:
    u = record.get("understanding") or {}
    correct = u.get("correct") or {}
    marks = " ".join(f"{k}={'ok' if v else 'WRONG'}" for k, v in correct.items())
    lat = (record.get("metrics") or {}).get("response_latency_ms") or []
    med = sorted(lat)[len(lat) // 2] if lat else None
    status = record["status"] if record["status"] == "completed" else (
        f"[red]failed: {record.get('failure_reason')}[/red]")
    console.print(f"[{done}/{planned}] {record['call_id']}: {status}, {record['duration_s']:.0f} s, "
                  f"median latency {_ms(med)} ms, {marks}")


def print_summary(summary: dict[str, Any], run_dir: str) -> None:
    calls, lat = summary["calls"], summary["latency_ms"]
    table = Table(title=f"run {summary['run_id']}  ->  {summary['target']}")
    for column in ("calls", "completed", "failed", "not started", "latency p50 / p95 / p99 ms",
                   "understood (all facts)"):
        table.add_column(column, justify="right")
    rate = summary["understanding"].get("all_correct_rate")
    table.add_row(
        str(calls["planned"]), str(calls["completed"]), str(calls["failed"]),
        str(calls["not_started"]),
        f"{_ms(lat['p50'])} / {_ms(lat['p95'])} / {_ms(lat['p99'])}  (n={lat['n']})",
        "-" if rate is None else f"{rate:.0%}",
    )
    console.print(table)
    for reason, n in (calls.get("failure_reasons") or {}).items():
        console.print(f"  failed: {reason} x{n}")
    if summary.get("partial"):
        console.print("[yellow]partial run: not every planned call finished[/yellow]")
    if (summary.get("generator") or {}).get("saturated"):
        console.print("[yellow]warning: the callers themselves were overloaded (pacing p99 > 20 ms);"
                      " latency figures from this run are not trustworthy[/yellow]")
    console.print(f"results: {run_dir}/ (calls.jsonl, summary.json, audio/)")
