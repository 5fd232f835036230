"""The result of one call, as plain JSON-able dataclasses (the output contract of DESIGN.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Turn:
    """One stretch of speech with its transcript, on the caller's clock (ms since call start)."""

    speaker: str  # "agent" | "caller"
    text: str
    start_ms: float
    end_ms: float
    mode: str = "turn"  # caller speech: "turn" | "barge_in" | "backchannel"


@dataclass
class TimelineEvent:
    """Something that happened at a known time: speech starts/ends, hang-up, fallbacks."""

    kind: str
    t_ms: float
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "t_ms": round(self.t_ms, 1), **self.detail}


@dataclass
class StageTiming:
    """A stretch of the caller's own work (transcribing, deciding, synthesising), timed."""

    stage: str  # "stt" | "brain" | "tts"
    start_ms: float
    end_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "start_ms": round(self.start_ms, 1),
                "end_ms": round(self.end_ms, 1)}


@dataclass
class Understanding:
    """What the agent understood of each ground-truth fact, and where that came from."""

    expected: dict[str, str] = field(default_factory=dict)
    understood: dict[str, str] = field(default_factory=dict)
    correct: dict[str, bool] = field(default_factory=dict)
    source: str = "none"  # "agent-state" | "read-back" | "llm-judge" | "none"


@dataclass
class CallRecord:
    """Everything one call leaves behind; one line of calls.jsonl."""

    call_id: str
    persona: str
    seed: int
    scenario: str = ""
    target: str = ""
    status: str = "failed"  # "completed" | "failed"
    failure_reason: str | None = None
    failure_detail: str | None = None
    started_at: float = 0.0  # wall clock (epoch seconds) at call start
    duration_s: float = 0.0
    concurrency_at_start: int = 1
    turns: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    understanding: dict[str, Any] = field(default_factory=dict)
    task: dict[str, Any] = field(default_factory=dict)  # {success, checks}: the scenario's criteria
    network: dict[str, Any] = field(default_factory=dict)
    generator: dict[str, Any] = field(default_factory=dict)
    audio: str | None = None
    transport: dict[str, Any] = field(default_factory=dict)
    agent_state: dict[str, Any] = field(default_factory=dict)
    facts_given: list[str] | None = None  # facts the caller said (None: not recorded)
    # The graded facts, {name: {type, value, state_key[, options]}}: the ground truth
    facts: dict[str, Any] = field(default_factory=dict)
    success: dict[str, Any] = field(default_factory=dict)  # the scenario's success criteria
    # Every data-channel message from the agent, bounded: [{t_ms, channel, message}].
    agent_messages: list[dict[str, Any]] = field(default_factory=list)
    # The call's W3C trace context (callers.trace_context): the agent got trace_id and span_id
    # (our call span, its parent) as a traceparent; search a tracing backend for trace_id.
    trace_id: str | None = None
    span_id: str | None = None
    # The caller's own work, timed: [{stage: stt | brain | tts, start_ms, end_ms}].
    stages: list[dict[str, Any]] = field(default_factory=list)
    # How the agent sounded (evaluation/audio_quality.py): {dnsmos {sig, bak, ovrl}, plcmos,
    # seconds_scored, cost_s[, skipped]}; None: not scored (a call that never reached a host).
    audio_quality: dict[str, Any] | None = None
    # How the caller heard the agent: {} = transcribed; {"stt": "none"} = not transcribed (run
    # config speech.stt): the agent's turns are timed, their text is empty, not silent. With
    # speech.tts openai, also how the caller spoke: {tts, tts_base_url, tts_model, tts_voice};
    # with serve, the Ray Serve application: {stt: serve, app}, {tts: serve, tts_app}.
    speech: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CallRecord:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)
