"""Persona behaviours and planted agent faults on real calls (aiortc, Whisper, Piper, loopback).

Phases run one after the other. The replay pair runs one call at a time (their timing is
compared: run together on 2 cores, a caller event was once 29.5 ms apart, past the one-tick
bound); the fault calls run two at once, each against its own reference agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path

import pytest
import yaml

from callers.audio import FRAME_MS
from callers.llm_brain import LLMBrain, LLMConfig
from callers.persona import load_persona, resolve_persona
from callers.session import CallSession, load_caller_models
from callers.transport import Target
from evaluation.gates import evaluate_gates
from evaluation.scoring import score_call
from evaluation.summary import SATURATED_PACING_MS, summarize
from orchestration.local_agent import reference_agent
from tests.fake_llm import FakeLLM, serving

pytestmark = pytest.mark.e2e

AGENTS = {
    "clean": (),
    "ignore": ("--barge-in", "ignore"),
    "late": ("--response-delay-ms", "2500"),
}
# Every behaviour at once, answering late enough that its replies are never behind schedule
# (at 2 s a reply was 61-355 ms late on a loaded 2-core machine; the agent re-prompts at 6 s).
REPLAY_PERSONA = {
    "id": "replay-john", "display_name": "John Smith", "goal": "Ask for a refund of 250 dollars",
    "facts": {"first_name": "John", "last_name": "Smith", "amount": 250,
              "reason": "a refund for a double charge"},
    "temperament": {"reply_after_ms": 3000},
    "behaviours": {"barge_in": {"probability": 0.4, "after_s": 0.8},
                   "backchannel": {"probability": 0.5, "after_s": 1.2},
                   "hesitation": {"probability": 0.5, "pause_ms": 400}},
}
LLM_KEY_ENV = "CALLFLEET_E2E_LLM_KEY"
LLM_KEY = "sk-canary-e2e-7f3a9c"
# (name, agent, persona, seed); phases run in order, the calls of a phase concurrently. Two at
# a time at most: with three agents and three callers on 2 cores, an agent's Whisper overran
# its answer budget now and then (3.2 s responses: dead air that no agent fault caused).
PHASES = [
    [("replay-1", "clean", "replay", 7)],
    [("replay-2", "clean", "replay", 7)],
    [("barge-clean", "clean", "impatient-sam", 5), ("late", "late", "cooperative-john", 1)],
    [("barge-ignore", "ignore", "impatient-sam", 5), ("llm", "clean", "cooperative-john", 3)],
    [("backchannel", "clean", "backchanneler-linda", 1), ("silent", "clean", "silent-james", 1)],
]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[dict[str, dict], Path, FakeLLM, list[str]]:
    out = tmp_path_factory.mktemp("behaviours")
    persona_file = out / "replay.yaml"
    persona_file.write_text(yaml.safe_dump(REPLAY_PERSONA))
    with contextlib.ExitStack() as stack, pytest.MonkeyPatch.context() as env:
        env.setenv(LLM_KEY_ENV, LLM_KEY)
        urls = {name: stack.enter_context(reference_agent(*args)) for name, args in AGENTS.items()}
        placed, fake, logs = asyncio.run(_place_all(urls, out, persona_file))
    (out / "records.json").write_text(json.dumps(placed, indent=1))
    print(f"\nbehaviour records: {out / 'records.json'}")
    return placed, out, fake, logs


async def _place_all(urls, out: Path, persona_file: Path):
    models = await load_caller_models()
    fake = FakeLLM()
    # Two streamed answers, then a reply slower than the brain's timeout (the scripted policy
    # takes that turn), then the LLM again.
    fake.script = [("stream", ["I'm calling about ", "a refund for ", "a double charge."]),
                   ("stream", ["Sure, my first ", "name is John."]),
                   ("sleep", 10.0),
                   ("stream", ["It's two hundred ", "fifty dollars."]),
                   ("stream", ["It was fine, ", "thank you."])]

    async def one(name, agent, persona_id, seed):
        persona = load_persona(persona_file) if persona_id == "replay" else resolve_persona(
            persona_id)
        brain = None
        if name == "llm":
            config = LLMConfig(base_url=fake.url, model="test-model", api_key_env=LLM_KEY_ENV,
                               timeout_s=2.0)
            brain = LLMBrain(persona, seed, config)
        session = CallSession(persona, seed, Target(urls[agent] + "/offer"), models,
                              call_id=name, audio_path=out / "audio" / f"{name}.wav",
                              brain=brain)
        record = (await session.run()).to_dict()
        if brain is not None:
            await brain.aclose()
        return name, score_call(record)

    logs: list[str] = []
    handler = _ListHandler(logs)
    logging.getLogger().addHandler(handler)
    try:
        async with serving(fake):
            placed: dict[str, dict] = {}
            for phase in PHASES:
                placed.update(await asyncio.gather(*(one(*call) for call in phase)))
    finally:
        logging.getLogger().removeHandler(handler)
    return placed, fake, logs


class _ListHandler(logging.Handler):
    """Collects every log line of the run (to check that no secret reaches a log)."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__(level=0)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def caller_timeline(record: dict) -> list[tuple[str, str, float]]:
    """Caller-side events as (kind, anchor, ms after the agent event before it)."""
    anchor, anchor_ms, out = "start", 0.0, []
    for e in record["events"]:
        if e["kind"] in ("agent_speech_start", "agent_speech_end"):
            anchor, anchor_ms = e["kind"], e["t_ms"]
        elif e["kind"].startswith(("caller_", "hesitation_")):
            out.append((e["kind"], anchor, e["t_ms"] - anchor_ms))
    return out


