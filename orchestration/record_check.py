"""Is one line of calls.jsonl a CallRecord the evaluators can read? The shape they rely on,
checked field by field, so that a hand-edited or foreign line is named and skipped instead of
crashing `callfleet report` (or being counted as something it is not)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from callers.inputs import excerpt

Num = Annotated[float, Field(strict=True, allow_inf_nan=False)]  # JSON ints are numbers too
Count = Annotated[int, Field(strict=True, ge=0)]
Text = Annotated[str, Field(strict=True)]
Flag = Annotated[bool, Field(strict=True)]  # not "yes", 1 or "true"
Values = dict[str, Any]


class _Shape(BaseModel):
    # Extra fields are fine (newer writers add some); the ones below must have these types.
    model_config = ConfigDict(extra="allow", hide_input_in_errors=True)


class _Turn(_Shape):
    speaker: Text
    text: Text = ""
    start_ms: Num | None = None
    end_ms: Num | None = None
    mode: Text = "turn"


class _Event(_Shape):
    kind: Text
    t_ms: Num


class _Metrics(_Shape):
    response_latency_ms: list[Num | None] = []
    barge_in_stop_ms: list[Num | None] = []
    talk_over: Count = 0
    false_yield: Count = 0
    premature_cutoff: Count = 0
    dead_air: Count = 0
    agent_hearing: list[Values] = []


class _Understanding(_Shape):
    expected: Values = {}
    understood: Values = {}
    correct: dict[str, Flag | None] = {}
    source: Text | None = None
    not_observed: list[Text] = []


class _Task(_Shape):
    success: Flag | None = None
    checks: dict[str, Flag | None] = {}


class _Network(_Shape):
    jitter_ms: Num | None = None
    packet_loss_pct: Num | None = None
    rtt_ms: Num | None = None


class _Generator(_Shape):
    loop_lag_ms_p99: Num | None = None
    pacing_late_ms_p99: Num | None = None
    reply_late_ms: list[Num | None] = []
    reply_ready_ms: list[Num | None] = []


class RecordShape(_Shape):
    """The fields of a CallRecord that summary, report and junit read, with their types."""

    call_id: str = Field(strict=True, min_length=1, max_length=200)
    persona: Text = ""
    seed: int | None = Field(default=None, strict=True)
    scenario: Text | None = ""
    target: Text | None = ""
    status: Literal["completed", "failed"] | None = None  # None: counted as not completed
    failure_reason: Text | None = None
    failure_detail: Text | None = None
    started_at: Num | None = None
    duration_s: Num | None = None
    concurrency_at_start: Count | None = None
    phase: Text | None = None
    turns: list[_Turn] = []
    events: list[_Event] = []
    metrics: _Metrics | None = None
    understanding: _Understanding | None = None
    task: _Task | None = None
    network: _Network | None = None
    generator: _Generator | None = None
    audio: Text | None = None
    transport: Values | None = None
    agent_state: Values | None = None
    facts_given: list[Text] | None = None
    facts: Values | None = None
    success: Values | None = None
    agent_messages: list[Values] | None = None
    audio_quality: Values | None = None


def record_problem(data: dict[str, Any]) -> str | None:
    """None when data has a CallRecord's shape, else '<field>: <what was expected>' (values are
    never shown: a transcript may be long, or private)."""
    try:
        RecordShape.model_validate(data)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = ".".join(excerpt(p, 30).strip("'") for p in first["loc"]) or "record"
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        return f"{where}: {first['msg']}{more}"
    return None
