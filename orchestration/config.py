"""Run configs (configs/*.yaml): target, persona mix, brain, load profile, limits; validated
up front."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from callers.errors import ConfigError
from callers.llm_brain import LLMConfig
from callers.transport import Target


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentStateConfig(_Model):
    """Where and how the agent reports its state: a data channel label and a message format."""

    channel: str = Field("agent-state", min_length=1, max_length=64)
    format: Literal["auto", "entities-json", "rtvi"] = "auto"


WEBRTC_ONLY = ("signaling", "codec", "agent_state")
WEBSOCKET_ONLY = ("headers", "ca_file")
TRANSPORT_ONLY = {"pcm-ws": ("sample_rate", "hangup_message"),
                  "twilio-ws": ("custom_parameters", "account_sid")}


class TargetConfig(_Model):
    """Who to call. `url: reference` starts the embedded reference agent on loopback (its
    /offer or /whip for webrtc, its /pcm or /twilio WebSocket for pcm-ws and twilio-ws)."""

    url: str = "reference"
    transport: Literal["webrtc", "twilio-ws", "pcm-ws"] = "webrtc"
    signaling: Literal["json-offer", "whip"] = "json-offer"
    token_env: str | None = None
    codec: Literal["opus", "pcmu"] = "opus"
    agent_state: AgentStateConfig = AgentStateConfig()
    reference_agent_args: list[str] = Field(default_factory=list)
    # WebSocket transports
    headers: dict[str, str] = Field(default_factory=dict)
    ca_file: str | None = None
    sample_rate: int = Field(16_000, ge=8000, le=48_000)  # pcm-ws
    hangup_message: str | None = None  # pcm-ws, e.g. '{"type": "hangup"}'
    custom_parameters: dict[str, str] = Field(default_factory=dict)  # twilio-ws
    account_sid: str | None = None  # twilio-ws

    @model_validator(mode="after")
    def _options_fit_the_transport(self) -> TargetConfig:
        websocket = self.transport != "webrtc"
        if self.url != "reference":
            scheme = self.url.split("://", 1)[0].lower() if "://" in self.url else ""
            wanted = ("ws", "wss") if websocket else ("http", "https")
            if scheme not in wanted:
                raise ValueError(f"url {self.url!r}: {self.transport} expects a "
                                 f"{' or '.join(w + '://' for w in wanted)} URL")
        given = self.model_fields_set
        wrong = [f for f in (WEBRTC_ONLY if websocket else WEBSOCKET_ONLY) if f in given]
        wrong += [f for t, fields in TRANSPORT_ONLY.items() if t != self.transport
                  for f in fields if f in given]
        if wrong:
            raise ValueError(f"{wrong[0]} does not apply to transport {self.transport}")
        if self.sample_rate % 50:
            raise ValueError(f"sample_rate {self.sample_rate}: 20 ms frames need a multiple "
                             "of 50 Hz")
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise ValueError(f"ca_file {self.ca_file}: no such file")
        if self.hangup_message is not None and not self.hangup_message.strip():
            raise ValueError("hangup_message is empty")
        return self

    def to_target(self, base_url: str | None = None) -> Target:
        url = self.url
        if url == "reference":
            if self.transport == "webrtc":
                url = f"{base_url}/whip" if self.signaling == "whip" else f"{base_url}/offer"
            else:
                ws_base = "ws" + (base_url or "").removeprefix("http")
                url = f"{ws_base}/{'pcm' if self.transport == 'pcm-ws' else 'twilio'}"
        return Target(url, signaling=self.signaling, token_env=self.token_env, codec=self.codec,
                      state_channel=self.agent_state.channel,
                      state_format=self.agent_state.format, transport=self.transport,
                      headers=tuple(self.headers.items()), ca_file=self.ca_file,
                      sample_rate=self.sample_rate, hangup_message=self.hangup_message,
                      custom_parameters=tuple(self.custom_parameters.items()),
                      account_sid=self.account_sid)


class ScriptedBrainConfig(_Model):
    """The offline default: callers.brain.ScriptedBrain."""

    kind: Literal["scripted"] = "scripted"


class LLMBrainConfig(LLMConfig):
    """callers.llm_brain.LLMBrain against an OpenAI-compatible endpoint; the key stays in the
    environment variable named by api_key_env and never enters the config."""

    kind: Literal["llm"]


BrainConfig = Annotated[ScriptedBrainConfig | LLMBrainConfig, Field(discriminator="kind")]
_BRAIN = TypeAdapter(BrainConfig)


def brain_config(data: dict[str, Any] | None) -> ScriptedBrainConfig | LLMBrainConfig:
    """A brain section from plain data (None = scripted); hosts rebuild it from call specs."""
    return _BRAIN.validate_python(data or {"kind": "scripted"})


def require_api_key(brain: ScriptedBrainConfig | LLMBrainConfig, where: str) -> None:
    """An llm brain whose key variable is unset fails before any call; only the name is shown."""
    if isinstance(brain, LLMBrainConfig) and not os.environ.get(brain.api_key_env):
        raise ConfigError(f"{where}: environment variable {brain.api_key_env} (the API key for "
                          f"{brain.base_url}) is not set")


class Baseline(_Model):
    kind: Literal["baseline"]
    concurrency: int = Field(gt=0)
    duration_s: float = Field(gt=0)


class Ramp(_Model):
    """Start at `start` concurrent calls and double every step, holding each step."""

    kind: Literal["ramp"]
    start: int = Field(gt=0)
    steps: int = Field(gt=0, le=20)
    hold_s: float = Field(gt=0)


class Spike(_Model):
    """Hold `base`, jump to base x multiplier, then back to base to measure recovery."""

    kind: Literal["spike"]
    base: int = Field(gt=0)
    multiplier: float = Field(gt=1)
    base_s: float = Field(gt=0)
    spike_s: float = Field(gt=0)
    recover_s: float = Field(gt=0)


class Soak(_Model):
    kind: Literal["soak"]
    concurrency: int = Field(gt=0)
    duration_s: float = Field(gt=0)


Phase = Annotated[Baseline | Ramp | Spike | Soak, Field(discriminator="kind")]


class LoadConfig(_Model):
    """The three knobs of every telephony load tester, plus phases over time."""

    total_calls: int = Field(gt=0)
    max_concurrency: int = Field(gt=0)
    calls_per_second: float = Field(gt=0, le=1000)
    phases: list[Phase] = Field(default_factory=list)

    @model_validator(mode="after")
    def _concurrency_within_total(self) -> LoadConfig:
        if self.max_concurrency > self.total_calls:
            raise ValueError(
                f"max_concurrency ({self.max_concurrency}) is above total_calls "
                f"({self.total_calls})"
            )
        return self


class FleetConfig(_Model):
    hosts: int | None = Field(default=None, gt=0)  # default: one CallerHost per CPU
    max_call_s: float = Field(default=240.0, gt=0)
    null_call_s: float | None = Field(default=None, gt=0)  # orchestration benchmark: no media


class RunConfig(_Model):
    name: str = "run"
    seed: int = 1
    target: TargetConfig = TargetConfig()
    personas: dict[str, float] = Field(min_length=1)  # persona id (or file) -> weight
    scenarios: dict[str, float] = Field(default_factory=lambda: {"card-dispute": 1.0},
                                        min_length=1)  # scenario id (or file) -> weight
    # weighted: persona and scenario each drawn by weight; matrix: every scenario x persona
    # pair in turn (weights ignored)
    mix: Literal["weighted", "matrix"] = "weighted"
    brain: BrainConfig = ScriptedBrainConfig()
    load: LoadConfig
    fleet: FleetConfig = FleetConfig()
    gates: dict | None = None  # parsed by evaluation.gates

    @model_validator(mode="after")
    def _weights_positive(self) -> RunConfig:
        for section in ("personas", "scenarios"):
            for name, weight in getattr(self, section).items():
                if weight <= 0:
                    raise ValueError(f"{section}.{name}: weight must be above 0, got {weight}")
        return self


def load_run_config(path: str | Path) -> RunConfig:
    """Read and validate a run config; any problem is one ConfigError line naming the field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read run config: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of run settings")
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{path}: {_first_error(e, data)}") from None
    _check_personas(path, config)
    require_api_key(config.brain, f"{path}: brain.api_key_env")
    return config


