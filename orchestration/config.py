"""Run configs (configs/*.yaml): target, persona mix, brain, load profile, limits; validated
up front."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError,
                      model_validator)

from callers.errors import ConfigError
from callers.inputs import check_env_name, check_url, excerpt
from callers.safe_yaml import load_yaml
from callers.llm_brain import LLMConfig
from callers.speech.serve_speech import INSTALL_HINT, ServeSpeechConfig, serve_installed
from callers.speech.stt_openai import OpenAISTTConfig
from callers.speech.tts_openai import OpenAITTSConfig
from callers.transport import Target
from evaluation.llm_judge import JudgeConfig
from evaluation.compare import RegressionConfig


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentStateConfig(_Model):
    """Where and how the agent reports its state: a data channel label and a message format."""

    channel: str = Field("agent-state", min_length=1, max_length=64)
    format: Literal["auto", "entities-json", "rtvi"] = "auto"


# The name of an environment variable: a value pasted here (a token) fails and is not echoed.
EnvName = Annotated[str, AfterValidator(check_env_name)]

WEBRTC_ONLY = ("signaling", "codec", "agent_state")
WEBSOCKET_ONLY = ("headers", "ca_file")
TRANSPORT_ONLY = {"pcm-ws": ("sample_rate", "hangup_message"),
                  "twilio-ws": ("custom_parameters", "account_sid"),
                  "sip": ("auth_username_env", "auth_password_env", "local_address")}


class TargetConfig(_Model):
    """Who to call. `url: reference` starts the embedded reference agent on loopback (its
    /offer or /whip for webrtc, its /pcm or /twilio WebSocket for pcm-ws and twilio-ws, its SIP
    listener (UDP, the same port number as its HTTP port) for sip)."""

    url: str = "reference"
    transport: Literal["webrtc", "twilio-ws", "pcm-ws", "sip"] = "webrtc"
    signaling: Literal["json-offer", "whip"] = "json-offer"
    token_env: EnvName | None = None
    codec: Literal["opus", "pcmu", "pcma"] = "opus"  # sip: pcmu (default) or pcma
    agent_state: AgentStateConfig = AgentStateConfig()
    reference_agent_args: list[str] = Field(default_factory=list)
    # WebSocket transports
    headers: dict[str, str] = Field(default_factory=dict)
    ca_file: str | None = None
    sample_rate: int = Field(16_000, ge=8000, le=48_000)  # pcm-ws
    hangup_message: str | None = None  # pcm-ws, e.g. '{"type": "hangup"}'
    custom_parameters: dict[str, str] = Field(default_factory=dict)  # twilio-ws
    account_sid: str | None = None  # twilio-ws
    # sip: digest credentials from these environment variables; our sockets' address
    auth_username_env: EnvName | None = None
    auth_password_env: EnvName | None = None
    local_address: str = "127.0.0.1"
    # Send each call's W3C traceparent to the agent (every transport; see README "Traces").
    traceparent: bool = Field(default=True, strict=True)

    @model_validator(mode="after")
    def _options_fit_the_transport(self) -> TargetConfig:
        websocket = self.transport != "webrtc"
        if self.transport == "sip":
            _check_sip(self)
            websocket = False  # neither list below: sip's own checks are in _check_sip
        elif self.url != "reference":
            check_url(self.url, ("ws", "wss") if websocket else ("http", "https"),
                      self.transport)
        given = self.model_fields_set
        wrong = [f for f in (WEBRTC_ONLY if websocket else WEBSOCKET_ONLY) if f in given]
        wrong += [f for t, fields in TRANSPORT_ONLY.items() if t != self.transport
                  for f in fields if f in given]
        if wrong:
            raise ValueError(f"{wrong[0]} does not apply to transport {self.transport}")
        if self.transport == "webrtc" and self.codec == "pcma":
            raise ValueError("codec pcma: webrtc offers opus or pcmu")
        if self.sample_rate % 50:
            raise ValueError(f"sample_rate {self.sample_rate}: 20 ms frames need a multiple "
                             "of 50 Hz")
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise ValueError(f"ca_file {excerpt(self.ca_file)}: no such file")
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
            if self.transport == "sip":  # the agent's SIP port number is its HTTP port's
                url = "sip:agent@" + (base_url or "").removeprefix("http://")
        return Target(url, signaling=self.signaling, token_env=self.token_env, codec=self.codec,
                      state_channel=self.agent_state.channel,
                      state_format=self.agent_state.format, transport=self.transport,
                      headers=tuple(self.headers.items()), ca_file=self.ca_file,
                      sample_rate=self.sample_rate, hangup_message=self.hangup_message,
                      custom_parameters=tuple(self.custom_parameters.items()),
                      account_sid=self.account_sid,
                      auth_username_env=self.auth_username_env,
                      auth_password_env=self.auth_password_env,
                      local_address=self.local_address, traceparent=self.traceparent)


def _check_sip(config: TargetConfig) -> None:
    """sip's options: a sip:user@host:port URL, a G.711 codec, a loopback or given local
    address, and the credentials' variables set (a missing one fails before any call)."""
    import ipaddress

    from callers.transports.sip.message import parse_uri

    if config.url != "reference":
        try:
            parse_uri(config.url)
        except ValueError:  # its message holds the whole URL
            raise ValueError(f"url {excerpt(config.url)}: expected a sip:user@host[:port] URI "
                             "with a port from 1 to 65535") from None
    given = config.model_fields_set
    wrong = [f for f in ("signaling", "agent_state", *WEBSOCKET_ONLY) if f in given]
    if wrong:
        raise ValueError(f"{wrong[0]} does not apply to transport sip")
    if "codec" in given and config.codec == "opus":
        raise ValueError("codec opus: sip offers pcmu or pcma")
    try:
        local = ipaddress.IPv4Address(config.local_address)
    except ValueError:
        raise ValueError(f"local_address {excerpt(config.local_address)}: expected an IPv4 "
                         "address (default 127.0.0.1)") from None
    if not (local.is_loopback or local.is_private) or local.is_unspecified:
        raise ValueError(f"local_address {local}: only a loopback or private address is bound")
    if bool(config.auth_username_env) != bool(config.auth_password_env):
        raise ValueError("auth_username_env and auth_password_env go together")
    for name in (config.auth_username_env, config.auth_password_env):
        if name and not os.environ.get(name):
            raise ValueError(f"environment variable {name} (SIP credentials) is not set")


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


