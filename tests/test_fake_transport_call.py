"""A whole CallSession conversation over the transport seam with a fake, in-memory agent:
no aiortc, no Whisper, no Piper (tests/fake_transport.py)."""

from __future__ import annotations

import callers.session as session_module
from callers.persona import resolve_persona
from callers.session import CallerModels, CallSession
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
    session = CallSession(persona, 1, Target("fake://agent"), CallerModels(stt, FakeTTS()),
                          call_id="fake")
    record = await session.run()
    assert record.status == "completed", (record.failure_reason, record.failure_detail)
    assert record.transport == {"kind": "fake", "agent_call_id": "fake-1"}
    assert [t["text"] for t in record.turns if t["speaker"] == "agent"] == SCRIPT
    assert set(record.facts_given) >= {"first_name", "last_name", "amount"}
    assert made[0].heard_turns == len(SCRIPT) - 1
    kinds = [e["kind"] for e in record.events]
    assert kinds.count("agent_speech_start") == len(SCRIPT) and "hangup" in kinds