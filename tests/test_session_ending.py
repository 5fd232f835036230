"""How a call ends and what it is called: every wait ends with the call, failures are named.

The session's waits are driven directly here (no media, no models); the real calls that end
by an agent's close or death are in test_call_ending_e2e.py.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from callers.persona import resolve_persona
from callers.record import Turn
from callers.session import CallerModels, CallEnded, CallSession
from callers.transport import Target
from tests.test_playout import RATE, tone
from callers.media import utterance_from_pcm


def session(**target_kwargs) -> CallSession:
    return CallSession(resolve_persona("cooperative-john"), 1,
                       Target("http://127.0.0.1:9/offer", **target_kwargs),
                       CallerModels(stt=None, tts=None), call_id="u")


async def test_reply_being_played_ends_when_the_agent_closes_and_keeps_the_part_heard():
    s = session()
    utterance = utterance_from_pcm(tone(2.0), RATE, "Bye then.")
    saying = asyncio.create_task(s._say(utterance))
    await asyncio.sleep(0)
    for i in range(25):  # 0.5 s are pulled by the track, then nothing pulls any more
        s.playout.next_frame(i * 20.0)
    s._end("connection_closed")
    with pytest.raises(CallEnded):
        await asyncio.wait_for(saying, 0.5)
    assert not s.playout.speaking
    (turn,) = s.turns
    assert turn.speaker == "caller" and turn.end_ms == pytest.approx(s.clock.ms(), abs=100)
    assert "connection_closed" in [e.kind for e in s.events]


async def test_reply_queued_but_never_started_is_dropped_when_the_call_ends():
    s = session()
    saying = asyncio.create_task(s._say(utterance_from_pcm(tone(1.0), RATE, "Bye."),
                                        start_at_ms=10_000.0))
    await asyncio.sleep(0.01)
    s._end("agent_track_ended")
    with pytest.raises(CallEnded):
        await asyncio.wait_for(saying, 0.5)
    assert s.turns == [] and not s.playout.speaking


async def test_any_wait_is_cancelled_when_the_call_ends():
    s = session()
    cancelled = asyncio.Event()

    async def brain_that_never_answers():
        try:
            await asyncio.sleep(3600)
        finally:
            cancelled.set()

    waiting = asyncio.create_task(s._unless_ended(brain_that_never_answers()))
    await asyncio.sleep(0.01)
    s._end("hangup", by="agent")
    with pytest.raises(CallEnded):
        await asyncio.wait_for(waiting, 0.5)
    assert cancelled.is_set()


async def test_saying_after_the_end_raises_at_once():
    s = session()
    s._end("connection_failed")
    with pytest.raises(CallEnded):
        await s._say(utterance_from_pcm(tone(0.5), RATE, "Hello?"))
    assert not s.playout.speaking


async def test_media_silence_ends_the_call_as_media_timeout():
    s = session()
    s.limits = type(s.limits)(media_timeout_s=0.3)
    s.last_media_ms = s.clock.ms()
    await asyncio.wait_for(s._watch_media(), 2.0)
    assert s.ended.is_set() and s.media_lost
    s._finish_ok()
    assert (s.record.status, s.record.failure_reason) == ("failed", "media_timeout")


def finished(s: CallSession, agent_last_words: str, given=(), asked=(), ended=True) -> CallSession:
    s.brain._facts_given.update(given)
    s.asked.update(asked)
    s.turns.append(Turn("agent", agent_last_words, 0.0, 1.0))
    if ended:
        s._end("connection_closed")
    s._finish_ok()
    return s


def test_agent_that_says_goodbye_without_asking_every_fact_is_goal_not_met():
    s = finished(session(), "Thanks, John. Your refund is on its way. Goodbye!",
                 given=("reason", "first_name", "last_name"), asked=("reason", "first_name"))
    assert s.record.failure_reason == "goal_not_met"
    assert s.record.failure_detail == "never asked: amount"


def test_goal_not_met_names_facts_asked_and_left_unanswered():
    s = finished(session(), "I can't help without it. Have a nice day.",
                 given=("reason", "first_name", "last_name"), asked=("amount",))
    assert s.record.failure_reason == "goal_not_met"
    assert s.record.failure_detail == "asked, not answered: amount"


def test_agent_that_hangs_up_mid_flow_is_remote_hangup_early():
    s = finished(session(), "And what is your last name?", given=("reason", "first_name"))
    assert s.record.failure_reason == "remote_hangup_early"
    assert "last_name" in s.record.failure_detail and "amount" in s.record.failure_detail


def test_reached_goal_is_completed_however_the_agent_hung_up():
    s = finished(session(), "Got it. Goodbye.",
                 given=("reason", "first_name", "last_name", "amount"))
    assert s.record.status == "completed" and s.record.failure_reason is None


def test_caller_that_hangs_up_itself_before_its_goal_gave_up():
    s = finished(session(), "Blorp?", given=("reason",), ended=False)
    assert s.record.failure_reason == "caller_gave_up"


def test_agent_messages_are_read_from_any_channel_and_kept_in_the_record():
    s = session(state_format="rtvi")
    s._on_agent_message("agent-state", '{"label": "rtvi-ai", "type": "bot-started-speaking"}')
    s._on_agent_message("agent-state", '{"label": "rtvi-ai", "type": "user-transcription",'
                        ' "data": {"text": "My name is John.", "final": true}}')
    s._on_agent_message("theirs", b"\x00\x01")
    s._write_record()
    kinds = [e["kind"] for e in s.record.events]
    assert kinds == ["agent_reported_speech_start", "agent_heard"]
    assert s.record.events[1]["text"] == "My name is John."
    assert [m["channel"] for m in s.record.agent_messages] == ["agent-state", "agent-state",
                                                               "theirs"]
    assert s.record.agent_messages[2] == {"t_ms": pytest.approx(0, abs=1000), "channel": "theirs",
                                          "bytes": 2}


def test_entities_state_and_hangup_message_end_the_call():
    s = session()
    s._on_agent_message("agent-state", '{"entities": {"first_name": "John"}, "event": "hangup"}')
    assert s.record.agent_state == {"entities": {"first_name": "John"}, "event": "hangup"}
    assert s.ended.is_set()
    assert np.isclose(s.events[-1].t_ms, s.clock.ms(), atol=1000)