def kinds(record: dict) -> set[str]:
    return {e["kind"] for e in record["events"]}


# --- determinism ------------------------------------------------------------------------------


def test_same_persona_and_seed_replay_the_same_call(run):
    records = run[0]
    first, second = records["replay-1"], records["replay-2"]
    for record in (first, second):
        assert record["status"] == "completed", record["failure_reason"]
        assert not record["generator"]["reply_late_ms"], "a reply missed its time: not comparable"
    said = [[(t["text"], t["mode"]) for t in r["turns"] if t["speaker"] == "caller"]
            for r in (first, second)]
    assert said[0] == said[1]
    a, b = caller_timeline(first), caller_timeline(second)
    assert [(k, anchor) for k, anchor, _ in a] == [(k, anchor) for k, anchor, _ in b]
    drift = max(abs(x[2] - y[2]) for x, y in zip(a, b, strict=True))
    print(f"replay: {len(a)} caller events, largest timing difference {drift:.1f} ms")
    # A caller event goes out on the next tick of its own 20 ms frame clock, while the agent
    # event it is timed from is stamped at the frame that carried it: the same delay can land
    # one tick apart in two calls, plus a few ms of pacing lateness.
    assert drift <= FRAME_MS + 5.0
    # The replay persona did use its behaviours (else the comparison proves little).
    assert {"caller_barge_in", "hesitation_start"} & kinds(first)


# --- behaviours on the timeline ---------------------------------------------------------------


def test_barge_in_is_on_the_timeline_and_a_stopping_agent_is_graded_stopped(run):
    record = run[0]["barge-clean"]
    assert record["status"] == "completed", record["failure_reason"]
    assert "caller_barge_in" in kinds(record)
    modes = {e.get("mode") for e in record["events"] if e["kind"] == "caller_speech_start"}
    assert "barge_in" in modes
    metrics = record["metrics"]
    assert metrics["barge_in_stop_ms"] and metrics["barge_in_not_stopped"] == 0
    assert max(metrics["barge_in_stop_ms"]) < 1500
    assert all(record["understanding"]["correct"].values())


