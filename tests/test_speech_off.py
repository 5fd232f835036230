"""`speech: {stt: none}`: callers that transcribe nothing, for load, pacing and soak runs of
script scenarios. No Whisper is loaded; agent turns are still found (VAD) and timed, with empty
text; the script answers each one; the record says transcription was off. No real models."""

from __future__ import annotations

import json

import pytest

import callers.session as session_module
from callers.errors import ConfigError
from callers.persona import resolve_persona
from callers.record import CallRecord
from callers.scenario import facts_for, resolve_scenario
from callers.session import CallerModels, CallSession, load_caller_models
from callers.transport import Target
from evaluation.scoring import score_call
from orchestration.config import SpeechConfig, load_run_config
from tests.fake_transport import FakeAgentTransport, FakeSTT, FakeTTS

SCRIPTED = "scripted-card-dispute"
BASE = {"personas": {"cooperative-john": 1},
        "load": {"total_calls": 2, "max_concurrency": 1, "calls_per_second": 1}}


def write(tmp_path, **sections):
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps({**BASE, **sections}))  # JSON is YAML
    return path


# --- the config --------------------------------------------------------------------------------

def test_speech_defaults_to_local_stt(tmp_path):
    assert load_run_config(write(tmp_path)).speech == SpeechConfig(stt="local")


def test_stt_none_with_script_scenarios_only_is_accepted(tmp_path):
    config = load_run_config(write(tmp_path, speech={"stt": "none"},
                                  scenarios={SCRIPTED: 1}))
    assert config.speech.stt == "none"


@pytest.mark.parametrize("scenarios", [{"card-dispute": 1},
                                       {SCRIPTED: 1, "card-dispute": 2, "order-status": 1}])
def test_stt_none_with_a_fact_scenario_is_one_line_naming_speech_stt_and_the_scenario(
        tmp_path, scenarios):
    with pytest.raises(ConfigError) as info:
        load_run_config(write(tmp_path, speech={"stt": "none"}, scenarios=scenarios))
    message = str(info.value)
    assert "\n" not in message and "speech.stt" in message
    assert "scenarios.card-dispute has none" in message  # the first one without a script
    assert "order-status" not in message


def test_stt_none_without_scenarios_is_the_default_fact_scenario_and_fails(tmp_path):
    with pytest.raises(ConfigError, match="speech.stt.*scenarios.card-dispute"):
        load_run_config(write(tmp_path, speech={"stt": "none"}))


@pytest.mark.parametrize(("speech", "expected"), [
    ({"stt": "whisper"}, "speech.stt: Input should be 'local', 'batched', 'openai', 'serve' or 'none', got 'whisper'"),
    ({"stt": "none", "tts": "none"}, "speech.tts: Input should be 'piper', 'openai' or 'serve', got 'none'"),
    ({"stt": "none", "voice": "joe"}, "speech.voice: unknown field"),
])
def test_bad_speech_sections_are_one_line_errors(tmp_path, speech, expected):
    with pytest.raises(ConfigError, match=expected) as info:
        load_run_config(write(tmp_path, speech=speech, scenarios={SCRIPTED: 1}))
    assert "\n" not in str(info.value)


def test_the_shipped_script_scenario_answers_the_card_dispute_flow_in_text():
    from reference_agent.dialog import Dialog

    scenario = resolve_scenario(SCRIPTED)
    assert scenario.flow == "card_dispute" and scenario.script
    dialog = Dialog(flow=scenario.flow)
    replies = [dialog.hear(turn.say) for turn in scenario.script]
    assert dialog.entities | {"feedback": ""} == {
        "reason": "dispute a charge on my card", "first_name": "John", "last_name": "Smith",
        "amount": "42.50", "feedback": ""}
    assert [r.hang_up for r in replies] == [False] * 4 + [True]  # the last line ends the flow


def test_the_demo_leaves_script_scenarios_out():
    from orchestration.run import demo_config, demo_scenarios

    assert SCRIPTED not in demo_scenarios() and "card-dispute" in demo_scenarios()
    assert SCRIPTED not in demo_config(3, 1, 1).scenarios


# --- a call without STT -------------------------------------------------------------------------

# The card_dispute flow's turns (the fake agent says each as a tone and waits for the caller).
AGENT = ["Hello, thanks for calling Acme Bank. How can I help you today?",
         "I can help with that. What is your first name?",
         "Thanks, John. And your last name?",
         "I have your last name as Smith. What amount of money is this about?",
         "Got it, forty two point five dollars. How was this call for you today?",
         "Thank you for your feedback. Goodbye!"]


