"""Scenario files: what the caller wants from one kind of agent (goal, typed facts, success).

A scenario is not who calls (that is the persona: voice, temperament, behaviours, line). The
same impatient persona can book a table or dispute a charge. A fact's value comes from the
scenario, or, when the scenario leaves it out, from the persona's own facts of that name
(its name, phone, date of birth...), so each persona keeps its identity in every scenario.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from callers import facts as typed
from callers.data_files import find_model, is_path, list_models, load_model
from callers.errors import ConfigError

SCENARIOS_DIR = Path(__file__).parents[1] / "scenarios"
DEFAULT_SCENARIO = "card-dispute"

FactName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
FactValue = str | bool | int | float | dt.date | dt.time


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FactSpec(_Model):
    """One typed fact the caller knows: how it is asked for, said, graded."""

    type: str
    value: FactValue | None = None  # None: the persona's fact of the same name
    required: bool = True  # the goal needs the agent to have been told it
    graded: bool = True  # understanding is scored for it
    asked_by: list[Annotated[str, Field(min_length=2)]] = Field(default_factory=list)
    say: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)  # "{value}"
    agent_state_key: str | None = None  # the agent reports it under another name
    # Asked by an agent's opening question ("How can I help?"): any other question wins.
    opener: bool = False
    options: list[str] | dict[str, list[str]] | None = None  # choice: options (and synonyms)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        return typed.check_type(value)

    @field_validator("say")
    @classmethod
    def _has_value_slot(cls, value: list[str]) -> list[str]:
        for template in value:
            if "{value}" not in template:
                raise ValueError(f"each way to say it needs {{value}}, got {template[:40]!r}")
        return value

    @model_validator(mode="after")
    def _parses(self) -> FactSpec:
        if self.type == "choice" and not self.options:
            raise ValueError("a choice needs options")
        if self.value is not None:
            typed.parse(self.type, self.value, self.options)  # ValueError says what was expected
        return self


class Success(_Model):
    """What must hold for the task to count as done (beyond the required facts given)."""

    agent_says: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    read_back: list[str] = Field(default_factory=list)  # facts the agent must read back
    ends: Literal["any", "agent_goodbye"] = "any"

    @field_validator("agent_says")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for phrase in value:
            if _is_pattern(phrase):
                try:
                    re.compile(phrase[1:-1])
                except re.error as e:
                    raise ValueError(f"not a valid pattern {phrase[:40]!r}: {e}") from None
        return value


class ScriptTurn(_Model):
    """One fixed caller turn: what to say and when (after the agent stops, or into its turn)."""

    say: str | None = Field(default=None, min_length=1)
    wav: str | None = None
    after_agent_ms: Annotated[float, Field(ge=0, le=60_000)] | None = None
    into_agent_turn_ms: Annotated[float, Field(ge=0, le=60_000)] | None = None
    mode: Literal["turn", "barge_in", "backchannel"] = "turn"

    @model_validator(mode="after")
    def _one_of_each(self) -> ScriptTurn:
        if (self.say is None) == (self.wav is None):
            raise ValueError("give exactly one of say or wav")
        if self.wav is not None and not Path(self.wav).is_file():
            raise ValueError(f"wav file not found: {self.wav[:80]}")
        if self.after_agent_ms is not None and self.into_agent_turn_ms is not None:
            raise ValueError("give after_agent_ms or into_agent_turn_ms, not both")
        if self.mode != "turn" and self.into_agent_turn_ms is None:
            raise ValueError(f"a {self.mode} needs into_agent_turn_ms")
        return self


class Scenario(_Model):
    """What the caller wants from one kind of agent."""

    id: str = Field(pattern=r"^[a-z0-9-]+$")
    goal: str = Field(min_length=1)
    flow: str | None = None  # the reference agent's flow this was written for (demo pairs them)
    facts: dict[FactName, FactSpec] = Field(default_factory=dict)
    success: Success = Success()
    script: list[ScriptTurn] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        for name, spec in self.facts.items():
            if spec.required and not typed.ask_phrases(name, spec.type, spec.asked_by):
                raise ValueError(f"facts.{name}: a required fact needs a way to be asked "
                                 "(asked_by phrases)")
        for name in self.success.read_back:
            if name not in self.facts:
                raise ValueError(f"success.read_back: unknown fact {name!r} "
                                 f"(facts: {', '.join(self.facts) or 'none'})")
        if self.script is not None and not self.script:
            raise ValueError("script: expected at least one turn")
        if self.script is None and not any(s.required for s in self.facts.values()):
            raise ValueError("facts: expected at least one required fact (or a script)")
        return self


def _is_pattern(phrase: str) -> bool:
    return len(phrase) > 2 and phrase.startswith("/") and phrase.endswith("/")


@dataclass(frozen=True)
class CallFact:
    """One fact of one call: its typed value and the scenario's word on it."""

    fact: typed.Fact
    spec: FactSpec
    patterns: tuple[str, ...] = field(default=())  # regexes that ask for it

    @property
    def name(self) -> str:
        return self.fact.name

    @property
    def type(self) -> str:
        return self.fact.type

    @property
    def value(self) -> str:
        return self.fact.value


