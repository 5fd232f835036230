"""A whole CallSession conversation over the transport seam with a fake, in-memory agent:
no aiortc, no Whisper, no Piper (tests/fake_transport.py)."""

from __future__ import annotations

import numpy as np

import callers.session as session_module
from callers.persona import resolve_persona
from callers.session import CallerModels, CallSession, SessionLimits
from callers.transport import Target
from tests.fake_transport import FakeAgentTransport, FakeSTT, FakeTTS

SCRIPT = ["How can I help you today?", "What is your first name?", "And your last name?",
          "What amount of money is this about?", "Thank you, that is all done. Goodbye."]


async def test_conversation_runs_over_a_fake_transport(monkeypatch):
    stt = FakeSTT()
    made: list[FakeAgentTransport] = []

    def fake_transport(target, clock, outgoing, events, codec=None):
        made.append(FakeAgentTransport(target, clock, outgoing, events, script=SCRIPT, stt=stt))
        return made[0]

    monkeypatch.setattr(session_module, "make_transport", fake_transport)
    persona = resolve_persona("cooperative-john")
    persona = persona.model_copy(update={"temperament": persona.temperament.model_copy(
        update={"reply_after_ms": 200})})
    models = CallerModels(stt, FakeTTS())
    session = CallSession(persona, 1, Target("fake://agent"), models, call_id="fake")
    record = await session.run()
    assert record.status == "completed", (record.failure_reason, record.failure_detail)
    assert record.transport == {"kind": "fake", "agent_call_id": "fake-1"}
    assert [t["text"] for t in record.turns if t["speaker"] == "agent"] == SCRIPT
    assert set(record.facts_given) >= {"first_name", "last_name", "amount"}
    assert made[0].heard_turns == len(SCRIPT) - 1
    kinds = [e["kind"] for e in record.events]
    assert kinds.count("agent_speech_start") == len(SCRIPT) and "hangup" in kinds
    # Each agent line is decoded once, from its first 100 ms of silence: before the segmenter's
    # 300 ms hangover has ended the segment.
    ends = [e["t_ms"] for e in record.events if e["kind"] == "agent_speech_end"]
    decodes = [s["start_ms"] for s in record.stages if s["stage"] == "stt"]
    assert len(decodes) == len(ends) == len(SCRIPT)
    after_end = [d - e for d, e in zip(decodes, ends, strict=True)]
    assert all(d > 0 for d in after_end) and np.median(after_end) < 200, after_end
    # The reply is in hand once the agent has been quiet for the reply gap (its turn is over);
    # the fake's decode and speech take no time.
    gap, ready = SessionLimits().reply_gap_ms, record.generator["reply_ready_ms"]
    assert len(ready) == len(SCRIPT) - 1 and all(gap <= r < gap + 100 for r in ready), ready
    # Every answer was spoken ahead into the TTS cache while the agent talked
    assert record.generator["spoken_ahead"] == {"lines": 4, "used": 4}
    assert record.generator["tts_cache"]["hits"] >= 4
