"""Data-channel messages from the agent: read in its format, kept bounded."""

from __future__ import annotations

import json

import pytest

from callers.agent_messages import (MAX_MESSAGE_CHARS, MAX_MESSAGES, AgentMessages,
                                    client_ready)


def rtvi(kind, **data):
    return json.dumps({"label": "rtvi-ai", "type": kind, "data": data})


def test_rtvi_transcripts_and_speaking_events_are_read():
    m = AgentMessages("rtvi")
    assert m.receive("chat", rtvi("user-transcription", text=" John. ", final=True), 1).heard \
        == "John."
    assert m.receive("chat", rtvi("user-transcription", text="Jo", final=False), 2).heard is None
    assert m.receive("chat", rtvi("bot-started-speaking"), 3).speech == "start"
    assert m.receive("chat", rtvi("bot-stopped-speaking"), 4).speech == "end"
    assert m.receive("chat", rtvi("bot-output", text="Hello there.", aggregated_by="sentence"),
                     5).said == "Hello there."
    assert m.receive("chat", rtvi("bot-output", text="Hello", aggregated_by="word"), 6).said \
        is None


def test_entities_json_state_and_hangup_and_formats_do_not_cross():
    state = json.dumps({"entities": {"first_name": "John"}, "event": "hangup"})
    report = AgentMessages("entities-json").receive("agent-state", state, 1)
    assert report.state == {"entities": {"first_name": "John"}, "event": "hangup"}
    assert report.hangup
    assert AgentMessages("entities-json").receive("x", rtvi("bot-started-speaking"), 1).speech \
        is None
    assert AgentMessages("rtvi").receive("x", state, 1).state is None
    # RTVI server messages may carry the agent's entities: auto reads them.
    wrapped = json.dumps({"label": "rtvi-ai", "type": "server-message",
                          "data": {"entities": {"amount": "250"}}})
    assert AgentMessages("auto").receive("x", wrapped, 1).state == {"entities": {"amount": "250"}}


def test_malformed_and_hostile_messages_are_kept_bounded_and_read_as_nothing():
    m = AgentMessages()
    for message in ("not json", "[1, 2]", '{"entities": "nope"}', "x" * 10 * MAX_MESSAGE_CHARS,
                    b"\x00" * 10):
        report = m.receive("agent-state", message, 1)
        assert report.state is None and not report.hangup and report.heard is None
    assert m.kept[0]["message"] == "not json"
    assert m.kept[3]["truncated"] and len(m.kept[3]["message"]) == MAX_MESSAGE_CHARS
    assert m.kept[4] == {"t_ms": 1, "channel": "agent-state", "bytes": 10}
    for _ in range(MAX_MESSAGES):
        m.receive("agent-state", "{}", 2)
    assert len(m.kept) == MAX_MESSAGES and m.dropped == 5


def test_unknown_format_is_refused_and_client_ready_is_rtvi():
    with pytest.raises(ValueError, match="agent_state.format"):
        AgentMessages("xml")
    hello = json.loads(client_ready())
    assert (hello["label"], hello["type"]) == ("rtvi-ai", "client-ready")


def test_smallwebrtc_peer_left_is_a_hang_up():
    peer_left = json.dumps({"type": "signalling", "message": {"type": "peerLeft"}})
    assert AgentMessages("rtvi").receive("agent-state", peer_left, 1).hangup
    assert AgentMessages("auto").receive("agent-state", peer_left, 1).hangup
    assert not AgentMessages("entities-json").receive("agent-state", peer_left, 1).hangup
