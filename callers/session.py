"""One persona's whole call: listen, transcribe, decide, speak, record, on one clock."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from aiortc import RTCPeerConnection

from callers.audio import STT_RATE, write_stereo_wav
from callers.brain import GOAL_FACTS, Brain, ScriptedBrain
from callers.errors import CallFailed
from callers.loopback import candidate_addresses, loopback_only
from callers.media import (
    Clock,
    OutgoingAudioTrack,
    Playout,
    Utterance,
    place_on_timeline,
    received_frames,
    utterance_from_pcm,
)
from callers.network import network_stats
from callers.persona import Persona
from callers.record import CallRecord, TimelineEvent, Turn
from callers.stt import Transcriber
from callers.transport import (
    Target,
    close_peer_connection,
    make_signaling,
    new_peer_connection,
    prefer_codec,
)
from callers.tts import Synthesizer
from callers.vad import SpeechSegment, SpeechSegmenter

log = logging.getLogger(__name__)


@dataclass
class CallerModels:
    """Speech models shared by every call of one process (loaded once)."""

    stt: Transcriber
    tts: Synthesizer


async def load_caller_models() -> CallerModels:
    """Load Whisper and Piper once per process, off the event loop."""
    stt, tts = await asyncio.gather(
        asyncio.to_thread(Transcriber, cpu_threads=1), asyncio.to_thread(Synthesizer)
    )
    return CallerModels(stt, tts)


@dataclass(frozen=True)
class SessionLimits:
    connect_timeout_s: float = 15.0
    no_agent_audio_s: float = 15.0  # the agent must start speaking within this
    max_call_s: float = 240.0
    reply_gap_ms: float = 400.0  # how long the agent must be quiet before the caller answers


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
        concurrency_at_start: int = 1,
    ) -> None:
        self.persona = persona
        self.target = target
        self.models = models
        self.limits = limits
        self.audio_path = audio_path
        self.brain = brain or ScriptedBrain(persona, seed)
        self.record = CallRecord(
            call_id=call_id,
            persona=persona.id,
            seed=seed,
            target=target.url,
            concurrency_at_start=concurrency_at_start,
        )
        self.clock = Clock()
        self.events: list[TimelineEvent] = []
        self.turns: list[Turn] = []
        self.playout = Playout(on_event=self._on_caller_speech)
        self.track = OutgoingAudioTrack(self.playout, self.clock)
        self.received16: list[tuple[float, np.ndarray]] = []
        self.agent_segments: asyncio.Queue[SpeechSegment] = asyncio.Queue()
        self.segmenter = SpeechSegmenter(hangover_ms=300)
        self.last_agent_end_ms = 0.0
        self.agent_spoke = asyncio.Event()
        self.remote_hangup = asyncio.Event()
        self.local_candidates: list[str] = []
        self.remote_candidates: list[str] = []
        self._tasks: list[asyncio.Task] = []

    # --- the call ------------------------------------------------------------------

    async def run(self) -> CallRecord:
        self.record.started_at = time.time()
        pc = new_peer_connection(self.target)
        signaling = make_signaling(self.target)
        try:
            await self._connect(pc, signaling)
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
            await self._hang_up(pc, signaling)
        return self.record

    async def _connect(self, pc: RTCPeerConnection, signaling) -> None:
        channel = pc.createDataChannel("agent-state")
        channel.on("message", self._on_agent_state)
        pc.addTrack(self.track)
        prefer_codec(pc.getTransceivers()[0], self.target.codec)
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", lambda: self._on_connection_state(pc))
        with loopback_only(self.target.local):
            await pc.setLocalDescription(await pc.createOffer())
        self.local_candidates = candidate_addresses(pc.localDescription.sdp)
        answer = await signaling.exchange(pc.localDescription)
        self.remote_candidates = candidate_addresses(answer.sdp)
        await pc.setRemoteDescription(answer)
        deadline = time.monotonic() + self.limits.connect_timeout_s
        while pc.connectionState != "connected":
            if pc.connectionState in ("failed", "closed") or time.monotonic() > deadline:
                raise CallFailed("ice_timeout", f"connection state {pc.connectionState}")
            await asyncio.sleep(0.02)
        self._event("connected")

    async def _converse(self) -> None:
        try:
            await asyncio.wait_for(self.agent_spoke.wait(), self.limits.no_agent_audio_s)
        except TimeoutError:
            if not self.remote_hangup.is_set():
                raise CallFailed(
                    "no_agent_audio", f"silent for {self.limits.no_agent_audio_s:.0f} s"
                ) from None
        heard: list[str] = []
        while not self.remote_hangup.is_set():
            segment = await self._next_agent_segment()
            if segment is None:
                break
            heard.append(await self._transcribe_agent(segment))
            if not await self._agent_finished_turn():
                continue
            agent_text = " ".join(t for t in heard if t).strip()
            heard = []
            if agent_text and await self._answer(agent_text):
                return  # the caller hung up
        for segment in self._drain_agent_segments():  # the agent's last words (goodbye)
            await self._transcribe_agent(segment)

    async def _next_agent_segment(self) -> SpeechSegment | None:
        get = asyncio.ensure_future(self.agent_segments.get())
        hangup = asyncio.ensure_future(self.remote_hangup.wait())
        done, _ = await asyncio.wait({get, hangup}, return_when=asyncio.FIRST_COMPLETED)
        for task in (get, hangup):
            if task not in done:
                task.cancel()
        return get.result() if get in done else None

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
        text = (await self.models.stt.transcribe(segment.audio)).text
        if self.turns and self.turns[-1].speaker == "agent":  # the agent's turn goes on
            last = self.turns[-1]
            last.text = f"{last.text} {text}".strip()
            last.end_ms = segment.end_ms
        else:
            self.turns.append(Turn("agent", text, segment.start_ms, segment.end_ms))
        return text

    async def _answer(self, agent_text: str) -> bool:
        """Decide and speak the caller's reply; True if the caller hangs up after it."""
        history = [(t.speaker, t.text) for t in self.turns]
        reply = await self.brain.reply(agent_text, history)
        self._event("brain_reply", intent=reply.intent, source=reply.source,
                    latency_ms=round(reply.latency_ms, 1))
        if reply.fallback_reason:
            self._event("brain_fallback", reason=reply.fallback_reason)
        if reply.text:
            voice = self.persona.voice
            pcm = await self.models.tts.synthesize(reply.text, voice.speaking_rate, voice.variant)
            utterance = utterance_from_pcm(pcm, self.models.tts.sample_rate, reply.text)
            await self.playout.say(utterance)
            self.turns.append(
                Turn("caller", reply.text, utterance.start_ms or 0.0, utterance.end_ms or 0.0)
            )
        if reply.end_call:
            self._event("hangup", by="caller")
        return reply.end_call

    # --- callbacks from media and data channel --------------------------------------

    def _on_track(self, track) -> None:
        if track.kind == "audio":
            self._tasks.append(asyncio.create_task(self._listen(track), name="caller-listen"))

    async def _listen(self, track) -> None:
        """Consume every agent frame: keep it for the recording and run VAD on it."""
        async for t_ms, frame in received_frames(track, self.clock):
            self.received16.append((t_ms, frame))
            for event in self.segmenter.push(frame, t_ms):
                self._on_agent_vad(event)
        for event in self.segmenter.flush():
            self._on_agent_vad(event)
        self.remote_hangup.set()

    def _on_agent_vad(self, event) -> None:
        if event.kind == "start":
            self._event("agent_speech_start", t_ms=event.t_ms)
            self.agent_spoke.set()
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
        if kind == "speech_start":
            self._event("caller_speech_start", t_ms=t_ms, mode=utterance.mode)
        else:
            self._event("caller_speech_end", t_ms=t_ms, mode=utterance.mode)
            if utterance.turn_end and utterance.mode == "turn":
                self._event("caller_turn_end", t_ms=t_ms)

    def _on_agent_state(self, message) -> None:
        try:
            state = json.loads(message)
        except (TypeError, ValueError):
            return
        if isinstance(state, dict):
            self.record.agent_state = state
            if state.get("event") == "hangup":
                self._event("hangup", by="agent")
                self.remote_hangup.set()

    def _on_connection_state(self, pc: RTCPeerConnection) -> None:
        if pc.connectionState in ("failed", "closed") and not self.remote_hangup.is_set():
            self._event("connection_" + pc.connectionState)
            self.remote_hangup.set()

    # --- ending -----------------------------------------------------------------------

    def _event(self, kind: str, t_ms: float | None = None, **detail) -> None:
        self.events.append(TimelineEvent(kind, self.clock.ms() if t_ms is None else t_ms, detail))

    def _finish_ok(self) -> None:
        if self.brain.goal_met:
            self.record.status = "completed"
        else:
            missing = sorted(GOAL_FACTS - self.brain.facts_given)
            self._fail("remote_hangup_early", "goal not met; never said: " + ", ".join(missing))

    def _fail(self, reason: str, detail: str = "") -> None:
        self.record.status = "failed"
        self.record.failure_reason = reason
        self.record.failure_detail = detail or None

    async def _hang_up(self, pc: RTCPeerConnection, signaling) -> None:
        try:
            clock_rate = 8000 if self.target.codec == "pcmu" else 48_000
            self.record.network = await asyncio.wait_for(network_stats(pc, clock_rate), 2.0)
        except Exception as e:  # stats are a nice-to-have; the record must still be written
            log.debug("getStats failed: %s", e)
        self.track.stop()
        await signaling.hangup()
        await close_peer_connection(pc)
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
                     for t in self.turns]
        rec.events = [e.to_dict() for e in sorted(self.events, key=lambda e: e.t_ms)]
        late = self.track.lateness_ms
        rec.generator = {
            "pacing_late_ms_p99": round(float(np.percentile(late, 99)), 2) if late else None,
            "frames_sent": len(late),
        }
        rec.transport = {"local_candidates": self.local_candidates,
                         "remote_candidates": self.remote_candidates}

    def _write_audio(self, path: Path) -> None:
        """Stereo WAV on the call's clock: left = caller as sent, right = agent as received."""
        left = place_on_timeline(self.track.sent16, STT_RATE)
        right = place_on_timeline(self.received16, STT_RATE)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_stereo_wav(path, left, right, STT_RATE)