# Fields whose input is never echoed: a secret pasted where its variable's name belongs.
_NOT_ECHOED = ("api_key_env", "token_env")
_TAG_ERRORS = ("union_tag_not_found", "union_tag_invalid")


def _first_error(error: ValidationError, data: Any = None) -> str:
    first = error.errors()[0]
    loc = ".".join(str(p) for p in _field_path(first["loc"], data)
                   if not str(p).startswith(("function-", "tagged")))
    msg = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
    msg = msg.removeprefix("Value error, ")
    got = first.get("input")
    if first["type"] in _TAG_ERRORS:  # pydantic's wording names its internals
        ctx = first["ctx"]
        loc = f"{loc}.{ctx['discriminator'].strip(chr(39))}"
        msg = (f"expected one of {ctx['expected_tags']}" if "tag" in ctx else "field required")
        got = ctx.get("tag")
    hidden = first["type"] in ("extra_forbidden", "missing") or loc.endswith(_NOT_ECHOED)
    shown = "" if hidden or got is None or isinstance(got, dict) else f", got {got!r}"
    more = f" (and {len(error.errors()) - 1} more)" if len(error.errors()) > 1 else ""
    return f"{loc}: {msg}{shown}{more}" if loc else f"{msg}{more}"


def _field_path(loc: tuple, data: Any) -> list:
    """loc without the tags pydantic inserts for tagged unions ("brain.llm.model" ->
    "brain.model"): a part before the last that is not a key of the data there is a tag."""
    path = []
    for i, part in enumerate(loc):
        if isinstance(data, dict) and part not in data and i < len(loc) - 1:
            continue
        path.append(part)
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            data = None
    return path


def with_brain(config: RunConfig, brain: dict[str, Any], where: str) -> RunConfig:
    """config with its brain section replaced (callfleet demo --llm-*), checked like a file's."""
    try:
        section = brain_config(brain)
    except ValidationError as e:
        raise ConfigError(f"{where}: {_first_error(e, brain)}") from None
    require_api_key(section, where)
    return config.model_copy(update={"brain": section})


def _check_personas(path: Path, config: RunConfig) -> None:
    """Every persona and scenario loads, and every pair that can be called has every fact."""
    from callers.persona import resolve_persona
    from callers.scenario import facts_for, resolve_scenario

    personas, scenarios = {}, {}
    for section, names, resolve, into in (("personas", config.personas, resolve_persona,
                                           personas),
                                          ("scenarios", config.scenarios, resolve_scenario,
                                           scenarios)):
        for name in names:
            try:
                into[name] = resolve(name)
            except ConfigError as e:
                raise ConfigError(f"{path}: {section}.{name}: {e}") from None
    for scenario in scenarios.values():
        for name, persona in personas.items():
            try:
                facts_for(scenario, persona.facts, f"persona {name}")
            except ConfigError as e:
                raise ConfigError(f"{path}: {e}") from None