# Numbers a run config may hold. Strict: YAML's `true` or "250" is not taken for a number; finite:
# .nan and .inf are not durations; bounded: 10^12 calls or a million hosts is a typo, not a plan.
MAX_CALLS = 1_000_000
MAX_CONCURRENCY = 100_000
MAX_HOSTS = 10_000
MAX_PHASE_S = 7 * 24 * 3600.0  # a week-long soak
MAX_CALL_S = 24 * 3600.0
Calls = Annotated[int, Field(strict=True, gt=0, le=MAX_CALLS)]
Concurrency = Annotated[int, Field(strict=True, gt=0, le=MAX_CONCURRENCY)]
Seconds = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0, le=MAX_PHASE_S)]
Weight = Annotated[float, Field(strict=True, allow_inf_nan=False, le=1e6)]  # > 0: RunConfig
Seed = Annotated[int, Field(strict=True, ge=0, le=2**32 - 1)]


class Baseline(_Model):
    kind: Literal["baseline"]
    concurrency: Concurrency
    duration_s: Seconds


class Ramp(_Model):
    """Start at `start` concurrent calls and double every step, holding each step."""

    kind: Literal["ramp"]
    start: Concurrency
    steps: int = Field(strict=True, gt=0, le=20)
    hold_s: Seconds


class Spike(_Model):
    """Hold `base`, jump to base x multiplier, then back to base to measure recovery."""

    kind: Literal["spike"]
    base: Concurrency
    multiplier: float = Field(strict=True, allow_inf_nan=False, gt=1, le=1000)
    base_s: Seconds
    spike_s: Seconds
    recover_s: Seconds


class Soak(_Model):
    kind: Literal["soak"]
    concurrency: Concurrency
    duration_s: Seconds


Phase = Annotated[Baseline | Ramp | Spike | Soak, Field(discriminator="kind")]


class LoadConfig(_Model):
    """The three knobs of every telephony load tester, plus phases over time."""

    total_calls: Calls
    max_concurrency: Concurrency
    calls_per_second: float = Field(strict=True, allow_inf_nan=False, gt=0, le=1000)
    phases: list[Phase] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _concurrency_within_total(self) -> LoadConfig:
        if self.max_concurrency > self.total_calls:
            raise ValueError(
                f"max_concurrency ({self.max_concurrency}) is above total_calls "
                f"({self.total_calls})"
            )
        return self


class FleetConfig(_Model):
    hosts: int | None = Field(default=None, strict=True, gt=0, le=MAX_HOSTS)  # default: 1/CPU
    max_call_s: float = Field(default=240.0, strict=True, allow_inf_nan=False, gt=0,
                              le=MAX_CALL_S)
    null_call_s: float | None = Field(default=None, strict=True, allow_inf_nan=False, gt=0,
                                      le=MAX_CALL_S)  # orchestration benchmark: no media
    # Serve live Prometheus metrics on this port of 127.0.0.1 while the run goes (0: any free
    # port; --metrics-port overrides; None: off).
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # Write audio/<call_id>.wav per call (false, or --no-audio: no recordings; the records,
    # summary and report are the same, without audio players).
    audio: bool = Field(default=True, strict=True)


