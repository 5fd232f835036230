"""Real calls that the agent's side ends: a plain close after its goodbye, and a killed agent.

Both calls are placed once, concurrently (a module fixture); each test asserts on the records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest

from callers.persona import resolve_persona
from callers.session import CallSession, SessionLimits, load_caller_models
from callers.transport import Target
from evaluation.scoring import score_call
from orchestration.local_agent import reference_agent_process

pytestmark = pytest.mark.e2e

CLOSE_AFTER_GOODBYE_MS = 500  # reference agent --hangup close
KILL_AT_AGENT_TURN = 3  # the agent process is killed as its third turn starts


@pytest.fixture(scope="module")
def ended(tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("ending")
    with contextlib.ExitStack() as stack:
        close_agent, close_url = stack.enter_context(reference_agent_process("--hangup", "close"))
        doomed, doomed_url = stack.enter_context(reference_agent_process())
        placed = asyncio.run(_place(close_url, doomed_url, doomed, out))
    (out / "records.json").write_text(json.dumps(placed, indent=1))
    print(f"\nending records: {out / 'records.json'}")
    return placed


async def _place(close_url: str, doomed_url: str, doomed, out) -> dict[str, dict]:
    models = await load_caller_models()
    persona = resolve_persona("cooperative-john")
    limits = SessionLimits(max_call_s=120)

    def session(name: str, url: str) -> CallSession:
        return CallSession(persona, 7, Target(url + "/offer"), models, call_id=name,
                           audio_path=out / f"{name}.wav", limits=limits)

    closing, killed = session("close", close_url), session("killed", doomed_url)

    async def kill_mid_reply() -> float:
        """Kill the agent when its KILL_AT_AGENT_TURN-th turn starts; the kill's call time."""
        while sum(e.kind == "agent_speech_start" for e in killed.events) < KILL_AT_AGENT_TURN:
            await asyncio.sleep(0.05)
        doomed.kill()
        return killed.clock.ms()

    began = time.monotonic()
    close_record, killed_record, kill_ms = await asyncio.gather(
        closing.run(), killed.run(), kill_mid_reply())
    records = {"close": close_record.to_dict(), "killed": killed_record.to_dict()}
    records["killed"]["kill_ms"] = kill_ms
    print(f"both calls in {time.monotonic() - began:.0f} s")
    return {name: score_call(r) for name, r in records.items()}


def _events(record: dict, kind: str) -> list[dict]:
    return [e for e in record["events"] if e["kind"] == kind]


def test_call_ends_within_3_s_of_the_agent_closing_after_its_goodbye(ended):
    record = ended["close"]
    assert record["status"] == "completed", (record["failure_reason"], record["failure_detail"])
    goodbye_end = _events(record, "agent_speech_end")[-1]["t_ms"]
    closed_at = goodbye_end + CLOSE_AFTER_GOODBYE_MS
    ends = _events(record, "agent_track_ended") + _events(record, "connection_closed")
    assert ends, "the close was never noticed"
    noticed = min(e["t_ms"] for e in ends)
    print(f"close noticed {noticed - closed_at:.0f} ms after the agent closed")
    assert noticed - closed_at <= 3000
    assert record["duration_s"] * 1000 - closed_at <= 3000 + 2000  # hang-up work is bounded too
    # No hang-up message: the close alone ended it, and nothing was left waiting.
    assert not [e for e in _events(record, "hangup") if e.get("by") == "agent"]


def test_agent_goodbye_is_in_the_graded_conversation(ended):
    record = ended["close"]
    last_agent = [t for t in record["turns"] if t["speaker"] == "agent"][-1]
    assert "bye" in last_agent["text"].lower()
    assert record["understanding"]["correct"] == {
        "first_name": True, "last_name": True, "amount": True}
    assert record["transport"]["agent_call_id"]  # the agent's id from the JSON answer


def test_killed_agent_ends_the_call_within_15_s_as_a_named_failure(ended):
    record = ended["killed"]
    assert record["status"] == "failed"
    assert record["failure_reason"] == "media_timeout", record["failure_detail"]
    end = _events(record, "media_timeout")[0]["t_ms"]
    print(f"killed at {record['kill_ms']:.0f} ms, call ended at {end:.0f} ms")
    assert end - record["kill_ms"] <= 15_000
    assert record["duration_s"] * 1000 - record["kill_ms"] <= 15_000
    # What happened before the kill is kept.
    assert len([t for t in record["turns"] if t["speaker"] == "caller"]) >= 2
    assert record["audio"]