@dataclass(frozen=True)
class CallFacts:
    """A scenario's facts for one persona: values resolved, ask patterns built."""

    scenario: Scenario
    items: tuple[CallFact, ...]

    def __iter__(self):
        return iter(self.items)

    def __getitem__(self, name: str) -> CallFact:
        for item in self.items:
            if item.name == name:
                return item
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.items]

    @property
    def required(self) -> frozenset[str]:
        return frozenset(f.name for f in self.items if f.spec.required)

    @property
    def typed_facts(self) -> list[typed.Fact]:
        return [f.fact for f in self.items]

    @property
    def patterns(self) -> dict[str, tuple[str, ...]]:
        return {f.name: f.patterns for f in self.items}

    @property
    def phrases(self) -> dict[str, list[str]]:
        return {f.name: list(f.spec.asked_by) for f in self.items}

    def graded(self) -> dict[str, dict[str, Any]]:
        """The graded facts as plain data for records and the grader."""
        return {f.name: {"type": f.type, "value": f.value,
                         "state_key": f.spec.agent_state_key or f.name,
                         **({"options": f.spec.options} if f.spec.options else {})}
                for f in self.items if f.spec.graded}


def facts_for(scenario: Scenario, persona_facts: dict[str, Any], who: str = "persona"
              ) -> CallFacts:
    """Resolve every fact's value (scenario first, then the persona's); a fact with neither is
    a ConfigError naming both."""
    known = dict(persona_facts)
    if "name" not in known and known.get("first_name") and known.get("last_name"):
        known["name"] = f"{known['first_name']} {known['last_name']}"  # the whole name
    items = []
    for name, spec in scenario.facts.items():
        value = spec.value if spec.value is not None else known.get(name)
        if value is None:
            raise ConfigError(f"scenario {scenario.id}: fact {name!r} has no value, and "
                              f"{who} has no fact of that name")
        try:
            fact = typed.Fact.of(name, spec.type, value, spec.options)
        except ValueError as e:
            raise ConfigError(f"{who}: facts.{name}: {e} (for scenario {scenario.id})") from None
        patterns = tuple(typed.ask_patterns(name, spec.type, spec.asked_by, spec.options))
        items.append(CallFact(fact, spec, patterns))
    return CallFacts(scenario, tuple(items))


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate one scenario file; any problem is a one-line ConfigError."""
    return load_model(path, Scenario, "scenario")


def list_scenarios(directory: str | Path = SCENARIOS_DIR) -> list[Scenario]:
    return list_models(directory, load_scenario, "scenario")


def find_scenario(scenario_id: str, directory: str | Path = SCENARIOS_DIR) -> Scenario:
    return find_model(scenario_id, directory, load_scenario, "scenario")


def resolve_scenario(name_or_path: str | Path) -> Scenario:
    """A scenario from a file path, or by id from the shipped scenarios/ folder."""
    if is_path(name_or_path):
        return load_scenario(name_or_path)
    return find_scenario(str(name_or_path))
