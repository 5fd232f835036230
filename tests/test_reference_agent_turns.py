"""The reference agent's turn-taking: backchannels vs barge-ins, and re-prompts on silence."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import numpy as np
import pytest

import reference_agent.call as call_module
from callers.audio import STT_RATE, resample
from callers.media import utterance_from_pcm
from callers.speech.vad import FRAME_SAMPLES, SpeechSegment, SpeechSegmenter
from reference_agent.call import ENDPOINT_SILENCE_MS, AgentCall, AgentKnobs, SpeechModels
from reference_agent.dialog import AgentReply
from reference_agent.turns import (
    BARGE_IN_CONFIRM_MS,
    MIN_TURN_MS,
    SILENCE_GOODBYE,
    STILL_THERE,
    SilenceReprompts,
    TurnGate,
)

FRAME_MS = 20
BACKCHANNELS = ("Mm-hmm.", "Okay.", "Right.", "Uh-huh.")
BARGE_INS = ("Sorry, my last name is Smith.",
             "Sorry, I'm calling about a refund for a double charge.")


# --- TurnGate: pure decisions -----------------------------------------------------------------

def _overlap(gate: TurnGate, voiced_ms: float, agent_speaking: bool = True) -> tuple[list, bool]:
    """One caller segment that starts during agent speech: (voiced_ms values that stop, is_turn)."""
    gate.start(agent_speaking=agent_speaking)
    stops = [ms for ms in range(60, int(voiced_ms) + 1, FRAME_MS)
             if gate.should_stop(ms, agent_speaking)]
    return stops, gate.is_turn(voiced_ms)


def test_backchannel_during_agent_speech_neither_stops_it_nor_is_a_turn():
    assert _overlap(TurnGate(), BARGE_IN_CONFIRM_MS - FRAME_MS) == ([], False)


def test_barge_in_stops_the_agent_once_at_the_threshold_and_is_a_turn():
    stops, is_turn = _overlap(TurnGate(), 2000)
    assert stops == [BARGE_IN_CONFIRM_MS]
    assert is_turn


def test_ignore_knob_never_stops_but_still_drops_backchannels():
    gate = TurnGate(stop_on_barge_in=False)
    assert _overlap(gate, 2000) == ([], True)
    assert _overlap(gate, 400) == ([], False)


def test_answer_after_the_agent_finished_is_a_turn_from_min_turn_ms():
    gate = TurnGate()
    assert _overlap(gate, MIN_TURN_MS, agent_speaking=False) == ([], True)
    assert _overlap(gate, MIN_TURN_MS - FRAME_MS, agent_speaking=False) == ([], False)


def test_no_stop_when_the_agent_already_finished_its_utterance():
    gate = TurnGate()
    gate.start(agent_speaking=True)
    assert not gate.should_stop(BARGE_IN_CONFIRM_MS, agent_speaking=False)


def test_gate_forgets_the_overlap_at_the_segment_end():
    gate = TurnGate()
    _overlap(gate, 300)  # a backchannel, dropped
    assert _overlap(gate, 300, agent_speaking=False) == ([], True)  # then a short answer


# --- SilenceReprompts: pure decisions -----------------------------------------------------------

def test_silence_reprompts_twice_then_says_goodbye_and_hangs_up():
    silence = SilenceReprompts()
    question = "What is your last name?"
    replies = [silence.silence(question) for _ in range(3)]
    assert replies == [AgentReply(f"{STILL_THERE} {question}")] * 2 + [
        AgentReply(SILENCE_GOODBYE, hang_up=True)]


def test_a_caller_turn_resets_the_silence_count():
    silence = SilenceReprompts()
    silence.silence("Q?")
    silence.silence("Q?")
    silence.heard()
    assert not silence.silence("Q?").hang_up


# --- on real Piper speech through the agent's segmenter ----------------------------------------

def _frames(pcm16: np.ndarray, lead_ms: int = 400, tail_ms: int = 1500):
    pad = lambda ms: np.zeros(ms * STT_RATE // 1000, np.int16)  # noqa: E731
    audio = np.concatenate([pad(lead_ms), pcm16, pad(tail_ms)])
    for i in range(audio.size // FRAME_SAMPLES):
        yield i * FRAME_MS, audio[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES]


def _caller_speech(synth, text: str, rate: float, variant: int) -> np.ndarray:
    return resample(synth.synthesize_sync(text, rate, variant), synth.sample_rate, STT_RATE)


def _overlapping_speech(pcm16: np.ndarray) -> tuple[list[float], list[float]]:
    """Caller speech while the agent talks throughout: (stop times after speech start, turns)."""
    segmenter = SpeechSegmenter(hangover_ms=ENDPOINT_SILENCE_MS)
    gate = TurnGate()
    stops, turns, start = [], [], None
    for t_ms, frame in _frames(pcm16):
        for event in segmenter.push(frame, t_ms):
            if event.kind == "start":
                start = event.t_ms
                gate.start(agent_speaking=True)
            elif gate.is_turn(event.segment.end_ms - event.segment.start_ms):
                turns.append(event.segment.end_ms - event.segment.start_ms)
        if segmenter.in_speech and gate.should_stop(segmenter.voiced_ms, agent_speaking=True):
            stops.append(t_ms + FRAME_MS - start)
    return stops, turns


@pytest.mark.parametrize("text", BACKCHANNELS)
@pytest.mark.parametrize("variant", [0, 4])
def test_slowest_backchannels_do_not_stop_the_agent(synth, text, variant):
    assert _overlapping_speech(_caller_speech(synth, text, 0.8, variant)) == ([], [])


@pytest.mark.parametrize("text", BARGE_INS)
def test_fastest_barge_ins_stop_the_agent_after_the_confirm_time(synth, text):
    stops, turns = _overlapping_speech(_caller_speech(synth, text, 1.4, 4))
    assert len(stops) == 1 and BARGE_IN_CONFIRM_MS <= stops[0] <= BARGE_IN_CONFIRM_MS + FRAME_MS
    assert len(turns) == 1 and turns[0] > 1000


def test_voiced_ms_does_not_grow_in_the_hangover(synth):
    segmenter = SpeechSegmenter(hangover_ms=ENDPOINT_SILENCE_MS)
    seen = []
    for t_ms, frame in _frames(_caller_speech(synth, "Okay.", 1.0, 0)):
        events = segmenter.push(frame, t_ms)
        if events and events[0].kind == "end":
            segment = events[0].segment
            assert seen[-1] == segment.end_ms - segment.start_ms
            assert max(seen) == seen[-1]  # never more than the segment reports
            return
        seen.append(segmenter.voiced_ms)
    raise AssertionError("no segment")


# --- wired into AgentCall (no WebRTC: a stand-in peer connection and models) ------------------

class FakePC:
    connectionState = "connected"

    def __init__(self) -> None:
        self.tracks, self.closed = [], False

    def addTrack(self, track) -> None:
        self.tracks.append(track)

    def on(self, event, handler=None) -> None:
        pass

    async def close(self) -> None:
        self.closed = True


class FakeTTS:
    sample_rate = STT_RATE

    def __init__(self) -> None:
        self.said: list[tuple[float, str]] = []

    async def synthesize(self, text: str, *args) -> np.ndarray:
        self.said.append((time.monotonic(), text))
        t = np.arange(int(0.2 * STT_RATE)) / STT_RATE
        return (8000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)


class FakeSTT:
    def __init__(self, *texts: str) -> None:
        self.texts = list(texts)

    async def transcribe(self, audio, prompt=None):
        return SimpleNamespace(text=self.texts.pop(0) if self.texts else "")


def _agent(stt: FakeSTT | None = None, barge_in: str = "stop") -> tuple[AgentCall, FakeTTS]:
    tts = FakeTTS()
    agent = AgentCall(FakePC(), SpeechModels(stt or FakeSTT(), tts), AgentKnobs(barge_in=barge_in))
    return agent, tts


def _feed(monkeypatch, frames) -> None:
    async def fake_received_frames(track, clock, stats=None):
        for item in frames:
            yield item
    monkeypatch.setattr(call_module, "received_frames", fake_received_frames)


@pytest.mark.parametrize(("text", "rate", "stopped", "turns"),
                         [("Mm-hmm.", 0.8, False, 0), (BARGE_INS[0], 1.4, True, 1)])
async def test_agent_keeps_talking_through_a_backchannel_and_yields_to_a_barge_in(
        synth, monkeypatch, text, rate, stopped, turns):
    agent, _ = _agent()
    speech = utterance_from_pcm(np.full(48000 * 10, 3000, np.int16), 48000, "long", record=False)
    agent.playout.say(speech)  # never played here: the agent is mid-sentence throughout
    _feed(monkeypatch, _frames(_caller_speech(synth, text, rate, 0)))
    await agent._listen(None)
    assert speech.interrupted is stopped
    assert agent.turns.qsize() == turns


@pytest.mark.parametrize("barge_in", ["stop", "ignore"])
async def test_backchannel_is_not_a_turn_with_either_knob(synth, monkeypatch, barge_in):
    agent, _ = _agent(barge_in=barge_in)
    agent.playout.say(utterance_from_pcm(np.full(48000 * 10, 3000, np.int16), 48000, "x",
                                         record=False))
    _feed(monkeypatch, _frames(_caller_speech(synth, "Okay.", 0.8, 4)))
    await agent._listen(None)
    assert agent.turns.empty() and agent.playout.speaking


async def _run_call(agent: AgentCall, until, timeout_s: float = 10.0) -> None:
    """Run the agent's conversation, playing its audio in real time, until until() or hang-up."""
    track = agent.pc.tracks[0]

    async def play():
        while True:
            await track.recv()

    player = asyncio.create_task(play())
    agent.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not agent.ended.is_set() and not until() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    finally:
        player.cancel()
        await agent.hang_up()


