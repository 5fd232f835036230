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
    """Agent-state entities if the agent reports them, else its spoken read-backs."""
    entities = (agent_state or {}).get("entities")
    if isinstance(entities, dict) and entities:
        understood = {k: str(v) for k, v in entities.items() if k in expected and v is not None}
        source, fuzzy = "agent-state", False
    else:
        understood = {}
        for turn in turns:  # the last read-back of each entity is what the agent settled on
            if turn.get("speaker") == "agent":
                understood.update(read_backs(turn.get("text", "")))
        understood = {k: v for k, v in understood.items() if k in expected}
        source, fuzzy = ("read-back", True) if understood else ("none", False)
    correct = {k: same_value(k, v, understood.get(k), fuzzy=fuzzy) for k, v in expected.items()}
    return {"expected": expected, "understood": understood, "correct": correct, "source": source}
