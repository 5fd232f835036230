"""`callfleet agent --lean`: no speech recognition, every line pre-rendered, one question per
caller turn; and --processing-budget-ms. No real models: fakes throughout."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest

import reference_agent.call as call_module
import reference_agent.main as main_module
from callers.audio import STT_RATE
from callers.speech.tts_cache import CachedSynthesizer, TTSCache
from callers.speech.vad import SpeechSegment
from orchestration.cli import build_parser, main
from reference_agent.call import AgentCall, AgentKnobs, AgentMedia, SpeechModels
from reference_agent.dialog import AgentReply
from reference_agent.flows import flow_names, get_flow
from reference_agent.lean import LEAN_PROCESSING_BUDGET_MS, LeanDialog, lean_goodbye, lean_lines
from reference_agent.turn_log import TurnLog, read_turn_log
from reference_agent.turns import SILENCE_GOODBYE, STILL_THERE

CARD = get_flow("card_dispute")
# the slots' questions, then the feedback question, as the full agent asks them
QUESTIONS = [s.question for s in CARD.slots] + ["How was this call for you today?"]
GOODBYE = "Thank you for your feedback. Goodbye!"


# --- LeanDialog: pure ---------------------------------------------------------------------------

def test_lean_dialog_walks_opening_every_question_then_goodbye_and_hangs_up():
    dialog = LeanDialog("card_dispute")
    assert dialog.opening() == f"{CARD.greeting} {QUESTIONS[0]}"
    assert dialog.state() == {"entities": {}, "stage": "reason", "done": False,
                              "dropped": False, "turns": 0, "flow": "card_dispute", "lean": True}
    asked = [dialog.current_question()]
    replies = []
    # whatever the caller says, even nothing, moves it on: it understands nothing
    stages = [dialog.stage]
    for words in ("I'm calling about a refund.", "", "Smith", "a hundred dollars", "Fine."):
        replies.append(dialog.hear(words))
        asked.append(dialog.current_question())
        stages.append(dialog.stage)
    assert replies == [AgentReply(q) for q in QUESTIONS[1:]] + [
        AgentReply(GOODBYE, hang_up=True)]
    assert asked == [*QUESTIONS, ""]
    assert stages == [*CARD.slot_names, "feedback", "done"]
    assert dialog.state() == {"entities": {}, "stage": "done", "done": True, "dropped": False,
                              "turns": 5, "flow": "card_dispute", "lean": True}
    assert dialog.hear("anything") == AgentReply("", hang_up=True)  # after the goodbye


@pytest.mark.parametrize("flow", flow_names())
def test_every_flow_lean_asks_each_question_once_and_says_its_goodbye(flow):
    f = get_flow(flow)
    questions = [s.question for s in f.slots] + [f.feedback_question]
    dialog = LeanDialog(flow)
    said = [dialog.opening()] + [dialog.hear("x").text for _ in questions]
    assert said[0].endswith(questions[0]) and said[1:-1] == questions[1:]
    assert said[-1] == lean_goodbye(f) == f.goodbye and dialog.state()["done"]
    assert set(said) <= set(lean_lines(flow))


def test_lean_dialog_drop_after_turns_hangs_up_silently_on_that_turn():
    dialog = LeanDialog("card_dispute", drop_after_turns=2)
    assert dialog.hear("a") == AgentReply(QUESTIONS[1])
    assert dialog.hear("b") == AgentReply("", hang_up=True)
    assert dialog.state()["dropped"] and dialog.state()["turns"] == 2


def test_lean_lines_hold_the_silence_reprompts():
    lines = lean_lines("card_dispute")
    assert {f"{STILL_THERE} {q}" for q in QUESTIONS} <= set(lines)
    assert SILENCE_GOODBYE in lines and len(lines) == len(set(lines))


def test_processing_budget_defaults_to_the_full_or_lean_budget():
    assert AgentKnobs().budget_ms == call_module.PROCESSING_BUDGET_MS == 1300
    assert AgentKnobs(lean=True).budget_ms == LEAN_PROCESSING_BUDGET_MS == 300
    assert AgentKnobs(lean=True, processing_budget_ms=0).budget_ms == 0
    assert AgentKnobs(processing_budget_ms=700).budget_ms == 700


# --- AgentCall in lean mode (a fake wire, fake TTS, an STT that must not be called) ------------

class FailingSTT:
    def __init__(self) -> None:
        self.calls = 0

    async def transcribe(self, audio, prompt=None):
        self.calls += 1
        raise AssertionError("a lean agent must not transcribe")


class FakeTTS:
    sample_rate = STT_RATE

    def __init__(self) -> None:
        self.said: list[str] = []

    async def synthesize(self, text: str, rate: float = 1.0, variant: int = 0) -> np.ndarray:
        self.said.append(text)
        t = np.arange(int(0.2 * STT_RATE)) / STT_RATE
        return (8000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)


class FakeMedia(AgentMedia):
    kind = "fake"

    def __init__(self) -> None:
        self.states: list[dict] = []
        self.closed = False

    def attach(self, call) -> None:
        pass

    @property
    def connected(self) -> bool:
        return True

    def send_state(self, text: str) -> None:
        self.states.append(json.loads(text))

    async def close(self) -> None:
        self.closed = True


def _lean_call(tmp_path, **knobs) -> tuple[AgentCall, FakeTTS, FailingSTT, FakeMedia]:
    stt, tts, media = FailingSTT(), FakeTTS(), FakeMedia()
    agent = AgentCall(media, SpeechModels(stt, tts), AgentKnobs(lean=True, **knobs),
                      turn_log=TurnLog(tmp_path / "turns.jsonl"), call_id="lean-1")
    return agent, tts, stt, media


async def _run(agent: AgentCall, caller, timeout_s: float = 10.0) -> None:
    """Run the call, its audio paced in real time, with caller() alongside, until hang-up."""

    async def play():
        while True:
            await agent.track.paced_frame()

    tasks = [asyncio.create_task(play()), asyncio.create_task(caller())]
    agent.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not agent.ended.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    finally:
        for task in tasks:
            task.cancel()
        await agent.hang_up()


async def _answer(agent: AgentCall, said, after: int) -> None:
    """A caller turn once the agent has said `after` lines (said(): how many so far), the
    last one a reply to the caller's turn before, and finished speaking."""
    while (said() < after or agent._answered < after - 1 or agent.playout.speaking
           or agent.playout.queue):
        await asyncio.sleep(0.01)
    segment = SpeechSegment(0.0, 500.0, np.zeros(8000, np.int16))
    agent.turns.put_nowait((segment, agent.clock.ms()))
    agent._activity.set()


