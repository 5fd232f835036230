"""Grade one CallRecord: timeline metrics and understanding, written back into the record."""

from __future__ import annotations

from typing import Any

from evaluation.metrics import call_metrics
from evaluation.understanding import expected_facts, score_understanding


def score_call(record: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """Fill `metrics` and `understanding` of a record dict from its events, turns and state."""
    record["metrics"] = call_metrics(record.get("events") or [])
    record["understanding"] = score_understanding(
        expected_facts(facts), record.get("agent_state") or {}, record.get("turns") or []
    )
    return record
