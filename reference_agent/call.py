"""One call on the reference agent: hear the caller, endpoint, transcribe, answer, barge-in,
re-prompt a silent caller."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

import numpy as np

from callers.audio import FRAME_MS, voiced_bounds
from callers.media import (
    Clock,
    OutgoingAudioTrack,
    Playout,
    ReceiveStats,
    Utterance,
    received_frames,
    utterance_from_pcm,
)
from callers.speech.stt import Transcriber
from callers.transport import close_peer_connection
from callers.speech.tts import Synthesizer
from callers.speech.vad import SpeechSegment, SpeechSegmenter
from reference_agent.dialog import Dialog
from reference_agent.lean import LEAN_PROCESSING_BUDGET_MS, LeanDialog
from reference_agent.turn_log import LastSound, TurnLog
from reference_agent.turns import REPROMPT_AFTER_S, SilenceReprompts, TurnGate

log = logging.getLogger(__name__)

# Vocabulary biasing for Whisper on name answers, as a real agent would bias towards its CRM's
# names: without it tiny.en hears "Maria" as "Moria" now and then.
NAME_HINTS = (
    "Common names: John, Maria, David, James, Mary, Michael, Jennifer, Robert, Linda, William, "
    "Sarah, Thomas, Emily, Daniel, Anna, Smith, Garcia, Johnson, Williams, Brown, Jones, Miller, "
    "Davis, Rodriguez, Martinez, Wilson, Anderson, Taylor, Moore, Nguyen, Lee."
)
# For a whole name, examples of first-and-last pairs: with single names only, tiny.en ran
# "Anna Lee" together as "Annalie" (6 of 90 names missed; 1 of 90 with these pairs).
FULL_NAME_HINTS = ("Full names, a first and a last name: Mary Lee, John Garcia, Anna Smith, "
                   "David Brown, Sam Taylor, Linda Davis, Maria Johnson, "
                   + NAME_HINTS.removeprefix("Common names: "))
# Whisper tiny hears spelled letters, digit strings and emails poorly without an example of
# what is coming (measured in the 12-call demo: 1 of 3 order numbers, 0 of 3 phone numbers
# right); a real agent primes its recogniser per slot the same way. The examples are
# deliberately unlike any shipped scenario's values.
TYPE_HINTS = {
    "spelled": ("Letters and digits, one at a time, maybe with the phonetic alphabet: alpha, "
                "bravo, charlie, delta, echo, foxtrot, golf, hotel, india, juliett, kilo, lima, "
                "mike, november, oscar, papa, quebec, romeo, sierra, tango, uniform, victor, "
                "whiskey, x-ray, yankee, zulu. B, R, 5, Q."),
    "phone": "Phone number, digit by digit: 2, 0, 6; 3, 1, 8; 4, 4, 9, 7.",
    "email": "Email address: m dot lopez at mail dot net, alex at work dot org.",
}
ENDPOINT_SILENCE_MS = 600  # silence that ends the caller's turn
# Time allowed for Whisper + Piper after the endpoint decision; the agent answers no sooner,
# so its response time is steady (only longer when processing overruns the budget).
PROCESSING_BUDGET_MS = 1300


@dataclass(frozen=True)
class AgentKnobs:
    """Fault knobs: planted defects that the graders must find."""

    response_delay_ms: int = 0
    barge_in: str = "stop"  # "stop" | "ignore"
    mishear: frozenset[str] = frozenset()
    drop_after_turns: int | None = None
    max_call_s: float = 300.0
    # "message": {"event": "hangup"} on agent-state, then close; "close": close the peer
    # connection 0.5 s after the goodbye and say nothing, as Pipecat bots do.
    hangup: str = "message"
    flow: str = "card_dispute"  # reference_agent/flows.py
    # --lean: no speech recognition; asks the flow's questions in turn (reference_agent/lean.py)
    lean: bool = False
    # Between the endpoint and the reply; None: PROCESSING_BUDGET_MS, LEAN_PROCESSING_BUDGET_MS
    # when lean.
    processing_budget_ms: int | None = None

    @property
    def budget_ms(self) -> int:
        """The processing budget this agent answers after (ms after the endpoint)."""
        if self.processing_budget_ms is not None:
            return self.processing_budget_ms
        return LEAN_PROCESSING_BUDGET_MS if self.lean else PROCESSING_BUDGET_MS


@dataclass
class SpeechModels:
    """Loaded once per agent process, shared by all its calls."""

    stt: Transcriber | None  # None for a lean agent: it transcribes nothing
    tts: Synthesizer


class AgentMedia:
    """The agent's side of one call's wire: the seam between AgentCall and a transport.

    attach(call) wires it: it sends call.track's paced frames, calls call.listen(source)
    with what incoming(source) reads, and call.caller_hung_up() when the caller is gone.
    """

    kind = ""

    def attach(self, call: AgentCall) -> None:
        raise NotImplementedError

    @property
    def connected(self) -> bool:
        raise NotImplementedError

    def incoming(self, source, call: AgentCall):
        """The caller's audio, (t_ms, 20 ms at 16 kHz) on the call's clock."""
        raise NotImplementedError

    def send_state(self, text: str) -> None:
        """The agent's state (JSON): a data channel, or a text message on the socket."""

    def clear(self) -> None:
        """The agent stopped talking (barge-in): tell the far end to drop queued audio."""

    async def close(self) -> None:
        raise NotImplementedError


