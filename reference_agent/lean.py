"""The lean agent's dialog (`callfleet agent --lean`): for load, soak and pacing benchmarks.

It understands nothing (the lean agent runs no speech recognition): it says the flow's opening,
then asks the flow's remaining questions in order (each slot's, then the feedback question if
the flow has one, as the full agent does: the same number of caller turns), one per caller
turn whatever the caller said, and after the last answer says goodbye and hangs up. Every
line it can say is known up front (lean_lines), so the agent synthesizes them all at start-up
and no call costs a Piper run.
"""

from __future__ import annotations

from typing import Any

from reference_agent.dialog import DONE, FEEDBACK, AgentReply
from reference_agent.flows import DEFAULT_FLOW, Flow, get_flow
from reference_agent.turns import SILENCE_GOODBYE, STILL_THERE

# Leaner agents answer sooner: no Whisper and no Piper work between the endpoint and the reply.
LEAN_PROCESSING_BUDGET_MS = 300


def lean_questions(flow: Flow) -> list[tuple[str, str]]:
    """(stage, question) in the order a lean call asks them: the slots, then feedback."""
    asked = [(s.name, s.question) for s in flow.slots]
    if flow.feedback_question:
        asked.append((FEEDBACK, flow.feedback_question))
    return asked


def lean_goodbye(flow: Flow) -> str:
    """The fixed goodbye: the flow's own (after the feedback question when it has one)."""
    return flow.goodbye if flow.feedback_question else \
        flow.goodbye_no_feedback or flow.goodbye


class LeanDialog:
    """Opening, then each of the flow's questions in turn, then goodbye; hears nothing.

    The interface AgentCall uses of Dialog: opening(), current_question(), state(),
    hear(text) -> AgentReply, slot_type, dropped.
    """

    def __init__(self, flow: str | Flow = DEFAULT_FLOW,
                 drop_after_turns: int | None = None) -> None:
        self.flow = flow if isinstance(flow, Flow) else get_flow(flow)
        self._questions = lean_questions(self.flow)
        self._drop_after = drop_after_turns
        self._asked = 0  # index of the question being waited on (all asked: done)
        self._turns = 0
        self._dropped = False

    def opening(self) -> str:
        return f"{self.flow.greeting} {self._questions[0][1]}"

    def current_question(self) -> str:
        """The question the agent is waiting on ("" when done): what silence re-prompts ask."""
        return self._questions[self._asked][1] if self._asked < len(self._questions) else ""

    @property
    def stage(self) -> str:
        """The slot whose question is pending, "feedback", or "done" after the goodbye."""
        return self._questions[self._asked][0] if self._asked < len(self._questions) else DONE

    @property
    def slot_type(self) -> str | None:
        return None  # no recogniser to prime

    @property
    def entities(self) -> dict[str, str]:
        return {}  # it heard nothing

    @property
    def dropped(self) -> bool:
        return self._dropped

    def state(self) -> dict[str, Any]:
        """The agent-state JSON: Dialog's keys (no entities), and "lean": true."""
        return {"entities": {}, "stage": self.stage, "done": self.stage == DONE,
                "dropped": self._dropped, "turns": self._turns, "flow": self.flow.name,
                "lean": True}

    def hear(self, text: str | None = None) -> AgentReply:
        """One caller turn (its words are ignored): the next question, or the goodbye."""
        if self.stage == DONE or self._dropped:
            return AgentReply("", hang_up=True)
        self._turns += 1
        if self._drop_after is not None and self._turns >= self._drop_after:
            self._dropped = True
            return AgentReply("", hang_up=True)
        self._asked += 1
        if self.stage == DONE:
            return AgentReply(lean_goodbye(self.flow), hang_up=True)
        return AgentReply(self.current_question())


def lean_lines(flow: str | Flow) -> list[str]:
    """Every line a lean call of flow can say, silence re-prompts included (no duplicates)."""
    flow = flow if isinstance(flow, Flow) else get_flow(flow)
    questions = [q for _, q in lean_questions(flow)]
    lines = [LeanDialog(flow).opening(), *questions[1:]]
    lines += [f"{STILL_THERE} {q}" for q in questions]
    lines += [lean_goodbye(flow), SILENCE_GOODBYE]
    return list(dict.fromkeys(lines))
