"""Grade one CallRecord: timeline metrics and understanding, written back into the record."""

from __future__ import annotations

from typing import Any

from evaluation.agent_reports import agent_hearing, reported_onset_offsets
from evaluation.metrics import call_metrics
from evaluation.understanding import expected_facts, score_understanding


def reached_conversation(record: dict[str, Any]) -> bool:
    """Someone spoke: a call that failed before that (a 401, no media, a silent agent) counts
    in completion and failure reasons only, never in turn-taking or understanding."""
    return bool(record.get("turns"))


def score_call(record: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """Fill `metrics` and `understanding` of a record dict from its events, turns and state."""
    if not reached_conversation(record):
        record["metrics"], record["understanding"] = {}, {}
        return record
    events = record.get("events") or []
    record["metrics"] = call_metrics(events)
    hearing = agent_hearing(record)
    if hearing:
        record["metrics"]["agent_hearing"] = hearing
    offsets = reported_onset_offsets(events)
    if offsets:
        record["metrics"]["agent_reported_onset_offset_ms"] = offsets
    expected = expected_facts(facts)
    given = record.get("facts_given")
    if given is not None:  # a fact the caller never said cannot have been misunderstood
        expected = {k: v for k, v in expected.items() if k in given}
    record["understanding"] = score_understanding(
        expected, record.get("agent_state") or {}, record.get("turns") or [])
    return record
