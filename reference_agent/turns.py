"""The agent's turn-taking rules, free of WebRTC: barge-in or backchannel, re-prompts on silence."""

from __future__ import annotations

from reference_agent.dialog import AgentReply

MIN_TURN_MS = 120  # shorter blips (a click, a breath) are not turns
# Caller speech that starts while the agent talks must be voiced this long before the agent
# yields; shorter, it was a backchannel. Measured: the callers' backchannels ("Mm-hmm.",
# "Okay.", "Right.", "Uh-huh."; Piper joe, rates 0.8/1.0/1.4, variants 0 and 4, 5 syntheses
# each, clean and through a PCMU round trip) span 140-580 ms in SpeechSegmenter (hangover
# 600 ms), the longest "Mm-hmm." at rate 0.8; 660 ms with pink noise at 20 dB SNR. Barge-ins
# ("Sorry, my last name is Smith." at rate 1.4) span 1340 ms and more. 800 ms leaves 220 ms
# above the longest backchannel and keeps the stop well inside the 2 s "not stopped" limit.
BARGE_IN_CONFIRM_MS = 800
# A silent caller is asked again after this; longer than the slowest persona's answer
# (reply_after_ms <= 5000 ms after the agent's voice ends), so it never talks over an answer.
REPROMPT_AFTER_S = 6.0
MAX_REPROMPTS_ON_SILENCE = 2
STILL_THERE = "Are you still there?"
SILENCE_GOODBYE = "I can't hear you, so I'll end the call now. Goodbye!"


class TurnGate:
    """Classifies caller speech segments from VAD events: barge-in, backchannel or turn.

    Call start() on a segment's start, should_stop() on each of its frames, is_turn() at its end.
    """

    def __init__(self, *, stop_on_barge_in: bool = True,
                 confirm_ms: float = BARGE_IN_CONFIRM_MS, min_turn_ms: float = MIN_TURN_MS) -> None:
        self.stop_on_barge_in = stop_on_barge_in
        self.confirm_ms = confirm_ms
        self.min_turn_ms = min_turn_ms
        self._overlap = False  # the open segment started while the agent was speaking
        self._stopped = False

    def start(self, agent_speaking: bool) -> None:
        self._overlap = agent_speaking
        self._stopped = False

    def should_stop(self, voiced_ms: float, agent_speaking: bool) -> bool:
        """True once per segment: the overlapping speech is confirmed as a barge-in."""
        if (self.stop_on_barge_in and self._overlap and agent_speaking and not self._stopped
                and voiced_ms >= self.confirm_ms):
            self._stopped = True
            return True
        return False

    def is_turn(self, segment_ms: float) -> bool:
        """At the segment's end: a turn, or a blip / backchannel to drop."""
        floor = self.confirm_ms if self._overlap else self.min_turn_ms
        self._overlap = False
        return segment_ms >= floor


class SilenceReprompts:
    """What the agent says when the caller stays silent: ask again, then give up."""

    def __init__(self, max_reprompts: int = MAX_REPROMPTS_ON_SILENCE) -> None:
        self.max_reprompts = max_reprompts
        self.count = 0  # silent re-prompts in a row

    def heard(self) -> None:
        """The caller said something: the next silence starts a new count."""
        self.count = 0

    def silence(self, question: str) -> AgentReply:
        if self.count >= self.max_reprompts:
            return AgentReply(SILENCE_GOODBYE, hang_up=True)
        self.count += 1
        return AgentReply(f"{STILL_THERE} {question}".strip())
