"""What the caller says next: the Brain interface and the offline ScriptedBrain policy."""

from __future__ import annotations

import asyncio
import random
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

from callers.language import (canonical_amount, extract_name, find_amount, normalize_name,
                              number_to_words)
from callers.persona import Facts, Persona

# The caller's goal is met once the agent has been told all of these; an interrupting caller
# volunteers them in this order.
FACT_ORDER = ("reason", "first_name", "last_name", "amount")
GOAL_FACTS = frozenset(FACT_ORDER)

INTENTS = ("reason", "first_name", "last_name", "amount", "confirmation", "feedback", "goodbye",
           "other")


@dataclass
class Reply:
    """One caller turn as decided by a brain."""

    text: str  # what to say ("" = stay silent)
    end_call: bool = False  # the caller hangs up after saying text
    intent: str = ""  # what the brain thought the agent asked: one of INTENTS
    source: str = "scripted"
    latency_ms: float = 0.0
    facts: tuple[str, ...] = ()  # persona facts this reply states
    corrections: tuple[str, ...] = ()  # facts the agent read back wrong, corrected here
    fallback_reason: str = ""  # why the brain's own decision was replaced ("" = it wasn't)
    aside: str = ""  # an off-topic remark the reply includes (a rambler's)


class Brain(ABC):
    """Decides replies; reply() owns timing, the timeout and the fallback, subclasses decide."""

    def __init__(self, *, timeout_s: float | None = None, fallback: Brain | None = None) -> None:
        self.timeout_s = timeout_s
        self.fallback = fallback
        self._facts_given: set[str] = set()

    @property
    def facts_given(self) -> set[str]:
        """Which persona facts the caller has said so far."""
        return set(self._facts_given)

    @property
    def goal_met(self) -> bool:
        """True once reason, first_name, last_name and amount were all given."""
        return GOAL_FACTS <= self._facts_given

    async def reply(self, agent_text: str, history: list[tuple[str, str]]) -> Reply:
        """The caller's next turn after the agent said agent_text; history is [(speaker, text)]."""
        start = time.perf_counter()
        try:
            result = await asyncio.wait_for(self._decide(agent_text, history), self.timeout_s)
        except Exception as e:  # TimeoutError too; CancelledError is not an Exception and passes
            if self.fallback is None:
                raise
            result = await self.fallback._decide(agent_text, history)
            result.fallback_reason = "timeout" if isinstance(e, TimeoutError) else (
                f"{type(e).__name__}: {e}")
        result.latency_ms = (time.perf_counter() - start) * 1000.0
        self._record_facts(result.facts)
        return result

    def anticipate(self) -> Reply | None:
        """What the caller would blurt out if it interrupted the agent now: the next goal fact
        not yet given (FACT_ORDER), or None when all were. A preview: call said() if it is
        spoken (the agent may stop talking first, and then it never is)."""
        return self._anticipate()

    def said(self, reply: Reply) -> None:
        """Record that reply was spoken: its facts count as given (again is harmless)."""
        self._record_facts(reply.facts)

    async def aclose(self) -> None:
        """Release what the brain holds (an HTTP client); the default holds nothing."""

    def _record_facts(self, facts: tuple[str, ...]) -> None:
        # The fallback learns what was said whoever said it, so that when it takes a turn (or
        # an interruption) it neither repeats a fact nor skips one.
        self._facts_given.update(facts)
        if self.fallback is not None:
            self.fallback._record_facts(facts)

    @abstractmethod
    async def _decide(self, agent_text: str, history: list[tuple[str, str]]) -> Reply:
        """The brain's own decision, without timing or fallback."""

    def _anticipate(self) -> Reply | None:
        """The brain's own interruption; by default its fallback's (None without one)."""
        return self.fallback._anticipate() if self.fallback is not None else None


# --- reading the agent's words (Whisper transcripts: case, punctuation and digits vary) ---

# Keyword patterns per intent. The latest match in the utterance wins, because agents
# acknowledge first and ask last ("Thanks John. And your last name?").
_INTENT_PATTERNS = {
    "first_name": r"first name|given name|forename",
    "last_name": r"last name|surname|family name",
    "full_name": r"your name|your full name|who am i speaking|who is calling",
    "amount": r"amount|how much|how many dollars",
    "confirmation": r"is (?:that|this|it) (?:correct|right)|correct|did i get (?:that|it) right"
                    r"|can you confirm|please confirm|confirm that",
    "feedback": r"how was (?:this|the|your) (?:call|experience)|how did i do|rate (?:this|the)"
                r"|feedback|satisfied",
    "anything_else": r"anything else",
    "goodbye": r"good ?bye|bye|have a (?:nice|great|good|wonderful) (?:day|evening)|take care",
}
# Reason questions are generic ("help you") and lose to any specific question.
_REASON_PATTERN = (r"help you|help with|how can i help|how may i (?:help|assist)|assist you"
                   r"|what can i do for you|reason|calling about|why are you calling"
                   r"|what brings you|what do you need")