@pytest.fixture
def quick(monkeypatch):
    monkeypatch.setattr(call_module, "REPROMPT_AFTER_S", 0.3)
    monkeypatch.setattr(call_module, "PROCESSING_BUDGET_MS", 0)


async def test_silent_caller_is_reprompted_twice_then_the_agent_says_goodbye(quick):
    agent, tts = _agent()
    await _run_call(agent, until=lambda: False)
    texts = [text for _, text in tts.said]
    question = "How can I help you today?"
    assert texts == [agent.dialog.opening(), f"{STILL_THERE} {question}",
                     f"{STILL_THERE} {question}", SILENCE_GOODBYE]
    assert agent.ended.is_set() and agent.pc.closed
    gaps = np.diff([t for t, _ in tts.said])
    assert all(gaps >= 0.2 + 0.3 - 0.03), gaps  # each after the last utterance played + the wait


async def test_an_answer_resets_the_silence_count(quick):
    agent, tts = _agent(FakeSTT("I'm calling about a refund."))

    async def answer_after_first_reprompt():
        while len(tts.said) < 2:
            await asyncio.sleep(0.01)
        segment = SpeechSegment(0.0, 500.0, np.zeros(8000, np.int16))
        agent.turns.put_nowait((segment, agent.clock.ms()))
        agent._activity.set()

    answering = asyncio.create_task(answer_after_first_reprompt())
    await _run_call(agent, until=lambda: False)
    answering.cancel()
    texts = [text for _, text in tts.said]
    assert texts == [
        agent.dialog.opening(),
        f"{STILL_THERE} How can I help you today?",
        "I can help with that. What is your first name?",
        f"{STILL_THERE} What is your first name?",
        f"{STILL_THERE} What is your first name?",
        SILENCE_GOODBYE,
    ]


