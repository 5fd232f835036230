"""Grading one record: only what a source shows is graded, and only calls that had a talk."""

from __future__ import annotations

from evaluation.agent_reports import agent_hearing, reported_onset_offsets, word_error_rate
from evaluation.scoring import score_call

FACTS = {"first_name": {"type": "name", "value": "John", "state_key": "first_name"},
         "last_name": {"type": "name", "value": "Smith", "state_key": "last_name"},
         "amount": {"type": "money", "value": "250", "state_key": "amount"}}


def talk(*turns, **extra):
    record = {"call_id": "c", "status": "completed", "events": [], "agent_state": {},
              "facts": FACTS,
              "turns": [{"speaker": s, "text": t, "start_ms": i * 1000.0,
                         "end_ms": i * 1000.0 + 900} for i, (s, t) in enumerate(turns)]}
    return {**record, **extra}


def test_fact_never_read_back_nor_reported_is_not_observed_not_wrong():
    record = score_call(talk(("agent", "Your first name?"), ("caller", "John."),
                             ("agent", "I have your last name as Smith. And $250, right?")))
    u = record["understanding"]
    assert u["correct"] == {"last_name": True, "amount": True}
    assert u["not_observed"] == ["first_name"] and u["observed"] == 2
    assert u["sources"] == {"last_name": "read-back", "amount": "read-back"}


def test_agent_state_wins_over_read_back_fact_by_fact():
    record = score_call(talk(("agent", "I have your last name as Smith."),
                             agent_state={"entities": {"first_name": "Jon", "amount": None}}))
    u = record["understanding"]
    # Reported null: the agent says it has no amount, which is wrong, not unobserved.
    assert u["correct"] == {"first_name": False, "last_name": True, "amount": False}
    assert u["sources"] == {"first_name": "agent-state", "last_name": "read-back",
                            "amount": "agent-state"}
    assert u["source"] == "agent-state"


def test_facts_the_caller_never_said_are_not_graded():
    record = score_call(talk(("agent", "Your name?"), ("caller", "John Smith."),
                             agent_state={"entities": {"first_name": "John", "last_name": "Smith",
                                                       "amount": None}},
                             facts_given=["first_name", "last_name", "reason"]))
    assert record["understanding"]["expected"] == {"first_name": "John", "last_name": "Smith"}
    assert record["understanding"]["correct"] == {"first_name": True, "last_name": True}


def test_call_that_never_reached_a_conversation_is_not_graded():
    record = score_call({"call_id": "c", "status": "failed", "failure_reason": "signaling_http_401",
                         "turns": [], "events": [{"kind": "connected", "t_ms": 1.0}]})
    assert record["understanding"] == {} and record["metrics"] == {}


def test_agent_transcripts_grade_its_hearing_per_caller_turn():
    record = talk(("agent", "Your amount?"), ("caller", "Two hundred fifty dollars."),
                  ("agent", "Thanks."), ("caller", "Bye."))
    record["events"] = [{"kind": "agent_heard", "t_ms": 1950.0, "text": "250 dollars."},
                        {"kind": "agent_heard", "t_ms": 3500.0, "text": "Hi."}]
    rows = agent_hearing(record)
    assert [(r["heard"], r["wer"]) for r in rows] == [("250 dollars.", 0.0), ("Hi.", 1.0)]
    assert score_call(record)["metrics"]["agent_hearing"] == rows


def test_word_error_rate_counts_substitutions_insertions_and_deletions():
    assert word_error_rate("my name is John", "my name is Jon") == 0.25
    assert word_error_rate("my name is John", "name is John Smith") == 0.5
    assert word_error_rate("", "anything") is None


def test_reported_speaking_starts_are_matched_to_the_nearest_heard_onset():
    events = [{"kind": "agent_speech_start", "t_ms": 1000.0},
              {"kind": "agent_reported_speech_start", "t_ms": 940.0},
              {"kind": "agent_speech_start", "t_ms": 9000.0},
              {"kind": "agent_reported_speech_start", "t_ms": 20000.0}]  # no onset near it
    assert reported_onset_offsets(events) == [-60.0]