def test_planted_barge_in_ignore_is_flagged_not_stopped_and_nothing_else(run):
    record = run[0]["barge-ignore"]
    metrics = record["metrics"]
    assert metrics["barge_in_not_stopped"] >= 1
    assert all(record["understanding"]["correct"].values())
    # Ignoring a barge-in never leaves silence; one answer over 3 s is the agents' Whisper on
    # 2 cores shared with the other phase's call (two CI runs on 2026-12-02: dead_air 1).
    assert metrics["talk_over"] == 0 and metrics["dead_air"] <= 1


def test_planted_response_delay_fails_the_latency_gate_only(run):
    summary = summarize([run[0]["late"]], run_id="late", target="reference")
    results = {g["name"]: g for g in evaluate_gates(summary)}
    assert not results["latency_p95_ms"]["passed"], results["latency_p95_ms"]
    assert results["completion_rate"]["passed"] and results["understanding_facts_rate"]["passed"]


def test_clean_agent_passes_every_default_gate(run):
    records = [run[0][name] for name in ("replay-1", "replay-2", "barge-clean", "backchannel",
                                         "silent")]
    summary = summarize(records, run_id="clean", target="reference")
    failed = [g for g in evaluate_gates(summary) if not g["passed"]]
    # generator_saturated grades this machine, not the agent: on 2 cores shared with the
    # agents' Whisper a caller is now and then late (one CI run). Then it must say so truly.
    late = [r["call_id"] for r in records
            if (r["generator"].get("pacing_late_ms_p99") or 0) > SATURATED_PACING_MS]
    if late:
        print(f"\ncallers late on this machine: {late}")
        failed = [g for g in failed if g["name"] != "generator_saturated"]
    assert not failed, failed


def test_backchannels_are_not_turns_and_the_agent_keeps_talking(run):
    record = run[0]["backchannel"]
    assert record["status"] == "completed", record["failure_reason"]
    assert record["metrics"]["backchannels"] >= 1
    assert record["metrics"]["false_yield"] == 0
    assert any(t["mode"] == "backchannel" for t in record["turns"])


def test_a_silent_caller_gets_a_re_prompt_and_then_answers(run):
    record = run[0]["silent"]
    assert record["status"] == "completed", record["failure_reason"]
    silence = next(e["t_ms"] for e in record["events"] if e["kind"] == "caller_silence")
    first_answer = next(t for t in record["turns"] if t["speaker"] == "caller")
    assert first_answer["start_ms"] > silence
    agent_before = " ".join(t["text"] for t in record["turns"]
                            if t["speaker"] == "agent" and t["start_ms"] < first_answer["start_ms"])
    assert "still there" in agent_before.lower()


# --- the LLM brain in a real call ---------------------------------------------------------------


def test_llm_replies_are_spoken_and_a_timeout_falls_back_to_the_script(run):
    record = run[0]["llm"]
    fake: FakeLLM = run[2]
    caller = [t["text"] for t in record["turns"] if t["speaker"] == "caller"]
    assert caller[:2] == ["I'm calling about a refund for a double charge.",
                          "Sure, my first name is John."]
    sources = [e["source"] for e in record["events"] if e["kind"] == "brain_reply"]
    assert sources[:3] == ["llm", "llm", "scripted"]
    fallbacks = [e for e in record["events"] if e["kind"] == "brain_fallback"]
    assert fallbacks and fallbacks[0]["reason"] == "timeout"
    assert "Smith" in caller[2]  # the scripted policy answered the turn the LLM missed
    assert record["status"] == "completed", record["failure_reason"]
    assert all(r["headers"]["Authorization"] == f"Bearer {LLM_KEY}" for r in fake.requests)


def test_the_api_key_is_nowhere_in_results_audio_names_or_logs(run):
    records, out, _, logs = run
    assert LLM_KEY not in json.dumps(records)
    for path in out.rglob("*"):
        if path.is_file():
            assert LLM_KEY.encode() not in path.read_bytes(), path
    assert not any(LLM_KEY in line for line in logs)
