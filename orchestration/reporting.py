"""Rebuild a run's summary from calls.jsonl (after a crash, or with newer scoring code)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from callers.errors import ConfigError
from evaluation.summary import summarize
from orchestration.console import print_summary
from orchestration.store import CALLS_FILE, SUMMARY_FILE, RunStore, read_records


def finish_run(store: RunStore, records: list[dict[str, Any]], *, run_id: str, target: str,
               planned: int, partial: bool) -> dict[str, Any]:
    summary = summarize(records, run_id=run_id, target=target, planned=planned, partial=partial)
    store.write_summary(summary)
    return summary


def rebuild_report(run_dir: Path) -> int:
    calls = run_dir / CALLS_FILE
    if not calls.is_file():
        raise ConfigError(f"{calls}: not found (is {run_dir} a callfleet run directory?)")
    records, warnings = read_records(calls)
    for warning in warnings:
        print(f"callfleet: warning: {warning} (skipped)", file=sys.stderr)
    old = _old_summary(run_dir)
    planned = (old.get("calls") or {}).get("planned") or len(records)
    run_id = old.get("run_id") or run_dir.name
    target = old.get("target") or (records[0].get("target", "") if records else "")
    store = RunStore(run_dir)
    try:
        summary = finish_run(store, records, run_id=run_id, target=target, planned=planned,
                             partial=len(records) < planned)
    finally:
        store.close()
    print_summary(summary, str(run_dir))
    return 0


def _old_summary(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / SUMMARY_FILE).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