class TracingConfig(_Model):
    """Export one trace per call to an OpenTelemetry collector over OTLP/HTTP
    (orchestration/tracing.py). Without this section, OTEL_EXPORTER_OTLP_ENDPOINT (or
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) turns it on; with neither, nothing is exported.
    Credentials for the collector go in OTEL_EXPORTER_OTLP_HEADERS, never here."""

    # The collector's base URL (/v1/traces is added), or its full traces URL.
    otlp_endpoint: str = Field(min_length=1, max_length=2000)
    service_name: str = Field("callfleet", min_length=1, max_length=200)

    @model_validator(mode="after")
    def _endpoint_is_a_url(self) -> TracingConfig:
        check_url(self.otlp_endpoint, ("http", "https"), "tracing.otlp_endpoint")
        return self


class EvaluationConfig(_Model):
    """How calls are graded: `judge` adds an LLM judge for facts no other source showed."""

    judge: JudgeConfig | None = None
    # DNSMOS (and PLCMOS after packet loss) of the agent's recorded speech, scored by each host
    # after the call (evaluation/audio_quality.py; needs callfleet[mos]). ~1.5 s of one core
    # per minute of agent speech (benchmarks/results/audio_quality_cost.json), ~4 s with
    # PLCMOS; off by default: its thread shares the host with callers pacing 20 ms frames (a
    # replay drifted 24 ms > 20 with it on in one CI run). Without
    # recordings it is skipped.
    audio_quality: bool = Field(default=False, strict=True)


class SpeechConfig(_Model):
    """How callers hear the agent and speak. `stt: local` transcribes each agent turn in-process
    (faster-whisper, most of a caller's CPU), one segment at a time; `stt: batched` decodes through a 10 s window
    instead of Whisper's 30 s (callers.speech.stt_batch: ~5x the segments per core,
    benchmarks/stt_batching.py; one at a time on CPU, where batching saves nothing); `stt: none` loads no Whisper and transcribes
    nothing: agent turns are still found (VAD) and timed, with empty text, for load, pacing
    and soak runs whose scenarios all have a `script:` (nothing has to understand the agent).
    `tts: piper` speaks in-process (Piper, one thread per host); `tts: openai` has a service
    speak every caller in one voice (personas' Piper models do not apply). `serve` (either or
    both) starts the run's own Whisper / Piper deployments on Ray Serve, shared by every host
    (sized by the serve: section; needs callfleet[serve])."""

    stt: Literal["local", "batched", "openai", "serve", "none"] = "local"
    # stt: openai: an OpenAI-compatible /v1/audio/transcriptions service (speaches, vLLM's
    # Whisper...): base_url, model, api_key_env (the variable's name; never the key), timeout_s
    openai: OpenAISTTConfig | None = None
    tts: Literal["piper", "openai", "serve"] = "piper"
    # tts: openai: an OpenAI-compatible /v1/audio/speech service (OpenAI, speaches, Kokoro...):
    # base_url, model, voice, api_key_env, timeout_s, response_format (wav | pcm), sample_rate
    openai_tts: OpenAITTSConfig | None = None
    # stt/tts: serve: each deployment's replicas, num_cpus, num_gpus, max_batch_size,
    # batch_wait_ms; timeout_s per request
    serve: ServeSpeechConfig = ServeSpeechConfig()

    @model_validator(mode="after")
    def _service_named(self) -> SpeechConfig:
        if self.uses_serve and not serve_installed():
            used = "stt" if self.stt == "serve" else "tts"
            raise ValueError(f"{used}: serve needs Ray Serve ({INSTALL_HINT})")
        if self.stt == "openai" and self.openai is None:
            raise ValueError("stt: openai needs an openai: section (base_url, model, "
                             "api_key_env)")
        if self.tts == "openai" and self.openai_tts is None:
            raise ValueError("tts: openai needs an openai_tts: section (base_url, model, "
                             "voice, api_key_env)")
        return self

    def openai_dict(self) -> dict[str, Any] | None:
        """The service section as plain data, for hosts (only with stt: openai)."""
        return self.openai.model_dump() if self.stt == "openai" and self.openai else None

    def openai_tts_dict(self) -> dict[str, Any] | None:
        """The TTS service section as plain data, for hosts (only with tts: openai)."""
        return (self.openai_tts.model_dump() if self.tts == "openai" and self.openai_tts
                else None)

    @property
    def uses_serve(self) -> bool:
        return "serve" in (self.stt, self.tts)

    def services(self) -> list[tuple[str, Any]]:
        """(section name, config) of each speech service this run uses."""
        return [(name, section) for name, section, used in (
            ("openai", self.openai, self.stt == "openai"),
            ("openai_tts", self.openai_tts, self.tts == "openai")) if used]


