"""How well the agent understood each ground-truth fact, from the most trusted source available."""

from __future__ import annotations

from typing import Any

from callers.brain import read_backs
from callers.language import canonical_amount, find_amount, names_match, normalize_name

SCORED_ENTITIES = ("first_name", "last_name", "amount")


def expected_facts(facts: dict[str, Any]) -> dict[str, str]:
    """The persona facts that are graded, as comparable strings."""
    out = {k: str(facts[k]) for k in SCORED_ENTITIES if facts.get(k) not in (None, "")}
    if "amount" in out:
        out["amount"] = canonical_amount(float(facts["amount"]))
    return out


def same_value(entity: str, expected: str, heard: str | None, *, fuzzy: bool) -> bool:
    """Amounts compare as numbers; names exactly (agent state) or fuzzily (transcripts)."""
    if heard is None or heard == "":
        return False
    if entity == "amount":
        value = find_amount(str(heard))
        return value is not None and canonical_amount(value) == expected
    if fuzzy:
        return names_match(expected, str(heard))
    return normalize_name(expected) == normalize_name(str(heard))


def score_understanding(
    expected: dict[str, str], agent_state: dict[str, Any], turns: list[dict[str, Any]]
) -> dict[str, Any]:
    """Each fact from the most trusted source that shows it: the agent's reported state, else
    its spoken read-back. A fact that no source shows is not observed: never graded wrong.

    `correct` holds the observed facts only; `sources` says where each came from.
    """
    entities = (agent_state or {}).get("entities")
    reported = entities if isinstance(entities, dict) else {}
    spoken: dict[str, str] = {}
    for turn in turns:  # the last read-back of each fact is what the agent settled on
        if turn.get("speaker") == "agent":
            spoken.update(read_backs(turn.get("text", "")))
    understood: dict[str, str] = {}
    correct: dict[str, bool] = {}
    sources: dict[str, str] = {}
    for fact, value in expected.items():
        if fact in reported:  # reported as null or "": the agent says it does not have it
            heard, source, fuzzy = str(reported[fact] or ""), "agent-state", False
        elif fact in spoken:
            heard, source, fuzzy = spoken[fact], "read-back", True
        else:
            continue
        understood[fact], sources[fact] = heard, source
        correct[fact] = same_value(fact, value, heard, fuzzy=fuzzy)
    trusted = [s for s in ("agent-state", "read-back") if s in sources.values()]
    return {"expected": expected, "understood": understood, "correct": correct,
            "source": trusted[0] if trusted else "none", "sources": sources,
            "observed": len(correct), "not_observed": [f for f in expected if f not in correct]}