# "I have your last name as Smith": the marker, then the name up to the end of the sentence.
_NAME_READ_BACK = re.compile(
    r"\b(?<!my )(?:(first|last|sur|family) ?|your (?:full )?)name,? (?:as|is|was|of)\b", re.I)
# A number only counts as a read-back amount when money words say it is one.
_MONEY_CONTEXT = re.compile(r"\$|\b(?:dollars?|bucks|usd)\b|\bamount,? (?:is|as|was)\b", re.I)


def normalize(text: str) -> str:
    """Lower case, apostrophes dropped, other punctuation as spaces, single spaces."""
    text = text.lower().replace("'", "").replace("\u2019", "")
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def _sentence_after(text: str, start: int) -> str:
    return re.split(r"[.?!;]", text[start:], maxsplit=1)[0]


def _without_read_backs(agent_text: str) -> str:
    """The utterance with read-back markers blanked, so "last name as Smith" asks nothing."""
    return _NAME_READ_BACK.sub(
        lambda m: " " if extract_name(_sentence_after(agent_text, m.end())) else m.group(),
        agent_text)


def read_backs(agent_text: str) -> dict[str, str]:
    """Values the agent read back: {"first_name"|"last_name": name, "amount": canonical}."""
    found: dict[str, str] = {}
    for m in _NAME_READ_BACK.finditer(agent_text):
        rest = _sentence_after(agent_text, m.end())
        name = extract_name(rest)
        which = (m.group(1) or "").lower()
        if name is None:
            continue
        if which:
            found["first_name" if which == "first" else "last_name"] = name
            continue
        found["first_name"] = name  # "your name as John Smith": first, then last
        at = rest.lower().find(name.lower())
        last = extract_name(rest[at + len(name):]) if at >= 0 else None
        if last:
            found["last_name"] = last
    if _MONEY_CONTEXT.search(agent_text):
        amount = find_amount(agent_text)
        if amount is not None:
            found["amount"] = canonical_amount(amount)
    return found


_CLOSING = re.compile(rf"\b(?:{_INTENT_PATTERNS['goodbye']}|thanks? (?:you )?for calling)\b")


def says_goodbye(agent_text: str) -> bool:
    """The agent closes the conversation ("Goodbye!", "Thanks for calling, have a nice day")."""
    return bool(_CLOSING.search(normalize(agent_text)))


def wrong_read_backs(agent_text: str, facts: Facts) -> list[str]:
    """Facts the agent read back with a wrong value, in a fixed order (names, then amount)."""
    heard = read_backs(agent_text)
    wrong = [
        fact for fact in ("first_name", "last_name")
        # Exact, not names_match: a near miss ("Smyth") is exactly what a caller corrects.
        if fact in heard and normalize_name(heard[fact]) != normalize_name(getattr(facts, fact))
    ]
    if "amount" in heard and heard["amount"] != canonical_amount(facts.amount):
        wrong.append("amount")
    return wrong


def _question(agent_text: str) -> str:
    """The question asked, as a phrase-table key (INTENTS plus full_name and anything_else)."""
    text = normalize(_without_read_backs(agent_text))
    latest, key = -1, ""
    for name, pattern in _INTENT_PATTERNS.items():
        for m in re.finditer(rf"\b(?:{pattern})\b", text):
            if m.end() > latest:
                latest, key = m.end(), name
    if key:
        return key
    if re.search(rf"\b(?:{_REASON_PATTERN})\b", text):
        return "reason"
    return "confirmation" if read_backs(agent_text) else "other"


def classify_intent(agent_text: str) -> str:
    """What the agent asked, from keywords; read-backs alone count as a confirmation request."""
    key = _question(agent_text)
    return _INTENT_OF_KEY.get(key, key)


_INTENT_OF_KEY = {"full_name": "first_name", "anything_else": "goodbye"}


# --- phrasing: (terse, chatty) alternatives; verbosity is the chance of a chatty one ---

_PHRASES: dict[str, tuple[list[str], list[str]]] = {
    "reason": (["I'm calling about {reason}.", "It's about {reason}."],
               ["Hi, yes, I'm calling about {reason}.",
                "Hello, I need some help with {reason}, please."]),
    # No "It's {name}": Whisper merges the sibilants ("It's Smith" -> "It's Myth").
    "first_name": (["{first}.", "Sure, {first}."],
                   ["My first name is {first}.", "Sure, my first name is {first}."]),
    "full_name": (["{first} {last}.", "Sure, {first} {last}."],
                  ["My name is {first} {last}.", "Sure, my name is {first} {last}."]),
    "last_name": (["{last}.", "Sure, {last}."],
                  ["That would be {last}.", "Sure thing, my last name would be {last}."]),
    "amount": (["{amount} dollars.", "It's {amount} dollars."],
               ["It's about {amount} dollars.", "The amount is {amount} dollars, please."]),
    "confirmation": (["Yes.", "Yes, that's right."],
                     ["Yes, that's correct.", "Yes, that's all correct, thank you."]),
    "feedback": (["It was fine, thanks.", "Good, thanks."],
                 ["It was good, you were very helpful.", "Pretty good, thank you for your help."]),
    "goodbye": (["Bye!", "Thanks, bye."], ["Thank you, bye!", "Thanks for your help, bye."]),
    "anything_else": (["No, that's all, thanks."], ["No, that's everything, thank you."]),
    "other": (["Sorry, could you repeat that?"],
              ["Sorry, I didn't catch that. Could you repeat it?"]),
}
# Interrupting the agent with the next fact: "Sorry, " marks the barge-in and a full sentence
# makes it a turn, clearly longer than a backchannel.
_INTERRUPTIONS = {
    "reason": ["Sorry, I'm calling about {reason}.", "Sorry, I need some help with {reason}."],
    "first_name": ["Sorry, my first name is {first}.", "Sorry, my first name would be {first}."],
    "last_name": ["Sorry, my last name is {last}.", "Sorry, my last name would be {last}."],
    "amount": ["Sorry, the amount is {amount} dollars.", "Sorry, it's about {amount} dollars."],
}
_FACTS_STATED = {"reason": ("reason",), "first_name": ("first_name",), "last_name": ("last_name",),
                 "full_name": ("first_name", "last_name"), "amount": ("amount",)}


