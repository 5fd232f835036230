"""Fixed scripts: a scenario's caller turns said as written, at the times written.

The brain decides nothing: after each agent turn the next turn of the script is said (a
delay after the agent stopped), and a turn with an offset into the agent's turn is said while
the agent speaks (a barge-in or a backchannel at an exact moment). The call ends after the
last turn. This keeps regression suites deterministic, and measures agents whose replies
carry no words the caller could understand.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from callers.brain import Brain, Reply, ScriptedBrain, facts_stated
from callers.media import Utterance, utterance_from_pcm
from callers.persona import Persona
from callers.scenario import CallFacts, ScriptTurn


class ScriptBrain(Brain):
    """Says the scenario's script in order; goal met once every turn was said."""

    def __init__(self, facts: CallFacts) -> None:
        super().__init__(facts)
        self.turns: list[ScriptTurn] = list(facts.scenario.script or ())
        self._next = 0  # turns said (or taken to be said) so far

    @property
    def said_turns(self) -> int:
        return self._next

    @property
    def goal_met(self) -> bool:
        return self._next >= len(self.turns)

    def interjection(self) -> ScriptTurn | None:
        """The next turn if it is said into the agent's turn (taken: it is not offered again)."""
        if self._next < len(self.turns) and self.turns[self._next].into_agent_turn_ms is not None:
            self._next += 1
            return self.turns[self._next - 1]
        return None

    def rehearse(self) -> list[str]:
        """Every line the script has the caller's voice say, in order (not recorded turns)."""
        return [t.say for t in self.turns if t.say and not t.wav]

    async def _decide(self, agent_text: str, history: list[tuple[str, str]]) -> Reply:
        if self.goal_met or self.turns[self._next].into_agent_turn_ms is not None:
            return Reply("", intent="script")  # nothing to say now (or it waits for a turn)
        turn = self.turns[self._next]
        self._next += 1
        # A scenario's graded facts the line states count as given (graded), as for any brain.
        stated = facts_stated(turn.say, self.call_facts) if turn.say else ()
        return Reply(turn.say or "", intent="script", end_call=self.goal_met,
                     speak_after_ms=turn.after_agent_ms, audio=turn.wav, facts=stated)


def brain_for(persona: Persona, seed: int, facts: CallFacts) -> Brain:
    """The offline brain a scenario asks for: its script, else the scripted policy."""
    if facts.scenario.script:
        return ScriptBrain(facts)
    return ScriptedBrain(persona, seed, facts)


def wav_utterance(path: str | Path, *, mode: str = "turn") -> Utterance:
    """A recorded turn (any rate, mono or the first channel of stereo, 16-bit) to play."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM WAV")
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)
        pcm = pcm.reshape(-1, wav.getnchannels())[:, 0].copy()
        rate = wav.getframerate()
    return utterance_from_pcm(pcm, rate, f"[{Path(path).name}]", mode=mode)
