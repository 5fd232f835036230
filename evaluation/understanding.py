"""How well the agent understood each graded fact, from the most trusted source that shows it.

Sources in order of trust: the agent's own state (its data channel's {"entities": {...}},
keys mapped by the scenario's agent_state_key), then its spoken read-backs found in its turns
by type-aware matching (callers.facts: names by spelling and sound, numbers, money, dates,
times, phones, emails and spelled codes normalised), then, when one is configured, an LLM
judge asked about the facts still unseen (evaluation.llm_judge: its verdict must quote the
agent turn it rests on; the value is compared by the same typed matching). A fact no source
shows is not observed: never graded wrong.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from callers import facts as typed

if TYPE_CHECKING:
    from evaluation.llm_judge import LLMJudge


def graded_facts(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The record's graded facts {name: {type, value, state_key, options?}}, as the session
    wrote them (a record from before scenarios carries none: nothing is graded)."""
    facts = record.get("facts")
    if not isinstance(facts, dict):
        return {}
    return {k: v for k, v in facts.items() if isinstance(v, dict) and "type" in v}


def _fact(name: str, spec: dict[str, Any]) -> typed.Fact | None:
    try:
        return typed.Fact.of(name, spec["type"], spec["value"], spec.get("options"))
    except (ValueError, KeyError, TypeError):
        return None  # a hand-edited record with a broken fact: not graded


def score_understanding(
    expected: dict[str, dict[str, Any]], agent_state: dict[str, Any], turns: list[dict[str, Any]],
    judge: LLMJudge | None = None,
) -> dict[str, Any]:
    """Each fact from the most trusted source that shows it: the agent's reported state, else
    its spoken read-back, else the judge's quoted verdict (an LLMJudge, or None). `correct`
    holds the observed facts only; `sources` says where each came from; `not_observed` lists
    the rest."""
    facts = {name: f for name, spec in expected.items() if (f := _fact(name, spec)) is not None}
    entities = agent_state.get("entities") if isinstance(agent_state, dict) else None
    reported = entities if isinstance(entities, dict) else {}
    spoken: dict[str, str] = {}
    for turn in turns:  # the last read-back of each fact is what the agent settled on
        if turn.get("speaker") == "agent":
            spoken.update(typed.read_backs(str(turn.get("text", "")), facts.values()))
    understood: dict[str, str] = {}
    correct: dict[str, bool] = {}
    sources: dict[str, str] = {}
    for name, fact in facts.items():
        key = expected[name].get("state_key") or name
        if key in reported:  # reported as null or "": the agent says it does not have it
            heard, source, fuzzy = reported[key], "agent-state", False
        elif name in spoken:
            heard, source, fuzzy = spoken[name], "read-back", True
        else:
            continue
        understood[name] = "" if heard is None else str(heard)[:200]
        sources[name] = source
        correct[name] = _same(fact, heard, fuzzy=fuzzy)
    unseen = [fact for name, fact in facts.items() if name not in correct]
    judged = judge.ask(unseen, turns) if judge is not None and unseen else None  # never raises
    for name, verdict in (judged.verdicts if judged else {}).items():
        understood[name], sources[name] = verdict.heard, "llm-judge"
        correct[name] = _same(facts[name], verdict.heard, fuzzy=True)
    trusted = [s for s in ("agent-state", "read-back", "llm-judge") if s in sources.values()]
    return {"expected": {name: fact.value for name, fact in facts.items()},
            "understood": understood, "correct": correct,
            "source": trusted[0] if trusted else "none", "sources": sources,
            "observed": len(correct), "not_observed": [f for f in facts if f not in correct],
            # Every spoken read-back, right or wrong, whatever the agent's state says.
            "read_back": {name: _same(facts[name], value, fuzzy=True)
                          for name, value in spoken.items() if name in facts},
            **(judged.notes() if judged else {})}


def _same(fact: typed.Fact, heard: Any, *, fuzzy: bool) -> bool:
    if heard is None or isinstance(heard, dict | list):
        return False
    try:
        return typed.same(fact.type, fact.value, heard, fuzzy=fuzzy, options=fact.options)
    except (ValueError, ArithmeticError):  # the agent's value: not this type, or inf/NaN
        return False
