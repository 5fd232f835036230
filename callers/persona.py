"""Persona files: pydantic models for the YAML, and loading that fails with one clear line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from callers.data_files import find_model, is_path, list_models, load_model

PERSONAS_DIR = Path(__file__).parents[1] / "personas"


def _between(lo: float, hi: float, *, exclusive: bool = False) -> AfterValidator:
    """A range check whose message reads well in a one-line ConfigError."""

    def check(value: float) -> float:
        inside = lo < value < hi if exclusive else lo <= value <= hi
        if not inside:
            bounds = "strictly between" if exclusive else "between"
            raise ValueError(f"must be {bounds} {lo:g} and {hi:g}, got {value:g}")
        return value

    return AfterValidator(check)


# Strict so that YAML's `true` or "250" is not silently taken for a number.
Number = Annotated[float, Field(strict=True)]
Whole = Annotated[int, Field(strict=True)]
Probability = Annotated[Number, _between(0, 1)]


class _Model(BaseModel):
    # Unknown fields are rejected so a typo ("colour", "snr") fails instead of being ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


# What the caller knows about itself (name, phone, date of birth, its case...): any fact a
# scenario leaves without a value is taken from here, by name.
FactName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
FactValue = Annotated[str, Field(min_length=1)] | bool | int | float | dt.date | dt.time


class Voice(_Model):
    """How the caller sounds: Piper model, rate and timbre variant."""

    model: str | None = None  # path to a Piper .onnx (config beside it); None = bundled joe
    speaking_rate: Annotated[Number, _between(0.5, 2.0, exclusive=True)] = 1.0
    variant: Annotated[Whole, _between(0, 4)] = 0

    @field_validator("model")
    @classmethod
    def _model_exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"Piper model file not found: {value}")
        return value


class Temperament(_Model):
    """Character knobs: patience, talkativeness, and how soon the caller answers."""

    patience: Probability = 0.5  # patient callers ask the agent to repeat more before giving up
    verbosity: Probability = 0.3  # chance of a chatty phrasing over a terse one
    # The caller speaks this long after the agent's speech ended (if it has its reply by then).
    # Default: what Whisper tiny + Piper need on one core after the agent stops, with margin.
    reply_after_ms: Annotated[Number, _between(500, 5000)] = 1500.0
    # The caller hangs up when the agent stays silent this long while it waits for an answer.
    max_wait_s: Annotated[Number, _between(3, 120)] = 15.0


class Behaviour(_Model):
    """One turn-taking behaviour and how often it happens."""

    probability: Probability = 0.0


class BargeIn(Behaviour):
    """Start answering while the agent is still talking, `after_s` into its turn."""

    after_s: Annotated[Number, _between(0.2, 10)] = 1.0


class Backchannel(Behaviour):
    """Say "mm-hmm" during an agent turn that has gone on for `after_s`.

    Keep it well before the end of the agent's shortest turns: an agent that finishes within
    500 ms of the backchannel is graded a false yield (it cannot be told from one).
    """

    after_s: Annotated[Number, _between(0.5, 10)] = 0.8


class Hesitation(Behaviour):
    """A deliberate pause of `pause_ms` inside a reply ("Um, ... Smith.")."""

    pause_ms: Annotated[Number, _between(100, 3000)] = 450.0


class Behaviours(_Model):
    """Turn-taking behaviours; probabilities are per agent turn (per reply for hesitation)."""

    barge_in: BargeIn = BargeIn()
    backchannel: Backchannel = Backchannel()
    hesitation: Hesitation = Hesitation()
    correction: Behaviour = Behaviour(probability=1.0)  # correct a wrong read-back
    silence: Behaviour = Behaviour()  # say nothing to one question (at most once per call)


class Environment(_Model):
    """The acoustic background mixed under the caller's speech."""

    noise: Literal["none", "white", "pink", "brown", "babble", "street", "cafe"] = "none"
    snr_db: Annotated[Number, _between(-10, 60)] = 30.0


class Line(_Model):
    """The telephone line: codec, band limit and packet loss."""

    codec: Literal["opus", "pcmu"] | None = None  # None = the run's target codec
    band_limit: bool = Field(default=False, strict=True)
    packet_loss_pct: Annotated[Number, _between(0, 30)] = 0.0


class Persona(_Model):
    """One caller: who they are, what they want, how they sound and behave."""

    id: str = Field(pattern=r"^[a-z0-9-]+$")
    display_name: str = Field(min_length=1)
    goal: str | None = None  # what it wants is the scenario's; kept for older files
    facts: dict[FactName, FactValue] = Field(default_factory=dict)
    voice: Voice = Voice()
    temperament: Temperament = Temperament()
    behaviours: Behaviours = Behaviours()
    # Off-topic remarks a wordy caller slips into replies (chance: temperament.verbosity).
    asides: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    environment: Environment = Environment()
    line: Line = Line()


def traits(persona: Persona) -> str:
    """What makes this caller hard, in a few words (for `callfleet personas list`)."""
    b, env, line = persona.behaviours, persona.environment, persona.line
    words = [f"{name.replace('_', '-')} {getattr(b, name).probability:g}"
             for name in ("barge_in", "backchannel", "hesitation", "silence")
             if getattr(b, name).probability > 0]
    if persona.voice.speaking_rate != 1.0:
        words.append(f"rate {persona.voice.speaking_rate:g}")
    if persona.asides:
        words.append("asides")
    if env.noise != "none":
        words.append(f"{env.noise} noise {env.snr_db:g} dB")
    if line.codec or line.band_limit or line.packet_loss_pct:
        words.append(" ".join(filter(None, [line.codec, "band-limited" * line.band_limit,
                                            f"{line.packet_loss_pct:g}% loss"])))
    return ", ".join(words) or "cooperative"


def load_persona(path: str | Path) -> Persona:
    """Read and validate one persona file; any problem is a one-line ConfigError."""
    return load_model(path, Persona, "persona")


def list_personas(directory: str | Path = PERSONAS_DIR) -> list[Persona]:
    """All personas in a directory, sorted by id; duplicate ids are a ConfigError."""
    return list_models(directory, load_persona, "persona")


def find_persona(persona_id: str, directory: str | Path = PERSONAS_DIR) -> Persona:
    """The persona with this id in a directory, or a ConfigError listing the known ids."""
    return find_model(persona_id, directory, load_persona, "persona")


def resolve_persona(name_or_path: str | Path) -> Persona:
    """A persona from a file path, or by id from the shipped personas/ folder."""
    return load_persona(name_or_path) if is_path(name_or_path) else find_persona(str(name_or_path))