async def test_a_call_without_stt_says_its_script_on_each_agent_turn_and_records_empty_turns(
        monkeypatch):
    stt = FakeSTT()  # the fake agent needs one to tell what it said; the caller has none
    made: list[FakeAgentTransport] = []

    def fake_transport(target, clock, outgoing, events, codec=None):
        made.append(FakeAgentTransport(target, clock, outgoing, events, script=AGENT, stt=stt))
        return made[0]

    monkeypatch.setattr(session_module, "make_transport", fake_transport)
    persona = resolve_persona("cooperative-john")
    scenario = resolve_scenario(SCRIPTED)
    session = CallSession(persona, 1, Target("fake://agent"), CallerModels(None, FakeTTS()),
                          call_id="no-stt", facts=facts_for(scenario, persona.facts))
    record = await session.run()

    assert record.status == "completed", (record.failure_reason, record.failure_detail)
    assert record.speech == {"stt": "none"}
    caller = [t["text"] for t in record.turns if t["speaker"] == "caller"]
    assert caller == [turn.say for turn in scenario.script]  # in order, one per agent turn
    agent = [t for t in record.turns if t["speaker"] == "agent"]
    assert len(agent) == len(scenario.script)  # the caller hung up before the goodbye
    assert all(t["text"] == "" and t["end_ms"] > t["start_ms"] > 0 for t in agent)
    assert [t["speaker"] for t in record.turns] == ["agent", "caller"] * len(scenario.script)
    stages = {s["stage"] for s in record.stages}
    assert "stt" not in stages and {"brain", "tts"} <= stages
    assert set(record.facts_given) == {"first_name", "last_name", "amount"}
    kinds = [e["kind"] for e in record.events]
    assert kinds.count("agent_speech_end") >= len(scenario.script)
    assert {"kind": "hangup", "by": "caller"}.items() <= next(
        e for e in record.events if e["kind"] == "hangup").items()

    # Graded like any record: no transcripts, so the facts are not observed; nothing crashes.
    scored = score_call(CallRecord.from_dict(json.loads(json.dumps(record.to_dict())))
                        .to_dict())
    assert scored["metrics"] and scored["task"]
    assert scored["understanding"]["source"] == "none"
    assert scored["speech"] == {"stt": "none"}


async def test_a_call_without_stt_and_a_brain_that_needs_the_agents_words_fails_named(
        monkeypatch):
    made: list[FakeAgentTransport] = []

    def fake_transport(target, clock, outgoing, events, codec=None):
        made.append(FakeAgentTransport(target, clock, outgoing, events, script=AGENT,
                                       stt=FakeSTT()))
        return made[0]

    monkeypatch.setattr(session_module, "make_transport", fake_transport)
    persona = resolve_persona("cooperative-john")
    session = CallSession(persona, 1, Target("fake://agent"), CallerModels(None, FakeTTS()),
                          call_id="x", facts=facts_for(resolve_scenario("card-dispute"),
                                                       persona.facts))
    record = await session.run()
    assert (record.status, record.failure_reason) == ("failed", "caller_error")
    assert record.failure_detail == ("speech.stt none needs a script scenario; card-dispute "
                                     "has none")
    assert made[0].heard_turns == 0  # it failed on the agent's first words, saying nothing


# --- the host ----------------------------------------------------------------------------------

class CountingTranscriber:
    made = 0

    def __init__(self, *args, **kwargs) -> None:
        CountingTranscriber.made += 1


@pytest.fixture
def no_real_models(monkeypatch):
    CountingTranscriber.made = 0
    monkeypatch.setattr(session_module, "Transcriber", CountingTranscriber)
    monkeypatch.setattr(session_module, "Synthesizer", FakeTTS)

    async def no_warm_up(stt, tts):
        pass

    monkeypatch.setattr(session_module, "warm_up", no_warm_up)


async def test_the_host_loads_no_transcriber_when_stt_is_none(no_real_models, tmp_path):
    from orchestration.host import CallerHostImpl

    host = CallerHostImpl(str(tmp_path), stt="none")
    try:
        await host.ready()
    finally:
        host.lag._task.cancel()
    assert host.models.stt is None and isinstance(host.models.tts, FakeTTS)
    assert CountingTranscriber.made == 0


async def test_the_host_loads_its_transcriber_by_default(no_real_models, tmp_path):
    from orchestration.host import CallerHostImpl

    host = CallerHostImpl(str(tmp_path))
    try:
        await host.ready()
    finally:
        host.lag._task.cancel()
    assert isinstance(host.models.stt, CountingTranscriber) and CountingTranscriber.made == 1
    assert isinstance((await load_caller_models()).stt, CountingTranscriber)


def test_the_fleet_starts_its_hosts_with_the_configs_stt(monkeypatch, tmp_path):
    from orchestration import fleet as fleet_module

    started = []

    class FakeRemote:
        def options(self, **_):
            return self

        def remote(self, *args):
            started.append(args)

    monkeypatch.setattr(fleet_module.ray, "remote", lambda cls: FakeRemote())
    config = load_run_config(write(tmp_path, speech={"stt": "none"}, scenarios={SCRIPTED: 1}))
    fleet = fleet_module.Fleet(config, Target("fake://agent"), store=_Store(tmp_path))
    fleet.pool._new_actor()
    assert started == [(str(tmp_path.resolve()), None, "none", None, "piper", None, None)]


class _Store:
    def __init__(self, run_dir) -> None:
        self.run_dir = run_dir
