"""Real calls over WebSocket media streams: pcm-ws and twilio-ws, Whisper and Piper on both
sides, against the reference agent's /pcm and /twilio endpoints on 127.0.0.1. The callers hear
the agent through micro-batched STT (`speech: {stt: batched}`, callers.speech.stt_batch): the other
real-call tests cover one-at-a-time decoding.

Phases run one after the other (the barge-in pair together, each against its own agent).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics

import pytest

from callers.persona import resolve_persona
from callers.session import CallSession, load_caller_models
from evaluation.scoring import score_call
from orchestration.config import TargetConfig
from orchestration.local_agent import reference_agent

pytestmark = pytest.mark.e2e

AGENTS = {"clean": (), "ignore": ("--barge-in", "ignore")}
# (name, agent, transport, persona, seed); phases one after the other, the calls of a phase at
# once (two at a time: the speech models of two calls and two agent calls keep up on 2 cores).
PHASES = [
    [("pcm", "clean", "pcm-ws", "cooperative-john", 1),
     ("twilio", "clean", "twilio-ws", "cooperative-john", 1)],
    [("twilio-barge", "clean", "twilio-ws", "impatient-sam", 5),
     ("twilio-barge-ignore", "ignore", "twilio-ws", "impatient-sam", 5)],
]


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("ws-e2e")
    with contextlib.ExitStack() as stack:
        urls = {name: stack.enter_context(reference_agent(*args)) for name, args in AGENTS.items()}
        placed = asyncio.run(_place_all(urls))
    (out / "records.json").write_text(json.dumps(placed, indent=1))
    print(f"\nws e2e records: {out / 'records.json'}")
    return placed


async def _place_all(urls: dict[str, str]) -> dict[str, dict]:
    models = await load_caller_models(stt="batched")

    async def one(name, agent, transport, persona_id, seed) -> tuple[str, dict]:
        # `url: reference` as a run config gives it: the agent's /pcm or /twilio endpoint.
        target = TargetConfig(transport=transport).to_target(urls[agent])
        session = CallSession(resolve_persona(persona_id), seed, target, models, call_id=name)
        return name, score_call((await session.run()).to_dict())

    placed: dict[str, dict] = {}
    for phase in PHASES:
        placed.update(await asyncio.gather(*(one(*call) for call in phase)))
    for name, r in placed.items():
        print(f"{name}: {r['status']} {r['failure_reason']} {r['duration_s']:.1f} s, latency "
              f"{r['metrics'].get('response_latency_ms')}, barge-in stop "
              f"{r['metrics'].get('barge_in_stop_ms')}, pacing p99 "
              f"{r['generator']['pacing_late_ms_p99']} ms, network {r['network']}")
    return placed


@pytest.mark.parametrize(("name", "kind", "path"), [("pcm", "pcm-ws", "/pcm"),
                                                    ("twilio", "twilio-ws", "/twilio")])
def test_real_call_over_a_websocket_completes_with_every_fact_understood(records, name, kind,
                                                                         path):
    record = records[name]
    assert record["status"] == "completed", (record["failure_reason"], record["failure_detail"])
    assert record["transport"]["kind"] == kind and record["transport"]["url"].endswith(path)
    assert record["transport"]["agent_call_id"]
    assert record["speech"]["stt"] == "batched"
    assert record["speech"]["batcher"]["segments"] >= 1  # the host's batcher decoded its turns
    understanding = record["understanding"]
    assert understanding["understood"] == understanding["expected"]
    assert understanding["correct"] and all(understanding["correct"].values())
    assert record["generator"]["pacing_late_ms_p99"] <= 20
    assert record["network"]["receive_buffer_ms"] == 0.0  # played as it arrives
    # The agent's reply starts about 1.3 s (its processing budget) + its 600 ms endpoint
    # silence after the caller's turn: no buffer of ours adds to it.
    latencies = record["metrics"]["response_latency_ms"]
    assert len(latencies) >= 4 and 1700 <= statistics.median(latencies) <= 2600, latencies


def test_twilio_call_sid_we_sent_is_the_records_agent_call_id(records):
    transport = records["twilio"]["transport"]
    assert transport["agent_call_id"] == transport["call_sid"]
    assert transport["call_sid"].startswith("CA")


def test_twilio_bot_that_clears_on_barge_in_is_graded_stopped(records):
    record = records["twilio-barge"]
    assert "caller_barge_in" in [e["kind"] for e in record["events"]]
    metrics = record["metrics"]
    assert metrics["barge_in_stop_ms"] and metrics["barge_in_not_stopped"] == 0
    assert max(metrics["barge_in_stop_ms"]) < 1500
    assert record["network"]["clears_received"] >= 1  # the bot barged out with `clear`


def test_planted_barge_in_ignore_is_caught_over_twilio(records):
    record = records["twilio-barge-ignore"]
    assert "caller_barge_in" in [e["kind"] for e in record["events"]]
    assert record["metrics"]["barge_in_not_stopped"] >= 1
    assert record["network"]["clears_received"] == 0
