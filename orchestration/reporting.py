"""Finish a run's outputs (summary.json with gates, report.html, junit.xml), or rebuild them
from calls.jsonl (after a crash, or with newer scoring code)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from callers.errors import ConfigError
from evaluation.gates import DefaultGates, Gates, apply_gates, gates_passed, parse_gates
from evaluation.junit import write_junit
from evaluation.metrics import call_metrics
from evaluation.scoring import reached_conversation
from evaluation.report_html import write_report
from evaluation.summary import summarize
from orchestration.console import console, print_summary
from orchestration.store import CALLS_FILE, SUMMARY_FILE, RunStore, read_records

EXIT_OK, EXIT_GATES_FAILED = 0, 1


def finish_run(store: RunStore, records: list[dict[str, Any]], *, run_id: str, target: str,
               planned: int, partial: bool,
               gates: Gates | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Aggregate, evaluate gates (DEFAULT_GATES when None), write summary.json, report.html
    and junit.xml into the run directory; returns the summary (see gates_passed)."""
    parsed = parse_gates(gates)
    summary = summarize(records, run_id=run_id, target=target, planned=planned, partial=partial)
    apply_gates(summary, parsed)
    # Kept so `callfleet report` re-judges the run by the gates it was run with.
    summary["gate_config"] = parsed.model_dump(exclude_none=True)
    summary["gates_measured_only"] = isinstance(parsed, DefaultGates)
    store.write_summary(summary)
    write_report(store.run_dir, summary, records)
    write_junit(store.run_dir, summary, records)
    return summary


def exit_code(summary: dict[str, Any]) -> int:
    """DESIGN.md: 0 when every gate passed, 1 when one failed."""
    return EXIT_OK if gates_passed(summary) else EXIT_GATES_FAILED


def print_gates(summary: dict[str, Any]) -> None:
    """One line for the gate verdict, and one per failed gate."""
    gates = summary.get("gates") or []
    failed = [g for g in gates if not g.get("passed")]
    if not gates:
        return
    if not failed:
        console.print(f"[green]gates: all {len(gates)} passed[/green]")
        return
    console.print(f"[red]gates: {len(failed)} of {len(gates)} FAILED[/red]")
    for g in failed:
        console.print(f"  [red]FAIL[/red] {g['name']}: {g.get('reason')}", markup=True)


def rebuild_report(run_dir: Path, gates: Gates | Mapping[str, Any] | None = None) -> int:
    """Rebuild summary.json, report.html and junit.xml from calls.jsonl; returns the exit code.

    Gates: the ones given, else those the run was judged by (summary.json's gate_config),
    else DEFAULT_GATES. Bad lines of calls.jsonl are reported with their number and skipped."""
    run_dir = Path(run_dir)
    calls = run_dir / CALLS_FILE
    if not calls.is_file():
        raise ConfigError(f"{calls}: not found (is {run_dir} a callfleet run directory?)")
    records, warnings = read_records(calls)
    for warning in warnings:
        print(f"callfleet: warning: {warning} (skipped)", file=sys.stderr)
    for record in records:
        # A record written before scoring (a crash in between) still has its timeline.
        if not record.get("metrics") and reached_conversation(record):
            record["metrics"] = call_metrics(record["events"])
    old = _old_summary(run_dir)
    if gates is None and isinstance(old.get("gate_config"), Mapping):
        gates = parse_gates(old["gate_config"], where=f"{run_dir / SUMMARY_FILE}: gate_config")
        if old.get("gates_measured_only"):
            gates = DefaultGates.model_validate(gates.root)
    planned = (old.get("calls") or {}).get("planned") or len(records)
    run_id = old.get("run_id") or run_dir.name
    target = old.get("target") or (records[0].get("target", "") if records else "")
    store = RunStore(run_dir)
    try:
        summary = finish_run(store, records, run_id=run_id, target=target, planned=planned,
                             partial=len(records) < planned, gates=gates)
    finally:
        store.close()
    print_summary(summary, str(run_dir))
    print_gates(summary)
    return exit_code(summary)


def _old_summary(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / SUMMARY_FILE).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
