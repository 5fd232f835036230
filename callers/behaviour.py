"""The persona's turn-taking choices, each drawn from its own seeded stream.

One random.Random per behaviour, so the same persona and seed make the same choices, and
switching one behaviour on does not shift the draws of another.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from callers.persona import Persona

BACKCHANNELS = ("Mm-hmm.", "Okay.", "Right.", "Uh-huh.")
HESITATION_FILLERS = ("Um,", "Uh,", "Hmm,")


@dataclass(frozen=True)
class AgentTurnPlan:
    """What the caller will do while the agent speaks: offsets from the agent's first word."""

    barge_in_after_ms: float | None = None
    backchannel_after_ms: float | None = None
    backchannel: str = ""


class CallerBehaviour:
    """Seeded decisions for one call; ask in call order and the answers repeat exactly."""

    def __init__(self, persona: Persona, seed: int) -> None:
        self.behaviours = persona.behaviours
        self._rng = {name: random.Random(f"{seed}:{name}")
                     for name in ("barge_in", "backchannel", "hesitation", "silence")}
        self._was_silent = False

    def _happens(self, name: str) -> bool:
        p = getattr(self.behaviours, name).probability
        return p > 0 and self._rng[name].random() < p  # p = 0 draws nothing, p = 1 always

    def plan_agent_turn(self) -> AgentTurnPlan:
        """Decided when the agent starts a new turn."""
        b = self.behaviours
        barge_in = b.barge_in.after_s * 1000 if self._happens("barge_in") else None
        backchannel = b.backchannel.after_s * 1000 if self._happens("backchannel") else None
        word = self._rng["backchannel"].choice(BACKCHANNELS) if backchannel is not None else ""
        return AgentTurnPlan(barge_in, backchannel, word)

    def stay_silent(self) -> bool:
        """Say nothing to this question (at most once per call, to test the agent's re-prompt)."""
        if self._was_silent or not self._happens("silence"):
            return False
        self._was_silent = True
        return True

    def hesitation(self) -> tuple[str, float] | None:
        """(filler, pause_ms) to put before this reply, or None."""
        if not self._happens("hesitation"):
            return None
        return self._rng["hesitation"].choice(HESITATION_FILLERS), self.behaviours.hesitation.pause_ms
