"""Grade one CallRecord: timeline metrics, understanding and task success, written into it."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from callers.brain import says_goodbye
from callers.facts.words import plain
from evaluation.agent_reports import agent_hearing, reported_onset_offsets
from evaluation.metrics import call_metrics
from evaluation.understanding import graded_facts, score_understanding

if TYPE_CHECKING:
    from evaluation.llm_judge import LLMJudge


def reached_conversation(record: dict[str, Any]) -> bool:
    """Someone spoke: a call that failed before that (a 401, no media, a silent agent) counts
    in completion and failure reasons only, never in turn-taking, understanding or task."""
    return bool(record.get("turns"))


def score_call(record: dict[str, Any], judge: LLMJudge | None = None) -> dict[str, Any]:
    """Fill `metrics`, `understanding` and `task` of a record dict from its events, turns,
    agent state and the graded facts and success criteria it carries. A judge (blocking: one
    HTTP request under its timeout) is asked only about facts no other source showed."""
    if not reached_conversation(record):
        record["metrics"], record["understanding"], record["task"] = {}, {}, {}
        return record
    events = record.get("events") or []
    record["metrics"] = call_metrics(events)
    hearing = agent_hearing(record)
    if hearing:
        record["metrics"]["agent_hearing"] = hearing
    offsets = reported_onset_offsets(events)
    if offsets:
        record["metrics"]["agent_reported_onset_offset_ms"] = offsets
    expected = graded_facts(record)
    given = record.get("facts_given")
    if given is not None:  # a fact the caller never said cannot have been misunderstood
        expected = {k: v for k, v in expected.items() if k in given}
    record["understanding"] = score_understanding(
        expected, record.get("agent_state") or {}, record.get("turns") or [], judge)
    record["task"] = task_success(record)
    return record


def task_success(record: dict[str, Any]) -> dict[str, Any]:
    """The scenario's success criteria, each a named check: the goal's facts given (the call
    completed), every observed fact understood, facts read back right, phrases the agent had
    to say, and how the call ended."""
    criteria = record.get("success") or {}
    understanding = record.get("understanding") or {}
    agent_turns = [str(t.get("text", "")) for t in record.get("turns") or ()
                   if t.get("speaker") == "agent"]
    said = plain(" ".join(agent_turns))
    checks: dict[str, bool] = {
        "goal_facts_given": record.get("status") == "completed",
        "understood": all((understanding.get("correct") or {}).values()),
    }
    read_back = understanding.get("read_back") or {}
    for name in criteria.get("read_back") or ():
        checks[f"read_back.{name}"] = bool(read_back.get(name))
    for phrase in criteria.get("agent_says") or ():
        checks[f"says.{phrase[:40]}"] = _said(phrase, said, " ".join(agent_turns))
    if criteria.get("ends") == "agent_goodbye":
        checks["ends.agent_goodbye"] = bool(agent_turns) and says_goodbye(agent_turns[-1])
    return {"success": all(checks.values()), "checks": checks}


def _said(phrase: str, said_plain: str, said_raw: str) -> bool:
    if len(phrase) > 2 and phrase.startswith("/") and phrase.endswith("/"):
        return re.search(phrase[1:-1], said_raw, re.IGNORECASE) is not None
    return re.search(rf"\b{re.escape(plain(phrase))}\b", said_plain) is not None