async def test_caller_speech_holds_off_the_reprompt(synth, quick, monkeypatch):
    """The caller starts talking before the re-prompt is due and talks past it: no re-prompt."""
    agent, tts = _agent(FakeSTT("I'm calling about a refund."))
    speech = _caller_speech(synth, BARGE_INS[0], 1.4, 0)  # ~1.4 s, far longer than 0.3 s

    async def caller(track, clock, stats=None):
        while len(tts.said) < 1 or agent.playout.speaking:  # until the opening has played
            await asyncio.sleep(FRAME_MS / 1000)
            yield clock.ms(), np.zeros(FRAME_SAMPLES, np.int16)
        for _, frame in _frames(speech, lead_ms=100, tail_ms=2000):
            await asyncio.sleep(FRAME_MS / 1000)
            yield clock.ms(), frame

    monkeypatch.setattr(call_module, "received_frames", caller)
    agent._on_track(SimpleNamespace(kind="audio"))
    await _run_call(agent, until=lambda: len(tts.said) >= 2)
    assert [text for _, text in tts.said][:2] == [
        agent.dialog.opening(), "I can help with that. What is your first name?"]


# --- codec: the agent's SDP answer keeps what the caller offers --------------------------------

@pytest.mark.parametrize(("codec", "rtpmap"), [("pcmu", "PCMU/8000"), ("opus", "opus/48000/2")])
async def test_agent_answers_with_the_codec_the_caller_offers(codec, rtpmap):
    from aiortc import RTCConfiguration, RTCPeerConnection

    from callers.loopback import loopback_only
    from callers.media import Clock, OutgoingAudioTrack, Playout
    from callers.transport import prefer_codec
    from reference_agent.server import AgentServer

    caller = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    caller.addTrack(OutgoingAudioTrack(Playout(), Clock()))
    prefer_codec(caller.getTransceivers()[0], codec)
    with loopback_only():
        await caller.setLocalDescription(await caller.createOffer())
    server = AgentServer(SpeechModels(FakeSTT(), FakeTTS()), AgentKnobs())
    try:
        _, answer = await server._answer(caller.localDescription.sdp)
    finally:
        await asyncio.gather(*(call.hang_up() for call in server.calls.values()))
        await caller.close()
    audio = answer.split("m=audio", 1)[1].split("\r\nm=", 1)[0]
    assert [line.split(" ", 1)[1] for line in audio.split("\r\n")
            if line.startswith("a=rtpmap:")] == [rtpmap]


def test_one_agent_speaks_every_flow_chosen_per_call_by_query():
    from aiohttp.test_utils import make_mocked_request

    from reference_agent.server import AgentServer

    server = AgentServer(SpeechModels(FakeSTT(), FakeTTS()),
                         AgentKnobs(mishear=frozenset({"amount", "date"})))
    assert server._knobs_for(make_mocked_request("POST", "/offer")) is server.knobs
    booking = server._knobs_for(make_mocked_request("POST", "/offer?flow=restaurant_booking"))
    assert booking.flow == "restaurant_booking" and booking.mishear == {"date"}
    with pytest.raises(ValueError, match="unknown flow 'pizza'"):
        server._knobs_for(make_mocked_request("POST", "/whip?flow=pizza"))