def say_amount(amount: float) -> str:
    """An amount as the caller says it: words for whole numbers (TTS and STT like them)."""
    if float(amount).is_integer():
        return number_to_words(int(amount))
    return canonical_amount(amount)


class ScriptedBrain(Brain):
    """Offline default: a deterministic, seeded, goal-driven policy. Not an LLM."""

    def __init__(self, persona: Persona, seed: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.persona = persona
        self.seed = seed
        self._rng = random.Random(seed)
        # Own streams, so correcting or interrupting does not shift the phrasing choices.
        self._correction_rng = random.Random(f"{seed}:correction")
        self._interruption_rng = random.Random(f"{seed}:anticipate")
        self._aside_rng = random.Random(f"{seed}:asides")
        self._unclear_in_a_row = 0
        # Patient callers ask to repeat more often before giving up.
        self.max_repeats = 1 + round(persona.temperament.patience * 4)

    async def _decide(self, agent_text: str, history: list[tuple[str, str]]) -> Reply:
        return self.decide(agent_text)

    def decide(self, agent_text: str) -> Reply:
        """The scripted reply to one agent utterance (advances the seeded phrasing choice)."""
        key = _question(agent_text)
        intent = _INTENT_OF_KEY.get(key, key)
        corrections = self._corrections(agent_text)
        if intent == "other" and not corrections:
            self._unclear_in_a_row += 1
            if self._unclear_in_a_row > self.max_repeats:
                return Reply("Sorry, I'll call back later. Bye.", end_call=True, intent="other")
        else:
            self._unclear_in_a_row = 0
        parts = [self._correction_text(i, fact) for i, fact in enumerate(corrections)]
        if not (corrections and intent in ("confirmation", "other")):
            parts.append(self._phrase(key))
        aside = self._aside() if key in _FACTS_STATED else ""
        if aside:
            parts.append(aside)  # after the answer: the agent must pick the fact out of it
        facts = {*corrections, *_FACTS_STATED.get(key, ())}
        return Reply(" ".join(parts), intent=intent, facts=tuple(sorted(facts)),
                     corrections=tuple(corrections), aside=aside)

    def _phrase(self, key: str) -> str:
        terse, chatty = _PHRASES[key]
        options = chatty if self._rng.random() < self.persona.temperament.verbosity else terse
        text = self._rng.choice(options).format(**self._fields())
        return text[0].upper() + text[1:]

    def _aside(self) -> str:
        """An off-topic remark (a rambler's), drawn from its own stream, or ""."""
        asides = self.persona.asides
        if not asides or self._aside_rng.random() >= self.persona.temperament.verbosity:
            return ""
        return self._aside_rng.choice(asides)

    def _fields(self) -> dict[str, str]:
        f = self.persona.facts
        return {"first": f.first_name, "last": f.last_name, "reason": f.reason,
                "amount": say_amount(f.amount)}

    def _anticipate(self) -> Reply | None:
        fact = next((f for f in FACT_ORDER if f not in self._facts_given), None)
        if fact is None:
            return None
        text = self._interruption_rng.choice(_INTERRUPTIONS[fact]).format(**self._fields())
        return Reply(text, intent=fact, facts=(fact,))

    def _corrections(self, agent_text: str) -> list[str]:
        """The wrong read-backs this turn corrects: all of them with the persona's correction
        probability, else none (the caller lets them pass). One draw per turn that has any."""
        wrong = wrong_read_backs(agent_text, self.persona.facts)
        p = self.persona.behaviours.correction.probability
        if wrong and self._correction_rng.random() >= p:
            return []
        return wrong

    def _correction_text(self, index: int, fact: str) -> str:
        f = self.persona.facts
        lead = "No, it's" if index == 0 else "And it's"
        if fact == "amount":
            return f"{lead} {say_amount(f.amount)} dollars."
        name = getattr(f, fact)
        return f"{lead} {name}, {'-'.join(name.upper())}."
