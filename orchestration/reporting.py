"""Finish a run's outputs (summary.json with gates, report.html, junit.xml), or rebuild them
from calls.jsonl (after a crash, or with newer scoring code)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from callers.errors import ConfigError
from evaluation.compare import (
    Allowance, RegressionConfig, compare_runs, read_compare, regression_brief, terminal_tables,
    write_compare)
from evaluation.gates import DefaultGates, Gates, apply_gates, gates_passed, parse_gates
from evaluation.junit import write_junit
from evaluation.metrics import call_metrics
from evaluation.scoring import reached_conversation
from evaluation.report_html import write_report
from evaluation.summary import summarize
from orchestration.console import console, print_summary
from orchestration.store import CALLS_FILE, SUMMARY_FILE, RunStore, read_records

EXIT_OK, EXIT_GATES_FAILED = 0, 1
MAX_WARNINGS = 10  # bad lines of calls.jsonl named one by one; the rest are counted


def finish_run(store: RunStore, records: list[dict[str, Any]], *, run_id: str, target: str,
               planned: int, partial: bool,
               gates: Gates | Mapping[str, Any] | None = None,
               speech_service: dict[str, Any] | None = None) -> dict[str, Any]:
    """Aggregate, evaluate gates (DEFAULT_GATES when None), write summary.json, report.html
    and junit.xml into the run directory; returns the summary (see gates_passed).
    speech_service: the run's Ray Serve speech replicas' counts (stt/tts: serve)."""
    parsed = parse_gates(gates)
    summary = summarize(records, run_id=run_id, target=target, planned=planned, partial=partial)
    if speech_service is not None:
        summary["speech_service"] = speech_service
    apply_gates(summary, parsed)
    compared = read_compare(store.run_dir)  # written first when the run has a baseline
    if compared is not None:
        summary["regression"] = regression_brief(compared)
    # Kept so `callfleet report` re-judges the run by the gates it was run with.
    summary["gate_config"] = parsed.model_dump(exclude_none=True)
    summary["gates_measured_only"] = isinstance(parsed, DefaultGates)
    store.write_summary(summary)
    write_report(store.run_dir, summary, records)
    write_junit(store.run_dir, summary, records)
    return summary


def exit_code(summary: dict[str, Any]) -> int:
    """DESIGN.md: 0 when every gate passed, 1 when one failed or the baseline comparison found
    a regression."""
    no_regression = (summary.get("regression") or {}).get("passed", True)
    return EXIT_OK if gates_passed(summary) and no_regression else EXIT_GATES_FAILED


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
    records = read_run_records(run_dir)
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


def read_run_records(run_dir: Path) -> list[dict[str, Any]]:
    """A run directory's calls.jsonl: bad lines are reported with their number and skipped, and
    a record written before scoring gets its metrics from its timeline."""
    run_dir = Path(run_dir)
    calls = run_dir / CALLS_FILE
    if not calls.is_file():
        raise ConfigError(f"{calls}: not found (is {run_dir} a callfleet run directory?)")
    try:
        records, warnings = read_records(calls)
    except OSError as e:
        raise ConfigError(f"{calls}: cannot read: {e.strerror or type(e).__name__}") from None
    for warning in warnings[:MAX_WARNINGS]:
        print(f"callfleet: warning: {warning} (skipped)", file=sys.stderr)
    if len(warnings) > MAX_WARNINGS:
        print(f"callfleet: warning: {calls.name}: {len(warnings) - MAX_WARNINGS} more bad or "
              f"duplicate lines (skipped); {len(records)} good records kept", file=sys.stderr)
    for record in records:
        # A record written before scoring (a crash in between) still has its timeline.
        if not record.get("metrics") and reached_conversation(record):
            record["metrics"] = call_metrics(record["events"])
    return records


# --- baseline comparison (evaluation/compare) ----------------------------------------------

Run = tuple[list[dict[str, Any]], dict[str, Any]]  # records, summary.json


def load_run(run_dir: Path) -> Run:
    """A finished run to compare: its records and summary.json. Not a run directory, or a
    summary.json that does not parse, is a one-line ConfigError (exit 2)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: not a callfleet run directory (no such directory)")
    path = run_dir / SUMMARY_FILE
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (is {run_dir} a callfleet run directory?)") \
            from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(summary, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(summary).__name__}")
    return read_run_records(run_dir), summary


def _run_info(run_dir: Path, run_id: Any) -> dict[str, Any]:
    return {"run_dir": str(run_dir), "run_id": str(run_id or Path(run_dir).name)}


def compare_into(run_dir: Path, run_id: str, records: list[dict[str, Any]],
                 baseline_dir: Path, baseline: Run, *, allow: dict[str, Allowance],
                 resamples: int, seed: int) -> dict[str, Any]:
    """Compare these records with the baseline run; write compare.json into run_dir (which
    finish_run, report.html and junit.xml then read) and return it."""
    base_records, base_summary = baseline
    result = compare_runs(base_records, records, allow=allow, resamples=resamples, seed=seed,
                          baseline_info=_run_info(baseline_dir, base_summary.get("run_id")),
                          new_info=_run_info(run_dir, run_id))
    write_compare(run_dir, result)
    return result


def compare_for_config(run_dir: Path, run_id: str, records: list[dict[str, Any]],
                       regression: RegressionConfig, baseline: Run) -> dict[str, Any]:
    """compare_into for a run config's `regression:` section."""
    return compare_into(run_dir, run_id, records, Path(regression.baseline), baseline,
                        allow=regression.allowances(), resamples=regression.resamples,
                        seed=regression.seed)


def compare_run_dirs(baseline_dir: Path, run_dir: Path, *, allow: dict[str, Allowance],
                     resamples: int, seed: int) -> int:
    """`callfleet compare`: compare.json, a compare section in report.html, testcases in
    junit.xml and summary.json's `regression` in the new run's directory; 1 on a regression."""
    baseline = load_run(baseline_dir)
    records, summary = load_run(run_dir)
    result = compare_into(Path(run_dir), summary.get("run_id") or Path(run_dir).name, records,
                          Path(baseline_dir), baseline, allow=allow, resamples=resamples,
                          seed=seed)
    summary["regression"] = regression_brief(result)
    with RunStore(Path(run_dir)) as store:
        store.write_summary(summary)
    write_report(Path(run_dir), summary, records)
    write_junit(Path(run_dir), summary, records)
    print_compare(result)
    console.print(f"compare: {Path(run_dir) / 'compare.json'}, report.html, junit.xml")
    return EXIT_GATES_FAILED if result["regressions"] else EXIT_OK


def print_compare(result: dict[str, Any]) -> None:
    for item in terminal_tables(result):
        console.print(item)


def _old_summary(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / SUMMARY_FILE).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