@pytest.mark.parametrize("budget_ms", [None, 150])
async def test_lean_call_never_transcribes_and_answers_on_the_budget(tmp_path, budget_ms):
    agent, tts, stt, media = _lean_call(tmp_path, processing_budget_ms=budget_ms)
    budget = 300 if budget_ms is None else budget_ms

    async def caller():
        for k in range(len(QUESTIONS)):
            await _answer(agent, lambda: len(tts.said), after=k + 1)

    await _run(agent, caller)
    agent.turn_log.close()
    assert stt.calls == 0
    assert tts.said == [f"{CARD.greeting} {QUESTIONS[0]}", *QUESTIONS[1:], GOODBYE]
    assert media.closed and media.states[-1]["event"] == "hangup"
    assert media.states[-1]["stage"] == "done" and media.states[-1]["turns"] == 5
    assert all(s["entities"] == {} and s["lean"] for s in media.states)
    turns = [e for e in read_turn_log(tmp_path / "turns.jsonl") if e["kind"] == "turn"]
    assert [e["turn"] for e in turns] == [1, 2, 3, 4, 5]
    for entry in turns:
        waited = entry["reply_start_ms"] - entry["endpointed_ms"]
        assert budget - 5 <= waited <= budget + 80, (budget, waited)


async def test_lean_call_response_delay_adds_to_the_budget(tmp_path):
    agent, tts, stt, _ = _lean_call(tmp_path, processing_budget_ms=100, response_delay_ms=400)

    async def caller():
        for k in range(len(QUESTIONS)):
            await _answer(agent, lambda: len(tts.said), after=k + 1)

    await _run(agent, caller)
    agent.turn_log.close()
    turns = [e for e in read_turn_log(tmp_path / "turns.jsonl") if e["kind"] == "turn"]
    assert len(turns) == 5 and stt.calls == 0
    assert all(495 <= e["reply_start_ms"] - e["endpointed_ms"] <= 580 for e in turns)