class WebRtcAgentMedia(AgentMedia):
    """aiortc: the track out, the caller's track in, the agent-state data channel."""

    kind = "webrtc"

    def __init__(self, pc) -> None:
        self.pc = pc
        self.channel = None
        self.call: AgentCall | None = None

    def attach(self, call: AgentCall) -> None:
        self.call = call
        self.pc.addTrack(call.track)
        self.pc.on("track", call._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_state)

    def _on_datachannel(self, channel) -> None:
        if channel.label == "agent-state":
            self.channel = channel

    async def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed") and self.call is not None:
            self.call.caller_hung_up()

    @property
    def connected(self) -> bool:
        return self.pc.connectionState == "connected"

    def incoming(self, source, call: AgentCall):
        return received_frames(source, call.clock, call.receive_stats)

    def send_state(self, text: str) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(text)

    async def close(self) -> None:
        await close_peer_connection(self.pc)


class AgentCall:
    """The agent's side of one call, over any AgentMedia (a bare peer connection: WebRTC)."""

    def __init__(self, media, models: SpeechModels, knobs: AgentKnobs, *,
                 turn_log: TurnLog | None = None, call_id: str | None = None) -> None:
        self.media: AgentMedia = (media if isinstance(media, AgentMedia)
                                  else WebRtcAgentMedia(media))
        self.pc = getattr(self.media, "pc", None)
        self.models = models
        self.knobs = knobs
        self.clock = Clock()
        self.dialog: Dialog | LeanDialog = (
            LeanDialog(knobs.flow, drop_after_turns=knobs.drop_after_turns) if knobs.lean
            else Dialog(mishear=set(knobs.mishear), drop_after_turns=knobs.drop_after_turns,
                        flow=knobs.flow))
        self.playout = Playout(on_event=self._on_playout)
        # The turn log (--turn-log): when the caller's sound last reached the agent before each
        # endpoint, and when the reply's first voiced sample left; on this call's clock.
        self.turn_log = turn_log
        self.call_id = call_id
        self.receive_stats = ReceiveStats()
        self.last_sound = LastSound()
        self._turn_sound: dict[int, tuple[SpeechSegment, float | None]] = {}
        self._replies: dict[int, tuple[Utterance, dict]] = {}
        self._answered = 0
        self.track = OutgoingAudioTrack(self.playout, self.clock)
        self.turns: asyncio.Queue = asyncio.Queue()
        self.segmenter = SpeechSegmenter(hangover_ms=ENDPOINT_SILENCE_MS)
        self.gate = TurnGate(stop_on_barge_in=knobs.barge_in == "stop")
        self.silence = SilenceReprompts()
        # Set when the caller starts or stops speaking and when an agent utterance has played:
        # _next_turn restarts its silence timer on it.
        self._activity = asyncio.Event()
        self.ended = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.media.attach(self)

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._converse(), name="agent-converse"))

    def _on_track(self, track) -> None:
        if track.kind == "audio":
            self.listen(track)

    def listen(self, source=None) -> None:
        """Start hearing the caller: source is what the media reads from (a WebRTC track)."""
        self._tasks.append(asyncio.create_task(self._listen(source), name="agent-listen"))

    def caller_hung_up(self) -> None:
        if not self.ended.is_set():
            self.ended.set()
            self._cancel_tasks()

    async def _listen(self, track) -> None:
        """Consume every frame (an unread track grows without bound); VAD marks caller turns."""
        segmenter = self.segmenter
        try:
            async for t_ms, frame in self.media.incoming(track, self):
                self.last_sound.push(t_ms, frame)
                for event in segmenter.push(frame, t_ms):
                    self._activity.set()
                    if event.kind == "start":
                        self.gate.start(self._agent_voicing())
                    elif event.segment is not None:
                        if self.gate.is_turn(event.segment.end_ms - event.segment.start_ms):
                            self._turn_sound[id(event.segment)] = (event.segment,
                                                                   self.last_sound.ms)
                            # Timed from when the frame that ended the turn arrived, not from
                            # when a jitter buffer released it: the same schedule on every
                            # transport (over WebRTC aiortc holds each frame ~80 ms more).
                            self.turns.put_nowait((event.segment, t_ms + FRAME_MS))
                # Yield only to speech that has lasted: a backchannel must not stop the agent.
                if segmenter.in_speech and self.gate.should_stop(segmenter.voiced_ms,
                                                                 self.playout.speaking):
                    self.playout.stop(t_ms)
                    self.media.clear()
        finally:
            if self.turn_log is not None:
                late = self.track.lateness_ms
                self.turn_log.write({"kind": "call", "call_id": self.call_id,
                                     "t0_monotonic": self.clock.t0, "turns": self._answered,
                                     "pacing_late_ms_p99": (round(float(np.percentile(late, 99)),
                                                                  2) if late else None),
                                     **self.receive_stats.summary()})

    def _agent_voicing(self) -> bool:
        """The agent's voice is playing or about to: not just an utterance's trailing silence."""
        return any(u.end_ms is None for u in self.playout.queue)

    async def _converse(self) -> None:
        try:
            await asyncio.wait_for(self._wait_connected(), 15)
            await asyncio.sleep(0.3)  # let the caller's receive path settle
            self._send_state()
            await self._say(self.dialog.opening())
            async with asyncio.timeout(self.knobs.max_call_s):
                while not self.ended.is_set():
                    turn = await self._next_turn()
                    if await (self._reprompt_on_silence() if turn is None
                              else self._take_turn(*turn)):
                        break
        except (TimeoutError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("agent call failed")
        finally:
            await self.hang_up()

    async def _next_turn(self) -> tuple | None:
        """The caller's next turn, or None after REPROMPT_AFTER_S in which nobody spoke."""
        while True:
            self._activity.clear()
            if not self.turns.empty():
                return self.turns.get_nowait()
            busy = self.playout.speaking or self.segmenter.in_speech
            try:
                await asyncio.wait_for(self._activity.wait(), None if busy else REPROMPT_AFTER_S)
            except TimeoutError:
                return None

    async def _reprompt_on_silence(self) -> bool:
        """Ask the pending question again, or say goodbye; True when the call is over."""
        reply = self.silence.silence(self.dialog.current_question())
        log.info("caller silent for %.0f s: %r", REPROMPT_AFTER_S, reply.text)
        done = await self._say(reply.text)
        if reply.hang_up:
            await done
        return reply.hang_up

    async def _take_turn(self, segment, endpointed_ms: float) -> bool:
        """Answer one caller turn; True when the call is over."""
        heard_sound = self._turn_sound.pop(id(segment), (None, None))
        last_sound_ms = heard_sound[1] if heard_sound[0] is segment else None
        if self.knobs.lean:
            text = ""  # a lean agent hears nothing: every turn moves the dialog on
        else:
            text = await self._transcribe(segment)
            if not text:
                return False
        self.silence.heard()
        reply = self.dialog.hear(text)
        self._send_state()
        if reply.text:
            utterance = await self._synthesize(reply.text)
            # Speak on a fixed schedule after the caller stopped, so that Whisper and Piper time
            # (which varies with load) does not blur the planted --response-delay-ms.
            speak_at = endpointed_ms + self.knobs.budget_ms + self.knobs.response_delay_ms
            await asyncio.sleep(max(0.0, speak_at - self.clock.ms()) / 1000)
            self._log_reply(utterance, last_sound_ms, endpointed_ms)
            done = self._play(utterance)
            if reply.hang_up:
                await done
        return reply.hang_up

    async def _transcribe(self, segment) -> str:
        """The caller's words, Whisper primed with the pending question and its slot's type."""
        prompt = self.dialog.current_question()
        if self.dialog.slot_type == "name":
            prompt = f"{NAME_HINTS} {prompt}"
        elif self.dialog.slot_type == "full_name":
            prompt = f"{FULL_NAME_HINTS} {prompt}"
        elif self.dialog.slot_type in TYPE_HINTS:
            prompt = f"{TYPE_HINTS[self.dialog.slot_type]} {prompt}"
        if self.models.stt is None:
            raise RuntimeError("no speech recognition loaded: only a lean agent runs without")
        heard = await self.models.stt.transcribe(segment.audio, prompt=prompt)
        return heard.text

    def _log_reply(self, utterance: Utterance, last_sound_ms: float | None,
                   endpointed_ms: float) -> None:
        """Log this reply to a caller turn when its first voiced sample leaves (_on_playout)."""
        self._answered += 1
        if self.turn_log is None:
            return
        entry = {"kind": "turn", "call_id": self.call_id, "turn": self._answered,
                 "t0_monotonic": self.clock.t0,
                 "last_caller_sound_ms": None if last_sound_ms is None else round(last_sound_ms, 2),
                 "endpointed_ms": round(endpointed_ms, 2)}
        self._replies[id(utterance)] = (utterance, entry)

    def _on_playout(self, kind: str, t_ms: float, utterance: Utterance) -> None:
        if kind != "speech_start" or id(utterance) not in self._replies:
            if kind == "speech_end":  # stopped before it started, or done: forget it
                self._replies.pop(id(utterance), None)
            return
        replied, entry = self._replies.pop(id(utterance))
        if replied is not utterance or self.turn_log is None:
            return
        sound = entry["last_caller_sound_ms"]
        # how late the track handed this frame to the wire against its 20 ms schedule
        late = self.track.lateness_ms[-1] if self.track.lateness_ms else 0.0
        self.turn_log.write({**entry, "reply_start_ms": round(t_ms, 2),
                             "gap_ms": None if sound is None else round(t_ms - sound, 2),
                             "send_late_ms": round(late, 2)})

    async def _wait_connected(self) -> None:
        while not self.media.connected:
            if self.ended.is_set():
                raise TimeoutError
            await asyncio.sleep(0.05)

    async def _synthesize(self, text: str) -> Utterance:
        pcm = await self.models.tts.synthesize(text)
        rate = self.models.tts.sample_rate
        # Piper's leading silence is random in length (0-350 ms seen): start 30 ms before the
        # voice so the agent's timing is its schedule, not the synthesizer's noise.
        first, _ = voiced_bounds(pcm, rate)
        pcm = pcm[max(0, first - 3 * rate // 100):]
        return utterance_from_pcm(pcm, rate, text, mode="prompt", record=False)

    async def _say(self, text: str) -> asyncio.Future:
        return self._play(await self._synthesize(text))

    def _play(self, utterance: Utterance) -> asyncio.Future:
        done = self.playout.say(utterance)
        done.add_done_callback(lambda _: self._activity.set())  # the silence timer starts now
        return done

    def _send_state(self, **extra) -> None:
        self.media.send_state(json.dumps({**self.dialog.state(), **extra}))

    async def hang_up(self) -> None:
        if not self.ended.is_set():
            self.ended.set()
            if self.knobs.hangup == "close":
                await asyncio.sleep(0.5)
            else:
                self._send_state(event="hangup")
                await asyncio.sleep(0.2)  # let the message leave before the transport closes
        await self.media.close()
        self._cancel_tasks()

    def _cancel_tasks(self) -> None:
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
