"""The reference agent's conversation as a pure state machine: transcript in, next utterance out."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from callers.language import (
    FILLER_PATTERN,
    canonical_amount,
    extract_name,
    find_amount,
    is_filler,
    is_negation,
    names_match,
    normalize_name,
    number_to_words,
)

STAGES = ("reason", "first_name", "last_name", "amount", "feedback", "done")
MISHEARABLE = frozenset({"amount", "last_name"})
MAX_REPROMPTS = 2
# A caller correcting a consistently mishearing agent would otherwise loop forever.
MAX_CORRECTIONS = 2

GREETING = "Hello, thanks for calling Acme Bank."
QUESTIONS = {
    "reason": "How can I help you today?",
    "first_name": "What is your first name?",
    "last_name": "What is your last name?",
    "amount": "What amount of money is this about?",
    "feedback": "How was this call for you today?",
    "done": "",
}

# Plausible mishearings, each far enough from the truth that names_match() rejects it
# (Smith -> Smyth would pass at the default 0.8 and hide the fault from the evaluation).
_MISHEARD_NAMES = {"smith": "Smash", "johnson": "Jensen", "garcia": "Marsha", "nguyen": "Newman",
                   "brown": "Braun", "jones": "Joyce", "miller": "Muller", "davis": "Dennis"}
_FALLBACK_NAMES = ("Walsh", "Hughes", "Parker", "Fisher", "Keller", "Moreno")

_REASON_LEAD = re.compile(
    rf"^(?:(?:hi|hello|hey|{FILLER_PATTERN}|yeah|yes|so|well|oh|okay|ok|sure)\b[\s,.!]*)*"
    r"(?:(?:i'm|i am)\s+(?:just\s+)?calling\s+(?:about|regarding|because of|because|for|to)\s+"
    r"|(?:it's|it is|this is)\s+(?:about|regarding)\s+"
    r"|(?:i'd like to|i would like to|i want to|i need to)\s+"
    r"|(?:about|regarding)\s+)?",
    re.IGNORECASE,
)
# Words a bare rejection ("No, that's wrong.") is made of: it carries no answer of its own.
_REJECTION_WORDS = {
    "no", "nope", "nah", "that's", "that", "is", "isn't", "it's", "it", "was", "wasn't", "not",
    "wrong", "incorrect", "right", "correct", "actually", "sorry", "quite", "exactly", "uh",
    "um", "oh", "well", "i", "said",
}


@dataclass
class AgentReply:
    """What the agent says next ("" for nothing), and whether it hangs up after saying it."""

    text: str
    hang_up: bool = False


def misheard_name(name: str) -> str:
    """The deterministic wrong name the agent hears instead of name (never names_match)."""
    if (mapped := _MISHEARD_NAMES.get(normalize_name(name))) is not None:
        return mapped
    start = sum(map(ord, normalize_name(name)))
    for k in range(len(_FALLBACK_NAMES)):
        candidate = _FALLBACK_NAMES[(start + k) % len(_FALLBACK_NAMES)]
        if not names_match(candidate, name):
            return candidate
    raise AssertionError(name)  # unreachable: the fallbacks are mutually dissimilar


def _dollars(amount: str) -> str:
    value = float(amount)
    return f"{number_to_words(value)} {'dollar' if value == 1 else 'dollars'}"


def _reason(text: str) -> str | None:
    rest = _REASON_LEAD.sub("", text.strip().replace("’", "'"), count=1)
    rest = rest.strip(" \t\n.,!?;:")
    return rest or None


def _is_bare_rejection(text: str) -> bool:
    words = re.findall(r"[a-z']+", text.lower().replace("’", "'"))
    return all(w in _REJECTION_WORDS or is_filler(w) for w in words)


class Dialog:
    """Asks reason, first name, last name, amount and feedback; reads back and takes corrections."""

    def __init__(self, mishear: set[str] | frozenset[str] = frozenset(),
                 drop_after_turns: int | None = None) -> None:
        unknown = set(mishear) - MISHEARABLE
        if unknown:
            raise ValueError(f"mishear: unknown entity {sorted(unknown)}; "
                             f"expected one of {sorted(MISHEARABLE)}")
        self._mishear = frozenset(mishear)
        self._drop_after = drop_after_turns
        self._entities: dict[str, str] = {}
        self._stage = "reason"
        self._turns = 0
        self._reprompts = 0
        self._readback: str | None = None  # entity read back before the pending question
        self._corrections: dict[str, int] = {}
        self._dropped = False

    def opening(self) -> str:
        """The first utterance: greeting plus the call-reason question."""
        return f"{GREETING} {QUESTIONS['reason']}"

    def current_question(self) -> str:
        """The question the agent is waiting on ("" when done): the caller's STT initial_prompt."""
        return QUESTIONS[self._stage]

    @property
    def entities(self) -> dict[str, str]:
        """What the agent understood so far (a copy): reason, first_name, last_name, amount, ..."""
        return dict(self._entities)

    @property
    def stage(self) -> str:
        """The entity being asked for, or "done" after the goodbye."""
        return self._stage

    @property
    def dropped(self) -> bool:
        """Whether the call was dropped by the drop_after_turns knob."""
        return self._dropped

    def state(self) -> dict[str, Any]:
        """The agent-state JSON sent on the data channel."""
        return {"entities": self.entities, "stage": self._stage,
                "done": self._stage == "done", "dropped": self._dropped, "turns": self._turns}

    def hear(self, text: str) -> AgentReply:
        """Take one caller turn (a transcript) and return the agent's next utterance."""
        if self._stage == "done" or self._dropped:
            return AgentReply("", hang_up=True)
        self._turns += 1
        # The drop happens instead of answering the Nth turn: that turn is not understood.
        if self._drop_after is not None and self._turns >= self._drop_after:
            self._dropped = True
            return AgentReply("", hang_up=True)
        if self._readback is not None and is_negation(text):
            reply = self._correct(self._readback, text)
            if reply is not None:
                return reply
        return self._answer(text)

    def _understand(self, entity: str, text: str) -> str | None:
        """The entity's value as this agent understands it (wrong on purpose when misheard)."""
        if entity == "reason":
            return _reason(text)
        if entity in ("first_name", "last_name"):
            name = extract_name(text)
            if name is not None and entity in self._mishear:
                name = misheard_name(name)
            return name
        if entity == "amount":
            amount = find_amount(text)
            if amount is None:
                return None
            return canonical_amount(amount + 100 if "amount" in self._mishear else amount)
        return text.strip() or None  # feedback: the words themselves

    def _correct(self, entity: str, text: str) -> AgentReply | None:
        """Handle "No, it's X" after a read-back; None when the turn is not a correction."""
        if self._corrections.get(entity, 0) >= MAX_CORRECTIONS:
            return None
        value = self._understand(entity, text)
        if value is None:
            if not _is_bare_rejection(text):
                return None  # e.g. "No complaints" answers the feedback question
            # "No, that's wrong." with no new value: ask for the entity again.
            self._corrections[entity] = self._corrections.get(entity, 0) + 1
            self._stage, self._reprompts, self._readback = entity, 0, None
            return AgentReply(f"Sorry about that. {QUESTIONS[entity]}")
        self._corrections[entity] = self._corrections.get(entity, 0) + 1
        self._entities[entity] = value
        return AgentReply(f"Sorry about that. {self._read_back(entity)} {QUESTIONS[self._stage]}")

    def _read_back(self, entity: str) -> str:
        value = self._entities[entity]
        if entity == "amount":
            return f"I have the amount as {_dollars(value)}."
        return f"I have your last name as {value}."

    def _answer(self, text: str) -> AgentReply:
        stage = self._stage
        value = self._understand(stage, text)
        if value is None and self._reprompts < MAX_REPROMPTS:
            self._reprompts += 1
            return AgentReply(f"Sorry, I didn't catch that. {QUESTIONS[stage]}")
        if value is not None:
            self._entities[stage] = value
        self._stage = STAGES[STAGES.index(stage) + 1]
        self._reprompts = 0
        self._readback = stage if value is not None and stage in ("last_name", "amount") else None
        return self._next_utterance(stage, value)

    def _next_utterance(self, answered: str, value: str | None) -> AgentReply:
        """What to say after the answer to `answered` (value None: moving on without it)."""
        if answered == "feedback":
            text = "Thank you for your feedback." if value else "Thank you for calling."
            return AgentReply(f"{text} Goodbye!", hang_up=True)
        if value is None:
            return AgentReply(f"Let's go on. {QUESTIONS[self._stage]}")
        if answered == "reason":
            return AgentReply(f"I can help with that. {QUESTIONS['first_name']}")
        if answered == "first_name":
            return AgentReply(f"Thanks, {value}. And your last name?")
        if answered == "last_name":
            return AgentReply(f"I have your last name as {value}. {QUESTIONS['amount']}")
        return AgentReply(
            f"Got it, {_dollars(value)}. Before you go, how was this call for you today?"
        )