class RunConfig(_Model):
    name: str = Field("run", min_length=1, max_length=200)
    seed: Seed = 1
    target: TargetConfig = TargetConfig()
    # persona id (or file) -> weight
    personas: dict[str, Weight] = Field(min_length=1, max_length=1000)
    scenarios: dict[str, Weight] = Field(default_factory=lambda: {"card-dispute": 1.0},
                                         min_length=1, max_length=1000)  # scenario id -> weight
    # weighted: persona and scenario each drawn by weight; matrix: every scenario x persona
    # pair in turn (weights ignored)
    mix: Literal["weighted", "matrix"] = "weighted"
    brain: BrainConfig = ScriptedBrainConfig()
    load: LoadConfig
    fleet: FleetConfig = FleetConfig()
    gates: dict | None = None  # parsed by evaluation.gates
    evaluation: EvaluationConfig = EvaluationConfig()
    regression: RegressionConfig | None = None  # compare with a baseline run after the run
    tracing: TracingConfig | None = None  # a trace per call to an OTLP collector
    speech: SpeechConfig = SpeechConfig()  # stt: none needs script scenarios (load_run_config)

    @model_validator(mode="after")
    def _weights_positive(self) -> RunConfig:
        for section in ("personas", "scenarios"):
            for name, weight in getattr(self, section).items():
                if weight <= 0:
                    raise ValueError(f"{section}.{name[:40]}: weight must be above 0, "
                                     f"got {weight}")
        return self


def load_run_config(path: str | Path) -> RunConfig:
    """Read and validate a run config; any problem is one ConfigError line naming the field."""
    path = Path(path)
    data = load_yaml(path, "run config")  # not UTF-8, duplicate keys, an alias bomb: one line
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of run settings")
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{path}: {_first_error(e, data)}") from None
    _check_personas(path, config)
    require_api_key(config.brain, f"{path}: brain.api_key_env")
    judge = config.evaluation.judge
    if judge is not None and not os.environ.get(judge.api_key_env):
        raise ConfigError(f"{path}: evaluation.judge.api_key_env: environment variable "
                          f"{judge.api_key_env} (the API key for {judge.base_url}) is not set")
    return config


# Fields whose input is never echoed: a secret pasted where its variable's name belongs.
_NOT_ECHOED = ("api_key_env", "token_env", "auth_username_env", "auth_password_env")
_TAG_ERRORS = ("union_tag_not_found", "union_tag_invalid")
_PLAIN = {"extra_forbidden": "unknown field", "int_type": "expected a whole number",
          "float_type": "expected a number", "finite_number": "expected a finite number",
          "bool_type": "expected true or false"}


def _first_error(error: ValidationError, data: Any = None) -> str:
    first = error.errors()[0]
    # A key is the user's text too: control characters escaped, so the error stays one line.
    loc = ".".join(str(p)[:40].encode("unicode_escape").decode("ascii")
                   for p in _field_path(first["loc"], data)
                   if not str(p).startswith(("function-", "tagged")))
    msg = _PLAIN.get(first["type"], first["msg"])
    msg = msg.removeprefix("Value error, ")
    got = first.get("input")
    if first["type"] in _TAG_ERRORS:  # pydantic's wording names its internals
        ctx = first["ctx"]
        loc = f"{loc}.{ctx['discriminator'].strip(chr(39))}"
        msg = (f"expected one of {ctx['expected_tags']}" if "tag" in ctx else "field required")
        got = ctx.get("tag")
    hidden = first["type"] in ("extra_forbidden", "missing") or loc.endswith(_NOT_ECHOED)
    shown = "" if hidden or got is None or isinstance(got, dict) else f", got {excerpt(got)}"
    msg = msg if len(msg) <= 200 else msg[:197] + "..."  # our own checks show excerpts only
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
    """Every persona and scenario loads, every pair that can be called has every fact, and
    every scenario has a script if the agent's speech is not transcribed."""
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
    check_speech(config, scenarios, str(path))
    for name, service in config.speech.services():
        if not os.environ.get(service.api_key_env):
            raise ConfigError(f"{path}: speech.{name}.api_key_env: environment variable "
                              f"{service.api_key_env} (the API key for {service.base_url}) "
                              "is not set")


def check_speech(config: RunConfig, scenarios: dict[str, Any], where: str) -> None:
    """stt: none only when every scenario is a script: a brain that decides its replies needs
    the agent's words. scenarios: name -> callers.scenario.Scenario, in the config's order."""
    if config.speech.stt != "none":
        return
    for name, scenario in scenarios.items():
        if not scenario.script:
            raise ConfigError(f"{where}: speech.stt: none needs a script in every scenario "
                              f"(nothing transcribes the agent's words); scenarios.{name} "
                              "has none")