async def test_lean_silence_reprompts_the_pending_question(tmp_path, monkeypatch):
    monkeypatch.setattr(call_module, "REPROMPT_AFTER_S", 0.3)
    agent, tts, stt, _ = _lean_call(tmp_path, processing_budget_ms=0)

    async def caller():  # one answer, then silence
        await _answer(agent, lambda: len(tts.said), after=1)

    await _run(agent, caller)
    assert stt.calls == 0
    assert tts.said == [f"{CARD.greeting} {QUESTIONS[0]}", QUESTIONS[1],
                        f"{STILL_THERE} {QUESTIONS[1]}", f"{STILL_THERE} {QUESTIONS[1]}",
                        SILENCE_GOODBYE]


# --- run_agent --lean: no Transcriber, every line pre-rendered ---------------------------------

class _Stop(Exception):
    pass


async def test_run_agent_lean_builds_no_transcriber_and_prerenders_its_flow(monkeypatch):
    made: list[str] = []

    class FakeSynthesizer:
        sample_rate = STT_RATE

        def __init__(self, *args, **kwargs) -> None:
            pass

        async def synthesize(self, text, rate=1.0, variant=0):
            made.append(text)
            return np.zeros(160, np.int16)

        def close(self) -> None:
            pass

    def no_transcriber(*args, **kwargs):
        raise AssertionError("lean: no Transcriber")

    seen = {}

    def fake_server(speech, knobs, **kwargs):
        seen.update(speech=speech, knobs=knobs)
        raise _Stop

    monkeypatch.setattr(main_module, "Transcriber", no_transcriber)
    monkeypatch.setattr(main_module, "Synthesizer", FakeSynthesizer)
    monkeypatch.setattr(main_module, "AgentServer", fake_server)
    args = build_parser().parse_args(["agent", "--lean"])
    with pytest.raises(_Stop):
        await main_module.run_agent(args)
    speech, knobs = seen["speech"], seen["knobs"]
    assert speech.stt is None and knobs.lean and knobs.budget_ms == 300
    assert isinstance(speech.tts, CachedSynthesizer) and isinstance(speech.tts.cache, TTSCache)
    own = set(lean_lines(knobs.flow))  # before it listens; the other flows' lines after
    assert sorted(made) == sorted(own)  # each once
    assert all(speech.tts.cache.get(speech.tts.key(line)) is not None for line in own)


async def test_prerendered_lines_cost_no_synthesis_in_a_call(tmp_path):
    inner, cache = FakeTTS(), TTSCache()
    await main_module.prerender(CachedSynthesizer(inner, cache), flow_names())
    rendered = len(inner.said)
    tts = CachedSynthesizer(inner, cache)  # the call's view of the shared cache
    agent = AgentCall(FakeMedia(), SpeechModels(None, tts),
                      AgentKnobs(lean=True, processing_budget_ms=0), call_id="lean-2")

    async def caller():
        for k in range(len(QUESTIONS)):
            await _answer(agent, lambda: tts.hits + tts.misses, after=k + 1)

    await _run(agent, caller)
    assert agent.dialog.state()["done"]
    assert (tts.hits, tts.misses) == (6, 0) and len(inner.said) == rendered


# --- the CLI --------------------------------------------------------------------------------------

def test_cli_parses_lean_and_processing_budget():
    args = build_parser().parse_args(["agent", "--lean", "--processing-budget-ms", "250"])
    assert args.lean and args.processing_budget_ms == 250
    args = build_parser().parse_args(["agent"])
    assert not args.lean and args.processing_budget_ms is None


@pytest.mark.parametrize("value", ["-1", "soon", "1.5"])
def test_cli_rejects_a_bad_processing_budget(capsys, value):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["agent", "--processing-budget-ms", value])
    assert exc.value.code == 2
    assert "--processing-budget-ms" in capsys.readouterr().err


def test_cli_refuses_mishear_with_lean(capsys):
    assert main(["agent", "--lean", "--mishear", "amount"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--mishear" in err[0] and "--lean" in err[0]
