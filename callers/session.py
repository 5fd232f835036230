"""One persona's whole call: listen, transcribe, decide, speak, record, on one clock."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from callers.agent_messages import AgentMessages
from callers.audio import STT_RATE, write_stereo_wav
from callers.behaviour import AgentTurnPlan, CallerBehaviour
from callers.brain import Brain, Reply, default_facts, says_goodbye
from callers.caller_voice import CallerVoice, caller_line
from callers.errors import CallFailed
from callers.media import Clock, OutgoingAudioTrack, Playout, Utterance, place_on_timeline
from callers.persona import Persona
from callers.record import CallRecord, StageTiming, TimelineEvent, Turn
from callers.scenario import CallFacts, ScriptTurn
from callers.script import ScriptBrain, brain_for, wav_utterance
from callers.speech.serve_speech import ServeSynthesizer, ServeTranscriber
from callers.speech.stt import SpeechToText, Transcriber, warm_up
from callers.speech.stt_batch import BatchedTranscriber
from callers.speech.stt_openai import OpenAISTTConfig, OpenAITranscriber
from callers.trace_context import TraceContext
from callers.transport import Target
from callers.transports import CallTransport, TransportEvents, make_transport
from callers.speech.tts import Synthesizer, TextToSpeech
from callers.speech.tts_cache import CachedSynthesizer, TTSCache
from callers.speech.tts_openai import OpenAISynthesizer, OpenAITTSConfig
from callers.speech.vad import SpeechSegment, SpeechSegmenter

log = logging.getLogger(__name__)

EARLY_STT_MS = 100  # the agent's silence after which its speech so far is transcribed


@dataclass
class CallerModels:
    """Speech models shared by every call of one process (loaded once)."""

    # None: the agent's speech is not transcribed (run config `speech: {stt: none}`): its
    # turns are found and timed, with empty text, and only a script can answer them.
    stt: SpeechToText | None  # Transcriber, or BatchedTranscriber (`speech: {stt: batched}`)
    # The bundled Piper voice, or the service of `speech: {tts: openai}` (OpenAISynthesizer),
    # which then speaks every caller; either also speaks the babble of noise beds.
    tts: TextToSpeech
    voices: dict[str, TextToSpeech] = field(default_factory=dict)  # other Piper models by path
    tts_cache: TTSCache = field(default_factory=TTSCache)  # every voice's phrases, 64 MB
    # Calls' lines spoken ahead (CallSession._speak_ahead) go one at a time per process.
    speak_ahead: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))

    async def voice(self, model: str | None) -> TextToSpeech:
        """The synthesizer for a persona's voice model, loaded once per process. A TTS service
        speaks every persona in its configured voice: a Piper model path means nothing to it."""
        if model is None or isinstance(self.tts, OpenAISynthesizer):
            return self.tts
        if model not in self.voices:
            self.voices[model] = (await self.tts.in_voice(model)
                                  if isinstance(self.tts, ServeSynthesizer)
                                  else await asyncio.to_thread(Synthesizer, model))
        return self.voices[model]

    async def speaker(self, model: str | None) -> CachedSynthesizer:
        """One call's view of a voice through the process's TTS cache (its own hit counts)."""
        return CachedSynthesizer(await self.voice(model), self.tts_cache)


async def load_caller_models(
        stt: Literal["local", "batched", "openai", "serve", "none"] = "local",
        openai: dict[str, Any] | None = None,
        tts: Literal["piper", "openai", "serve"] = "piper",
        openai_tts: dict[str, Any] | None = None,
        serve: dict[str, Any] | None = None) -> CallerModels:
    """Load Whisper and Piper once per process, off the event loop, and warm them up.
    stt batched: Whisper through a 10 s window, the process's calls sharing its decode thread
    (callers.speech.stt_batch);
    stt openai: an OpenAI-compatible service transcribes (openai: its speech.openai section);
    stt none: no Whisper is loaded (the calls transcribe nothing);
    tts openai: an OpenAI-compatible service speaks (openai_tts: its speech.openai_tts
    section); no Piper is loaded;
    stt or tts serve: the run's Ray Serve deployments (serve: their application names and
    timeout_s, orchestration.speech_service.SpeechService.hosts_view), asked once here for
    the voice. Services are not asked otherwise: a call that cannot reach one fails with its
    reason (stt_unavailable, tts_unavailable)."""
    # Made first: a missing key fails before the slow loads.
    heard = OpenAITranscriber(OpenAISTTConfig(**openai)) if stt == "openai" else None
    spoken = OpenAISynthesizer(OpenAITTSConfig(**openai_tts)) if tts == "openai" else None
    if "serve" in (stt, tts):
        heard, spoken = await _serve_clients(serve or {}, stt == "serve", tts == "serve",
                                             heard, spoken)
    kind = {"local": Transcriber, "batched": BatchedTranscriber}.get(stt)
    transcriber, piper = await asyncio.gather(
        asyncio.to_thread(kind, cpu_threads=1) if kind else _none(),
        asyncio.to_thread(Synthesizer) if spoken is None else _none())
    await warm_up(transcriber, piper)
    return CallerModels(heard or transcriber, spoken or piper)


async def _none() -> None:
    return None


async def _serve_clients(serve: dict[str, Any], stt: bool, tts: bool, heard: Any,
                         spoken: Any) -> tuple[Any, Any]:
    """The run's Serve deployments' clients in place of the in-process models."""
    from ray import serve as ray_serve

    apps, timeout_s = serve["apps"], serve["timeout_s"]
    if stt:
        handle = await asyncio.to_thread(ray_serve.get_app_handle, apps["stt"])
        heard = ServeTranscriber(handle, apps["stt"], timeout_s)
    if tts:
        handle = await asyncio.to_thread(ray_serve.get_app_handle, apps["tts"])
        spoken = await ServeSynthesizer.connect(handle, apps["tts"], timeout_s)
    return heard, spoken


@dataclass(frozen=True)
class SessionLimits:
    connect_timeout_s: float = 15.0
    no_agent_audio_s: float = 15.0  # the agent must start speaking within this
    max_call_s: float = 240.0
    reply_gap_ms: float = 400.0  # how long the agent must be quiet before the caller answers
    # No agent audio arriving for this long, with no close or BYE: the agent vanished.
    media_timeout_s: float = 8.0
    last_words_s: float = 10.0  # time to transcribe the agent's last words after the end


class CallEnded(Exception):
    """The call ended (either side) while the conversation was waiting for something."""


class CallSession:
    """Places one call and returns its CallRecord; run() never raises for a failed call."""

    def __init__(
        self,
        persona: Persona,
        seed: int,
        target: Target,
        models: CallerModels,
        *,
        call_id: str,
        audio_path: Path | None = None,
        limits: SessionLimits = SessionLimits(),
        brain: Brain | None = None,
        facts: CallFacts | None = None,
        concurrency_at_start: int = 1,
    ) -> None:
        """facts: the scenario's facts for this persona (default: the brain's, else the
        card-dispute scenario with the persona's own case)."""
        self.persona = persona
        self.target = target
        self.models = models
        self.limits = limits
        self.audio_path = audio_path
        self.brain = brain or brain_for(persona, seed, facts or default_facts(persona))
        self.call_facts = self.brain.call_facts
        # A fixed script decides everything: no persona behaviour is drawn.
        self.script = self.brain if isinstance(self.brain, ScriptBrain) else None
        self.behaviour = CallerBehaviour(persona, seed)
        self.seed = seed
        self.codec = persona.line.codec or target.codec
        self.record = CallRecord(
            call_id=call_id,
            persona=persona.id,
            scenario=self.call_facts.scenario.id,
            seed=seed,
            target=target.url,
            concurrency_at_start=concurrency_at_start,
        )
        # Made for every call (cheap) and sent to the agent: its traces join ours by these.
        self.trace = TraceContext.new()
        self.record.trace_id, self.record.span_id = self.trace.trace_id, self.trace.span_id
        self.stages: list[StageTiming] = []  # the caller's STT, brain and TTS work, timed
        self.clock = Clock()
        self.events: list[TimelineEvent] = []
        self.turns: list[Turn] = []
        self.playout = Playout(on_event=self._on_caller_speech)
        self.track = OutgoingAudioTrack(self.playout, self.clock)
        self.received16: list[tuple[float, np.ndarray]] = []
        self.agent_segments: asyncio.Queue[SpeechSegment] = asyncio.Queue()
        # The agent's speech is transcribed from its first 100 ms of silence (a "pause"), not
        # after the 300 ms hangover that ends a segment: the reply is ready 200 ms sooner.
        self.segmenter = SpeechSegmenter(hangover_ms=300,
                                         early_ms=EARLY_STT_MS if models.stt else None)
        self._early_stt: dict[float, asyncio.Task] = {}  # a segment's start: its early decode
        self.transport: CallTransport | None = None  # made in run(): callers/transports/
        self.last_agent_end_ms = 0.0
        self.last_caller_end_ms = 0.0
        self.gave_up = False  # the caller hung up because the agent left it waiting
        self.agent_spoke = asyncio.Event()
        # Set when the call is over from the agent's side or the network's: every wait in the
        # conversation is raced against it, and what the caller still had queued is cut.
        self.ended = asyncio.Event()
        self.media_lost = False  # the agent's audio stopped arriving (media_timeout)
        self.last_media_ms: float | None = None  # when the last agent frame arrived
        self.asked: set[str] = set()  # goal facts the agent asked for
        self._unheard: list[SpeechSegment] = []  # an agent segment being transcribed
        self.agent_messages = AgentMessages(target.state_format)
        self._tasks: list[asyncio.Task] = []
        self.voice: CallerVoice | None = None
        self._turn_planned = False  # the agent's current turn already has its plan
        self._barged_in = False  # the caller interrupted the agent's current turn
        self.reply_late_ms: list[float] = []  # replies that missed their planned time
        self.reply_ready_ms: list[float] = []  # agent's end to the caller's reply in hand
        self.spoken_ahead: list[str] = []  # the brain's expected lines, synthesized ahead
        self.said_as_rehearsed = 0  # replies whose words were among them

    # --- the call ------------------------------------------------------------------

    async def run(self) -> CallRecord:
        self.record.started_at = time.time()
        self.transport = make_transport(
            self.target, self.clock, self.track,
            TransportEvents(message=self._on_agent_message, end=self._end), codec=self.codec)
        if self.target.traceparent:  # on the signaling, handshake, INVITE or start message
            self.transport.traceparent = self.trace.traceparent
        try:
            await self._prepare_voice()
            await self._connect()
            await asyncio.wait_for(self._converse(), self.limits.max_call_s)
            self._finish_ok()
        except CallFailed as e:
            self._fail(e.reason, e.detail)
        except TimeoutError:
            self._fail("call_timeout", f"longer than {self.limits.max_call_s:.0f} s")
        except Exception as e:  # a bug in the caller must still leave a record
            log.exception("call %s crashed", self.record.call_id)
            self._fail("caller_error", f"{type(e).__name__}: {e}")
        finally:
            await self._hang_up()
        return self.record

    async def _prepare_voice(self) -> None:
        """The persona's voice, and its noise and phone line in the outgoing audio."""
        self.voice = CallerVoice(self.persona, await self.models.speaker(self.persona.voice.model))
        line = await caller_line(self.persona, self.seed, self.voice, self.models.tts)
        if line is not None:
            self.track.line = line
            self.playout.delay_ms = line.delay_ms

    async def _connect(self) -> None:
        await self.transport.connect(self.limits.connect_timeout_s)
        self._event("connected")
        self._tasks.append(asyncio.create_task(self._speak_ahead(), name="caller-speak-ahead"))
        self._tasks.append(asyncio.create_task(self._listen(), name="caller-listen"))
        if self.transport.continuous_media:
            self._tasks.append(asyncio.create_task(self._watch_media(),
                                                   name="caller-media-watch"))

    async def _speak_ahead(self) -> None:
        """Synthesize the lines the brain expects to say into the TTS cache while the agent
        talks, so a reply is ready when the agent's turn ends even when every call of the host
        answers at once. One line at a time per process (CallerModels.speak_ahead): a reply
        needed now waits for at most one line spoken ahead. The brain's stock lines come last:
        after a host's first call in a voice they are cache hits."""
        self.spoken_ahead = self.brain.rehearse()
        stock = [line for line in self.brain.stock_lines() if line not in self.spoken_ahead]
        for text in (*self.spoken_ahead, *stock):
            async with self.models.speak_ahead:
                try:
                    await self.voice.prepare(text)
                except Exception:  # noqa: BLE001 - the reply's own synthesis fails or not
                    return

    async def _converse(self) -> None:
        """The conversation until either side ends it; then the agent's last words."""
        try:
            await self._conversation()
        except CallEnded:
            pass
        # The agent's last words (its goodbye) are part of the conversation that is graded.
        segments = [*self._unheard, *self._drain_agent_segments()]
        try:
            async with asyncio.timeout(self.limits.last_words_s):
                for segment in segments:
                    await self._transcribe_agent(segment)
        except TimeoutError:
            log.info("call %s: agent's last words not transcribed in time", self.record.call_id)

    async def _conversation(self) -> None:
        try:
            await self._unless_ended(
                asyncio.wait_for(self.agent_spoke.wait(), self.limits.no_agent_audio_s))
        except TimeoutError:
            raise CallFailed(
                "no_agent_audio", f"silent for {self.limits.no_agent_audio_s:.0f} s") from None
        heard: list[str] = []
        while not self.ended.is_set():
            segment = await self._next_agent_segment()
            if segment is None:
                break
            self._unheard = [segment]  # transcribed after the end if the call ends first
            heard.append(await self._unless_ended(self._transcribe_agent(segment)))
            self._unheard = []
            if not await self._agent_finished_turn():
                continue
            agent_text = " ".join(t for t in heard if t).strip()
            heard = []
            self._turn_planned = False
            # Untranscribed (stt none), every finished agent turn is answered (by its script).
            heard_nothing = self.models.stt is None and self.script is not None
            if (agent_text or heard_nothing) and await self._respond(agent_text):
                return  # the caller hung up

    async def _unless_ended(self, awaitable):
        """Await awaitable, unless the call ends first: then cancel it and raise CallEnded."""
        work = asyncio.ensure_future(awaitable)
        ended = asyncio.ensure_future(self.ended.wait())
        try:
            await asyncio.wait({work, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
        if work.cancelled():
            raise CallEnded
        return work.result()

    def _end(self, cause: str, **detail) -> None:
        """The call is over from the agent's or the network's side: cut what is queued."""
        if self.ended.is_set():
            return
        self._event(cause, **detail)
        self.playout.stop(self.clock.ms())
        self.ended.set()

    async def _watch_media(self) -> None:
        """End the call when the agent's audio stops arriving (a killed agent sends no BYE)."""
        limit_ms = self.limits.media_timeout_s * 1000
        while not self.ended.is_set():
            await asyncio.sleep(0.25)
            if self.last_media_ms is not None and self.clock.ms() - self.last_media_ms > limit_ms:
                self.media_lost = True
                self._end("media_timeout", silent_ms=round(self.clock.ms() - self.last_media_ms))

    async def _next_agent_segment(self) -> SpeechSegment | None:
        """The agent's next speech; None when it hung up, or the caller ran out of patience."""
        get = asyncio.ensure_future(self.agent_segments.get())
        hangup = asyncio.ensure_future(self.ended.wait())
        try:
            while True:
                done, _ = await asyncio.wait({get, hangup}, timeout=self._patience_left_s(),
                                             return_when=asyncio.FIRST_COMPLETED)
                if done or self.segmenter.in_speech or self.playout.speaking:
                    if get in done:
                        return get.result()
                    if hangup in done:
                        return None
                    continue
                self._event("hangup", by="caller", reason="patience")
                self.gave_up = True
                return None
        finally:
            for task in (get, hangup):
                if not task.done():
                    task.cancel()

    def _patience_left_s(self) -> float:
        """How much longer the caller waits in silence for the agent."""
        quiet_since = max(self.last_agent_end_ms, self.last_caller_end_ms)
        waited_s = (self.clock.ms() - quiet_since) / 1000
        return max(0.05, self.persona.temperament.max_wait_s - waited_s)

    async def _agent_finished_turn(self) -> bool:
        """The agent has been quiet for the reply gap, with nothing more queued."""
        while True:
            if not self.agent_segments.empty() or self.segmenter.in_speech:
                return False
            quiet_for = self.clock.ms() - self.last_agent_end_ms
            if quiet_for >= self.limits.reply_gap_ms:
                return True
            await asyncio.sleep((self.limits.reply_gap_ms - quiet_for) / 1000)

    async def _transcribe_agent(self, segment: SpeechSegment) -> str:
        """The segment's text (stt none: "", unheard), added to the agent's turn on the clock."""
        text = ""
        if self.models.stt is None and self.script is None:  # load_run_config checks it
            raise CallFailed("caller_error", "speech.stt none needs a script scenario; "
                             f"{self.call_facts.scenario.id} has none")
        if self.models.stt is not None:
            text = (await self._segment_transcript(segment)).text
        if self.turns and self.turns[-1].speaker == "agent":  # the agent's turn goes on
            last = self.turns[-1]
            last.text = f"{last.text} {text}".strip()
            last.end_ms = segment.end_ms
        else:
            self.turns.append(Turn("agent", text, segment.start_ms, segment.end_ms))
        return text

    def _transcribe_early(self, paused: SpeechSegment) -> None:
        """Start decoding the agent's speech so far; a later pause in the segment supersedes it."""
        superseded = self._early_stt.pop(paused.start_ms, None)
        if superseded is not None:
            superseded.cancel()  # if still queued, never decoded
        task = asyncio.ensure_future(self._decode(paused))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # read if superseded
        self._early_stt[paused.start_ms] = task

    async def _segment_transcript(self, segment: SpeechSegment):
        """The segment's transcript: the early decode when no speech followed its pause."""
        early = self._early_stt.pop(segment.start_ms, None)
        if early is not None and segment.as_paused:
            return await early
        if early is not None:
            early.cancel()
        return await self._decode(segment)

    async def _decode(self, segment: SpeechSegment):
        start = self.clock.ms()  # a stage only once decoded: a superseded one never ran
        # When the reply to it is due: a shared decoder serves the most urgent caller first.
        # After the call's end (its last words, for the report) nothing waits for it.
        due_ms = segment.end_ms + self.persona.temperament.reply_after_ms
        needed_in_s = None if self.ended.is_set() else (due_ms - start) / 1000
        transcript = await self.models.stt.transcribe(segment.audio, needed_in_s=needed_in_s)
        self.stages.append(StageTiming("stt", start, self.clock.ms()))
        return transcript

    async def _respond(self, agent_text: str) -> bool:
        """Reply to the agent's finished turn (or don't); True if the caller hangs up."""
        barged_in, self._barged_in = self._barged_in, False
        if (barged_in and self.script is None
                and self.brain.classify(agent_text) in {*self.brain.facts_given, "other"}):
            # Interrupted, this turn asks nothing new (its question was cut off or answered by
            # the barge-in); an agent that talked on to a new question still gets an answer.
            return False
        if self.script is None and self.behaviour.stay_silent():
            self._event("caller_silence")
            return False
        return await self._answer(agent_text)

    async def _answer(self, agent_text: str) -> bool:
        """Decide and speak the caller's reply; True if the caller hangs up after it."""
        history = [(t.speaker, t.text) for t in self.turns]
        reply = await self._unless_ended(self._timed("brain", self.brain.reply(agent_text,
                                                                               history)))
        after_ms = (self.persona.temperament.reply_after_ms if reply.speak_after_ms is None
                    else reply.speak_after_ms)
        speak_at = self.last_agent_end_ms + after_ms
        goal = self.brain.goal_facts
        if reply.intent in goal:
            self.asked.update({reply.intent, *reply.facts} & goal)
        if reply.intent == "other":  # a scenario author sees which phrase to add
            self._event("unrecognised_question", text=agent_text[:200])
        self._event("brain_reply", intent=reply.intent, source=reply.source,
                    latency_ms=round(reply.latency_ms, 1))
        if reply.fallback_reason:
            self._event("brain_fallback", reason=reply.fallback_reason)
        if reply.corrections:
            self._event("caller_correction", facts=list(reply.corrections))
        if reply.aside:
            self._event("caller_aside", text=reply.aside)
        self.said_as_rehearsed += reply.text in self.spoken_ahead
        utterance = await self._utterance_for(reply)
        if utterance is not None:
            self.reply_ready_ms.append(round(self.clock.ms() - self.last_agent_end_ms, 1))
            late = self.clock.ms() + self.playout.delay_ms - speak_at
            if late > 0:  # decided after its planned time: an overloaded caller, counted
                self.reply_late_ms.append(round(late, 1))
            await self._say(utterance, start_at_ms=speak_at)
        if reply.end_call:
            self._event("hangup", by="caller")
        return reply.end_call

    async def _utterance_for(self, reply: Reply) -> Utterance | None:
        """The reply's audio: a recorded turn, or its text in the persona's voice."""
        if reply.audio:
            return await asyncio.to_thread(wav_utterance, reply.audio)
        if not reply.text:
            return None
        hesitation = None if self.script else self.behaviour.hesitation()
        return await self._unless_ended(
            self._timed("tts", self.voice.utterance(reply.text, hesitation=hesitation)))

    async def _timed(self, stage: str, awaitable):
        """Await awaitable, keeping when it started and ended (a stage span in the trace)."""
        start = self.clock.ms()
        try:
            return await awaitable
        finally:
            self.stages.append(StageTiming(stage, start, self.clock.ms()))

    async def _say(self, utterance: Utterance, start_at_ms: float | None = None) -> None:
        """Play utterance to its end, or until the call ends (cut: the part heard is a turn)."""
        if self.ended.is_set():
            raise CallEnded
        utterance.start_at_ms = start_at_ms
        try:
            await self._unless_ended(self.playout.say(utterance))
            if utterance.interrupted and self.ended.is_set():
                raise CallEnded  # cut by the end of the call
        finally:
            if utterance.start_ms is not None:
                self.turns.append(Turn("caller", utterance.text, utterance.start_ms,
                                       utterance.end_ms or utterance.start_ms, utterance.mode))
                self.last_caller_end_ms = utterance.end_ms or self.clock.ms()

    async def _act_during_agent_turn(self, plan: AgentTurnPlan, turn_start_ms: float) -> None:
        """Backchannel and/or barge in at the planned offsets, if the agent is still talking."""
        actions = sorted((after, kind) for after, kind in (
            (plan.backchannel_after_ms, "backchannel"), (plan.barge_in_after_ms, "barge_in"))
            if after is not None)
        for after_ms, kind in actions:
            if kind == "backchannel":
                utterance = await self.voice.utterance(plan.backchannel, mode="backchannel")
                utterance.turn_end = False
            else:
                reply = self.brain.anticipate()
                if reply is None:
                    continue
                utterance = await self.voice.utterance(reply.text, mode="barge_in")
            at_ms = turn_start_ms + after_ms
            await asyncio.sleep(max(0.0, at_ms - self.playout.delay_ms - self.clock.ms()) / 1000)
            if not self.segmenter.in_speech or self.playout.speaking:
                return  # the agent's turn is over (or the caller is already talking)
            if kind == "barge_in":
                self.brain.said(reply)
                self._barged_in = True
                self._event("caller_barge_in", intent=reply.intent)
            await self._say(utterance, start_at_ms=at_ms)

    async def _interject(self, turn: ScriptTurn, turn_start_ms: float) -> None:
        """A scripted turn said into the agent's turn, at its exact offset."""
        if turn.wav:
            utterance = await asyncio.to_thread(wav_utterance, turn.wav, mode=turn.mode)
        else:
            utterance = await self.voice.utterance(turn.say or "", mode=turn.mode)
        utterance.turn_end = turn.mode != "backchannel"
        if turn.mode == "barge_in":
            self._barged_in = True
            self._event("caller_barge_in", intent="script")
        await self._say(utterance, start_at_ms=turn_start_ms + (turn.into_agent_turn_ms or 0))
        if self.script is not None and self.script.goal_met:
            self._end("hangup", by="caller")  # the script's last turn was said

    # --- callbacks from the transport ---------------------------------------------------

    async def _listen(self) -> None:
        """Consume every agent frame: keep it for the recording and run VAD on it."""
        async for t_ms, frame in self.transport.incoming():
            self.last_media_ms = self.clock.ms()
            self.received16.append((t_ms, frame))
            for event in self.segmenter.push(frame, t_ms):
                self._on_agent_vad(event)
        for event in self.segmenter.flush():
            self._on_agent_vad(event)
        kind, detail = self.transport.media_end()  # a BYE, a closed socket
        self._end(kind, **detail)

    def _on_agent_vad(self, event) -> None:
        if event.kind == "start":
            self._event("agent_speech_start", t_ms=event.t_ms)
            self.agent_spoke.set()
            if not self._turn_planned and self.voice is not None:
                self._turn_planned = True  # one plan per agent turn, however VAD splits it
                if self.script is not None:
                    turn = self.script.interjection()
                    if turn is not None:
                        self._tasks.append(asyncio.create_task(
                            self._interject(turn, event.t_ms), name="caller-script"))
                    return
                plan = self.behaviour.plan_agent_turn()
                if plan != AgentTurnPlan():
                    self._tasks.append(asyncio.create_task(
                        self._act_during_agent_turn(plan, event.t_ms), name="caller-interject"))
        elif event.kind == "pause":
            self._transcribe_early(event.segment)
        else:
            self._event("agent_speech_end", t_ms=event.t_ms)
            self.last_agent_end_ms = event.t_ms
            self.agent_segments.put_nowait(event.segment)

    def _drain_agent_segments(self) -> list[SpeechSegment]:
        for event in self.segmenter.flush():
            self._on_agent_vad(event)
        segments = []
        while not self.agent_segments.empty():
            segments.append(self.agent_segments.get_nowait())
        return segments

    def _on_caller_speech(self, kind: str, t_ms: float, utterance: Utterance) -> None:
        if kind in ("pause_start", "pause_end"):
            self._event(kind.replace("pause", "hesitation"), t_ms=t_ms)
            return
        self._event(f"caller_{kind}", t_ms=t_ms, mode=utterance.mode)
        last_part = utterance.end_ms is not None or utterance.interrupted
        if kind == "speech_end" and last_part and utterance.turn_end:
            self._event("caller_turn_end", t_ms=t_ms)

    def _on_agent_message(self, label: str, message) -> None:
        t_ms = self.clock.ms()
        try:
            report = self.agent_messages.receive(label, message, t_ms)
        except Exception as e:  # a message no reader expected must not kill the transport's loop
            log.exception("call %s: agent message not read", self.record.call_id)
            self._event("agent_message_unreadable", t_ms=t_ms, error=type(e).__name__)
            return
        if report.state is not None:
            self.record.agent_state = report.state
        if report.speech is not None:
            self._event(f"agent_reported_speech_{report.speech}", t_ms=t_ms)
        if report.heard is not None:
            self._event("agent_heard", t_ms=t_ms, text=report.heard)
        if report.said is not None:
            self._event("agent_said", t_ms=t_ms, text=report.said)
        if report.hangup:
            self._end("hangup", by="agent")

    # --- ending -----------------------------------------------------------------------

    def _event(self, kind: str, t_ms: float | None = None, **detail) -> None:
        self.events.append(TimelineEvent(kind, self.clock.ms() if t_ms is None else t_ms, detail))

    def _finish_ok(self) -> None:
        missing = self.brain.goal_facts - self.brain.facts_given
        closed_early = self.transport is not None and self.transport.closed_before_audio()
        if self.media_lost:
            limit_s = self.limits.media_timeout_s
            self._fail("media_timeout", f"no agent audio for {limit_s:g} s, and no hang-up")
        elif self.brain.goal_met:
            self.record.status = "completed"
        elif self._ended_by("connection_lost"):
            self._fail("ws_connection_lost", "the socket dropped without a close frame, mid-flow")
        elif closed_early and not self.agent_spoke.is_set():
            self._fail("ws_closed_early", "the agent closed the WebSocket before it said anything")
        elif self.gave_up:
            wait_s = self.persona.temperament.max_wait_s
            self._fail("caller_gave_up", f"the agent left the caller waiting {wait_s:g} s")
        elif not self.ended.is_set():
            self._fail("caller_gave_up", "the caller hung up: it could not follow the agent")
        elif self._agent_said_goodbye():
            never_asked = sorted(missing - self.asked)
            detail = "never asked: " + ", ".join(never_asked) if never_asked else ""
            if missing & self.asked:  # asked, and the caller did not answer (a silent persona)
                detail = "; ".join(filter(None, [
                    detail, "asked, not answered: " + ", ".join(sorted(missing & self.asked))]))
            self._fail("goal_not_met", detail)
        elif self.script is not None:
            said, total = self.script.said_turns, len(self.script.turns)
            self._fail("remote_hangup_early", f"mid-flow; {said} of {total} script turns said")
        else:
            self._fail("remote_hangup_early",
                       "mid-flow; goal facts never said: " + ", ".join(sorted(missing)))

    def _ended_by(self, kind: str) -> bool:
        return any(e.kind == kind for e in self.events)

    def _agent_said_goodbye(self) -> bool:
        """The agent's last turn closes the conversation: it ran its flow to the end."""
        last = next((t for t in reversed(self.turns) if t.speaker == "agent"), None)
        return last is not None and says_goodbye(last.text)

    def _fail(self, reason: str, detail: str = "") -> None:
        self.record.status = "failed"
        self.record.failure_reason = reason
        self.record.failure_detail = detail or None

    async def _hang_up(self) -> None:
        if self.transport is not None:
            self.record.network = await self.transport.network_stats()
        self.track.stop()
        if self.transport is not None:
            await self.transport.close()
        self._tasks.extend(self._early_stt.values())  # pauses the call ended in: not needed
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._write_record()
        if self.audio_path is not None and (self.track.sent16 or self.received16):
            # Seconds of audio to lay out and write: off the loop, other calls are pacing on it.
            try:
                await asyncio.to_thread(self._write_audio, self.audio_path)
                self.record.audio = f"audio/{self.audio_path.name}"  # relative to the run dir
            except OSError as e:  # a full disk costs the recording, never the record
                log.warning("call %s: recording not written: %s", self.record.call_id, e)

    def _write_record(self) -> None:
        rec = self.record
        rec.duration_s = round(self.clock.ms() / 1000, 3)
        rec.turns = [t.__dict__ | {"start_ms": round(t.start_ms, 1), "end_ms": round(t.end_ms, 1)}
                     for t in sorted(self.turns, key=lambda t: t.start_ms)]
        rec.events = [e.to_dict() for e in sorted(self.events, key=lambda e: e.t_ms)]
        late = self.track.lateness_ms
        rec.generator = {
            "pacing_late_ms_p99": round(float(np.percentile(late, 99)), 2) if late else None,
            "frames_sent": len(late),
            "reply_late_ms": self.reply_late_ms,
            "reply_ready_ms": self.reply_ready_ms,
            "spoken_ahead": {"lines": len(self.spoken_ahead), "used": self.said_as_rehearsed},
        }
        if self.voice is not None and hasattr(self.voice.tts, "stats"):
            rec.generator["tts_cache"] = self.voice.tts.stats()  # this call's hits and misses
        rec.transport = (self.transport.describe() if self.transport is not None
                         else {"kind": self.target.transport})
        rec.agent_messages = self.agent_messages.kept
        rec.stages = [s.to_dict() for s in sorted(self.stages, key=lambda s: s.start_ms)]
        rec.facts_given = sorted(self.brain.facts_given)
        rec.facts = self.call_facts.graded()
        rec.success = self.call_facts.scenario.success.model_dump()
        if self.models.stt is None:  # the agent's turns have no text: not silence, unheard
            rec.speech = {"stt": "none"}
        elif isinstance(self.models.stt, BatchedTranscriber):
            # the host's batcher so far (shared by its calls): batch sizes, decode and queue times
            rec.speech = {"stt": "batched", "batcher": self.models.stt.stats.as_dict()}
        elif isinstance(self.models.stt, OpenAITranscriber):
            rec.speech = {"stt": "openai", "base_url": self.models.stt.config.base_url,
                          "model": self.models.stt.config.model}
        elif isinstance(self.models.stt, ServeTranscriber):
            rec.speech = {"stt": "serve", "app": self.models.stt.app}
        if isinstance(self.models.tts, OpenAISynthesizer):  # the service spoke for the caller
            tts = self.models.tts.config
            rec.speech |= {"tts": "openai", "tts_base_url": tts.base_url, "tts_model": tts.model,
                           "tts_voice": tts.voice}
        elif isinstance(self.models.tts, ServeSynthesizer):
            rec.speech |= {"tts": "serve", "tts_app": self.models.tts.app}
        if self.agent_messages.dropped:
            rec.transport["agent_messages_dropped"] = self.agent_messages.dropped
        line = self.track.line
        if line is not None:  # the persona's environment and phone line, as applied
            env = self.persona.environment
            rec.transport["line"] = {"noise": env.noise, "snr_db": env.snr_db,
                                     "band_limit": line.band is not None,
                                     "packet_loss_pct": self.persona.line.packet_loss_pct,
                                     "frames_dropped": line.frames_lost}

    def _write_audio(self, path: Path) -> None:
        """Stereo WAV on the call's clock: left = caller as sent, right = agent as received."""
        left = place_on_timeline(self.track.sent16, STT_RATE)
        right = place_on_timeline(self.received16, STT_RATE)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_stereo_wav(path, left, right, STT_RATE)
